"""Stage 4, sample: NUTS through PyMC, and the convergence diagnostics.

Diagnostics are judged in one place, :func:`check_convergence`: R-hat above
1.01, bulk or tail ESS below 400, or any divergence gives a
:class:`~bayesmlm.ConvergenceWarning` that names the parameters.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
import xarray as xr

from ..arguments import check_count, check_flag, check_probability, check_seed
from ..errors import ArgumentError, ConvergenceWarning
from .convergence import dataset_diagnostics

__all__ = ["DEFAULT_TUNE", "GRAPH_TUNE", "FIT_METHODS", "START_SAMPLERS", "SamplerSettings", "Diagnostics", "sample_model", "diagnose", "check_convergence",
           "RHAT_MAX", "ESS_MIN"]

RHAT_MAX = 1.01
ESS_MIN = 400
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
_NEEDS = {"nutpie": ("nutpie",), "pymc": (), "numpyro": ("jax", "numpyro"), "blackjax": ("jax", "blackjax")}  # importable modules
START_SAMPLERS = ("nutpie", "pymc")  # samplers that take a start of ours (per-chain noise included)
DEFAULT_TUNE = {"nutpie": 400, "pymc": 1000, "numpyro": 1000, "blackjax": 1000}  # tune=None: warm-up steps per
# sampler. nutpie adapts its mass matrix from gradients as well as draws and settles sooner (400 is its own default);
# benchmarks/tune_results.md measures 400 against 1000 on every route. The others keep PyMC's 1000.
GRAPH_TUNE = 1000  # tune=None where nutpie samples a compiled PyMC graph (density "pytensor"): the one route that
# diverged more often at 400 (gaussian full, sleepstudy: 9 of 10 seeds against 6 of 10; bench_tune.py)
FIT_METHODS = ("auto", "full", "collapsed", "laplace")  # MLM.fit(method=): the random effects sampled, integrated out
# exactly, or integrated out by a Laplace approximation (approximate; never chosen by "auto")


@dataclass(frozen=True)
class SamplerSettings:
    """What the sampler was asked to do.

    ``seed`` and ``tune`` are never None once settings are resolved: a fit
    drawn without a seed records the one it used, so that it can be
    repeated, and ``tune=None`` becomes the sampler's default warm-up
    (``DEFAULT_TUNE``: 400 steps for nutpie, 1000 for the others).
    """

    draws: int = 1000
    tune: int | None = None
    chains: int = 4
    seed: int | None = None
    sampler: str = "nutpie"
    target_accept: float = 0.9
    progressbar: bool = True

    def resolved(self) -> "SamplerSettings":
        """These settings with a concrete seed, checked.

        Examples
        --------
        >>> SamplerSettings(seed=None).resolved().seed is not None
        True
        >>> SamplerSettings(sampler="nutpie").resolved().tune, SamplerSettings(sampler="pymc").resolved().tune
        (400, 1000)
        """
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLERS:
            raise ArgumentError(f"Unknown sampler {self.sampler!r}. Valid samplers: {', '.join(SAMPLERS)}.")
        missing = [m for m in _NEEDS[self.sampler] if importlib.util.find_spec(m) is None]
        if missing:
            raise ArgumentError(f"sampler='{self.sampler}' needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                f"not installed: pip install {' '.join(missing)}, or use sampler='nutpie' (the default).")
        draws, chains = check_count(self.draws, "draws"), check_count(self.chains, "chains")
        tune = DEFAULT_TUNE[self.sampler] if self.tune is None else check_count(self.tune, "tune", minimum=0)
        target_accept = check_probability(self.target_accept, "target_accept")
        seed = check_seed(self.seed)
        seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2**31 - 1))
        return SamplerSettings(draws, tune, chains, seed, self.sampler, target_accept,
                               check_flag(self.progressbar, "progressbar"))


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of one fit.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail : float
        Over every reported parameter, random effects included.
    divergences : int
        Divergent transitions after tuning.
    flagged : tuple of str
        Parameters past the thresholds, worst first (at most ten).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    flagged: tuple[str, ...]

    @property
    def converged(self) -> bool:
        """R-hat <= 1.01, bulk and tail ESS >= 400 and no divergence."""
        return bool(self.max_rhat <= RHAT_MAX and self.min_ess_bulk >= ESS_MIN and self.min_ess_tail >= ESS_MIN
                    and self.divergences == 0)


def sample_model(model: pm.Model, settings: SamplerSettings, initvals: dict | None = None):
    """Draw from a PyMC model with NUTS; return the DataTree and the seconds it took.

    ``initvals`` (:func:`bayesmlm.sample.initial.initial_values`) replaces
    the sampler's start and its U(-1, 1) jitter: each chain starts where the
    (seeded, per-chain) initial-point function of those values puts it.
    nutpie and PyMC's sampler only.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x")
    >>> tree, seconds = sample_model(m, SamplerSettings(draws=50, tune=50, chains=1, seed=1, progressbar=False))
    >>> tree.posterior["x"].shape
    (1, 50)
    """
    s = settings.resolved()
    start_kwargs = {}
    if initvals is not None:
        if s.sampler not in START_SAMPLERS:
            raise ArgumentError(f"initvals work with the samplers {', '.join(START_SAMPLERS)}; this fit uses "
                                f"sampler='{s.sampler}'.")
        start_kwargs = {"initvals": initvals}
        start_kwargs |= {"compile_kwargs": {"jitter_rvs": set()}} if s.sampler == "nutpie" else {"init": "adapt_diag"}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*chains.*robust.*")
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        idata = pm.sample(draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          random_seed=s.seed, nuts_sampler=s.sampler, target_accept=s.target_accept,
                          progressbar=s.progressbar, compute_convergence_checks=False, model=model, **start_kwargs)
    return idata, time.perf_counter() - start


def _flat_names(da: xr.DataArray) -> list[str]:
    if da.ndim == 0:
        return [da.name]
    stacked = da.stack(_p=da.dims)
    return [f"{da.name}[" + ", ".join(str(v) for v in idx) + "]" if isinstance(idx, tuple) else f"{da.name}[{idx}]"
            for idx in stacked["_p"].values]


def diagnose(idata, var_names: list[str]) -> Diagnostics:
    """R-hat, ESS and divergences over the named posterior variables.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> post = xr.Dataset({"x": (("chain", "draw"), np.random.default_rng(0).normal(size=(4, 500)))})
    >>> diagnose(xr.DataTree.from_dict({"posterior": post}), ["x"]).max_rhat < 1.01
    True
    """
    post = idata["posterior"].to_dataset()[var_names]
    rhat, bulk, tail = dataset_diagnostics(post)  # ArviZ's numbers, all parameters at once
    rows = []
    for v in var_names:
        for name, r, b, t in zip(_flat_names(rhat[v].rename(v)), np.ravel(rhat[v].values), np.ravel(bulk[v].values),
                                 np.ravel(tail[v].values)):
            rows.append((name, float(r), float(b), float(t)))
    r_all = np.array([r[1] for r in rows])
    b_all = np.array([r[2] for r in rows])
    t_all = np.array([r[3] for r in rows])
    bad = [r for r in rows if r[1] > RHAT_MAX or r[2] < ESS_MIN or r[3] < ESS_MIN]
    bad.sort(key=lambda r: (-r[1], r[2]))
    div = 0
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"].data_vars:
        div = int(idata["sample_stats"]["diverging"].sum())
    return Diagnostics(float(np.nanmax(r_all)), float(np.nanmin(b_all)), float(np.nanmin(t_all)), div,
                       tuple(r[0] for r in bad[:10]))


def check_convergence(diag: Diagnostics, settings: SamplerSettings) -> None:
    """Warn, naming parameters and what to try, when the diagnostics fail.

    Examples
    --------
    >>> import warnings
    >>> d = Diagnostics(1.2, 50.0, 40.0, 3, ("sd_g[(Intercept)]",))
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     check_convergence(d, SamplerSettings())
    >>> "sd_g[(Intercept)]" in str(w[0].message)
    True
    """
    if diag.converged:
        return
    problems = []
    if diag.max_rhat > RHAT_MAX:
        problems.append(f"max R-hat {diag.max_rhat:.3f} > {RHAT_MAX}")
    if min(diag.min_ess_bulk, diag.min_ess_tail) < ESS_MIN:
        problems.append(f"min ESS {min(diag.min_ess_bulk, diag.min_ess_tail):.0f} < {ESS_MIN}")
    if diag.divergences:
        problems.append(f"{diag.divergences} divergent transition(s)")
    advice = []
    if diag.divergences:
        advice.append(f"raise target_accept (now {settings.target_accept}; try 0.95 or 0.99)")
    if diag.max_rhat > RHAT_MAX or min(diag.min_ess_bulk, diag.min_ess_tail) < ESS_MIN:
        advice.append(f"draw more (draws={settings.draws}, tune={settings.tune}, chains={settings.chains} now)")
    advice.append("check the priors with model.priors()")
    flagged = f" Parameters: {', '.join(diag.flagged)}." if diag.flagged else ""
    warnings.warn(f"The sampler may not have converged: {'; '.join(problems)}.{flagged} Try to {', or '.join(advice)}.",
                  ConvergenceWarning, stacklevel=3)

"""The Laplace route (APPROXIMATE): the random effects integrated out by a Laplace approximation, then drawn.

``MLM.fit(method="laplace")`` for a bernoulli, binomial or poisson model with
one grouping factor. nutpie samples only the fixed effects and the block's SD
(and LKJ Cholesky) parameters, with the full model's priors and transforms, on
:mod:`bayesmlm.fastpath.laplace_kernel`'s Laplace marginal: per group, Newton's
method for the mode of the effects, then the Gaussian approximation of their
integral, with its exact gradient. After sampling, each u_j is drawn at every
posterior draw from its Laplace conditional N(u*_j, H_j^-1), so the posterior
has the full model's variables and dimensions (``fixef``, ``sd_<b>``,
``cor_<b>``, ``u_<b>``). The approximation's error shrinks as the groups' data
grow (benchmarks/big_binary_laplace.md measures it against the exact route).

:func:`laplace_problem` says why a model cannot take this route.
"""

from __future__ import annotations

import os
import time

import numpy as np
import xarray as xr

from ..build.full import model_coords
from ..design.aggregate import Cells
from ..design.matrices import Design
from ..design.priors import Prior, cor_name, sd_name
from ..sample.draws import nutpie_posterior
from ..sample.nuts import SamplerSettings
from ..schema import FIXED, FIXED_DIM, cor_var, sd_var, u_var, variable_dims
from .glmm_fit import prior_problem, unit_arrays
from .prior_density import prior_row, support_point

__all__ = ["FAMILIES", "ROUTE", "laplace_problem", "LaplacePlan", "fit_laplace"]

FAMILIES = ("bernoulli", "binomial", "poisson")
ROUTE = "laplace"
_X = "laplace_x"  # the unconstrained draw, stored for the effects' draws and dropped after
NUTPIE_OPTIONS: dict = {}  # extra keyword arguments of nutpie.sample, for experiments
_BLOCK = 50  # posterior draws per block of the effects' draws (its normals: 50 x J x q)


def laplace_problem(design: Design, priors: dict[str, Prior]) -> str | None:
    """Why ``method="laplace"`` cannot fit this model (None: it can).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> laplace_problem(m.design, m.prior_dict) is None
    True
    """
    family = design.spec.family.name
    if family not in FAMILIES:
        return f"family '{family}' (the Laplace route takes {', '.join(FAMILIES)})"
    if len(design.blocks) > 1 and len({b.group for b in design.blocks}) == 1:
        return (f"{len(design.blocks)} random blocks of one factor '{design.blocks[0].group}' (written with ||; the "
                "Laplace route takes one block: write (1 + x | g) for a correlated block, or use method='full')")
    if len(design.blocks) != 1:
        return (f"{len(design.blocks)} random blocks (the Laplace route integrates out one grouping factor's block; "
                "fit the others with method='full')")
    if not design.fixed_terms:
        return "no fixed effects"
    return prior_problem(design, priors, "the Laplace route")


class LaplacePlan:
    """What the Laplace route samples for one model: the kernel's buffer and the posterior's layout.

    Attributes
    ----------
    design : Design
    buffer : ndarray
        :func:`bayesmlm.fastpath.laplace_kernel.pack_buffer`.
    n_dim : int
        p fixed effects plus the block's q SDs (or q (q + 1) / 2 Cholesky entries).
    dims : dict of str to tuple
        The reported variables nutpie stores (``fixef``, ``sd_<b>``, ``cor_<b>``), then the unconstrained draw.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> plan = LaplacePlan(m.design, m.prior_dict, None)
    >>> plan.n_dim, plan.logp(plan.initial_point(1))[1].shape
    (5, (5,))
    """

    def __init__(self, design: Design, priors: dict[str, Prior], cells: Cells | None):
        problem = laplace_problem(design, priors)
        if problem:
            raise ValueError(f"method='laplace' cannot fit this model: {problem}.")
        from . import laplace_kernel as kernel  # imported here: Numba loads its compiled callbacks on import

        self.design, self.priors = design, priors
        rows = slice(None) if cells is None else cells.first
        b = design.blocks[0]
        self.block = b
        f = design.factors[b.group]
        eta = priors[cor_name(b.label)].kwargs["eta"] if b.correlated else 1.0
        y, trials, weights, offset, constant = unit_arrays(design, cells)
        family = kernel.POISSON if design.spec.family.name == "poisson" else kernel.BINOMIAL
        intercept = design.fixed_terms.index("(Intercept)") if design.has_intercept else -1
        self.buffer = kernel.pack_buffer(
            family, y, trials, weights, offset, design.X[rows], design.x_centre, b.Z[rows], f.index[rows], f.n_levels,
            [prior_row(priors[t]) for t in design.fixed_terms],
            [prior_row(priors[sd_name(b.label, t)]) for t in b.terms],
            b.correlated, eta, constant, intercept)
        self.n_dim = int(self.buffer[1])
        block_dims = variable_dims(b.label, b.group, b.correlated)
        self.dims = {FIXED: (FIXED_DIM,), sd_var(b.label): block_dims[sd_var(b.label)]}
        if b.correlated:
            self.dims[cor_var(b.label)] = block_dims[cor_var(b.label)]
        self.dims[_X] = (f"{_X}_dim",)
        self.u_dims = block_dims[u_var(b.label)]

    def initial_point(self, seed) -> np.ndarray:
        """A start as PyMC draws one: each prior's support point (L = I where correlated), jittered by U(-1, 1)."""
        b = self.block
        x = [support_point(self.priors[t]) for t in self.design.fixed_terms]
        if b.correlated:
            x += [0.0] * (b.q * (b.q + 1) // 2)
        else:
            x += list(np.log([support_point(self.priors[sd_name(b.label, t)]) for t in b.terms]))
        return np.asarray(x, dtype=np.float64) + np.random.default_rng(seed).uniform(-1.0, 1.0, self.n_dim)

    def logp(self, x) -> tuple[float, np.ndarray]:
        """The Laplace log density and its gradient at an unconstrained vector (for tests and checks)."""
        from .laplace_kernel import laplace_logp_grad

        grad = np.empty(self.n_dim)
        value = laplace_logp_grad(np.ascontiguousarray(x, dtype=np.float64), self.buffer, grad)
        return float(value), grad

    def mode(self, seed=0) -> np.ndarray:
        """The Laplace posterior's mode in x (L-BFGS from :meth:`initial_point`), for the Newton starts' predictor."""
        from scipy.optimize import minimize

        def neg(x):
            value, grad = self.logp(x)
            return (-value, -grad) if np.isfinite(value) else (1e300, np.zeros_like(grad))

        return minimize(neg, self.initial_point(seed), jac=True, method="L-BFGS-B").x

    def set_reference(self, x_ref: np.ndarray, h: float = 1e-5) -> None:
        """Start each call's Newton iterations at u*_j(x_ref) + du*_j/dx (x - x_ref) (central differences).

        Saves Newton steps near x_ref; the density does not depend on it.
        """
        from .laplace_kernel import group_modes, set_reference

        J, q = int(self.buffer[4]), int(self.buffer[3])
        x_ref = np.asarray(x_ref, dtype=np.float64)
        modes, chol = np.empty((J, q)), np.empty((J, q, q))
        group_modes(x_ref, self.buffer, modes, chol)
        jac = np.empty((J, q, self.n_dim))
        up, down = np.empty((J, q)), np.empty((J, q))
        for k in range(self.n_dim):
            e = np.zeros(self.n_dim)
            e[k] = h
            group_modes(x_ref + e, self.buffer, up, chol)
            group_modes(x_ref - e, self.buffer, down, chol)
            jac[:, :, k] = (up - down) / (2 * h)
        set_reference(self.buffer, x_ref, modes, jac)

    def effect_draws(self, xs: np.ndarray, seed, threads: int | None = None) -> np.ndarray:
        """u (S x J x q) drawn from each group's Laplace conditional N(u*_j, H_j^-1) at the draws xs (S x n_dim).

        The draws go in blocks of ``_BLOCK``, each with its own normals (a child of ``seed``'s SeedSequence), on
        ``threads`` threads (default: the CPUs): the kernel and numpy's normals release the GIL, and the result does
        not depend on the number of threads.
        """
        from concurrent.futures import ThreadPoolExecutor

        from .laplace_kernel import conditional_draws

        xs = np.ascontiguousarray(xs, dtype=np.float64)
        J, q = int(self.buffer[4]), int(self.buffer[3])
        out = np.empty((len(xs), J, q))
        starts = range(0, len(xs), _BLOCK)
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        seeds = root.spawn(len(starts))

        def block(k):
            s = slice(starts[k], starts[k] + _BLOCK)
            normals = np.random.default_rng(seeds[k]).standard_normal((len(xs[s]), J, q))
            return conditional_draws(xs[s], self.buffer, normals, out[s])

        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            failed = sum(pool.map(block, range(len(starts))))
        if failed:
            raise FloatingPointError(f"The Laplace route's Newton iterations did not converge for {failed} "
                                     "(draw, group) pairs while drawing the random effects.")
        return out


def _nutpie_model(plan: LaplacePlan):
    from nutpie.compile_pymc import CompiledPyMCModel

    from . import laplace_kernel as kernel

    coords = model_coords(plan.design) | {f"{_X}_dim": [str(i) for i in range(plan.n_dim)]}
    names = list(plan.dims)
    shapes = [tuple(len(coords[d]) for d in plan.dims[n]) for n in names]
    offsets = np.cumsum([0, *[int(np.prod(s)) for s in shapes]])
    slices = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(names))]
    return CompiledPyMCModel(
        dims=plan.dims, _coords=coords, _n_dim=plan.n_dim, _shapes=dict(zip(names, shapes)),
        compiled_logp_func=kernel.logp_cfunc, compiled_expand_func=kernel.expand_cfunc,
        initial_point_func=plan.initial_point, shared_data={}, shared_var_keys={}, user_data=plan.buffer,
        n_expanded=int(plan.buffer[18]), shape_info=(names, slices, shapes), logp_func=None, expand_func=None), coords


def fit_laplace(design: Design, priors: dict[str, Prior], settings: SamplerSettings, cells: Cells | None):
    """Sample the Laplace route's posterior with nutpie, then draw the random effects (APPROXIMATE).

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    settings : SamplerSettings
        ``sampler="nutpie"`` only (the density is a Numba C callback).
    cells : Cells or None
        The aggregated rows (:func:`bayesmlm.design.aggregate.aggregate_rows`), or None: over the rows.

    Returns
    -------
    idata : DataTree
        ``posterior`` with ``fixef``, ``sd_<b>``, ``cor_<b>``, ``u_<b>``; nutpie's ``sample_stats``.
    seconds_build, seconds_sample : float
        ``seconds_sample`` includes the effects' draws (``posterior.attrs["effects_seconds"]``).

    Examples
    --------
    >>> settings = SamplerSettings(draws=200, tune=200, seed=1)
    >>> idata, _, _ = fit_laplace(m.design, m.prior_dict, settings, None)  # doctest: +SKIP
    >>> sorted(idata["posterior"].data_vars)  # doctest: +SKIP
    ['fixef', 'sd_herd', 'u_herd']
    """
    import nutpie

    s = settings.resolved()
    if s.sampler != "nutpie":
        raise ValueError(f"method='laplace' runs with sampler='nutpie': its density is a Numba C callback that "
                         f"sampler='{s.sampler}' cannot call.")
    start = time.perf_counter()
    plan = LaplacePlan(design, priors, cells)
    plan.set_reference(plan.mode(s.seed))  # the Newton starts' predictor: fewer Newton steps near the posterior
    seconds_build = time.perf_counter() - start
    start = time.perf_counter()
    model, coords = _nutpie_model(plan)
    trace = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          seed=s.seed, progress_bar=s.progressbar, save_warmup=False, target_accept=s.target_accept,
                          **NUTPIE_OPTIONS)
    sampling_time = float(trace["posterior"].attrs.get("sampling_time", time.perf_counter() - start))
    posterior = nutpie_posterior(trace, plan.dims, coords)
    begin = time.perf_counter()
    xs = posterior[_X].values
    chains, draws = xs.shape[:2]
    u = plan.effect_draws(xs.reshape(chains * draws, plan.n_dim), np.random.SeedSequence(s.seed).spawn(1)[0])
    b = plan.block
    level, term = plan.u_dims
    posterior = posterior.drop_vars([_X, f"{_X}_dim"])
    posterior[u_var(b.label)] = xr.DataArray(u.reshape(chains, draws, *u.shape[1:]),
                                             dims=("chain", "draw", level, term),
                                             coords={level: coords[level], term: coords[term]})
    effects_seconds = time.perf_counter() - begin
    seconds_sample = time.perf_counter() - start
    posterior.attrs.update({"compile_seconds": 0.0, "sampling_time": sampling_time, "effects_seconds": effects_seconds,
                            "method": "laplace", "density": "laplace kernel", "approximate": 1})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})
    return tree, seconds_build, seconds_sample

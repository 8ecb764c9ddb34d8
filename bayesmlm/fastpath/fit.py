"""The fast path, composed: statistics -> collapsed model -> NUTS -> exact u -> posterior.

:func:`fit_collapsed` is what ``MLM.fit(method="collapsed")`` runs. Its
posterior has the full model's variables (``fixef``, ``sd_*``, ``cor_*``,
``u_*``, ``sigma``), so every table, plot and comparison reads it unchanged.
Timings go into the posterior's attributes: ``compile_seconds``,
``compiled_model_reused``, ``sampling_seconds`` and ``recover_seconds``.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from ..design.matrices import centring
from ..design.priors import Prior
from ..errors import SpecError
from ..sample.nuts import SamplerSettings, sample_model
from .model import build_collapsed_model, collapsed_data, collapsed_structure
from .nutpie_driver import compile_collapsed, sample_collapsed
from .recover import recover_random_effects
from .stats import GroupStats, collapse_problem, group_stats

__all__ = ["collapsible_settings", "fit_collapsed", "x_centre"]


def x_centre(stats: GroupStats) -> np.ndarray:
    """Column means of X (0 for the intercept; all 0 without one), from the statistics: weighted means when weighted.

    The full model centres X's columns at these means (:mod:`bayesmlm.build.full`),
    so the intercept's prior is on the outcome at the predictors' means.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> x_centre(group_stats(m.design)).round(6).tolist()
    [0.0, 4.5]
    """
    return centring(stats.fixed_terms, stats.x_shift + stats.x_sum.sum(axis=0) / stats.w_sum.sum())


def collapsible_settings(design, settings: SamplerSettings) -> SamplerSettings:
    """The resolved settings of a collapsed fit, or a clear error where the design or the sampler cannot take one.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> collapsible_settings(m.design, SamplerSettings(seed=1)).sampler
    'nutpie'
    """
    problem = collapse_problem(design)
    if problem:
        raise SpecError(f"method='collapsed' cannot fit this model: {problem}. Use method='full' (or 'auto').")
    s = settings.resolved()
    if s.sampler not in ("nutpie", "pymc"):
        raise ValueError(f"method='collapsed' runs with sampler='nutpie' (default) or 'pymc': its likelihood is a Numba "
                         f"kernel that sampler='{s.sampler}' (JAX) cannot run. Use one of those, or method='full'.")
    return s


def fit_collapsed(design, priors: dict[str, Prior], settings: SamplerSettings, stats: GroupStats | None = None):
    """Sample a Gaussian one-factor model with its random effects integrated out, then draw them.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    settings : SamplerSettings
        ``sampler="nutpie"`` compiles once per model structure and process
        (:mod:`bayesmlm.fastpath.nutpie_driver`); other samplers go through ``pm.sample``.
    stats : GroupStats, optional
        Computed from ``design`` when not given (files and Dask give them).

    Returns
    -------
    idata : DataTree
        ``posterior`` with ``fixef``, ``sd_*``, ``cor_*``, ``u_*``, ``sigma``; ``sample_stats``.
    seconds_build, seconds_sample : float
        Statistics and model; compiling, sampling and drawing u.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> idata, _, _ = fit_collapsed(m.design, m.prior_dict, SamplerSettings(draws=200, tune=200, seed=1))  # doctest: +SKIP
    >>> idata["posterior"]["u_Subject"].dims  # doctest: +SKIP
    ('chain', 'draw', 'Subject', 'Subject_term')
    """
    s = collapsible_settings(design, settings)
    start = time.perf_counter()
    stats = group_stats(design) if stats is None else stats
    if not design.has_intercept and (np.any(stats.x_shift != 0) or stats.y_shift != 0):
        raise SpecError("Statistics of a model without an intercept must be unshifted (x_shift = 0, y_shift = 0): "
                        "compute them with bayesmlm.fastpath.stats.group_stats(design).")
    structure = collapsed_structure(design, priors)
    data = collapsed_data(structure, stats, priors, x_centre(stats))
    seconds_build = time.perf_counter() - start
    start = time.perf_counter()
    if s.sampler == "nutpie":
        compiled, reused = compile_collapsed(structure, priors, data)
        compile_seconds = 0.0 if reused else compiled.seconds
        tree, sampling_seconds = sample_collapsed(compiled, data, s)
    else:
        reused, compile_seconds = False, float("nan")
        tree, sampling_seconds = sample_model(build_collapsed_model(structure, priors, data), s)
    mark = time.perf_counter()
    posterior = tree["posterior"].to_dataset()
    blocks = [b for b in design.blocks if b.group == stats.factor]
    u = recover_random_effects(posterior, stats, blocks, seed=s.seed)
    posterior = posterior.assign(u)
    posterior.attrs.update({"compile_seconds": compile_seconds, "compiled_model_reused": int(reused),
                            "sampling_seconds": sampling_seconds, "recover_seconds": time.perf_counter() - mark,
                            "method": "collapsed"})
    tree["posterior"] = xr.DataTree(posterior)
    return tree, seconds_build, time.perf_counter() - start

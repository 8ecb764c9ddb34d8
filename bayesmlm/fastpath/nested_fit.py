"""The nested route, composed: statistics per leaf group -> collapsed model of the tree -> NUTS -> exact u.

:func:`fit_nested` is what ``MLM.fit(method="collapsed")`` (and ``"auto"``)
runs when the grouping factors are nested (:mod:`bayesmlm.fastpath.nesting`).
The sampler sees gamma, the SDs, correlations and sigma only; afterwards every
level's u is drawn, per posterior draw, from its exact joint conditional
(:func:`~bayesmlm.fastpath.tree_kernel.tree_draws`, in the version generated for the
structure by :func:`~bayesmlm.fastpath.kernels.tree_kernels`). The posterior has the full
model's variables and dims (``u_<label>`` over ``<factor>`` and
``<label>_term``, :mod:`bayesmlm.schema`), so tables, plots and predictions read
it unchanged.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from ..design.priors import Prior
from ..errors import SpecError
from ..sample.draws import block_cholesky, flat
from ..sample.nuts import SamplerSettings, sample_model
from ..schema import FIXED, FIXED_DIM, SIGMA, u_var, variable_dims
from .fit import collapsible_settings, x_centre
from .model import build_collapsed_model
from .nested_model import nested_data, nested_structure, tree_loglik
from .nested_stats import NestedStats, nested_stats
from .nesting import level_blocks
from .nutpie_driver import compile_collapsed, sample_collapsed
from .kernels import tree_kernels

__all__ = ["fit_nested", "recover_nested"]

_STREAM = 0x2EC1  # spawn key of the random stream used for u, apart from the sampler's
_CELLS_PER_SLICE = 2_000_000  # draws x groups handled at once


def recover_nested(posterior: xr.Dataset, stats: NestedStats, blocks, *, seed: int) -> dict[str, xr.DataArray]:
    """Draws of every level's ``u_<label>`` from their exact joint conditional, one per posterior draw.

    Parameters
    ----------
    posterior : Dataset
        With ``fixef``, ``sd_<label>``, ``cor_<label>`` (correlated blocks) and ``sigma``.
    stats : NestedStats
    blocks : list of list of BlockDesign
        Each level's blocks, top first (:func:`~bayesmlm.fastpath.nesting.level_blocks`).
    seed : int

    Examples
    --------
    >>> u = recover_nested(fit.posterior, nested_stats(m.design), level_blocks(m.design, s.factors), seed=1)  # doctest: +SKIP
    >>> u["u_batch_cask"].dims  # doctest: +SKIP
    ('chain', 'draw', 'batch_cask', 'batch_cask_term')
    """
    fixef = posterior[FIXED]
    chains, draws = fixef.sizes["chain"], fixef.sizes["draw"]
    gamma = flat(fixef, (FIXED_DIM,)).copy()
    sigma = np.ascontiguousarray(flat(posterior[SIGMA], ()))
    leaf = stats.leaf
    if "(Intercept)" in leaf.fixed_terms:
        i0 = leaf.fixed_terms.index("(Intercept)")
        gamma[:, i0] += gamma @ leaf.x_shift - leaf.y_shift
    S, Q = len(sigma), int(stats.qs.sum())
    L = np.zeros((S, Q, Q))
    k = 0
    for b in (b for bl in blocks for b in bl):
        L[:, k:k + b.q, k:k + b.q] = block_cholesky(posterior, b)
        k += b.q
    tail = stats.tail()
    n_nodes, qmax = int(tail[0]), int(stats.qs.max())
    nz, k = [], 0
    for b in (b for bl in blocks for b in bl):
        nz += [(k + r, k + c) for r in range(b.q) for c in (range(r + 1) if b.correlated else (r,))]
        k += b.q
    tree_draws = tree_kernels(tuple(stats.qs), len(leaf.fixed_terms), tuple(nz)).tree_draws
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM,)))
    u = np.empty((S, n_nodes, qmax))
    step = max(1, _CELLS_PER_SLICE // max(n_nodes, 1))
    workers = max(1, min(os.cpu_count() or 1, -(-S // step)))

    def draw(s, eps):
        u[s] = tree_draws(np.ascontiguousarray(gamma[s]), np.ascontiguousarray(L[s]), sigma[s], tail, eps)

    # the kernel releases the GIL: slices are drawn side by side, their noise drawn here in order (the same draws
    # as one slice after another); at most two slices per worker in flight bound the memory
    with ThreadPoolExecutor(workers) as pool:
        pending = []
        for a in range(0, S, step):
            s = slice(a, min(S, a + step))
            pending.append(pool.submit(draw, s, rng.standard_normal((s.stop - s.start, n_nodes, qmax))))
            if len(pending) >= 2 * workers:
                pending.pop(0).result()
        for f in pending:
            f.result()
    out, start = {}, 0
    for lv, bl in enumerate(blocks):
        levels = list(stats.levels[lv])
        node = slice(start, start + len(levels))
        k = 0
        for b in bl:
            dims = ("chain", "draw", *variable_dims(b.label, b.group, b.correlated)[u_var(b.label)])
            out[u_var(b.label)] = xr.DataArray(
                u[:, node, k:k + b.q].reshape(chains, draws, len(levels), b.q), dims=dims,
                coords={"chain": np.arange(chains), "draw": np.arange(draws), dims[2]: levels, dims[3]: list(b.terms)})
            k += b.q
        start += len(levels)
    return out


def fit_nested(design, priors: dict[str, Prior], settings: SamplerSettings, stats: NestedStats | None = None):
    """Sample a Gaussian model with nested grouping factors, its random effects integrated out, then draw them.

    Parameters and returns as :func:`~bayesmlm.fastpath.fit.fit_collapsed`; ``stats`` are
    :class:`~bayesmlm.fastpath.nested_stats.NestedStats` (files and Dask give them).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> idata, _, _ = fit_nested(m.design, m.prior_dict, SamplerSettings(draws=200, tune=200, seed=1))  # doctest: +SKIP
    >>> idata["posterior"]["u_batch_cask"].dims  # doctest: +SKIP
    ('chain', 'draw', 'batch_cask', 'batch_cask_term')
    """
    s = collapsible_settings(design, settings)
    start = time.perf_counter()
    stats = nested_stats(design) if stats is None else stats
    if not design.has_intercept and (np.any(stats.leaf.x_shift != 0) or stats.leaf.y_shift != 0):
        raise SpecError("Statistics of a model without an intercept must be unshifted (x_shift = 0, y_shift = 0): "
                        "compute them with bayesmlm.fastpath.nested_stats.nested_stats(design).")
    structure = nested_structure(design, priors, stats.factors)
    data = nested_data(structure, stats, priors, x_centre(stats.leaf))
    seconds_build = time.perf_counter() - start
    start = time.perf_counter()
    if s.sampler == "nutpie":
        compiled, reused = compile_collapsed(structure, priors, data)
        compile_seconds = 0.0 if reused else compiled.seconds
        tree, sampling_seconds = sample_collapsed(compiled, data, s)
    else:
        reused, compile_seconds = False, float("nan")
        pmodel = build_collapsed_model(structure, priors, data, loglik=tree_loglik(structure))
        tree, sampling_seconds = sample_model(pmodel, s)
    mark = time.perf_counter()
    posterior = tree["posterior"].to_dataset()
    posterior = posterior.assign(recover_nested(posterior, stats, level_blocks(design, stats.factors), seed=s.seed))
    posterior.attrs.update({"compile_seconds": compile_seconds, "compiled_model_reused": int(reused),
                            "sampling_seconds": sampling_seconds, "recover_seconds": time.perf_counter() - mark,
                            "method": "collapsed", "route": "nested"})
    tree["posterior"] = xr.DataTree(posterior)
    return tree, seconds_build, time.perf_counter() - start

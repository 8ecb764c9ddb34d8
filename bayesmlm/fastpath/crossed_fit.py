"""The crossed route, composed: cross-products -> Numba density -> nutpie -> exact u of the collapsed factor -> posterior.

For a gaussian model with crossed grouping factors whose random blocks have
one term each (:func:`~bayesmlm.fastpath.crossed_stats.crossed_problem`), the
factor with the most levels is integrated out exactly given the rest, and the
sampler sees the fixed effects, the other factors' effects, the SDs and sigma
(:mod:`bayesmlm.fastpath.crossed_kernel`). Each sampled factor is centred or
non-centred by the project's kappa rule (:mod:`bayesmlm.design.parameterization`);
a fixed effect is the mean of one centred block only
(:func:`bayesmlm.build.full.centred_fixed_terms`), which removes the ridge
between the intercept and the effects. After sampling, each draw's effects of
the collapsed factor come from their exact Gaussian conditional

    u_cj | theta, tau_c, sigma, y ~ N(tau_c^2 s_j / a_j, sigma^2 tau_c^2 / a_j),
    a_j = sigma^2 + n_j tau_c^2,   s_j = z_j'(y*_j - W_j theta).

The posterior has the full model's variables, names and dimensions
(``fixef``, ``sd_<b>``, ``u_<b>``, ``sigma``), so tables, plots and
predictions read it unchanged.
"""

from __future__ import annotations

import os
import time

import numpy as np
import xarray as xr

from ..build.full import centred_fixed_terms, model_coords
from ..design.matrices import Design
from ..design.parameterization import choose_parameterization
from ..design.priors import Prior, sd_name
from ..errors import SpecError
from ..sample.draws import nutpie_posterior
from ..sample.nuts import SamplerSettings
from ..schema import FIXED, FIXED_DIM, SIGMA, sd_var, term_dim, u_var, variable_dims
from . import crossed_kernel as kernel
from .crossed_stats import (
    CrossedStats,
    collapsed_factor,
    crossed_problem,
    crossed_stats,
    is_nested,
)

__all__ = ["ROUTE", "LOW_RANK_MAX_DIM", "CrossedPlan", "crossed_plan", "fit_crossed", "recover_collapsed",
           "recover_integrated"]

ROUTE = "crossed"
_STREAM = 0xC205  # spawn key of the random stream of the collapsed factor's effects
_STREAM_PARENTS = 0xC206  # and of the integrated-out parent blocks' effects
_POSITIVE = ("half_normal", "half_student_t", "exponential")
_DRAWS_PER_SLICE = 500
# nutpie's low-rank mass matrix, for models of at most LOW_RANK_MAX_DIM sampled dimensions: the collapsed factor
# leaves a collective direction (every sampled level and the intercept shifting together against the collapsed
# effects' mean) that a diagonal mass matrix cannot follow. Measured: min bulk ESS 480 -> 3,489 on simulated 80 x 30
# crossed data, 1,145 -> 3,923 on penicillin, at about the same wall time. On InstEval (1,149 dimensions) a run with
# it had not finished after 20 minutes at load 15-20, against 281 s with the diagonal one at load 9: off there.
LOW_RANK_MAX_DIM = 500
NUTPIE_OPTIONS: dict = {}  # extra keyword arguments of nutpie.sample, for experiments


def _row(prior: Prior) -> list[float]:
    values = [v for _, v in prior.params]
    return [float(kernel.PRIOR_CODES[prior.dist]), *values, *[0.0] * (3 - len(values))]


class CrossedPlan:
    """What the crossed route samples: the statistics, each block's form, and the kernel's buffer.

    Attributes
    ----------
    design : Design
    stats : CrossedStats
    parameterization : dict of str to str
        Per grouping factor ``"centred"``, ``"non-centred"`` or ``"collapsed"``
        (the factor integrated out); what ``fit.record.parameterization`` says.
    sampled : list of BlockDesign
        The blocks whose effects the sampler sees, in ``stats.sampled_blocks`` order.
    blocks : list of BlockDesign
        ``sampled``, then the parent blocks integrated out of their child's
        prior (:data:`~bayesmlm.fastpath.crossed_kernel.MARGINAL`: a centred
        block whose levels each hold levels of one centred child block, such as
        departments over their lecturers), then the collapsed block.
    buffer : ndarray
        :func:`bayesmlm.fastpath.crossed_kernel.pack_buffer`.
    n_dim : int
    """

    def __init__(self, design: Design, priors: dict[str, Prior], requested: str | dict = "auto"):
        problem = crossed_problem(design)
        if problem:
            raise SpecError(f"The crossed route cannot fit this model: {problem}. Use method='full'.")
        if design.has_intercept and design.fixed_terms[0] != "(Intercept)":
            raise SpecError("The crossed route needs (Intercept) as the first fixed term; use method='full'.")
        for name in [*design.fixed_terms]:
            if priors[name].dist in _POSITIVE:
                raise SpecError(f"The crossed route takes normal or student_t priors on fixed effects; '{name}' has "
                                f"{priors[name]}. Use method='full'.")
        self.design = design
        collapsed = collapsed_factor(design)
        if isinstance(requested, dict) and collapsed in requested:
            raise SpecError(f"parameterization names '{collapsed}', the factor the crossed route integrates out; "
                            f"name only the sampled factors ({', '.join(sorted({b.group for b in design.blocks} - {collapsed}))}).")
        if isinstance(requested, str):
            requested = {b.group: requested for b in design.blocks if b.group != collapsed}
        choice = choose_parameterization(design, priors, {**requested, collapsed: "non-centred"})
        sampled = {f: v for f, v in choice.items() if f != collapsed}
        others = [b for b in design.blocks if b.group != collapsed]
        centred = [b for b in others if sampled[b.group] == "centred"]
        parents = {b.label: _parent(design, b, centred) for b in centred}
        marginal = _integrated_parents(parents)
        integrated_labels = {b.label for b in marginal}
        self.stats: CrossedStats = crossed_stats(design, leave_out=tuple(b.label for b in marginal))
        s = self.stats
        by_label = {b.label: b for b in design.blocks}
        self.sampled = [by_label[lab] for lab in s.sampled_blocks]
        self.blocks = self.sampled + marginal + [by_label[s.collapsed_block]]
        on = centred_fixed_terms(design, {f: v for f, v in sampled.items()
                                          if not any(parents[b.label] for b in centred if b.group == f)})
        kinds, mu_index, self.parents = [], [], []
        for b in self.blocks[:-1]:
            parent = parents.get(b.label)
            is_centred = sampled[b.group] == "centred"
            kinds.append(kernel.MARGINAL if b.label in integrated_labels else
                         kernel.CENTRED if is_centred else kernel.NON_CENTRED)
            owner = parent if parent is not None and parent.label in integrated_labels else b
            terms = on.get(owner.label, ()) if is_centred else ()
            mu_index.append(design.fixed_terms.index(terms[0]) if terms else -1)
            self.parents.append(None if parent is None else
                                (self.blocks.index(parent), _parent_levels(design, b.group, parent.group)))
        self.parents.append(None)
        kinds.append(kernel.COLLAPSED)
        mu_index.append(-1)
        integrated = {s.collapsed} | {b.group for b in marginal
                                      if all(c.label in integrated_labels for c in design.blocks if c.group == b.group)}
        self.parameterization = {f: choice[f] if f not in integrated else "collapsed" for f in design.spec.groups}
        self.kinds = tuple(kinds)
        self.mu_index = tuple(mu_index)
        sd_rows = [_row(priors[sd_name(b.label, b.terms[0])]) for b in self.blocks]
        fixed_rows = np.array([_row(priors[t]) for t in design.fixed_terms]).reshape(-1, 4)
        self.priors = priors
        self.buffer = kernel.pack_buffer(s, kinds, mu_index, sd_rows, fixed_rows, _row(priors[SIGMA]), self.parents)
        self.n_dim = int(self.buffer[1])

    def initial_point(self, seed) -> np.ndarray:
        """A start as PyMC draws one: each prior's support point (0 for z, the mean for v), jittered by U(-1, 1)."""
        design, priors = self.design, self.priors
        x = [priors[t].kwargs.get("mu", 0.0) for t in design.fixed_terms]
        for b, kind, mu_at in zip(self.blocks[:-1], self.kinds, self.mu_index):
            if kind == kernel.MARGINAL:
                continue
            level = x[mu_at] if kind == kernel.CENTRED and mu_at >= 0 else 0.0
            x += [level] * design.factors[b.group].n_levels
        for b in self.blocks:
            x.append(np.log(_support(priors[sd_name(b.label, b.terms[0])])))
        x.append(np.log(_support(priors[SIGMA])))
        x = np.asarray(x, dtype=np.float64)
        return x + np.random.default_rng(seed).uniform(-1.0, 1.0, self.n_dim)

    def logp(self, x) -> tuple[float, np.ndarray]:
        """The log density and its gradient at an unconstrained vector (for tests and checks).

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
        >>> plan = crossed_plan(m.design, m.prior_dict)
        >>> value, grad = plan.logp(plan.initial_point(1))
        >>> grad.shape
        (10,)
        """
        grad = np.empty(self.n_dim)
        value = kernel.logp_grad(np.ascontiguousarray(x, dtype=np.float64), self.buffer, grad)
        return float(value), grad


def _parent(design: Design, block, centred: list):
    """The centred block a centred block is nested in (same term, the most levels of those), or None."""
    options = [b for b in centred if b.label != block.label and b.terms == block.terms
               and design.factors[b.group].n_levels < design.factors[block.group].n_levels
               and is_nested(design, block.group, b.group)]
    return max(options, key=lambda b: design.factors[b.group].n_levels, default=None)


def _integrated_parents(parents: dict) -> list:
    """The centred parent blocks integrated out of their child's prior: those with one child and no parent."""
    children: dict[str, list] = {}
    for label, parent in parents.items():
        if parent is not None:
            children.setdefault(parent.label, []).append(label)
    return [p for p in {id(p): p for p in parents.values() if p is not None}.values()
            if len(children[p.label]) == 1 and parents.get(p.label) is None]


def _parent_levels(design: Design, inner: str, outer: str) -> np.ndarray:
    """Each level of ``inner``'s level of ``outer`` (``inner`` nested in ``outer``)."""
    a, b = design.factors[inner], design.factors[outer]
    out = np.empty(a.n_levels, dtype=np.int64)
    out[a.index] = b.index
    return out


def _support(prior: Prior) -> float:
    p = prior.kwargs
    return 1.0 / p["lam"] if prior.dist == "exponential" else p["sigma"]


def crossed_plan(design: Design, priors: dict[str, Prior], parameterization: str | dict = "auto") -> CrossedPlan:
    """The crossed route's plan of a design (see :class:`CrossedPlan`).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> crossed_plan(m.design, m.prior_dict).parameterization
    {'plate': 'collapsed', 'sample': 'centred'}
    """
    return CrossedPlan(design, priors, parameterization)


def _output_layout(plan: CrossedPlan):
    design = plan.design
    dims = {FIXED: (FIXED_DIM,)}
    for b in plan.blocks:
        dims[sd_var(b.label)] = (term_dim(b.label),)
    dims[SIGMA] = ()
    for b in plan.sampled:
        dims[u_var(b.label)] = variable_dims(b.label, b.group, b.correlated)[u_var(b.label)]
    coords = model_coords(design)
    shapes = [tuple(len(coords[d]) for d in dims[n]) for n in dims]
    return dims, coords, shapes


def _nutpie_model(plan: CrossedPlan):
    from nutpie.compile_pymc import CompiledPyMCModel

    dims, coords, shapes = _output_layout(plan)
    names = list(dims)
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    slices = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(sizes))]
    return CompiledPyMCModel(
        dims=dims, _coords=coords, _n_dim=plan.n_dim, _shapes=dict(zip(names, shapes)),
        compiled_logp_func=kernel.logp_cfunc, compiled_expand_func=kernel.expand_cfunc,
        initial_point_func=plan.initial_point, shared_data={}, shared_var_keys={}, user_data=plan.buffer,
        n_expanded=int(plan.buffer[9]), shape_info=(names, slices, shapes), logp_func=None, expand_func=None), dims, coords


def recover_collapsed(posterior: xr.Dataset, plan: CrossedPlan, *, seed: int) -> xr.DataArray:
    """Draws of the collapsed factor's ``u_<b>`` from its exact Gaussian conditional, one per posterior draw.

    It reads the sampled blocks' effects as the sampler stored them (theta): call
    it before :func:`recover_integrated` splits a child's e into u_child and u_parent.

    Examples
    --------
    >>> u = recover_collapsed(fit.posterior, plan, seed=1)  # doctest: +SKIP
    >>> u.dims  # doctest: +SKIP
    ('chain', 'draw', 'plate', 'plate_term')
    """
    s, design = plan.stats, plan.design
    fixef = posterior[FIXED].values
    chains, draws = fixef.shape[:2]
    S = chains * draws
    theta = [fixef.reshape(S, -1).copy()]
    if design.has_intercept:
        theta[0][:, 0] += theta[0][:, 1:] @ s.x_centre[1:] - s.y_shift
    theta += [posterior[u_var(b.label)].values.reshape(S, -1) for b in plan.sampled]
    theta = np.concatenate(theta, axis=1)
    cblock = plan.blocks[-1]
    t2 = posterior[sd_var(cblock.label)].values.reshape(S) ** 2
    s2 = posterior[SIGMA].values.reshape(S) ** 2
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM,)))
    J = len(s.zcy)
    u = np.empty((S, J))
    for a in range(0, S, _DRAWS_PER_SLICE):
        sl = slice(a, min(S, a + _DRAWS_PER_SLICE))
        resid = s.zcy[None, :] - (s.b @ theta[sl].T).T
        denom = s2[sl, None] + s.zcz[None, :] * t2[sl, None]
        mean = t2[sl, None] * resid / denom
        sd = np.sqrt(s2[sl, None] * t2[sl, None] / denom)
        u[sl] = mean + sd * rng.standard_normal(mean.shape)
    dims = ("chain", "draw", *variable_dims(cblock.label, cblock.group, cblock.correlated)[u_var(cblock.label)])
    return xr.DataArray(u.reshape(chains, draws, J, 1), dims=dims,
                        coords={"chain": np.arange(chains), "draw": np.arange(draws),
                                dims[2]: list(design.factors[cblock.group].levels), dims[3]: list(cblock.terms)})


def recover_integrated(posterior: xr.Dataset, plan: CrossedPlan, *, seed: int) -> dict[str, xr.DataArray]:
    """Draws of each integrated-out parent block's ``u_<b>``, and its child's ``u_<b>`` net of them.

    The sampler's child draws are e = u_child + u_parent[level's parent] (v - mu).
    Per draw and parent level l with n_l children, given e, the child's SD tau
    and the parent's tau_p, exactly

        u_parent_l | e ~ N(tau_p^2 S_l / a_l, tau^2 tau_p^2 / a_l),   S_l = sum of e over l's children,
        a_l = tau^2 + n_l tau_p^2,

    and u_child = e - u_parent[parent]. Returns the new variables by name
    (empty when no block is integrated out of its child's prior).

    Examples
    --------
    >>> sorted(recover_integrated(fit.posterior, plan, seed=1))  # doctest: +SKIP
    ['u_d', 'u_dept']
    """
    out = {}
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM_PARENTS,)))
    for k, parent in enumerate(plan.parents):
        if parent is None or plan.kinds[parent[0]] != kernel.MARGINAL:
            continue
        child, pblock, levels = plan.blocks[k], plan.blocks[parent[0]], parent[1]
        e = posterior[u_var(child.label)]
        chains, draws = e.sizes["chain"], e.sizes["draw"]
        ev = e.values.reshape(chains * draws, -1)
        L = int(levels.max()) + 1
        n = np.bincount(levels, minlength=L).astype(float)
        sums = np.zeros((ev.shape[0], L))
        np.add.at(sums.T, levels, ev.T)
        t2 = posterior[sd_var(child.label)].values.reshape(-1, 1) ** 2
        p2 = posterior[sd_var(pblock.label)].values.reshape(-1, 1) ** 2
        a = t2 + n[None, :] * p2
        u_parent = p2 * sums / a + np.sqrt(t2 * p2 / a) * rng.standard_normal(a.shape)
        out[u_var(child.label)] = e.copy(data=(ev - u_parent[:, levels]).reshape(e.shape))
        dims = ("chain", "draw", *variable_dims(pblock.label, pblock.group, pblock.correlated)[u_var(pblock.label)])
        out[u_var(pblock.label)] = xr.DataArray(
            u_parent.reshape(chains, draws, L, 1), dims=dims,
            coords={"chain": e["chain"].values, "draw": e["draw"].values,
                    dims[2]: list(plan.design.factors[pblock.group].levels), dims[3]: list(pblock.terms)})
    return out


def fit_crossed(design: Design, priors: dict[str, Prior], settings: SamplerSettings,
                parameterization: str | dict = "auto"):
    """Sample a crossed gaussian model with its largest factor integrated out, then draw that factor's effects.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    settings : SamplerSettings
        ``sampler="nutpie"`` only (the density is a Numba C callback).
    parameterization : str or dict
        For the sampled factors, as ``MLM.fit``'s (the collapsed factor has none).

    Returns
    -------
    idata : DataTree
        ``posterior`` with ``fixef``, ``sd_*``, ``u_*``, ``sigma``; nutpie's ``sample_stats``.
    seconds_build, seconds_sample : float
    plan : CrossedPlan

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> idata, _, _, plan = fit_crossed(m.design, m.prior_dict, SamplerSettings(draws=200, tune=200, seed=1))  # doctest: +SKIP
    >>> sorted(idata["posterior"].data_vars)  # doctest: +SKIP
    ['fixef', 'sd_plate', 'sd_sample', 'sigma', 'u_plate', 'u_sample']
    """
    import nutpie

    s = settings.resolved()
    if s.sampler != "nutpie":
        raise ValueError(f"The crossed route runs with sampler='nutpie' (default): its density is a Numba C callback "
                         f"that sampler='{s.sampler}' cannot call. Use sampler='nutpie', or method='full'.")
    start = time.perf_counter()
    plan = crossed_plan(design, priors, parameterization)
    seconds_build = time.perf_counter() - start
    start = time.perf_counter()
    model, dims, coords = _nutpie_model(plan)
    options = {"save_warmup": False, "adaptation": "low_rank" if plan.n_dim <= LOW_RANK_MAX_DIM else "diag",
               **NUTPIE_OPTIONS}
    trace = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          seed=s.seed, progress_bar=s.progressbar, target_accept=s.target_accept, **options)
    sampling_seconds = time.perf_counter() - start
    posterior = nutpie_posterior(trace, dims, coords)
    mark = time.perf_counter()
    cblock = plan.blocks[-1]
    posterior = posterior.assign({u_var(cblock.label): recover_collapsed(posterior, plan, seed=s.seed)})
    posterior = posterior.assign(recover_integrated(posterior, plan, seed=s.seed))
    order = [FIXED, *[sd_var(b.label) for b in design.blocks], *[u_var(b.label) for b in design.blocks], SIGMA]
    posterior = posterior[order]
    posterior.attrs.update({"compile_seconds": 0.0, "compiled_model_reused": 1, "sampling_seconds": sampling_seconds,
                            "recover_seconds": time.perf_counter() - mark, "method": "collapsed", "route": ROUTE})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})
    return tree, seconds_build, time.perf_counter() - start, plan

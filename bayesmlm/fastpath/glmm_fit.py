"""The generalized full model on a Numba kernel: design -> kernel buffer -> nutpie -> posterior.

For a bernoulli, binomial, poisson or cumulative (logit, probit) model, the density that
:func:`bayesmlm.build.full.build_full_model` writes as a PyMC graph (every
random effect sampled, centred or non-centred per factor, over cells where the
rows aggregate) is :mod:`bayesmlm.fastpath.glmm_kernel`'s one Numba function,
compiled once per machine; the data are its runtime buffer. nutpie calls it as
a C callback from its own threads, so nothing is compiled per model and chains
run in parallel. The posterior has the PyMC model's reported variables with
their names and dimensions (``fixef``, ``sd_<b>``, ``cor_<b>``, ``u_<b>``, ``thresholds``), so
every table, plot and prediction reads it unchanged.

:func:`kernel_problem` says why a model cannot take the kernel (another
family, a prior it does not write, ...); those keep the PyMC model.
"""

from __future__ import annotations

import os
import time

import numpy as np
import xarray as xr
from scipy.special import gammaln

from ..build.full import centred_basis, centred_fixed_terms, model_coords
from ..design.aggregate import Cells
from ..design.block_means import block_means
from ..design.matrices import Design
from ..design.nested_centring import INTEGRATED, centred_parents
from ..design.priors import Prior, cor_name, sd_name
from ..sample.draws import nutpie_posterior
from ..sample.nuts import SamplerSettings
from ..schema import FIXED, FIXED_DIM, THRESHOLD_DIM, THRESHOLDS, cor_var, sd_var, u_var, variable_dims
from .prior_density import POSITIVE, prior_row, support_point

__all__ = ["FAMILIES", "PRECONDITIONERS", "kernel_problem", "GlmmPlan", "glmm_plan", "prior_problem", "unit_arrays",
           "fit_glmm"]

FAMILIES = ("bernoulli", "binomial", "poisson", "cumulative")
PRECONDITIONERS = ("auto", "laplace", "none")
"""``MLM.fit(precondition=)``: :func:`bayesmlm.design.parameterization.precondition_choice`'s rule, always, never."""
_FIXED_PRIORS = ("normal", "student_t")


def kernel_problem(design: Design, priors: dict[str, Prior]) -> str | None:
    """Why the kernel cannot write this full model's density (None: it can).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> kernel_problem(m.design, m.prior_dict) is None
    True
    >>> kernel_problem(bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy")).design,
    ...                {})
    "family 'gaussian' (the kernel takes bernoulli, binomial, poisson, cumulative)"
    """
    family = design.spec.family.name
    if family not in FAMILIES:
        return f"family '{family}' (the kernel takes {', '.join(FAMILIES)})"
    if family == "cumulative" and design.spec.family.link not in ("logit", "probit"):
        return f"link '{design.spec.family.link}' (the kernel's cumulative family takes logit and probit)"
    if family == "cumulative" and priors[THRESHOLDS].dist not in _FIXED_PRIORS:
        return f"the prior of {THRESHOLDS} is {priors[THRESHOLDS]} (the kernel takes {', '.join(_FIXED_PRIORS)})"
    if not design.blocks or not design.fixed_terms:
        return "no random blocks" if not design.blocks else "no fixed effects (the PyMC model then has no fixef)"
    return prior_problem(design, priors, "the kernel")


def prior_problem(design: Design, priors: dict[str, Prior], who: str) -> str | None:
    """Which prior the kernels' Numba densities do not write (None: all of them), said as ``who`` takes them.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> prior_problem(m.design, m.prior_dict, "the kernel") is None
    True
    """
    for t in design.fixed_terms:
        if priors[t].dist not in _FIXED_PRIORS:
            return f"the prior of '{t}' is {priors[t]} ({who} takes {', '.join(_FIXED_PRIORS)} on fixed effects)"
    for b in design.blocks:
        for t in b.terms:
            prior = priors[sd_name(b.label, t)]
            if prior.dist not in POSITIVE:
                return f"the prior of {sd_name(b.label, t)} is {prior} ({who} takes {', '.join(POSITIVE)})"
        if b.correlated and len({priors[sd_name(b.label, t)].dist for t in b.terms}) != 1:
            return f"the SDs of the correlated block '{b.label}' have different prior distributions"
    return None


class GlmmPlan:
    """What the kernel samples for one model: its blocks, the buffer, and the posterior's layout.

    Attributes
    ----------
    design : Design
    parameterization : dict of str to str
        ``"centred"``, ``"non-centred"`` or ``"collapsed"`` per grouping factor (collapsed: integrated out of its one
        child's prior, :func:`bayesmlm.design.nested_centring.integrable_parents`; no block of the kernel).
    blocks : list of KernelBlock
        The kernel's blocks: the design's, without the integrated parents.
    block_labels : list of str
        Their labels.
    integrated : dict of str to ParentLink
        Per integrated parent's block label, its child's link (:mod:`bayesmlm.fastpath.parent_draws` draws its effects).
    buffer : ndarray
        :func:`bayesmlm.fastpath.glmm_kernel.pack_buffer`.
    n_dim : int
    dims : dict of str to tuple
        The dimensions of each reported variable, in the order :func:`~bayesmlm.fastpath.glmm_kernel.expand` writes them.
    """

    def __init__(self, design: Design, priors: dict[str, Prior], cells: Cells | None, parameterization: dict[str, str]):
        problem = kernel_problem(design, priors)
        if problem:
            raise ValueError(f"The full model's kernel cannot fit this model: {problem}.")
        from . import glmm_kernel as kernel  # imported here: Numba loads its compiled callbacks on import

        self.design, self.priors, self.parameterization = design, priors, dict(parameterization)
        rows = slice(None) if cells is None else cells.first
        means = block_means(design, self.parameterization)
        self.parents = centred_parents(design, self.parameterization)
        integrated = {b.label for b in design.blocks if self.parameterization.get(b.group) == INTEGRATED}
        self.integrated = {ln.parent: ln for ln in self.parents.values() if ln.parent in integrated}
        if integrated - set(self.integrated):
            raise ValueError(f"Factors integrated out without a centred child that takes them: {sorted(integrated)}.")
        kept = [b for b in design.blocks if b.label not in integrated]
        labels = self.block_labels = [b.label for b in kept]
        by_label = {b.label: b for b in design.blocks}
        shared = {}  # per parent block, its terms that moved into a child: zero in its Z (the child reads them)
        for ln in self.parents.values():
            shared[ln.parent] = shared.get(ln.parent, np.zeros(len(ln.shared), bool)) | ln.shared
        blocks = []
        for b in kept:
            centred = self.parameterization.get(b.group, "non-centred") == "centred"
            f = design.factors[b.group]
            eta = priors[cor_name(b.label)].kwargs["eta"] if b.correlated else 1.0
            ln = self.parents.get(b.label)
            marginal = ln is not None and ln.parent in integrated
            kind = kernel.CENTRED_MARGINAL if marginal else kernel.CENTRED if centred else kernel.NON_CENTRED
            rows_of = [prior_row(priors[sd_name(b.label, t)]) for t in b.terms]
            if marginal:  # then the parent's SD prior
                rows_of += [prior_row(priors[sd_name(ln.parent, t)]) for t in by_label[ln.parent].terms]
            Z = b.Z[rows]
            blocks.append(kernel.KernelBlock(
                kind, b.correlated, f.index[rows], np.where(shared[b.label], 0.0, Z) if b.label in shared else Z,
                rows_of, eta, f.n_levels,
                H=means[b.label].H if centred else None, A=np.linalg.inv(centred_basis(b)) if centred else None,
                parent=-1 if ln is None or marginal else labels.index(ln.parent),
                parent_levels=None if ln is None else ln.levels, P=None if ln is None or marginal else ln.P,
                Z_absorbed=Z if b.label in shared else None,
                n_parent=design.factors[by_label[ln.parent].group].n_levels if marginal else 0))
        self.blocks = blocks
        fixed_rows = np.array([prior_row(priors[t]) for t in design.fixed_terms]).reshape(-1, 4)
        intercept = design.fixed_terms.index("(Intercept)") if design.has_intercept else -1
        if design.spec.family.name == "cumulative":
            self.buffer = _cumulative_buffer(design, priors, cells, rows, fixed_rows, blocks, self.parameterization)
        else:
            y, trials, weights, offset, constant = unit_arrays(design, cells)
            family = kernel.POISSON if design.spec.family.name == "poisson" else kernel.BINOMIAL
            self.buffer = kernel.pack_buffer(family, y, trials, weights, offset, design.X[rows], design.x_centre,
                                             fixed_rows, blocks, constant, intercept)
        self.n_dim = int(self.buffer[1])
        self.dims = {FIXED: (FIXED_DIM,)}  # in expand's order
        for b in kept:
            block_dims = variable_dims(b.label, b.group, b.correlated)
            self.dims[sd_var(b.label)] = block_dims[sd_var(b.label)]
            if b.correlated:
                self.dims[cor_var(b.label)] = block_dims[cor_var(b.label)]
            self.dims[u_var(b.label)] = block_dims[u_var(b.label)]
            ln = self.parents.get(b.label)
            if ln is not None and ln.parent in integrated:
                parent = by_label[ln.parent]
                self.dims[sd_var(parent.label)] = variable_dims(parent.label, parent.group, False)[sd_var(parent.label)]
        if design.categories is not None:
            self.dims[THRESHOLDS] = (THRESHOLD_DIM,)

    def initial_point(self, seed) -> np.ndarray:
        """A start as PyMC draws one: each prior's support point (z = 0, v at its mean, L = I), jittered by U(-1, 1)."""
        return self.support_point() + np.random.default_rng(seed).uniform(-1.0, 1.0, self.n_dim)

    def support_point(self) -> np.ndarray:
        """Each prior's support point as the kernel's unconstrained vector (z = 0, v at its mean, L = I)."""
        design, priors = self.design, self.priors
        b = np.array([support_point(priors[t]) for t in design.fixed_terms], dtype=np.float64)
        v, w = {}, {}  # each block's start (u = 0: z = 0, or v at its mean) and what its likelihood part reads there
        for k in sorted(range(len(self.blocks)), key=lambda k: self.blocks[k].n_levels):  # parents before children
            blk = self.blocks[k]
            v[k] = np.zeros((blk.n_levels, blk.q)) if blk.H is None else blk.H @ b
            if blk.parent >= 0:  # centred on its parent: v at its mean, H b + A^-1 P w_parent
                v[k] = v[k] + w[blk.parent][blk.parent_levels] @ blk.P.T @ np.linalg.inv(blk.A).T
            w[k] = v[k] @ blk.A.T  # A = I for a non-centred block
        x = [b] + [v[k].ravel() for k in range(len(self.blocks))]
        by_label = {b.label: b for b in design.blocks}
        for blk, label in zip(self.blocks, self.block_labels):
            bd = by_label[label]
            if blk.correlated:
                x.append(np.zeros(blk.n_sd))
                continue
            terms = [sd_name(bd.label, t) for t in bd.terms]
            if blk.kind == 3:  # CENTRED_MARGINAL: then the integrated parent's SD
                parent = by_label[self.parents[label].parent]
                terms += [sd_name(parent.label, t) for t in parent.terms]
            x.append(np.log([support_point(priors[t]) for t in terms]))
        if design.categories is not None:  # PyMC's initval, linspace(-1.5, 1.5, K - 1), through the ordered transform
            c = np.linspace(-1.5, 1.5, len(design.categories) - 1)
            x.append(np.concatenate([c[:1], np.log(np.diff(c))]))
        return np.concatenate(x)

    def logp(self, x) -> tuple[float, np.ndarray]:
        """The log density and its gradient at an unconstrained vector (for tests and checks).

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
        ...                  family="binomial")
        >>> plan = glmm_plan(m.design, m.prior_dict)
        >>> value, grad = plan.logp(plan.initial_point(1))
        >>> grad.shape  # 4 fixed effects, 15 herds, 1 SD
        (20,)
        """
        from .glmm_kernel import logp_grad

        grad = np.empty(self.n_dim)
        value = logp_grad(np.ascontiguousarray(x, dtype=np.float64), self.buffer, grad)
        return float(value), grad


def unit_arrays(design: Design, cells: Cells | None):
    """(y, trials, weights, offset, constant) per unit, as the kernels read them: the cells, or the rows.

    ``constant`` is the likelihood's normalising terms (binomial coefficients,
    log y!) and the aggregation's, which the kernels add to their log density.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> y, trials, weights, offset, constant = unit_arrays(m.design, None)
    >>> len(y), int(trials.sum()), float(weights.max()), round(constant, 3)
    (56, 842, 1.0, 185.476)
    """
    family = design.spec.family.name
    if cells is not None:
        C = cells.n_cells
        y = np.asarray(cells.y, dtype=np.float64)
        offset = np.zeros(C) if cells.offset is None else np.asarray(cells.offset, dtype=np.float64)
        trials = np.ones(C) if cells.trials is None else np.asarray(cells.trials, dtype=np.float64)
        constant = float(cells.constant)
        if not cells.weighted:  # PyMC's Binomial and Poisson keep their normalising terms
            constant += float(np.sum(_log_normaliser(family, y, trials)))
        return y, trials, np.ones(C), offset, constant
    N = design.n_obs
    y = np.asarray(design.y, dtype=np.float64)
    trials = np.ones(N) if design.trials is None else np.asarray(design.trials, dtype=np.float64)
    weights = np.ones(N) if design.weights is None else np.asarray(design.weights, dtype=np.float64)
    offset = np.zeros(N) if design.offset is None else np.asarray(design.offset, dtype=np.float64)
    return y, trials, weights, offset, float(np.sum(weights * _log_normaliser(family, y, trials)))


def _cumulative_buffer(design: Design, priors: dict[str, Prior], cells: Cells | None, rows, fixed_rows, blocks,
                       parameterization: dict[str, str]) -> np.ndarray:
    """The kernel's buffer of a cumulative model: X centred at its plain column means, category counts per unit."""
    from . import cumulative_kernel as cumulative
    from . import glmm_kernel as kernel

    K = len(design.categories)
    if cells is not None:
        counts = np.asarray(cells.y, dtype=np.float64)
        offset = np.zeros(cells.n_cells) if cells.offset is None else np.asarray(cells.offset, dtype=np.float64)
    else:  # a row is its (weighted) count in its own category
        counts = np.zeros((design.n_obs, K))
        counts[np.arange(design.n_obs), design.y.astype(np.int64)] = 1.0 if design.weights is None else design.weights
        offset = np.zeros(design.n_obs) if design.offset is None else np.asarray(design.offset, dtype=np.float64)
    N = counts.shape[0]
    x_mean = design.model_centre  # as build_full_model's cumulative model: unweighted, no intercept
    d = kernel.pack_buffer(cumulative.CUMULATIVE, np.zeros(N), np.ones(N), np.ones(N), offset, design.X[rows], x_mean,
                           fixed_rows, blocks, 0.0, -1)
    located = centred_fixed_terms(design, parameterization, ("(Intercept)",))
    at = {kernel.HEAD + kernel.BLOCK_FIELDS * k: b.terms.index("(Intercept)") for k, b in enumerate(design.blocks)
          if "(Intercept)" in located.get(b.label, ())}
    link = cumulative.PROBIT if design.spec.family.link == "probit" else cumulative.LOGIT
    return cumulative.extend_buffer(d, link, counts, prior_row(priors[THRESHOLDS]), at, x_mean)


def _log_normaliser(family: str, y: np.ndarray, trials: np.ndarray) -> np.ndarray:
    if family == "poisson":
        return -gammaln(y + 1.0)
    return gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)


def glmm_plan(design: Design, priors: dict[str, Prior], cells: Cells | None = None,
              parameterization: dict[str, str] | None = None) -> GlmmPlan:
    """The kernel's plan of a generalized full model (see :class:`GlmmPlan`); factors not named are non-centred.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> glmm_plan(m.design, m.prior_dict, parameterization={"herd": "centred"}).n_dim
    20
    """
    return GlmmPlan(design, priors, cells, parameterization or {})


def _nutpie_model(plan, callbacks):
    """nutpie's model of a plan (:class:`GlmmPlan`, or a preconditioned one) and the module of its C callbacks."""
    from nutpie.compile_pymc import CompiledPyMCModel

    coords = model_coords(plan.design)
    names = list(plan.dims)
    shapes = [tuple(len(coords[d]) for d in plan.dims[n]) for n in names]
    offsets = np.cumsum([0, *[int(np.prod(s)) for s in shapes]])
    slices = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(names))]
    return CompiledPyMCModel(
        dims=plan.dims, _coords=coords, _n_dim=plan.n_dim, _shapes=dict(zip(names, shapes)),
        compiled_logp_func=callbacks.logp_cfunc, compiled_expand_func=callbacks.expand_cfunc,
        initial_point_func=plan.initial_point, shared_data={}, shared_var_keys={}, user_data=plan.buffer,
        n_expanded=int(plan.buffer[6]), shape_info=(names, slices, shapes), logp_func=None, expand_func=None), coords


def fit_glmm(design: Design, priors: dict[str, Prior], settings: SamplerSettings, cells: Cells | None,
             parameterization: dict[str, str], precondition: str = "none"):
    """Sample a bernoulli, binomial, poisson or cumulative full model on the kernel with nutpie.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    settings : SamplerSettings
        ``sampler="nutpie"`` only (the density is a Numba C callback).
    cells : Cells or None
        The aggregated rows (:func:`bayesmlm.design.aggregate.aggregate_rows`), or None: over the rows.
    parameterization : dict of str to str
        Per grouping factor (:func:`bayesmlm.design.parameterization.choose_parameterization`).
    precondition : {"laplace", "none"}
        ``"laplace"``: sample each centred group's effects through the map of
        :mod:`bayesmlm.fastpath.preconditioned` (the same posterior; when:
        :func:`~bayesmlm.design.parameterization.precondition_choice`);
        ``"none"``: the kernel's own coordinates.

    Returns
    -------
    idata : DataTree
        ``posterior`` with ``fixef``, ``sd_*``, ``cor_*``, ``u_*``; nutpie's ``sample_stats``.
    seconds_build, seconds_sample : float
        Building includes the map's optimum.

    Examples
    --------
    >>> idata, _, _ = fit_glmm(m.design, m.prior_dict, SamplerSettings(draws=200, tune=200, seed=1), None, {})  # doctest: +SKIP
    >>> sorted(idata["posterior"].data_vars)  # doctest: +SKIP
    ['fixef', 'sd_herd', 'u_herd']
    """
    import nutpie

    s = settings.resolved()
    if s.sampler != "nutpie":
        raise ValueError(f"The full model's kernel runs with sampler='nutpie': its density is a Numba C callback that "
                         f"sampler='{s.sampler}' cannot call.")
    if precondition not in ("laplace", "none"):
        raise ValueError(f"Unknown precondition {precondition!r}. Valid values: 'laplace', 'none'.")
    start = time.perf_counter()
    plan = glmm_plan(design, priors, cells, parameterization)
    from . import glmm_kernel as callbacks

    if precondition == "laplace":
        from . import preconditioned

        plan, callbacks = preconditioned.preconditioned_plan(plan), preconditioned
    seconds_build = time.perf_counter() - start
    start = time.perf_counter()
    model, coords = _nutpie_model(plan, callbacks)
    trace = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          seed=s.seed, progress_bar=s.progressbar, save_warmup=False, target_accept=s.target_accept)
    seconds_sample = time.perf_counter() - start
    posterior = nutpie_posterior(trace, plan.dims, coords)
    if plan.integrated:
        from .parent_draws import draw_parents

        posterior = draw_parents(posterior, design, plan.integrated, coords, s.seed)
    sampling_time = trace["posterior"].attrs.get("sampling_time", seconds_sample)
    posterior.attrs.update({"compile_seconds": 0.0, "sampling_time": float(sampling_time),
                            "method": "full", "density": "kernel"})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})
    return tree, seconds_build, seconds_sample

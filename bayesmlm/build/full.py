"""Stage 3, build: the PyMC model of a design. The only module of the
specification-to-model chain that imports PyMC.

Each grouping factor's random blocks are non-centred (u = z L' with z
standard normal and L the Cholesky factor of the block's covariance from
``pm.LKJCholeskyCov``, or diag(tau) for uncorrelated terms) or centred
(u ~ MvNormal(0, chol=L), sampled as the group coefficients beta + u in a
basis centred at Z's means: ``v_<label>``), as ``parameterization`` says
(:mod:`bayesmlm.design.parameterization` chooses; non-centred by default); a centred
block nested in another factor's is centred on it (:mod:`bayesmlm.design.nested_centring`). Fixed-effect
columns are centred internally, so the intercept's prior is on the outcome at
the predictors' means; ``fixef`` holds the coefficients on the data's scale.

Posterior variables are named as :mod:`bayesmlm.schema` says.

The outcome ``y`` (dims ``obs``) is normal or Student-t (identity link;
``sigma``, and ``nu`` for student), bernoulli or binomial (logit link,
``logit_p``), poisson or negative binomial (log link; NB2 with shape ``phi``:
var = mu + mu^2 / phi, as glmer.nb and brms), or cumulative (ordinal:
``pm.OrderedLogistic`` or ``pm.OrderedProbit`` with ordered ``thresholds``,
sampled through PyMC's ordered transform in a basis centred at X's means and
reported for the uncentred X; X has no intercept). The offset, where there is
one, is added to the linear predictor. Given ``cells``
(:func:`bayesmlm.design.aggregate.aggregate_rows`), the likelihood runs over
cells instead of rows: ``y_cell`` (dims ``cell``) is binomial or poisson, and
the potential ``aggregation_constant`` makes the log-density equal the
row-wise one exactly.

With weights (``Design.weights``) the likelihood is the potential
``weighted_loglik`` instead of an observed ``y``: gaussian rows are normal with
SD sigma / sqrt(w_i) (lme4's precision weights; rows of weight 0 left out),
other rows' log-likelihoods are multiplied by w_i (brms's ``weights()``),
written once for every family as ``w * pm.logp(dist, y)``; weighted cells
(:func:`bayesmlm.design.aggregate.aggregate_rows` sums the weights) are the
potential ``weighted_cell_loglik``.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design.aggregate import Cells
from ..design.block_means import BlockMean, block_means
from ..design.matrices import Design
from ..design.nested_centring import centred_parents
from ..design.priors import Prior, cor_name, sd_name
from ..errors import SpecError
from ..schema import (
    FIXED,
    FIXED_DIM,
    NU,
    PHI,
    SIGMA,
    THRESHOLD_DIM,
    THRESHOLDS,
    block_coords,
    cor_var,
    level_dim,
    safe_name,
    sd_var,
    threshold_names,
    u_var,
    variable_dims,
)
from .distributions import DISTRIBUTIONS, lkj_block, ordinal_log_probs, scalar_rv, vector_rv

__all__ = ["build_full_model", "model_coords", "centred_basis", "centred_fixed_terms"]


def model_coords(design: Design) -> dict[str, list[str]]:
    """The coordinates of every dimension of the posterior.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> model_coords(m.design)["Subject_pair"]
    ['(Intercept):Days']
    """
    coords = {FIXED_DIM: list(design.fixed_terms)}
    if design.categories is not None:
        coords[THRESHOLD_DIM] = threshold_names(design.categories)
    for f in design.factors.values():
        coords[level_dim(f.name)] = list(f.levels)
    for b in design.blocks:
        coords |= block_coords(b.label, b.terms, b.correlated)
    return coords


def _fixed_part(design: Design, priors: dict[str, Prior], rows):
    X = design.X[rows]
    if X.shape[1] == 0:
        return pt.zeros(X.shape[0]), None
    center = design.model_centre  # a cumulative model's thresholds absorb the centring (see _thresholds)
    fixed = [priors[t] for t in design.fixed_terms]
    beta_c = vector_rv("b_centred", [p.dist for p in fixed], [p.kwargs for p in fixed], dims=FIXED_DIM)
    if design.has_intercept:
        i0 = design.fixed_terms.index("(Intercept)")
        beta = pt.set_subtensor(beta_c[i0], beta_c[i0] - pt.dot(beta_c, center))
    else:
        beta = beta_c
    pm.Deterministic(FIXED, beta, dims=FIXED_DIM)
    return pt.dot(X - center, beta_c), beta_c


def centred_basis(block) -> np.ndarray:
    """A^-1 of a centred block: ``v_j = M_j + A^-1 u_j``, the intercept moved to Z's column means.

    The identity for a block without an intercept or with one term.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> centred_basis(m.design.blocks[0]).tolist()
    [[1.0, 4.5], [0.0, 1.0]]
    """
    q = block.q
    a_inv = np.eye(q)
    if "(Intercept)" in block.terms and q > 1:
        i0 = block.terms.index("(Intercept)")
        a_inv[i0] += np.where(np.arange(q) == i0, 0.0, block.z_means)
    return a_inv


def centred_fixed_terms(design: Design, parameterization: dict[str, str],
                        located: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Per centred block, the fixed effects its group coefficients are centred on.

    A fixed term is the mean of one centred block only: the first (in the
    formula's order) whose factor is centred and that has the term. Centring
    two crossed factors' intercepts on the same gamma_0 leaves a ridge that
    only their priors hold (id effects up by c, item effects down by c, the
    same predictions): the second block's effects are then centred on zero.
    ``located`` are terms without a fixed effect that a block may be centred
    on all the same (a cumulative model's intercept, see :func:`build_full_model`). The full model's
    centred blocks use the finer rule of :func:`bayesmlm.design.block_means.block_means`; the crossed
    route (:mod:`bayesmlm.fastpath.crossed_fit`) this one.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> centred_fixed_terms(m.design, {"plate": "centred", "sample": "centred"})
    {'plate': ('(Intercept)',), 'sample': ()}
    """
    taken, out = set(), {}
    for b in design.blocks:
        if parameterization.get(b.group, "non-centred") != "centred":
            continue
        out[b.label] = tuple(t for t in b.terms if (t in design.fixed_terms or t in located) and t not in taken)
        taken |= set(out[b.label])
    return out


def _centred_block(b, chol, sds, beta_c, dims, mean: BlockMean, location=None, parent=None) -> tuple:
    """u of a centred block, sampled as the group coefficients in a basis centred at Z's means.

    Hierarchical centring (Gelfand, Sahu and Carlin 1995): where the data pin down
    each group's coefficients, they barely move with the fixed effects that the
    groups share, while u_j moves with all of them. The block samples
    v_j = M_j + A^-1 u_j: A^-1 = I + e_0 zbar' (:func:`centred_basis`) removes
    the intercept-slope correlation of uncentred predictors, and
    M_j = H_j b_centred (:func:`bayesmlm.design.block_means.block_means`) holds
    the fixed effects the block is centred on, level-2 covariates included.
    Both are linear with unit Jacobian: the model is u_j ~ MvNormal(0, L L') exactly.
    ``chol`` is a correlated block's Cholesky factor, ``sds`` an uncorrelated block's SDs (the other None).
    ``location`` maps a term without a fixed effect to the mean it is centred on instead (a cumulative
    model's intercept: minus the thresholds' mean). ``parent`` is P w_parent[parent(j)] (J x q) of a block centred
    on its parent (:mod:`bayesmlm.design.nested_centring`): v_j's mean moves by A^-1 times it, and u_j is the
    deviation from the parent. Returns u and what the likelihood reads of the block, A v_j (a child's parent's w).
    """
    a_inv = centred_basis(b)
    a = np.linalg.inv(a_inv)
    if beta_c is not None and np.any(mean.H):
        m = pt.tensordot(pt.constant(mean.H), beta_c, axes=[[2], [0]])
    else:
        m = pt.zeros(mean.H.shape[:2])
    if location:
        shift = pt.stack([location.get(t, pt.constant(0.0)) for t in b.terms])
        m = m + shift[None, :]
    if parent is not None:
        m = m + pt.dot(parent, a_inv.T)
    name, identity = f"v_{safe_name(b.label)}", np.allclose(a_inv, np.eye(b.q))
    if sds is not None and identity:  # a diagonal covariance: independent normals, no triangular solves to compile or run
        v = pm.Normal(name, mu=m, sigma=sds, dims=dims[u_var(b.label)])
    else:
        chol = chol if sds is None else pt.diag(sds)
        chol_v = chol if identity else pt.linalg.cholesky(a_inv @ chol @ chol.T @ a_inv.T)
        v = pm.MvNormal(name, mu=m, chol=chol_v, dims=dims[u_var(b.label)])
    return pm.Deterministic(u_var(b.label), pt.dot(v - m, a.T), dims=dims[u_var(b.label)]), pt.dot(v, a.T)


def _located(b, located: dict, location: dict | None) -> dict | None:
    """The location means of block ``b``'s terms that it alone is centred on (one block per term)."""
    terms = [t for t in located.get(b.label, ()) if location and t in location]
    return {t: location[t] for t in terms} or None


def _parent_part(links: dict, b, reads: dict):
    """P w_parent[parent(j)] (J x q) of a block centred on its parent, or None."""
    link = links.get(b.label)
    if link is None:
        return None
    return pt.dot(reads[link.parent][link.levels], link.P.T)


def _random_part(design: Design, priors: dict[str, Prior], rows, parameterization: dict[str, str], beta_c,
                 location: dict | None = None):
    eta = 0.0
    means = block_means(design, parameterization)
    located = centred_fixed_terms(design, parameterization, tuple(location or ())) if location else {}
    links = centred_parents(design, parameterization)
    depth = {}
    for b in design.blocks:  # hops to the top of its chain of parents: a parent is built before its children
        label, depth[b.label] = b.label, 0
        while label in links:
            label, depth[b.label] = links[label].parent, depth[b.label] + 1
    reads = {}  # per block, what the likelihood reads of it (a child's parent's w)
    for b in sorted(design.blocks, key=lambda b: depth[b.label]):
        dims = variable_dims(b.label, b.group, b.correlated)
        sd_priors = [priors[sd_name(b.label, t)] for t in b.terms]
        dists, params = [p.dist for p in sd_priors], [p.kwargs for p in sd_priors]
        centred = parameterization.get(b.group, "non-centred") == "centred"
        if not centred:
            z = pm.Normal(f"z_{safe_name(b.label)}", 0.0, 1.0, dims=dims[u_var(b.label)])
        if b.correlated:
            chol, corr, sds = lkj_block(f"chol_{safe_name(b.label)}", b.label, dists, params,
                                        priors[cor_name(b.label)].kwargs["eta"])
            iu = np.triu_indices(b.q, k=1)
            pm.Deterministic(sd_var(b.label), sds, dims=dims[sd_var(b.label)])
            pm.Deterministic(cor_var(b.label), corr[iu], dims=dims[cor_var(b.label)])
            if centred:
                u, reads[b.label] = _centred_block(b, chol, None, beta_c, dims, means[b.label],
                                                   _located(b, located, location), _parent_part(links, b, reads))
            else:
                u = reads[b.label] = pm.Deterministic(u_var(b.label), pt.dot(z, chol.T), dims=dims[u_var(b.label)])
        else:
            sds = vector_rv(sd_var(b.label), dists, params, dims=dims[sd_var(b.label)])
            if centred:
                u, reads[b.label] = _centred_block(b, None, sds, beta_c, dims, means[b.label],
                                                   _located(b, located, location), _parent_part(links, b, reads))
            else:
                u = reads[b.label] = pm.Deterministic(u_var(b.label), z * sds, dims=dims[u_var(b.label)])
        index = design.factors[b.group].index[rows]
        eta = eta + (b.Z[rows] * u[index]).sum(axis=-1)
    return eta


def _cell_likelihood(design: Design, cells: Cells, eta, cut) -> None:
    if cells.offset is not None:
        eta = eta + cells.offset
    if cells.family == "cumulative":  # sum_k n_ck log p_k(cell), p_k exactly as the row-wise model computes it
        log_p = ordinal_log_probs(eta, cut, design.spec.family.link)
        pm.Potential("y_cell", pt.sum(pt.constant(cells.y) * log_p))
        return
    if cells.weighted:  # weighted counts need not be integers: the kernel, its constant in cells.constant
        if cells.family == "poisson":
            kernel = cells.y * eta - pt.exp(eta)
        else:
            kernel = -cells.y * pt.softplus(-eta) - (cells.trials - cells.y) * pt.softplus(eta)  # log mu, log(1 - mu)
        pm.Potential("weighted_cell_loglik", pt.sum(kernel) + cells.constant)
        return
    if cells.family == "poisson":
        pm.Poisson("y_cell", mu=pt.exp(eta), observed=cells.y.astype(np.int64), dims="cell")
    else:
        pm.Binomial("y_cell", n=cells.trials.astype(np.int64), logit_p=eta, observed=cells.y.astype(np.int64), dims="cell")
    pm.Potential("aggregation_constant", pt.constant(cells.constant))


def _row_distribution(design: Design, eta, priors: dict[str, Prior], cut):
    """The unobserved distribution of every row's outcome, for likelihood weights (not gaussian: precision weights)."""
    family = design.spec.family.name
    if family == "bernoulli":
        return pm.Bernoulli.dist(logit_p=eta)
    if family == "binomial":
        return pm.Binomial.dist(n=design.trials.astype(np.int64), logit_p=eta)
    if family == "poisson":
        return pm.Poisson.dist(mu=pt.exp(eta))
    if family == "student":
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, priors[SIGMA].kwargs)
        nu = scalar_rv(NU, priors[NU].dist, priors[NU].kwargs)
        return pm.StudentT.dist(nu=nu, mu=eta, sigma=sigma)
    if family == "negbinomial":
        phi = scalar_rv(PHI, priors[PHI].dist, priors[PHI].kwargs)
        return pm.NegativeBinomial.dist(mu=pt.exp(eta), alpha=phi)
    if family == "cumulative":
        if design.spec.family.link == "probit":
            return pm.OrderedProbit.dist(eta=eta, cutpoints=cut, sigma=1.0)
        return pm.OrderedLogistic.dist(eta=eta, cutpoints=cut)
    raise SpecError(f"Unknown family '{family}'.")


def _weighted_likelihood(design: Design, eta, priors: dict[str, Prior], cut=None) -> None:
    """The rows' log-likelihood with weights: gaussian precision weights, likelihood weights otherwise."""
    w = design.weights
    if design.spec.family.name == "gaussian":
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, priors[SIGMA].kwargs)
        keep = w > 0  # a row of weight 0 has infinite variance: no term
        dist = pm.Normal.dist(mu=eta[keep], sigma=sigma / np.sqrt(w[keep]))
        pm.Potential("weighted_loglik", pt.sum(pm.logp(dist, design.y[keep])))
    else:
        dist = _row_distribution(design, eta, priors, cut)
        logp = pm.logp(dist, design.y.astype(dist.dtype))  # int64 for counts, float64 for a continuous family
        pm.Potential("weighted_loglik", pt.sum(w * logp))


def _thresholds(design: Design, priors: dict[str, Prior], beta):
    """The ordered thresholds of a cumulative model, sampled for the centred X; ``thresholds`` for the data's X."""
    k = len(design.categories) - 1
    prior = priors[THRESHOLDS]
    c = DISTRIBUTIONS[prior.dist]("thresholds_centred", **prior.kwargs, transform=pm.distributions.transforms.ordered,
                                  initval=np.linspace(-1.5, 1.5, k), dims=THRESHOLD_DIM)
    shift = 0.0 if beta is None else pt.dot(design.model_centre, beta)
    pm.Deterministic(THRESHOLDS, c + shift, dims=THRESHOLD_DIM)
    return c


def _likelihood(design: Design, eta, priors: dict[str, Prior], cut=None) -> None:
    family = design.spec.family.name
    if design.offset is not None:
        eta = eta + design.offset
    if design.weights is not None:
        _weighted_likelihood(design, eta, priors, cut)
    elif family == "gaussian":
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, priors[SIGMA].kwargs)
        pm.Normal("y", mu=eta, sigma=sigma, observed=design.y, dims="obs")
    elif family == "student":
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, priors[SIGMA].kwargs)
        nu = scalar_rv(NU, priors[NU].dist, priors[NU].kwargs)
        pm.StudentT("y", nu=nu, mu=eta, sigma=sigma, observed=design.y, dims="obs")
    elif family == "negbinomial":
        phi = scalar_rv(PHI, priors[PHI].dist, priors[PHI].kwargs)
        pm.NegativeBinomial("y", mu=pt.exp(eta), alpha=phi, observed=design.y.astype(np.int64), dims="obs")
    elif family == "cumulative":
        ordered = pm.OrderedProbit if design.spec.family.link == "probit" else pm.OrderedLogistic
        kw = {"sigma": 1.0} if design.spec.family.link == "probit" else {}
        ordered("y", eta=eta, cutpoints=cut, observed=design.y.astype(np.int64), dims="obs", **kw)
    elif family == "bernoulli":
        pm.Bernoulli("y", logit_p=eta, observed=design.y.astype(np.int64), dims="obs")
    elif family == "binomial":
        pm.Binomial("y", n=design.trials.astype(np.int64), logit_p=eta, observed=design.y.astype(np.int64), dims="obs")
    elif family == "poisson":
        pm.Poisson("y", mu=pt.exp(eta), observed=design.y.astype(np.int64), dims="obs")
    else:
        raise SpecError(f"Unknown family '{family}'.")


def build_full_model(design: Design, priors: dict[str, Prior], *, cells: Cells | None = None,
                     parameterization: dict[str, str] | None = None) -> pm.Model:
    """The full PyMC model of a design: the random effects sampled.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    cells : Cells, optional
        The design's rows aggregated (:func:`bayesmlm.design.aggregate.aggregate_rows`):
        the likelihood then runs over the cells. Default: over the rows.
    parameterization : dict of str to str, optional
        ``"centred"`` or ``"non-centred"`` per grouping factor
        (:func:`bayesmlm.design.parameterization.choose_parameterization`);
        factors not named are non-centred.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> pmodel = build_full_model(m.design, m.prior_dict)
    >>> sorted(v.name for v in pmodel.deterministics)
    ['chol_Subject_corr', 'chol_Subject_stds', 'cor_Subject', 'fixef', 'sd_Subject', 'u_Subject']
    """
    rows = slice(None) if cells is None else cells.first
    coords = model_coords(design) | ({"obs": np.arange(design.n_obs)} if cells is None else {"cell": np.arange(cells.n_cells)})
    with pm.Model(coords=coords) as model:
        eta, beta_c = _fixed_part(design, priors, rows)
        cut = _thresholds(design, priors, beta_c) if design.categories is not None else None
        # A centred random intercept of a cumulative model is centred on minus the thresholds' mean, the
        # intercept they absorb, so that their common shift does not drag every group's effect along.
        location = None if cut is None else {"(Intercept)": -pt.mean(cut)}
        eta = eta + _random_part(design, priors, rows, parameterization or {}, beta_c, location)
        if cells is None:
            _likelihood(design, eta, priors, cut)
        else:
            _cell_likelihood(design, cells, eta, cut)
    return model

"""Stage 3, build: the PyMC model of a design. The only module of the
specification-to-model chain that imports PyMC.

The full model is non-centred: for each random block, u = z L' with z standard
normal and L the Cholesky factor of its covariance from
``pm.LKJCholeskyCov`` (or diag(tau) for uncorrelated terms). Fixed-effect
columns are centred internally, so the intercept's prior is on the outcome at
the predictors' means; ``fixef`` holds the coefficients on the data's scale.

Posterior variables are named as :mod:`bayesmlm.schema` says.

The outcome ``y`` (dims ``obs``) is normal (identity link), bernoulli or
binomial (logit link, ``logit_p``) or poisson (log link); the offset, where
there is one, is added to the linear predictor.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design.matrices import Design
from ..design.priors import Prior, cor_name, sd_name
from ..errors import SpecError
from ..schema import FIXED, FIXED_DIM, SIGMA, block_coords, cor_var, level_dim, safe_name, sd_var, u_var, variable_dims
from .distributions import lkj_block, scalar_rv, vector_rv

__all__ = ["build_full_model", "model_coords"]


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
    for f in design.factors.values():
        coords[level_dim(f.name)] = list(f.levels)
    for b in design.blocks:
        coords |= block_coords(b.label, b.terms, b.correlated)
    return coords


def _fixed_part(design: Design, priors: dict[str, Prior]):
    X = design.X
    if X.shape[1] == 0:
        return pt.zeros(design.n_obs)
    center = design.x_centre
    fixed = [priors[t] for t in design.fixed_terms]
    beta_c = vector_rv("b_centred", [p.dist for p in fixed], [p.kwargs for p in fixed], dims=FIXED_DIM)
    if design.has_intercept:
        i0 = design.fixed_terms.index("(Intercept)")
        beta = pt.set_subtensor(beta_c[i0], beta_c[i0] - pt.dot(beta_c, center))
    else:
        beta = beta_c
    pm.Deterministic(FIXED, beta, dims=FIXED_DIM)
    return pt.dot(X - center, beta_c)


def _random_part(design: Design, priors: dict[str, Prior]):
    eta = 0.0
    for b in design.blocks:
        dims = variable_dims(b.label, b.group, b.correlated)
        sd_priors = [priors[sd_name(b.label, t)] for t in b.terms]
        dists, params = [p.dist for p in sd_priors], [p.kwargs for p in sd_priors]
        z = pm.Normal(f"z_{safe_name(b.label)}", 0.0, 1.0, dims=dims[u_var(b.label)])
        if b.correlated:
            chol, corr, sds = lkj_block(f"chol_{safe_name(b.label)}", b.label, dists, params,
                                        priors[cor_name(b.label)].kwargs["eta"])
            iu = np.triu_indices(b.q, k=1)
            pm.Deterministic(sd_var(b.label), sds, dims=dims[sd_var(b.label)])
            pm.Deterministic(cor_var(b.label), corr[iu], dims=dims[cor_var(b.label)])
            u = pm.Deterministic(u_var(b.label), pt.dot(z, chol.T), dims=dims[u_var(b.label)])
        else:
            sds = vector_rv(sd_var(b.label), dists, params, dims=dims[sd_var(b.label)])
            u = pm.Deterministic(u_var(b.label), z * sds, dims=dims[u_var(b.label)])
        index = design.factors[b.group].index
        eta = eta + (b.Z * u[index]).sum(axis=-1)
    return eta


def _likelihood(design: Design, eta, priors: dict[str, Prior]) -> None:
    family = design.spec.family.name
    if design.offset is not None:
        eta = eta + design.offset
    if family == "gaussian":
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, priors[SIGMA].kwargs)
        pm.Normal("y", mu=eta, sigma=sigma, observed=design.y, dims="obs")
    elif family == "bernoulli":
        pm.Bernoulli("y", logit_p=eta, observed=design.y.astype(np.int64), dims="obs")
    elif family == "binomial":
        pm.Binomial("y", n=design.trials.astype(np.int64), logit_p=eta, observed=design.y.astype(np.int64), dims="obs")
    elif family == "poisson":
        pm.Poisson("y", mu=pt.exp(eta), observed=design.y.astype(np.int64), dims="obs")
    else:
        raise SpecError(f"Unknown family '{family}'. Valid families: gaussian, bernoulli, binomial, poisson.")


def build_full_model(design: Design, priors: dict[str, Prior]) -> pm.Model:
    """The full (non-centred) PyMC model of a design.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> pmodel = build_full_model(m.design, m.prior_dict)
    >>> sorted(v.name for v in pmodel.deterministics)
    ['chol_Subject_corr', 'chol_Subject_stds', 'cor_Subject', 'fixef', 'sd_Subject', 'u_Subject']
    """
    coords = model_coords(design) | {"obs": np.arange(design.n_obs)}
    with pm.Model(coords=coords) as model:
        eta = _fixed_part(design, priors) + _random_part(design, priors)
        _likelihood(design, eta, priors)
    return model

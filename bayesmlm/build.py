"""Stage 3, build: the PyMC model of a design. The only module of the
specification-to-model chain that imports PyMC.

The full model is non-centred: for each random block, u = z L' with z standard
normal and L the Cholesky factor of its covariance from
``pm.LKJCholeskyCov`` (or diag(tau) for uncorrelated terms). Fixed-effect
columns are centred internally, so the intercept's prior is on the outcome at
the predictors' means; ``fixef`` holds the coefficients on the data's scale.

Posterior variables (every later stage reads these names):

- ``fixef`` (fixed_term): fixed effects gamma;
- ``sd_<label>`` (<label>_term), ``cor_<label>`` (<label>_pair);
- ``u_<label>`` (<factor>, <label>_term): random effects;
- ``sigma``: residual SD (families that have one).

The outcome ``y`` (dims ``obs``) is normal (identity link), bernoulli or
binomial (logit link, ``logit_p``) or poisson (log link); the offset, where
there is one, is added to the linear predictor.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ._errors import SpecError
from .design import Design, level_dim, pair_dim, pair_names, safe_name, term_dim
from .priors import Prior, cor_name, sd_name

__all__ = ["build_full_model", "model_coords"]

_DISTS = {
    "normal": pm.Normal,
    "student_t": pm.StudentT,
    "half_normal": pm.HalfNormal,
    "half_student_t": pm.HalfStudentT,
    "exponential": pm.Exponential,
}


def _rv(name: str, priors: list[Prior], dims: str | None = None, shape=None):
    """One vector RV when the priors share a distribution, else stacked scalars."""
    if len({p.dist for p in priors}) == 1:
        kw = {k: np.array([p.kwargs[k] for p in priors]) for k in priors[0].kwargs}
        return _DISTS[priors[0].dist](name, **kw, dims=dims, shape=shape)
    return pt.stack([_DISTS[p.dist](f"{name}[{i}]", **p.kwargs) for i, p in enumerate(priors)])


def _sd_dist(priors: list[Prior], label: str):
    if len({p.dist for p in priors}) != 1:
        raise SpecError(f"The SDs of the correlated block '{label}' must share one prior distribution "
                        f"(pm.LKJCholeskyCov takes one sd_dist); got {[str(p) for p in priors]}.")
    kw = {k: np.array([p.kwargs[k] for p in priors]) for k in priors[0].kwargs}
    return _DISTS[priors[0].dist].dist(**kw, shape=len(priors))


def model_coords(design: Design) -> dict[str, list[str]]:
    """The coordinates of every dimension of the posterior.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> model_coords(m.design)["Subject_pair"]
    ['(Intercept):Days']
    """
    coords = {"fixed_term": list(design.fixed_terms)}
    for f in design.factors.values():
        coords[level_dim(f.name)] = list(f.levels)
    for b in design.blocks:
        coords[term_dim(b.label)] = list(b.terms)
        if b.correlated:
            coords[pair_dim(b.label)] = pair_names(b.terms)
    return coords


def _fixed_part(design: Design, priors: dict[str, Prior]):
    X = design.X
    if X.shape[1] == 0:
        return pt.zeros(design.n_obs)
    center = np.where([t != "(Intercept)" for t in design.fixed_terms], X.mean(axis=0), 0.0) if design.has_intercept \
        else np.zeros(X.shape[1])
    beta_c = _rv("b_centred", [priors[t] for t in design.fixed_terms], dims="fixed_term")
    if design.has_intercept:
        i0 = design.fixed_terms.index("(Intercept)")
        beta = pt.set_subtensor(beta_c[i0], beta_c[i0] - pt.dot(beta_c, center))
    else:
        beta = beta_c
    pm.Deterministic("fixef", beta, dims="fixed_term")
    return pt.dot(X - center, beta_c)


def _random_part(design: Design, priors: dict[str, Prior]):
    eta = 0.0
    for b in design.blocks:
        name, tdim = safe_name(b.label), term_dim(b.label)
        gdim = level_dim(b.group)
        sd_priors = [priors[sd_name(b.label, t)] for t in b.terms]
        z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=(gdim, tdim))
        if b.correlated:
            chol, corr, sds = pm.LKJCholeskyCov(f"chol_{name}", n=b.q, eta=priors[cor_name(b.label)].kwargs["eta"],
                                                sd_dist=_sd_dist(sd_priors, b.label), compute_corr=True)
            iu = np.triu_indices(b.q, k=1)
            pm.Deterministic(f"sd_{name}", sds, dims=tdim)
            pm.Deterministic(f"cor_{name}", corr[iu], dims=pair_dim(b.label))
            u = pm.Deterministic(f"u_{name}", pt.dot(z, chol.T), dims=(gdim, tdim))
        else:
            sds = _rv(f"sd_{name}", sd_priors, dims=tdim)
            u = pm.Deterministic(f"u_{name}", z * sds, dims=(gdim, tdim))
        index = design.factors[b.group].index
        eta = eta + (b.Z * u[index]).sum(axis=-1)
    return eta


def _likelihood(design: Design, eta, priors: dict[str, Prior]) -> None:
    family = design.spec.family.name
    if design.offset is not None:
        eta = eta + design.offset
    if family == "gaussian":
        sigma = _DISTS[priors["sigma"].dist]("sigma", **priors["sigma"].kwargs)
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

"""Predictive checks and the pointwise log-likelihood of a fit.

- :func:`pointwise_log_likelihood`: log p(y_i | draw) for every row and draw,
  from the posterior's ``fixef``, ``u_<label>`` and ``sigma`` and the design
  (so any fit with those variables works, the collapsed Gaussian fast path
  included); the input to LOO (:mod:`bayesmlm.comparison.loo`).
- :func:`posterior_predictive`: replicated outcomes, one set per draw.
- :func:`prior_predictive`: outcomes simulated from the priors alone.

With weights (``MLM(..., weights=)``) the pointwise log-likelihood is the
weighted one whose sum is the fitted likelihood: a gaussian row's density has
SD sigma / sqrt(w_i), another family's log-density is multiplied by w_i, and a
row of weight 0 contributes 0; LOO is then of the weighted likelihood. A
gaussian replicate has SD sigma / sqrt(w_i) (sigma for a row of weight 0,
which the fit does not see); the other families' replicates do not depend on
the weights (as in brms).

Both predictive functions return ArviZ DataTrees whose variable ``y`` (dims
``chain, draw, obs``) sits beside ``observed_data`` ``y``; ``constant_data``
holds each row's group label (``group:<factor>``) and, for binomial models,
``trials``. :func:`bayesmlm.plots.predictive.plot_predictive` draws either. N rows times S draws can be large
(91,175 x 4,000 is 2.9 GB of doubles): everything is computed a chunk of
draws at a time, replicated outcomes are stored as float32 (gaussian), int32
(bernoulli, binomial) or int64 (poisson), and past ``MAX_VALUES`` values the
draws are thinned, with a warning; pass ``draws=`` to choose. Poisson rates
are capped at ``MAX_RATE`` (1e15) when simulating, which only wide priors
ever reach (numpy cannot draw beyond about 9e18).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import xarray as xr
from scipy.special import expit, gammaln

from .ordinal import observed_log_prob, simulate_categories

from ..arguments import check_count, check_seed
from ..design.data_checks import response_columns
from .linpred import (
    chunks,
    design_eta_parts,
    draws_within_memory,
    linear_predictor,
    posterior_draws,
)

__all__ = ["pointwise_log_likelihood", "posterior_predictive", "prior_predictive"]

MAX_RATE = 1e15


def _loglik(design, eta: np.ndarray, sigma=None, nu=None, phi=None, thresholds=None) -> np.ndarray:
    family, y, trials = design.spec.family.name, design.y, design.trials
    if family == "gaussian":
        s = sigma[:, None]
        return -0.5 * np.log(2 * np.pi) - np.log(s) - 0.5 * ((y - eta) / s) ** 2
    if family == "student":
        s, v = sigma[:, None], nu[:, None]
        return (gammaln((v + 1) / 2) - gammaln(v / 2) - 0.5 * np.log(v * np.pi) - np.log(s)
                - (v + 1) / 2 * np.log1p(((y - eta) / s) ** 2 / v))
    if family == "negbinomial":
        a = phi[:, None]
        log_mu_a = np.logaddexp(eta, np.log(a))  # log(mu + phi)
        return (gammaln(y + a) - gammaln(a) - gammaln(y + 1) + y * (eta - log_mu_a) + a * (np.log(a) - log_mu_a))
    if family == "cumulative":
        return observed_log_prob(eta, thresholds, y, design.spec.family.link)
    if family == "bernoulli":
        return y * eta - np.logaddexp(0.0, eta)
    if family == "binomial":
        return gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1) + y * eta - trials * np.logaddexp(0.0, eta)
    if family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1)
    raise ValueError(f"Unknown family '{family}'.")


def _weighted_loglik(design, eta: np.ndarray, w: np.ndarray, sigma=None, **params) -> np.ndarray:
    """Each row's term of the weighted likelihood (0 for a row of weight 0): gaussian precision weights, else w * logp."""
    if design.spec.family.name == "gaussian":
        y, keep = design.y, w > 0
        out = np.zeros(eta.shape)
        s = sigma[:, None] / np.sqrt(w[keep])
        out[:, keep] = -0.5 * np.log(2 * np.pi) - np.log(s) - 0.5 * ((y[keep] - eta[:, keep]) / s) ** 2
        return out
    return w * _loglik(design, eta, sigma=sigma, **params)


def _residual_sd(sigma, weights):
    """Per draw and row, the residual SD: sigma / sqrt(w) (sigma where w is 0, or without weights)."""
    if sigma is None or weights is None:
        return sigma
    return sigma[:, None] / np.sqrt(np.where(weights > 0, weights, 1.0))


def _simulate(design, eta: np.ndarray, rng: np.random.Generator, sigma=None, nu=None, phi=None, thresholds=None) -> np.ndarray:
    family, trials = design.spec.family.name, design.trials
    if family == "gaussian":
        sd = sigma if np.ndim(sigma) == 2 else sigma[:, None]  # 2-D: per row, sigma / sqrt(w)
        return rng.normal(eta, sd).astype(np.float32)
    if family == "student":
        return (eta + sigma[:, None] * rng.standard_t(np.broadcast_to(nu[:, None], eta.shape))).astype(np.float32)
    if family == "negbinomial":  # a gamma-poisson mixture: rate ~ Gamma(phi, mu / phi)
        with np.errstate(over="ignore"):
            mu = np.minimum(np.exp(eta), MAX_RATE)
        a = np.broadcast_to(phi[:, None], eta.shape)
        return rng.poisson(np.minimum(rng.gamma(a, mu / a), MAX_RATE))
    if family == "cumulative":
        return simulate_categories(eta, thresholds, design.spec.family.link, rng)
    if family == "bernoulli":
        return (rng.random(eta.shape) < expit(eta)).astype(np.int32)
    if family == "binomial":
        return rng.binomial(trials.astype(np.int64), expit(eta)).astype(np.int32)
    with np.errstate(over="ignore"):
        return rng.poisson(np.minimum(np.exp(eta), MAX_RATE))


def _fold(values: np.ndarray, shape: tuple[int, int], coords: dict, name: str) -> xr.DataArray:
    return xr.DataArray(values.reshape(*shape, -1), dims=("chain", "draw", "obs"),
                        coords={**coords, "obs": np.arange(values.shape[-1])}, name=name)


def pointwise_log_likelihood(fit, draws: int | None = None) -> xr.DataArray:
    """log p(y_i | parameters) for every posterior draw and row, given the random effects.

    Parameters
    ----------
    fit : Fit
        Any fit whose posterior has ``fixef``, ``u_<label>`` per random block
        and (gaussian) ``sigma``.
    draws : int, optional
        Use at most this many draws in all, evenly spaced within each chain.
        Default: all, unless rows x draws exceeds :data:`MAX_VALUES`.

    Returns
    -------
    DataArray
        Dims (chain, draw, obs), float64, named ``y``. Its sum over ``obs`` at
        a draw is the log-likelihood of the data at that draw (weighted, with
        weights: see the module's notes).

    Examples
    --------
    >>> ll = pointwise_log_likelihood(fit)  # doctest: +SKIP
    >>> ll.dims  # doctest: +SKIP
    ('chain', 'draw', 'obs')
    """
    design = fit.design
    design.require_rows("pointwise_log_likelihood (and so LOO)")
    d = posterior_draws(fit, draws_within_memory(fit.posterior, fit.design.n_obs, draws, "pointwise_log_likelihood"))
    X, Z, index, offset = design_eta_parts(design)
    out = np.empty((d.n, design.n_obs))
    for sl in chunks(d.n, design.n_obs):
        eta = linear_predictor(d.beta[sl], tuple(u[sl] for u in d.u), X, Z, index, offset)
        params = d.take(sl)
        if design.weights is None:
            out[sl] = _loglik(design, eta, **params)
        else:
            out[sl] = _weighted_loglik(design, eta, design.weights, **params)
    return _fold(out, d.shape, d.coords, "y")


def _observed_groups(design) -> dict:
    family = design.spec.family.name
    y = design.y.astype(np.float32 if design.spec.family.has_sigma else np.int32)
    obs = {"obs": np.arange(design.n_obs)}
    groups = {"observed_data": xr.Dataset({"y": ("obs", y)}, coords=obs,
                                          attrs={"outcome": response_columns(design.spec)[0], "family": design.spec.family.name,
                                                 **({"categories": list(design.categories)} if design.categories else {})})}
    const = {f"group:{name}": ("obs", np.asarray(f.levels, dtype=object)[f.index].astype(str))
             for name, f in design.factors.items()}
    if design.trials is not None:
        const["trials"] = ("obs", design.trials.astype(np.int32))
    groups["constant_data"] = xr.Dataset(const, coords=obs)
    return groups


def posterior_predictive(fit, draws: int | None = None, seed: int | None = None) -> xr.DataTree:
    """Replicated outcomes y_rep, one set per posterior draw, with the observed outcome.

    Each replicate keeps the fitted groups' random effects (the same groups,
    new observations). For binomial models y_rep counts successes out of the
    observed trials.

    Parameters
    ----------
    fit : Fit
    draws : int, optional
        Use at most this many draws in all (evenly spaced within each chain).
        Default: all, unless rows x draws exceeds :data:`MAX_VALUES`.
    seed : int, optional
        Seed of the random number generator.

    Returns
    -------
    DataTree
        ``posterior_predictive`` (``y``: chain, draw, obs) and
        ``observed_data`` (``y``: obs); ``constant_data`` (group labels, and
        ``trials`` for binomial models).

    Examples
    --------
    >>> tree = posterior_predictive(fit, draws=200, seed=1)  # doctest: +SKIP
    >>> tree["posterior_predictive"]["y"].dims  # doctest: +SKIP
    ('chain', 'draw', 'obs')
    """
    fit.design.require_rows("posterior_predictive")
    pp = _replicate(fit, draws_within_memory(fit.posterior, fit.design.n_obs, draws, "posterior_predictive"),
                    check_seed(seed)).to_dataset()
    return xr.DataTree.from_dict({"posterior_predictive": pp, **_observed_groups(fit.design)})


def _replicate(fit, draws: int | None, seed) -> xr.DataArray:
    """Outcomes simulated at each draw of ``fit.posterior`` (a posterior, or a prior sample)."""
    design = fit.design
    family = design.spec.family.name
    d = posterior_draws(fit, draws)
    X, Z, index, offset = design_eta_parts(design)
    rng = np.random.default_rng(seed)
    dtype = {"gaussian": np.float32, "student": np.float32, "poisson": np.int64, "negbinomial": np.int64}.get(family, np.int32)
    out = np.empty((d.n, design.n_obs), dtype=dtype)
    for sl in chunks(d.n, design.n_obs):
        eta = linear_predictor(d.beta[sl], tuple(u[sl] for u in d.u), X, Z, index, offset)
        params = d.take(sl)
        if design.weights is not None and design.spec.family.name == "gaussian":
            params["sigma"] = _residual_sd(params["sigma"], design.weights)
        out[sl] = _simulate(design, eta, rng, **params)
    return _fold(out, d.shape, d.coords, "y")


def prior_predictive(model, draws: int = 500, seed: int | None = None) -> xr.DataTree:
    """Outcomes simulated from the priors alone: what the model expects before seeing y.

    Builds the full PyMC model of ``model`` (an :class:`~bayesmlm.MLM`),
    draws its parameters with ``pm.sample_prior_predictive``, and simulates
    outcomes from them as :func:`posterior_predictive` does from a posterior.

    Parameters
    ----------
    model : MLM
    draws : int
        Number of prior draws.
    seed : int, optional

    Returns
    -------
    DataTree
        ``prior`` (every parameter), ``prior_predictive`` (``y``: chain,
        draw, obs), ``observed_data`` (``y``: obs) and ``constant_data``
        (group labels, and ``trials`` for binomial models).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> tree = prior_predictive(m, draws=50, seed=1)
    >>> tree["prior_predictive"]["y"].shape
    (1, 50, 180)
    """
    import pymc as pm

    from ..build.full import build_full_model

    draws, seed = check_count(draws, "draws"), check_seed(seed)
    model.design.require_rows("prior_predictive")
    pmodel = build_full_model(model.design, model.prior_dict)
    names = [v.name for v in pmodel.free_RVs + pmodel.deterministics]
    tree = pm.sample_prior_predictive(draws=int(draws), model=pmodel, var_names=names, random_seed=seed,
                                      compile_kwargs={"mode": "FAST_COMPILE"})
    prior = tree["prior"].to_dataset()
    rep = _replicate(SimpleNamespace(design=model.design, posterior=prior), None,
                     None if seed is None else np.random.SeedSequence(seed).spawn(1)[0])
    return xr.DataTree.from_dict({"prior": prior, "prior_predictive": rep.to_dataset(), **_observed_groups(model.design)})

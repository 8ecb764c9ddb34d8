"""glmer's Laplace approximation (nAGQ = 1) through PIRLS.

For bernoulli / binomial (logit link), poisson and negative binomial (log
link, with an offset; NB2 at a given shape phi, var = mu + mu^2 / phi, whose
phi :func:`fit_negbinomial` estimates as glmer.nb does), and cumulative
category counts at given thresholds (:mod:`~bayesmlm.frequentist_engine.cumulative`
fits those as ordinal::clmm does)
the conditional mode ``u*`` of the spherical random effects minimises
``-2 log p(y | u, beta) + ||u||^2``; penalised iteratively reweighted least
squares (Newton steps on the canonical link, with step halving) finds it,
each step solving with ``A = Lambda' Z' W Z Lambda + I`` through the blocked
factor of :mod:`bayesmlm.frequentist_engine.blocked`.  The Laplace deviance
(lme4's ``glmResp::Laplace``, Bates et al. 2015 section 5) is::

    d(theta, beta) = log|A(u*)| + ||u*||^2 - 2 log p(y | u*, beta)

As in glmer, the fit has two stages: theta alone with ``(u, beta)`` at their
joint penalised mode (nAGQ = 0), then theta and beta together with ``u``
alone in PIRLS, from the first stage's optimum (glmer's default second
stage).  In the second stage beta is optimised in units of its first-stage
standard errors, as glmer scales its Nelder-Mead steps.  Fixed-effect
standard errors come, as lme4's ``vcov.merMod`` takes them, from the inverse
of the finite-difference Hessian over (theta, beta) of the deviance
(``2 H^{-1}``, the beta block), falling back to ``(RX' RX)^{-1}`` where that
is not positive definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .blocked import BlockedFactor, RandomStructure, RowDesign, factorize, random_cross_products, row_design
from .cumulative_link import cumulative_terms
from .optimize import check_convergence, finite_differences, minimize_bounded
from .problem import MixedProblem
from .result import FrequentistFit, OptimizerLog
from .tables import fixed_table, ranef_tables, varcorr_table

__all__ = ["LME4_TOL_PWRSS", "GlmmData", "PirlsState", "glmm_data", "pirls", "laplace_deviance",
           "glmer_deviance", "fit_laplace", "fit_negbinomial"]

LME4_TOL_PWRSS = 1e-7
"""glmerControl()'s tolPwrss: PIRLS stops when the penalised deviance changes by less (relative)."""

_MAX_ITER = 100
_MAX_HALVINGS = 30


@dataclass(frozen=True)
class GlmmData:
    """The rows of a generalized mixed model, ready for PIRLS.

    Attributes
    ----------
    family : str
        ``"binomial"`` (bernoulli has ``trials`` 1), ``"poisson"`` or ``"negbinomial"``.
    X : ndarray, shape (n, p)
    y : ndarray, shape (n,)
        Successes or counts.
    trials : ndarray, shape (n,)
        Binomial trials (ones for poisson, unused).
    weights : ndarray, shape (n,)
        Likelihood weights.
    offset : ndarray, shape (n,)
    structure : RandomStructure
    rows : RowDesign
    log_const : float
        ``sum w (log choose(trials, y))`` or ``-sum w log(y!)`` (negbinomial:
        also ``sum w (lgamma(y + phi) - lgamma(phi))``).
    phi : float
        The negative binomial shape (infinite otherwise).
    counts : ndarray, shape (n, K), optional
        A ``"cumulative"`` family's (weighted) rows per category of each row
        or cell (:mod:`bayesmlm.frequentist_engine.cumulative`).
    thresholds : ndarray, shape (K - 1,), optional
        The cumulative model's thresholds at which PIRLS runs.
    link : str
        The cumulative model's link, ``"logit"`` or ``"probit"``.
    """

    family: str
    X: np.ndarray
    y: np.ndarray
    trials: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    structure: RandomStructure
    rows: RowDesign
    log_const: float
    phi: float = np.inf
    counts: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    link: str = "logit"


def glmm_data(problem: MixedProblem, structure: RandomStructure, phi: float = np.inf) -> GlmmData:
    """Prepare `problem` (a non-Gaussian family) for PIRLS.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 0, 1]), ("a", "b"), np.ones((3, 1)), ("(Intercept)",))
    >>> p = MixedProblem(np.ones((3, 1)), np.array([0.0, 1.0, 1.0]), ("(Intercept)",), (g,), family="bernoulli")
    >>> glmm_data(p, random_structure(p.blocks)).family
    'binomial'
    """
    n = problem.n
    family = problem.family if problem.family in ("poisson", "negbinomial") else "binomial"
    trials = np.ones(n) if problem.trials is None else problem.trials
    w = np.ones(n) if problem.weights is None else problem.weights
    y = problem.y
    if family == "binomial":
        const = float(np.sum(w * (gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1))))
    elif family == "negbinomial":
        const = float(np.sum(w * (gammaln(y + phi) - gammaln(phi) - gammaln(y + 1))))
    else:
        const = float(-np.sum(w * gammaln(y + 1)))
    return GlmmData(family, problem.X, y, trials, w,
                    np.zeros(n) if problem.offset is None else problem.offset,
                    structure, row_design(structure, problem.blocks), const, float(phi))


def _family_terms(data: GlmmData, eta: np.ndarray):
    """-2 log-likelihood, score (d loglik / d eta) and working weights at `eta`."""
    if data.family == "cumulative":
        return cumulative_terms(data.counts, eta, data.thresholds, data.link)
    w = data.weights
    if data.family == "binomial":
        log_mu = -np.logaddexp(0.0, -eta)
        log_1mu = -np.logaddexp(0.0, eta)
        mu = np.exp(log_mu)
        ll = np.sum(w * (data.y * log_mu + (data.trials - data.y) * log_1mu)) + data.log_const
        return -2.0 * ll, w * (data.y - data.trials * mu), w * data.trials * mu * (1.0 - mu)
    if data.family == "negbinomial":  # NB2: score phi (y - mu) / (mu + phi), Fisher weight mu phi / (mu + phi)
        phi = data.phi
        with np.errstate(over="ignore"):
            mu = np.exp(eta)
        log_mu_phi = np.logaddexp(eta, np.log(phi))
        ll = np.sum(w * (data.y * (eta - log_mu_phi) + phi * (np.log(phi) - log_mu_phi))) + data.log_const
        share = np.exp(np.log(phi) - log_mu_phi)  # phi / (mu + phi)
        return -2.0 * ll, w * share * (data.y - mu), w * mu * share
    with np.errstate(over="ignore"):
        mu = np.exp(eta)
    ll = np.sum(w * (data.y * eta - mu)) + data.log_const
    return -2.0 * ll, w * (data.y - mu), w * mu


def _z_lambda_u(data: GlmmData, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    s, rows = data.structure, data.rows
    J1, q1 = len(s.levels[0]), len(s.terms[0])
    b1 = u[:s.m1].reshape(J1, q1) @ s.factor_of(theta, 0).T
    out = np.einsum("ia,ia->i", rows.Z1, b1[rows.codes1])
    if s.m > s.m1:
        out = out + rows.Zr @ (s.lambda_rest(theta) @ u[s.m1:])
    return out


def _lambda_zt(data: GlmmData, theta: np.ndarray, v: np.ndarray):
    """``Lambda' Z' v`` as (first term per level (J1, q1, k), rest (m2, k))."""
    s, rows = data.structure, data.rows
    J1, q1 = len(s.levels[0]), len(s.terms[0])
    v = v.reshape(v.shape[0], -1)
    k = v.shape[1]
    r1 = np.einsum("ba,jbk->jak", s.factor_of(theta, 0), np.asarray(rows.Z1_sparse.T @ v).reshape(J1, q1, k))
    r2 = None
    if s.m > s.m1:
        r2 = np.asarray(s.lambda_rest(theta).T @ (rows.Zr.T @ v)).reshape(-1, k)
    return r1, r2


def _stack(x1: np.ndarray, x2: np.ndarray | None) -> np.ndarray:
    k = x1.shape[2]
    flat = x1.reshape(-1, k)
    return flat if x2 is None else np.vstack([flat, x2])


def _split(data: GlmmData, v: np.ndarray):
    s = data.structure
    v = v.reshape(v.shape[0], -1)
    J1, q1 = len(s.levels[0]), len(s.terms[0])
    r1 = v[:s.m1].reshape(J1, q1, -1)
    return r1, (v[s.m1:] if s.m > s.m1 else None)


@dataclass(frozen=True)
class PirlsState:
    """The conditional mode and what the deviance needs there.

    Attributes
    ----------
    u : ndarray, shape (m,)
        Spherical conditional modes.
    beta : ndarray, shape (p,)
    deviance : float
        ``log|A| + ||u||^2 - 2 log p(y | u, beta)``.
    minus_twice_loglik : float
        ``-2 log p(y | u, beta)`` alone.
    factor : BlockedFactor
        ``A`` with the working weights at the mode.
    RXtRX : ndarray, shape (p, p)
        ``X' W X - X' W Z Lambda A^{-1} Lambda' Z' W X`` at the mode.
    iterations : int
    """

    u: np.ndarray
    beta: np.ndarray
    deviance: float
    minus_twice_loglik: float
    factor: BlockedFactor
    RXtRX: np.ndarray
    iterations: int


def _rx(data: GlmmData, theta: np.ndarray, factor: BlockedFactor, W: np.ndarray) -> np.ndarray:
    C1, C2 = _lambda_zt(data, theta, data.X * W[:, None])
    x1, x2 = factor.solve(C1, C2)
    return data.X.T @ (data.X * W[:, None]) - _stack(C1, C2).T @ _stack(x1, x2)


def pirls(data: GlmmData, theta: np.ndarray, beta: np.ndarray, u: np.ndarray | None = None,
          update_beta: bool = False, tol: float = 1e-11) -> PirlsState:
    """Penalised IRLS for the conditional mode at `theta` (and `beta`).

    Parameters
    ----------
    data : GlmmData
    theta : ndarray
    beta : ndarray
        Fixed effects; the start when `update_beta`.
    u : ndarray, optional
        Start of ``u`` (zeros by default).
    update_beta : bool
        Also optimise beta (glmer's first stage, nAGQ = 0).
    tol : float
        Stop when the penalised deviance changes by less than ``tol (1 + |d|)``.

    Returns
    -------
    PirlsState

    Raises
    ------
    RuntimeError
        If step halving cannot reduce the penalised deviance.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.repeat([0, 1], 4), ("a", "b"), np.ones((8, 1)), ("(Intercept)",))
    >>> y = np.array([0, 1, 1, 1, 0, 0, 1, 0.0])
    >>> p = MixedProblem(np.ones((8, 1)), y, ("(Intercept)",), (g,), family="bernoulli")
    >>> d = glmm_data(p, random_structure(p.blocks))
    >>> state = pirls(d, np.array([1.0]), np.zeros(1))
    >>> bool(state.u[0] > 0 > state.u[1])
    True
    """
    s = data.structure
    u = np.zeros(s.m) if u is None else np.array(u, dtype=float)
    beta = np.array(beta, dtype=float)
    base = data.offset

    def penalised(u_, beta_):
        eta = base + data.X @ beta_ + _z_lambda_u(data, theta, u_)
        dev, score, W = _family_terms(data, eta)
        return dev + u_ @ u_, dev, score, W

    obj, dev, score, W = penalised(u, beta)
    iterations = 0
    for iterations in range(1, _MAX_ITER + 1):
        factor = factorize(s, theta, random_cross_products(data.rows, W))
        r1, r2 = _lambda_zt(data, theta, score)
        g = _stack(r1, r2)[:, 0] - u
        x1, x2 = factor.solve(*_split(data, g))
        du = _stack(x1, x2)[:, 0]
        db = np.zeros_like(beta)
        if update_beta:
            WX = data.X * W[:, None]
            C1, C2 = _lambda_zt(data, theta, WX)
            c1, c2 = factor.solve(C1, C2)
            C, AinvC = _stack(C1, C2), _stack(c1, c2)
            S = data.X.T @ WX - C.T @ AinvC
            db = np.linalg.solve(S, data.X.T @ score - C.T @ du)
            du = du - AinvC @ db
        step = 1.0
        for _ in range(_MAX_HALVINGS):
            new = penalised(u + step * du, beta + step * db)
            if np.isfinite(new[0]) and new[0] <= obj + 1e-12 * abs(obj):
                break
            step /= 2.0
        else:
            raise RuntimeError("PIRLS step halvings failed to reduce the penalised deviance "
                               f"at theta = {np.round(theta, 6).tolist()}")
        u, beta = u + step * du, beta + step * db
        change = obj - new[0]
        obj, dev, score, W = new
        if change < tol * (1.0 + abs(obj)) and step == 1.0:
            break
    factor = factorize(s, theta, random_cross_products(data.rows, W))
    RXtRX = _rx(data, theta, factor, W)
    return PirlsState(u, beta, float(factor.logdet + u @ u + dev), float(dev), factor, RXtRX, iterations)


def laplace_deviance(data: GlmmData, theta: np.ndarray, beta: np.ndarray, u: np.ndarray | None = None) -> float:
    """The Laplace deviance at (`theta`, `beta`), infinite where PIRLS fails.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.repeat([0, 1], 3), ("a", "b"), np.ones((6, 1)), ("(Intercept)",))
    >>> p = MixedProblem(np.ones((6, 1)), np.array([1, 3, 2, 0, 1, 0.0]), ("(Intercept)",), (g,), family="poisson")
    >>> d = glmm_data(p, random_structure(p.blocks))
    >>> laplace_deviance(d, np.array([0.0]), np.zeros(1)) > 0
    True
    """
    try:
        return pirls(data, theta, beta, u).deviance
    except (RuntimeError, np.linalg.LinAlgError, ValueError):
        return np.inf


def _residual_deviance(data: GlmmData, eta: np.ndarray) -> float:
    y, m, w = data.y, data.trials, data.weights
    with np.errstate(divide="ignore", invalid="ignore"):
        if data.family == "binomial":
            log_mu, log_1mu = -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
            a = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0) / m) - log_mu), 0.0)
            b = np.where(m - y > 0, (m - y) * (np.log(np.where(m - y > 0, m - y, 1.0) / m) - log_1mu), 0.0)
            return float(2.0 * np.sum(w * (a + b)))
        mu = np.exp(eta)
        if data.family == "negbinomial":
            phi = data.phi
            a = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0)) - eta), 0.0)
            return float(2.0 * np.sum(w * (a - (y + phi) * (np.log(y + phi) - np.logaddexp(eta, np.log(phi))))))
        a = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0)) - eta), 0.0)
        return float(2.0 * np.sum(w * (a - (y - mu))))


def glmer_deviance(data: GlmmData, theta: np.ndarray, beta: np.ndarray, eta0: np.ndarray,
                   tol: float = LME4_TOL_PWRSS, max_iter: int = 100) -> float:
    """The Laplace deviance as glmer's second-stage deviance function evaluates it.

    PIRLS starts from the linear predictor `eta0` (glmer's ``lp0``: the first
    stage's final one), takes full working-response steps, stops when the
    penalised residual deviance changes by less than `tol` (relative) and
    returns ``log|A| + ||u||^2 - 2 log p(y | u, beta)`` with ``log|A|`` from
    the last factor, computed with the weights of the previous iterate.  Used
    for lme4's standard errors only (see the module notes).

    Parameters
    ----------
    data : GlmmData
    theta, beta : ndarray
    eta0 : ndarray, shape (n,)
    tol : float
    max_iter : int

    Returns
    -------
    float
        Infinite if PIRLS fails.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.repeat([0, 1], 3), ("a", "b"), np.ones((6, 1)), ("(Intercept)",))
    >>> p = MixedProblem(np.ones((6, 1)), np.array([1, 3, 2, 0, 1, 0.0]), ("(Intercept)",), (g,), family="poisson")
    >>> d = glmm_data(p, random_structure(p.blocks))
    >>> exact = laplace_deviance(d, np.array([0.5]), np.zeros(1))
    >>> bool(abs(glmer_deviance(d, np.array([0.5]), np.zeros(1), np.zeros(6)) - exact) < 1e-3)
    True
    """
    off = data.offset + data.X @ beta
    eta = np.array(eta0, dtype=float)
    old = np.inf
    u_old = None
    try:
        for _ in range(max_iter):
            _, score, W = _family_terms(data, eta)
            factor = factorize(data.structure, theta, random_cross_products(data.rows, W))
            x1, x2 = factor.solve(*_lambda_zt(data, theta, W * (eta - off) + score))
            u = _stack(x1, x2)[:, 0]
            eta_new = off + _z_lambda_u(data, theta, u)
            pdev = _residual_deviance(data, eta_new) + u @ u
            halvings = 0
            while (not np.isfinite(pdev) or pdev > old) and u_old is not None and halvings < 20:
                u = (u + u_old) / 2.0
                eta_new = off + _z_lambda_u(data, theta, u)
                pdev = _residual_deviance(data, eta_new) + u @ u
                halvings += 1
            eta = eta_new
            if abs(old - pdev) / pdev < tol:
                return float(factor.logdet + u @ u + _family_terms(data, eta)[0])
            old, u_old = pdev, u
    except (np.linalg.LinAlgError, ValueError):
        return np.inf
    return np.inf


def _glm_start(data: GlmmData) -> np.ndarray:
    if data.family == "binomial":
        p = (data.y + 0.5) / (data.trials + 1.0)
        eta = np.log(p / (1 - p))
    else:
        eta = np.log(data.y + 0.1)
    z = eta - data.offset
    return np.linalg.lstsq(data.X, z, rcond=None)[0]


def fit_laplace(problem: MixedProblem, structure: RandomStructure, theta_names: tuple[str, ...],
                n_groups: dict, phi: float = np.inf) -> FrequentistFit:
    """glmer's two-stage Laplace fit of a bernoulli, binomial or poisson model.

    Parameters
    ----------
    problem : MixedProblem
    structure : RandomStructure
        :func:`~bayesmlm.frequentist_engine.blocked.random_structure` of the blocks.
    theta_names : tuple of str
    n_groups : dict
    phi : float
        For a negbinomial problem, the shape held fixed (see :func:`fit_negbinomial`).

    Returns
    -------
    FrequentistFit

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import RandomBlock, fit_frequentist
    >>> rng = np.random.default_rng(3)
    >>> codes = np.repeat(np.arange(10), 20)
    >>> y = rng.poisson(np.exp(0.5 + 0.7 * rng.normal(size=10)[codes])).astype(float)
    >>> g = RandomBlock("g", codes, tuple("abcdefghij"), np.ones((200, 1)), ("(Intercept)",))
    >>> fit = fit_frequentist(MixedProblem(np.ones((200, 1)), y, ("(Intercept)",), (g,), family="poisson"))
    >>> fit.method, fit.sigma, fit.converged
    ('Laplace', None, True)
    """
    data = glmm_data(problem, structure, phi)
    nt, p = structure.n_theta, problem.p
    lower = structure.lower
    cache = {"beta": _glm_start(data), "u": None}

    def stage1(theta: np.ndarray) -> float:
        try:
            st = pirls(data, theta, cache["beta"], cache["u"], update_beta=True)
        except (RuntimeError, np.linalg.LinAlgError, ValueError):
            return np.inf
        cache["beta"], cache["u"] = st.beta, st.u
        return st.deviance

    opt1 = minimize_bounded(stage1, structure.initial, lower)
    st1 = pirls(data, opt1.x, cache["beta"], cache["u"], update_beta=True)
    beta0 = st1.beta
    scale = np.sqrt(np.clip(np.diag(np.linalg.inv(st1.RXtRX)), 1e-12, None))
    warm = {"u": st1.u}

    def deviance(x: np.ndarray) -> float:
        try:
            st = pirls(data, x[:nt], x[nt:], warm["u"])
        except (RuntimeError, np.linalg.LinAlgError, ValueError):
            return np.inf
        warm["u"] = st.u
        return st.deviance

    def scaled(z: np.ndarray) -> float:
        return deviance(np.concatenate([z[:nt], beta0 + scale * z[nt:]]))

    z0 = np.concatenate([opt1.x, np.zeros(p)])
    opt2 = minimize_bounded(scaled, z0, np.concatenate([lower, np.full(p, -np.inf)]), radius=0.1,
                            final_radius=1e-7)
    x = np.concatenate([opt2.x[:nt], beta0 + scale * opt2.x[nt:]])
    theta, beta = x[:nt], x[nt:]
    full_lower = np.concatenate([lower, np.full(p, -np.inf)])
    state = pirls(data, theta, beta, warm["u"])
    grad, hess = finite_differences(deviance, x, full_lower, fx=state.deviance)
    state = pirls(data, theta, beta, state.u)
    check = check_convergence(grad, hess, x, full_lower, nt)
    warnings = list(check.messages)
    eta0 = data.offset + data.X @ st1.beta + _z_lambda_u(data, opt1.x, st1.u)
    _, hess_lme4 = finite_differences(lambda z: glmer_deviance(data, z[:nt], z[nt:], eta0), x, full_lower)
    vcov = None
    try:
        inv = np.linalg.inv(hess_lme4)[nt:, nt:]
        vcov = inv + inv.T
        if np.linalg.eigvalsh(vcov).min() <= 0:
            vcov = None
    except np.linalg.LinAlgError:
        vcov = None
    if vcov is None:
        warnings.append("variance-covariance matrix computed from finite-difference Hessian is not "
                        "positive definite or contains NA values: falling back to var-cov estimated from RX")
        vcov = np.linalg.inv(state.RXtRX)
    success = opt1.success and opt2.success
    if not success:
        warnings.insert(0, f"optimizer did not report convergence: stage 1: {opt1.message}; "
                           f"stage 2: {opt2.message}")
    n_par = p + nt
    loglik = -state.deviance / 2.0
    names = theta_names + tuple(problem.fixed_terms)
    log = OptimizerLog(
        optimizer=opt2.optimizer, parameters=names, initial=np.concatenate([opt1.x, beta0]), final=x,
        objective=state.deviance, evaluations=opt1.evaluations + opt2.evaluations,
        message=f"stage 1 (theta, nAGQ = 0): {opt1.message}; stage 2 (theta, beta): {opt2.message}",
        success=success, gradient=grad, hessian=hess, max_scaled_gradient=check.max_scaled_gradient,
    )
    terms = list(problem.fixed_terms)
    return FrequentistFit(
        method="Laplace",
        family=problem.family,
        n_obs=problem.n,
        n_groups=n_groups,
        fixed=fixed_table(terms, beta, vcov),
        vcov=pd.DataFrame(vcov, index=terms, columns=terms),
        varcorr=varcorr_table(structure, theta, None),
        sigma=None,
        ranef=ranef_tables(structure, theta, state.u, state.factor.inverse_blocks(structure), 1.0),
        theta=theta,
        criterion=state.deviance,
        loglik=loglik,
        n_parameters=n_par,
        converged=bool(success and check.converged),
        singular=check.singular,
        warnings=tuple(warnings),
        optimizer=log,
    )


def fit_negbinomial(problem: MixedProblem, structure: RandomStructure, theta_names: tuple[str, ...],
                    n_groups: dict) -> FrequentistFit:
    """glmer.nb's fit: the Laplace deviance minimised over the shape phi as well, by profiling.

    lme4's ``glmer.nb`` alternates between a glmer fit at fixed phi and a
    one-dimensional optimisation of phi; both reach the joint optimum of the
    Laplace likelihood over (phi, theta, beta), which this finds directly: a
    bounded scalar minimisation over log(phi) of the deviance of the
    :func:`fit_laplace` fit at each phi (phi is counted as one more
    parameter in AIC and BIC, as glmer.nb does). Standard errors are
    glmer's at the optimal phi (treated as known, as lme4 reports them).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import MixedProblem, RandomBlock, fit_frequentist
    >>> rng = np.random.default_rng(4)
    >>> codes = np.repeat(np.arange(12), 40)
    >>> mu = np.exp(1.0 + 0.5 * rng.normal(size=12)[codes])
    >>> y = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(float)
    >>> g = RandomBlock("g", codes, tuple("abcdefghijkl"), np.ones((480, 1)), ("(Intercept)",))
    >>> fit = fit_frequentist(MixedProblem(np.ones((480, 1)), y, ("(Intercept)",), (g,), family="negbinomial"))
    >>> 1.0 < fit.phi < 4.0
    True
    """
    from dataclasses import replace

    from scipy.optimize import minimize_scalar

    fits = {}

    def deviance(log_phi: float) -> float:
        fit = fit_laplace(problem, structure, theta_names, n_groups, float(np.exp(log_phi)))
        fits[log_phi] = fit
        return fit.criterion

    opt = minimize_scalar(deviance, bounds=(np.log(1e-3), np.log(1e4)), method="bounded", options={"xatol": 1e-4})
    best = fits[opt.x] if opt.x in fits else fit_laplace(problem, structure, theta_names, n_groups, float(np.exp(opt.x)))
    phi = float(np.exp(opt.x))
    notes = () if opt.success else (f"the optimisation of phi did not converge: {opt.message}",)
    if phi > 0.99e4:
        notes += ("phi reached its upper bound (1e4): the counts show no overdispersion; fit family='poisson'.",)
    return replace(best, n_parameters=best.n_parameters + 1, phi=phi, converged=best.converged and bool(opt.success),
                   warnings=best.warnings + notes)

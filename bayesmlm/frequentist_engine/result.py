"""The record of a frequentist fit: :class:`FrequentistFit` and :class:`OptimizerLog`.

Tables follow lme4's layouts: ``fixed`` is ``summary(fit)$coefficients``
(term, estimate, se), ``varcorr`` is ``as.data.frame(VarCorr(fit))`` (grp,
var1, var2, vcov, sdcor) and each ``ranef`` table is
``as.data.frame(ranef(fit, condVar = TRUE))`` for one factor (condval,
condsd) indexed by (group, term).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["OptimizerLog", "FrequentistFit"]


@dataclass(frozen=True)
class OptimizerLog:
    """What the optimiser did and how its optimum was checked.

    Attributes
    ----------
    optimizer : str
        ``"COBYQA"`` (or ``"Powell"`` on a scipy without COBYQA).
    parameters : tuple of str
        Names of the optimised parameters: ``theta[1..k]`` (and the fixed
        effects, for a Laplace fit).
    initial : ndarray
        Start of the final stage.
    final : ndarray
        Optimum (theta, then beta for a Laplace fit).
    objective : float
        Criterion at the optimum.
    evaluations : int
        Criterion evaluations in all stages (not counting the derivative check).
    message : str
        The optimiser's messages.
    success : bool
        The optimiser stopped on its convergence criterion.
    gradient, hessian : ndarray
        Finite-difference derivatives at the optimum (lme4's ``deriv12``).
    max_scaled_gradient : float
        lme4's ``max|grad|`` of the gradient check (NaN for a singular fit).
    """

    optimizer: str
    parameters: tuple[str, ...]
    initial: np.ndarray
    final: np.ndarray
    objective: float
    evaluations: int
    message: str
    success: bool
    gradient: np.ndarray
    hessian: np.ndarray
    max_scaled_gradient: float


@dataclass(frozen=True)
class FrequentistFit:
    """A REML, ML or Laplace (nAGQ = 1) fit, as lme4 reports it.

    Attributes
    ----------
    method : str
        ``"REML"``, ``"ML"`` or ``"Laplace"``.
    family : str
    n_obs : int
    n_groups : dict of str to int
        Levels per grouping factor.
    fixed : DataFrame
        Columns term, estimate, se (lme4's ``vcov``: ``sigma^2 (RX'RX)^{-1}``
        for a linear model; for a Laplace fit from the finite-difference
        Hessian over theta and beta of glmer's deviance function, as lme4's
        ``vcov.merMod`` does; ``2 inv(optimizer.hessian)`` is the same from
        the exact Laplace deviance, see :mod:`~bayesmlm.frequentist_engine.laplace`).
    vcov : DataFrame
        Covariance of the fixed effects, indexed by term both ways.
    varcorr : DataFrame
        Columns grp, var1, var2, vcov, sdcor: per factor the variances, then
        covariances (sdcor a correlation), then the residual for a Gaussian model.
    sigma : float or None
        Residual SD (None for non-Gaussian families).
    ranef : dict of str to DataFrame
        Per factor, indexed by (group, term): condval (conditional mode of
        ``b = Lambda u``) and condsd (its conditional SD, lme4's ``condVar``).
    theta : ndarray
        Relative covariance parameters in lme4's order.
    criterion : float
        REML criterion (REML) or deviance ``-2 logLik`` (ML, Laplace).
    loglik : float
        ``-criterion / 2`` (lme4's ``logLik``, the REML one for REML fits).
    aic, bic : float
        Properties: lme4's AIC and BIC from loglik, n_parameters and n_obs.
    n_parameters : int
        ``p + len(theta)`` (+ 1 for sigma).
    converged : bool
        The optimiser met its criterion and lme4's gradient and Hessian
        checks passed.
    singular : bool
        lme4's ``isSingular``: a diagonal element of theta below 1e-4.
    warnings : tuple of str
        Every message of the optimiser and of the checks.
    optimizer : OptimizerLog
    phi : float or None
        The negative binomial shape (glmer.nb's theta: var = mu + mu^2 / phi); None otherwise.
    thresholds : DataFrame or None
        A cumulative model's thresholds (ordinal::clmm's ``Threshold
        coefficients``): columns term (``"1|2"``, ...), estimate, se; None otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import MixedProblem, RandomBlock, fit_frequentist
    >>> rng = np.random.default_rng(0)
    >>> codes = np.repeat(np.arange(10), 5)
    >>> y = 2 + rng.normal(size=10)[codes] + rng.normal(size=50)
    >>> block = RandomBlock("g", codes, tuple("abcdefghij"), np.ones((50, 1)), ("(Intercept)",))
    >>> fit = fit_frequentist(MixedProblem(np.ones((50, 1)), y, ("(Intercept)",), (block,)))
    >>> fit.method, list(fit.fixed.columns), list(fit.varcorr["grp"])
    ('REML', ['term', 'estimate', 'se'], ['g', 'Residual'])
    """

    method: str
    family: str
    n_obs: int
    n_groups: dict
    fixed: pd.DataFrame
    vcov: pd.DataFrame
    varcorr: pd.DataFrame
    sigma: float | None
    ranef: dict
    theta: np.ndarray
    criterion: float
    loglik: float
    n_parameters: int
    converged: bool
    singular: bool
    warnings: tuple[str, ...] = field(default=())
    optimizer: OptimizerLog | None = None
    phi: float | None = None
    thresholds: pd.DataFrame | None = None

    @property
    def aic(self) -> float:
        """``-2 logLik + 2 n_parameters``, as lme4's ``AIC()``."""
        return -2.0 * self.loglik + 2.0 * self.n_parameters

    @property
    def bic(self) -> float:
        """``-2 logLik + log(n_obs) n_parameters``, as lme4's ``BIC()``."""
        return -2.0 * self.loglik + np.log(self.n_obs) * self.n_parameters

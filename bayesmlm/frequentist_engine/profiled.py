"""lme4's profiled REML and ML deviance of a linear mixed model, as a function of theta.

With ``A = Lambda' Z' W Z Lambda + I`` factored by
:func:`~bayesmlm.frequentist_engine.blocked.factorize` and ``M = [X, y]``,
the Schur complement ``M' W M - M' W Z Lambda A^{-1} Lambda' Z' W M`` holds
``RX' RX`` (its ``X`` block), the right-hand side of the normal equations of
beta and the penalised residual sum of squares.  Beta and sigma are profiled
out (Bates et al. 2015, JSS 67(1), eqs. 34-42)::

    ML:    d(theta)   = log|A| - sum log w + n (1 + log(2 pi r2 / n))
    REML:  d_R(theta) = log|A| - sum log w + log|RX'RX| + (n - p) (1 + log(2 pi r2 / (n - p)))

where ``r2 = min_{u, beta} ||W^(1/2) (y - X beta - Z Lambda u)||^2 + ||u||^2``.
The same code serves the rows (any number of terms) and the one-factor grouped
statistics (:func:`grouped_cross_products`), which never touch the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .blocked import BlockedFactor, RandomCrossProducts, RandomStructure, factorize
from .problem import GroupedGaussian

__all__ = ["GaussianStatistics", "ProfiledSolution", "grouped_cross_products", "profiled_deviance", "profiled_solution"]


@dataclass(frozen=True)
class GaussianStatistics:
    """Everything the profiled deviance reads: cross-products and counts.

    Attributes
    ----------
    structure : RandomStructure
    cp : RandomCrossProducts
        With ``M = [X, y]`` (``k = p + 1`` columns).
    n : int
        Number of rows.
    p : int
        Number of fixed effects.
    sum_log_weights : float
    """

    structure: RandomStructure
    cp: RandomCrossProducts
    n: int
    p: int
    sum_log_weights: float


def grouped_cross_products(stats: GroupedGaussian) -> RandomCrossProducts:
    """The solver's cross-products from one-factor grouped statistics.

    Parameters
    ----------
    stats : GroupedGaussian

    Returns
    -------
    RandomCrossProducts
        With ``M = [X, y]`` and no second term.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import MixedProblem, RandomBlock, group_statistics
    >>> g = RandomBlock("g", np.array([0, 0, 1]), ("a", "b"), np.ones((3, 1)), ("(Intercept)",))
    >>> stats = group_statistics(MixedProblem(np.ones((3, 1)), np.arange(3.0), ("(Intercept)",), (g,)))
    >>> grouped_cross_products(stats).MtM.tolist()
    [[3.0, 3.0], [3.0, 5.0]]
    """
    J, p, q = stats.XtZ.shape
    ZtM1 = np.concatenate([np.swapaxes(stats.XtZ, 1, 2), stats.Zty[:, :, None]], axis=2)
    xty = stats.Xty.sum(axis=0)
    MtM = np.empty((p + 1, p + 1))
    MtM[:p, :p] = stats.XtX.sum(axis=0)
    MtM[:p, p] = MtM[p, :p] = xty
    MtM[p, p] = stats.yty.sum()
    empty = sp.csc_matrix((0, 0))
    return RandomCrossProducts(
        ZtZ1=stats.ZtZ,
        ZtM1=ZtM1,
        ZrtZr=empty,
        ZrtZ1=sp.csc_matrix((0, J * q)),
        ZrtM=np.zeros((0, p + 1)),
        MtM=MtM,
    )


@dataclass(frozen=True)
class ProfiledSolution:
    """The profiled quantities at one theta.

    Attributes
    ----------
    deviance : float
        REML criterion or ML deviance (as requested).
    beta : ndarray, shape (p,)
    sigma : float
    pwrss : float
        Penalised weighted residual sum of squares ``r2``.
    RXtRX : ndarray, shape (p, p)
        ``vcov(beta) = sigma^2 RXtRX^{-1}``.
    u : ndarray, shape (m,)
        Spherical conditional modes (level-major per term, terms in engine order).
    factor : BlockedFactor
    logdet_A, logdet_RX : float
        ``log|A|`` and ``log|RX'RX|``.
    """

    deviance: float
    beta: np.ndarray
    sigma: float
    pwrss: float
    RXtRX: np.ndarray
    u: np.ndarray
    factor: BlockedFactor
    logdet_A: float
    logdet_RX: float


def _schur(factor: BlockedFactor, cp: RandomCrossProducts, structure: RandomStructure, theta: np.ndarray):
    T1 = factor.T1
    M1 = np.einsum("ba,jbk->jak", T1, cp.ZtM1)
    Mr = None if factor.A21 is None else np.asarray(factor.lambda_rest.T @ cp.ZrtM)
    x1, x2 = factor.solve(M1, Mr)
    quad = np.einsum("jak,jal->kl", M1, x1)
    if x2 is not None:
        quad = quad + Mr.T @ x2
    return cp.MtM - quad, x1, x2


def profiled_solution(stats: GaussianStatistics, theta: np.ndarray, reml: bool) -> ProfiledSolution:
    """Profile beta, sigma and u out at `theta`.

    Parameters
    ----------
    stats : GaussianStatistics
    theta : ndarray
    reml : bool
        REML criterion (``True``) or ML deviance.

    Returns
    -------
    ProfiledSolution

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``X`` is rank deficient given the random effects.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import MixedProblem, RandomBlock, group_statistics
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 0, 1, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> problem = MixedProblem(np.ones((4, 1)), np.array([1.0, 2.0, 4.0, 6.0]), ("(Intercept)",), (g,))
    >>> grouped = group_statistics(problem)
    >>> stats = GaussianStatistics(random_structure([g]), grouped_cross_products(grouped), 4, 1, 0.0)
    >>> float(profiled_solution(stats, np.array([0.0]), reml=False).beta[0])  # theta 0: OLS
    3.25
    """
    theta = np.asarray(theta, dtype=float)
    factor = factorize(stats.structure, theta, stats.cp)
    S, x1, x2 = _schur(factor, stats.cp, stats.structure, theta)
    p, n = stats.p, stats.n
    RXtRX = S[:p, :p]
    RX = np.linalg.cholesky(RXtRX)
    beta = np.linalg.solve(RXtRX, S[:p, p])
    pwrss = float(S[p, p] - S[:p, p] @ beta)
    pwrss = max(pwrss, 0.0)
    logdet_RX = float(2.0 * np.log(np.diag(RX)).sum())
    base = factor.logdet - stats.sum_log_weights
    if reml:
        nmp = n - p
        deviance = base + logdet_RX + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp))
        sigma = np.sqrt(pwrss / nmp)
    else:
        deviance = base + n * (1.0 + np.log(2.0 * np.pi * pwrss / n))
        sigma = np.sqrt(pwrss / n)
    coef = np.append(-beta, 1.0)
    u1 = (x1 @ coef).ravel()
    u = u1 if x2 is None else np.concatenate([u1, x2 @ coef])
    return ProfiledSolution(float(deviance), beta, float(sigma), pwrss, RXtRX, u, factor, factor.logdet, logdet_RX)


def profiled_deviance(stats: GaussianStatistics, theta: np.ndarray, reml: bool) -> float:
    """The REML criterion or ML deviance at `theta` (infinite where undefined).

    Parameters
    ----------
    stats : GaussianStatistics
    theta : ndarray
    reml : bool

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import MixedProblem, RandomBlock, group_statistics
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 0, 1, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> problem = MixedProblem(np.ones((4, 1)), np.array([1.0, 2.0, 4.0, 6.0]), ("(Intercept)",), (g,))
    >>> stats = GaussianStatistics(random_structure([g]), grouped_cross_products(group_statistics(problem)), 4, 1, 0.0)
    >>> profiled_deviance(stats, np.array([1.0]), reml=True) > 0
    True
    """
    try:
        return profiled_solution(stats, theta, reml).deviance
    except (np.linalg.LinAlgError, ValueError, RuntimeError):
        return np.inf

"""The cumulative (ordinal) likelihood of category counts as a function of the linear predictor.

A cell with linear predictor ``eta`` puts its rows in category ``k`` with
probability ``p_k = F(a_k - eta) - F(a_{k-1} - eta)`` (``a_0 = -inf``,
``a_K = inf``; ``F`` the logistic or the standard normal CDF), as
``ordinal::clm`` and the Bayesian model (:mod:`bayesmlm.build.distributions`)
write it.  :func:`cumulative_terms` returns what PIRLS needs from a family:
``-2 log p``, the score ``d log p / d eta`` and the negative second
derivative (the observed information, not Fisher's: the cumulative link is
not canonical, and ``clmm``'s Laplace approximation uses the exact Hessian).
Both links have log-concave CDFs, so the information is positive and the
conditional mode is unique.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

__all__ = ["CUMULATIVE_LINKS", "interval_log_prob", "category_log_probs", "cumulative_terms"]

CUMULATIVE_LINKS = ("logit", "probit")
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _log_cdf(x: np.ndarray, link: str) -> np.ndarray:
    return log_ndtr(x) if link == "probit" else -np.logaddexp(0.0, -x)


def _log1mexp(d: np.ndarray) -> np.ndarray:
    """``log(1 - exp(d))`` for ``d <= 0``, stable at both ends."""
    with np.errstate(divide="ignore"):
        return np.where(d > -np.log(2.0), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _cuts(eta: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper cut ``a_{k-1} - eta``, ``a_k - eta`` of every category, shape (*eta.shape, K).

    ``thresholds`` is (K - 1,) or one row per leading entry of ``eta`` (e.g. per draw: (S, K - 1) for eta (S, N)).
    """
    t = np.asarray(thresholds, float)
    x = t[..., None, :] - np.asarray(eta, float)[..., None]
    inf = np.full(x.shape[:-1] + (1,), np.inf)
    return np.concatenate([-inf, x], axis=-1), np.concatenate([x, inf], axis=-1)


def interval_log_prob(a: np.ndarray, b: np.ndarray, link: str) -> np.ndarray:
    """``log(F(b) - F(a))`` elementwise for a < b (either may be infinite), from the tail that keeps its digits.

    Examples
    --------
    >>> import numpy as np
    >>> float(np.exp(interval_log_prob(np.array(-np.inf), np.array(0.0), "probit")))
    0.5
    >>> bool(np.isfinite(interval_log_prob(np.array(40.0), np.array(41.0), "logit")))
    True
    """
    with np.errstate(invalid="ignore"):
        if link == "probit":  # Phi(b) - Phi(a)
            upper = a > 0
            hi = np.where(upper, log_ndtr(-a), log_ndtr(b))
            lo = np.where(upper, log_ndtr(-b), log_ndtr(a))
            return hi + _log1mexp(np.minimum(lo - hi, 0.0))
        # F(b) - F(a) = F(b) F(-a) (1 - exp(a - b)): exact, stable in both tails
        return _log_cdf(b, link) + _log_cdf(-a, link) + _log1mexp(np.minimum(a - b, 0.0))


def category_log_probs(eta: np.ndarray, thresholds: np.ndarray, link: str) -> np.ndarray:
    """log p_k of every category (last axis) at each linear predictor.

    ``eta`` (C,) with thresholds (K - 1,) gives (C, K); eta (S, N) with
    thresholds per draw (S, K - 1) gives (S, N, K).

    Examples
    --------
    >>> import numpy as np
    >>> np.exp(category_log_probs(np.zeros(1), np.array([-1.0, 1.0]), "logit")).round(3).tolist()
    [[0.269, 0.462, 0.269]]
    >>> float(np.exp(category_log_probs(np.zeros(1), np.array([0.0]), "probit")).sum())
    1.0
    >>> category_log_probs(np.zeros((2, 3)), np.zeros((2, 4)), "logit").shape
    (2, 3, 5)
    """
    return interval_log_prob(*_cuts(eta, thresholds), link)


def _log_density(x: np.ndarray, link: str) -> np.ndarray:
    if link == "probit":
        return -0.5 * x * x - _HALF_LOG_2PI
    return _log_cdf(x, link) + _log_cdf(-x, link)


def _slope(x: np.ndarray, link: str) -> np.ndarray:
    """``f'(x) / f(x)``: ``1 - 2 F(x)`` (logistic), ``-x`` (normal)."""
    if link == "probit":
        return -x
    return -np.tanh(x / 2.0)


def cumulative_terms(counts: np.ndarray, eta: np.ndarray, thresholds: np.ndarray, link: str):
    """``-2 log p(counts | eta)``, the score and the observed information per cell.

    Parameters
    ----------
    counts : ndarray, shape (C, K)
        (Weighted) number of rows of each cell in each category.
    eta : ndarray, shape (C,)
        Linear predictor of each cell.
    thresholds : ndarray, shape (K - 1,)
        Increasing.
    link : {"logit", "probit"}

    Returns
    -------
    (minus_twice_loglik, score, information)
        A float, then arrays of shape (C,): ``d log p / d eta`` and
        ``-d^2 log p / d eta^2``.

    Examples
    --------
    >>> import numpy as np
    >>> counts, a = np.array([[3.0, 2.0, 1.0]]), np.array([-0.5, 1.0])
    >>> dev, score, info = cumulative_terms(counts, np.array([0.2]), a, "logit")
    >>> up = cumulative_terms(counts, np.array([0.2 + 1e-6]), a, "logit")[0]
    >>> bool(abs((up - dev) / 1e-6 + 2 * score[0]) < 1e-4), bool(info[0] > 0)
    (True, True)
    """
    a, b = _cuts(eta, thresholds)
    logp = category_log_probs(eta, thresholds, link)
    seen = counts > 0
    with np.errstate(invalid="ignore", over="ignore"):
        ll = float(np.sum(np.where(seen, counts * logp, 0.0)))
        ra = np.where(np.isfinite(a), np.exp(_log_density(a, link) - logp), 0.0)  # f(a) / p
        rb = np.where(np.isfinite(b), np.exp(_log_density(b, link) - logp), 0.0)  # f(b) / p
        s = rb - ra  # -d log p / d eta
        curv = (np.where(np.isfinite(b), rb * _slope(b, link), 0.0)
                - np.where(np.isfinite(a), ra * _slope(a, link), 0.0))
        score = -np.sum(np.where(seen, counts * s, 0.0), axis=1)
        info = np.sum(np.where(seen, counts * (s * s - curv), 0.0), axis=1)
    if not np.isfinite(ll):
        return np.inf, score, info
    return -2.0 * ll, score, info

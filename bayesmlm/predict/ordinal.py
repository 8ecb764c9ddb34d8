"""A cumulative (ordinal) model's category probabilities, from the linear predictor and the thresholds.

With ordered thresholds c_1 < ... < c_{K-1} and the link's CDF F (logistic
for ``logit``, standard normal for ``probit``), a row with linear predictor
eta falls in category k with probability

    p_k = F(c_k - eta) - F(c_{k-1} - eta),   c_0 = -inf, c_K = +inf,

so a larger eta moves mass to higher categories (the sign convention of
ordinal::clmm, brms and PyMC's ``OrderedLogistic``). The log-probabilities
are computed as differences of log-CDFs, which stay finite far in the tails
(:func:`bayesmlm.frequentist_engine.cumulative_link.interval_log_prob`, the
frequentist engine's, one implementation for both). Nothing here imports PyMC.
"""

from __future__ import annotations

import numpy as np

from ..frequentist_engine.cumulative_link import category_log_probs, interval_log_prob

__all__ = ["category_log_probs", "observed_log_prob", "simulate_categories", "category_values"]


def observed_log_prob(eta: np.ndarray, thresholds: np.ndarray, y: np.ndarray, link: str) -> np.ndarray:
    """log p_{y_i} of each row's own category, per draw: shape (S, N); holds only (S, N) arrays.

    Examples
    --------
    >>> import numpy as np
    >>> float(np.exp(observed_log_prob(np.zeros((1, 1)), np.array([[-1.0, 1.0]]), np.array([1]), "logit"))[0, 0])
    0.46211715726000974
    """
    S = eta.shape[0]
    inf = np.full((S, 1), np.inf)
    cuts = np.concatenate([-inf, thresholds, inf], axis=1)
    k = np.asarray(y, dtype=np.int64)
    return interval_log_prob(cuts[:, k] - eta, cuts[:, k + 1] - eta, link)


def simulate_categories(eta: np.ndarray, thresholds: np.ndarray, link: str, rng: np.random.Generator) -> np.ndarray:
    """One category code (0..K-1) per draw and row: the latent eta + e falls between two thresholds.

    Examples
    --------
    >>> import numpy as np
    >>> y = simulate_categories(np.zeros((1, 4000)), np.array([[0.0]]), "logit", np.random.default_rng(1))
    >>> round(float(y.mean()), 1)
    0.5
    """
    e = rng.standard_normal(eta.shape) if link == "probit" else rng.logistic(size=eta.shape)
    latent = eta + e
    out = np.zeros(eta.shape, dtype=np.int32)
    for k in range(thresholds.shape[1]):
        out += latent > thresholds[:, k:k + 1]
    return out


def category_values(categories: tuple[str, ...]) -> np.ndarray:
    """The number each category stands for in an expected rating: itself if numeric, else 1, 2, ..., K.

    Examples
    --------
    >>> category_values(("1", "2", "5")).tolist(), category_values(("low", "high")).tolist()
    ([1.0, 2.0, 5.0], [1.0, 2.0])
    """
    try:
        return np.array([float(c) for c in categories])
    except ValueError:
        return np.arange(1.0, len(categories) + 1)



"""Stage 4, sample (generalized full model): the cumulative (ordinal) family's part of the Numba kernel.

:mod:`bayesmlm.fastpath.glmm_kernel` calls these functions where its family
code is :data:`CUMULATIVE`. The model is :func:`bayesmlm.build.full.build_full_model`'s
cumulative one: over units i (cells or rows) with category counts n_ik
(a row: its weight in its category),

    loglik = sum_i sum_k n_ik log(F(c_k - eta_i) - F(c_{k-1} - eta_i)),   c_0 = -inf, c_K = inf

with F the logistic or normal CDF, eta_i without an intercept (X centred at
its column means) and c = ``thresholds_centred``. The difference of CDFs is
taken in logs (F(b) - F(a) = F(b) F(-a) (1 - exp(a - b)) for the logit, the
upper tail's complement for the probit), so neither tail cancels.

The K - 1 thresholds are the last entries of the unconstrained vector, through
PyMC's ordered transform (c_1 = y_1, c_k = c_{k-1} + exp(y_k); log Jacobian
sum_{k>1} y_k), with their prior (:mod:`bayesmlm.fastpath.prior_density`) on c.
While the kernel runs, the gradient's threshold entries hold d/dc; :func:`finish`
adds the prior and chains them through the transform. A centred random
intercept is centred on -mean(c) (the intercept the thresholds absorb): the
block's table entry 13 is then the intercept's term + 1.

The section of the buffer (:func:`extend_buffer`), at ``d[SECTION_SLOT]``:

    link, K - 1, x index of the thresholds, prior row (4), out index, X's means' offset, then n (N x K)

Numba's cache keys glmm_kernel's compiled functions on glmm_kernel.py alone: after editing this module,
delete bayesmlm/fastpath/__pycache__/*.nb[ic] (or touch glmm_kernel.py), or the old code keeps running.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .prior_density import prior_logp

__all__ = ["CUMULATIVE", "LOGIT", "PROBIT", "LOCATION_FIELD", "SECTION_SLOT", "extend_buffer", "threshold_mean",
           "add_location_grad", "loglik", "finish", "expand_thresholds", "log_diff_cdf"]

CUMULATIVE = 2
LOGIT, PROBIT = 0, 1
_SECTION = 16
SECTION_SLOT = 16  # the kernel's header slot holding this section's offset (glmm_kernel.HEAD - 1)
LOCATION_FIELD = 13  # the block table's entry read by glmm_kernel's _effects and _block_density
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


def extend_buffer(d: np.ndarray, link: int, counts, prior_row, located: dict[int, int], x_mean) -> np.ndarray:
    """The kernel's buffer with the cumulative section appended (thresholds after every other parameter).

    Parameters
    ----------
    d : ndarray
        :func:`bayesmlm.fastpath.glmm_kernel.pack_buffer`'s, packed with family :data:`CUMULATIVE`.
    link : int
        :data:`LOGIT` or :data:`PROBIT`.
    counts : array (N, K)
        Each unit's (weighted) count per category.
    prior_row : sequence of 4 floats
        The thresholds' prior (:func:`bayesmlm.fastpath.prior_density.prior_row`), the same for each.
    located : dict of int to int
        A block's row in d's block table (``HEAD + BLOCK_FIELDS * k``) -> the term it centres on -mean(c)
        (a centred block's intercept).
    x_mean : array (p,)
        X's column means: the reported thresholds are c + x_mean . b_centred.

    Examples
    --------
    >>> from bayesmlm.fastpath import glmm_kernel as gk
    >>> b = gk.KernelBlock(gk.NON_CENTRED, False, [0, 1], np.ones((2, 1)), [[2, 1, 0, 0]], 1.0, 2)
    >>> d = gk.pack_buffer(CUMULATIVE, [0, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [1.0], [[0, 0, 2.5, 0]],
    ...                    [b], 0.0, -1)
    >>> d = extend_buffer(d, LOGIT, [[1, 0, 0], [0, 0, 1]], [1, 3, 0, 2.5], {}, [1.0])
    >>> int(d[1]), int(d[6])  # n_dim (1 + 2 + 1 + 2 thresholds), n_expanded (fixef, sd, u, thresholds)
    (6, 6)
    """
    counts = np.asarray(counts, dtype=np.float64)
    N, n_cat = counts.shape
    if N != int(d[4]) or n_cat < 2:
        raise ValueError(f"counts must be (units, categories >= 2), got {counts.shape} for {int(d[4])} units.")
    d = d.copy()
    for row, term in located.items():
        d[row + LOCATION_FIELD] = term + 1
    at = len(d)
    head = np.zeros(_SECTION)
    head[:8] = [link, n_cat - 1, d[1], *prior_row, d[6]]
    head[9] = at + _SECTION + N * n_cat
    d = np.concatenate([d, head, counts.ravel(), np.asarray(x_mean, dtype=np.float64)])
    d[SECTION_SLOT] = at
    d[1] += n_cat - 1
    d[6] += n_cat - 1
    d[0] = len(d)
    return d


@numba.njit(**_OPTIONS)
def _thresholds(x, d, c):
    """c (K - 1) from the unconstrained vector: PyMC's ordered transform."""
    o = int(d[SECTION_SLOT])
    k, at = int(d[o + 1]), int(d[o + 2])
    c[0] = x[at]
    for j in range(1, k):
        c[j] = c[j - 1] + math.exp(x[at + j])


@numba.njit(**_OPTIONS)
def threshold_mean(x, d):
    """mean(c): minus the location a centred random intercept is centred on."""
    k = int(d[int(d[SECTION_SLOT]) + 1])
    c = np.empty(k)
    _thresholds(x, d, c)
    return c.sum() / k


@numba.njit(**_OPTIONS)
def add_location_grad(d, grad, g):
    """Chain g = d log p / d mean(c) into the gradient's threshold entries (still d/dc)."""
    o = int(d[SECTION_SLOT])
    k, at = int(d[o + 1]), int(d[o + 2])
    for j in range(k):
        grad[at + j] += g / k


@numba.njit(**_OPTIONS)
def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@numba.njit(**_OPTIONS)
def _log1mexp(v):
    """log(1 - exp(v)) for v < 0."""
    return math.log(-math.expm1(v)) if v > -0.6931471805599453 else math.log1p(-math.exp(v))


@numba.njit(**_OPTIONS)
def _log_ndtr(v):
    """log Phi(v), with the asymptotic series where erfc underflows."""
    if v > 0.0:
        return math.log1p(-0.5 * math.erfc(v * _SQRT_HALF))
    if v > -20.0:
        return math.log(0.5 * math.erfc(-v * _SQRT_HALF))
    z = 1.0 / (v * v)
    return -0.5 * v * v - math.log(-v) - _HALF_LOG_2PI + math.log1p(-z * (1.0 - z * (3.0 - 15.0 * z)))


@numba.njit(**_OPTIONS)
def _log_cdf(link, v):
    return _log_ndtr(v) if link == PROBIT else -_softplus(-v)


@numba.njit(**_OPTIONS)
def _log_pdf(link, v):
    return -0.5 * v * v - _HALF_LOG_2PI if link == PROBIT else -_softplus(v) - _softplus(-v)


@numba.njit(**_OPTIONS)
def log_diff_cdf(link, b, a):
    """log(F(b) - F(a)) for a < b, without cancellation in either tail.

    Examples
    --------
    >>> round(float(np.exp(log_diff_cdf(PROBIT, 1.0, -1.0))), 6)
    0.682689
    """
    if link == LOGIT:
        return -_softplus(-b) - _softplus(a) + _log1mexp(a - b)
    if a > 0.0:  # both in the upper tail: Phi(-a) - Phi(-b)
        hi, lo = _log_ndtr(-a), _log_ndtr(-b)
    else:
        hi, lo = _log_ndtr(b), _log_ndtr(a)
    return hi + _log1mexp(lo - hi)


@numba.njit(**_OPTIONS)
def loglik(x, d, eta, res, grad):
    """sum_i sum_k n_ik log p_k(eta_i); res_i = its derivative in eta_i, d/dc added to grad's threshold entries."""
    N = int(d[4])
    o = int(d[SECTION_SLOT])
    link, k, at = int(d[o]), int(d[o + 1]), int(d[o + 2])
    n_at = o + _SECTION
    c = np.empty(k)
    _thresholds(x, d, c)
    ll = 0.0
    for i in range(N):
        e = eta[i]
        row = n_at + i * (k + 1)
        r = 0.0
        for j in range(k + 1):
            n = d[row + j]
            if n == 0.0:
                continue
            if j == 0:  # log F(c_1 - eta)
                b = c[0] - e
                lp = _log_cdf(link, b)
                gb, ga = math.exp(_log_pdf(link, b) - lp), 0.0
            elif j == k:  # log F(eta - c_K-1)
                a = c[k - 1] - e
                lp = _log_cdf(link, -a)
                gb, ga = 0.0, -math.exp(_log_pdf(link, a) - lp)
            else:
                b, a = c[j] - e, c[j - 1] - e
                lp = log_diff_cdf(link, b, a)
                gb, ga = math.exp(_log_pdf(link, b) - lp), -math.exp(_log_pdf(link, a) - lp)
            ll += n * lp
            r -= n * (gb + ga)
            if j < k:
                grad[at + j] += n * gb
            if j > 0:
                grad[at + j - 1] += n * ga
        res[i] = r
    return ll


@numba.njit(**_OPTIONS)
def finish(x, d, grad):
    """The thresholds' prior and log Jacobian; their gradient chained from d/dc to the unconstrained entries."""
    o = int(d[SECTION_SLOT])
    k, at = int(d[o + 1]), int(d[o + 2])
    code, pa, pb, pc = int(d[o + 3]), d[o + 4], d[o + 5], d[o + 6]
    c = np.empty(k)
    _thresholds(x, d, c)
    lp = 0.0
    for j in range(k):
        v, dv = prior_logp(code, pa, pb, pc, c[j])
        lp += v
        grad[at + j] += dv
    tail = 0.0  # d/dy_j = sum_{m >= j} d/dc_m, times exp(y_j) for j > 0
    for j in range(k - 1, -1, -1):
        tail += grad[at + j]
        if j == 0:
            grad[at] = tail
        else:
            grad[at + j] = tail * math.exp(x[at + j]) + 1.0
            lp += x[at + j]
    return lp


@numba.njit(**_OPTIONS)
def expand_thresholds(x, d, out):
    """The reported thresholds, c + mean(X) . b_centred, at their place in the expanded draw."""
    o = int(d[SECTION_SLOT])
    k, out_at, xm = int(d[o + 1]), int(d[o + 7]), int(d[o + 9])
    p = int(d[2])
    c = np.empty(k)
    _thresholds(x, d, c)
    shift = 0.0
    for t in range(p):
        shift += d[xm + t] * x[t]
    for j in range(k):
        out[out_at + j] = c[j] + shift

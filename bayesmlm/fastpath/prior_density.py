"""Stage 4, sample: the priors of :mod:`bayesmlm.design.priors` as Numba code, for the fast path's density kernels.

A prior is a row ``(code, param, param, param)``: :data:`PRIOR_CODES` names
the distribution, its parameters follow in :mod:`bayesmlm.design.priors`'
order (normal: mu, sigma; student_t: nu, mu, sigma; half_normal: sigma;
half_student_t: nu, sigma; exponential: lam). :func:`prior_logp` is each one's
log density and derivative, constants included, as PyMC writes them. Shared by
the crossed route's kernel (:mod:`bayesmlm.fastpath.crossed_kernel`), the
generalized full model's (:mod:`bayesmlm.fastpath.glmm_kernel`) and the
Laplace route's (:mod:`bayesmlm.fastpath.laplace_kernel`);
:func:`sd_block_logp` is a block's SD priors or its LKJ Cholesky density.
"""

from __future__ import annotations

import math

import numba

__all__ = ["PRIOR_CODES", "POSITIVE", "prior_logp", "sd_block_logp", "prior_row", "support_point"]

PRIOR_CODES = {"normal": 0, "student_t": 1, "half_normal": 2, "half_student_t": 3, "exponential": 4}
POSITIVE = ("half_normal", "half_student_t", "exponential")
"""Priors of positive values: sampled on the log scale, as PyMC's default transform."""
_LOG_2PI = math.log(2.0 * math.pi)
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}


def prior_row(prior) -> list[float]:
    """The kernel's row of a prior: its code, then its parameters (zero-padded to three).

    Examples
    --------
    >>> from bayesmlm.design.priors import Prior
    >>> prior_row(Prior("student_t", nu=3, mu=0, sigma=2.5))
    [1.0, 3.0, 0.0, 2.5]
    """
    values = [v for _, v in prior.params]
    return [float(PRIOR_CODES[prior.dist]), *values, *[0.0] * (3 - len(values))]


def support_point(prior) -> float:
    """PyMC's starting value of a prior: the location of normal and student_t, the scale of the positive ones.

    Examples
    --------
    >>> from bayesmlm.design.priors import Prior
    >>> support_point(Prior("exponential", lam=2.0)), support_point(Prior("normal", mu=1.0, sigma=3.0))
    (0.5, 1.0)
    """
    p = prior.kwargs
    if prior.dist == "exponential":
        return 1.0 / p["lam"]
    if prior.dist in ("normal", "student_t"):
        return p["mu"]
    return p["sigma"]


@numba.njit(**_OPTIONS)
def prior_logp(code, a, b, c, v):
    """(log density, derivative) of a prior at v; parameters in design.priors' order.

    Examples
    --------
    >>> round(prior_logp(0, 0.0, 1.0, 0.0, 0.0)[0], 6)  # normal(0, 1) at 0
    -0.918939
    """
    if code == 0:  # normal(mu, sigma)
        z = (v - a) / b
        return -0.5 * z * z - 0.5 * _LOG_2PI - math.log(b), -z / b
    if code == 1:  # student_t(nu, mu, sigma)
        r = v - b
        lp = (math.lgamma((a + 1.0) / 2.0) - math.lgamma(a / 2.0) - 0.5 * math.log(a * math.pi * c * c)
              - (a + 1.0) / 2.0 * math.log1p(r * r / (a * c * c)))
        return lp, -(a + 1.0) * r / (a * c * c + r * r)
    if code == 2:  # half_normal(sigma)
        z = v / a
        return -0.5 * z * z + 0.5 * math.log(2.0 / math.pi) - math.log(a), -z / a
    if code == 3:  # half_student_t(nu, sigma)
        lp = (math.log(2.0) + math.lgamma((a + 1.0) / 2.0) - math.lgamma(a / 2.0) - 0.5 * math.log(a * math.pi * b * b)
              - (a + 1.0) / 2.0 * math.log1p(v * v / (a * b * b)))
        return lp, -(a + 1.0) * v / (a * b * b + v * v)
    return math.log(a) - a * v, -a  # exponential(lam)


@numba.njit(**_OPTIONS)
def sd_block_logp(x, d, q, correlated, sd_at, eta, prior_at, L, dL, grad):
    """The SD priors of one block (or ``pm.LKJCholeskyCov``'s density), with the log Jacobians; dL chained into x.

    ``x[sd_at:]`` holds the block's SD parameters: log SDs (uncorrelated) or
    the packed Cholesky rows with a log diagonal (correlated, LKJ shape
    ``eta``); ``d[prior_at:]`` the SDs' prior rows (:func:`prior_row`); L the
    block's Cholesky factor from x and dL = d logp / dL from the rest of the
    density. Returns this part of the log density; its gradient is added to grad.
    """
    lp = 0.0
    if not correlated:
        for a in range(q):
            s = L[a, a]
            o = prior_at + 4 * a
            v, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], s)
            lp += v + x[sd_at + a]
            grad[sd_at + a] += (dL[a, a] + dv) * s + 1.0
        return lp
    # pm.LKJCholeskyCov: the LKJ normalising constant, then per row its SD's prior and the LKJ terms
    lp += (q - 1) * math.lgamma(eta + 0.5 * (q - 1))
    for k in range(1, q):
        lp -= 0.5 * k * math.log(math.pi) + math.lgamma(eta + 0.5 * (q - 1 - k))
    i = sd_at
    for a in range(q):
        ss = 0.0
        for c in range(a + 1):
            ss += L[a, c] * L[a, c]
        s = math.sqrt(ss)
        o = prior_at + 4 * a
        v, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], s)
        w = 2.0 * eta - 2.0 + q - a
        lp += v + w * math.log(L[a, a] / s) - a * math.log(s)
        dsd = (dv - (2.0 * eta + q - 2.0) / s) / s
        for c in range(a + 1):
            g = dL[a, c] + dsd * L[a, c]
            if c == a:
                g += w / L[a, a]
                lp += x[i]
                grad[i] += g * L[a, a] + 1.0
            else:
                grad[i] += g
            i += 1
    return lp

"""Stage 4, sample (Laplace route): the random effects integrated out by a Laplace approximation, as one Numba kernel.

APPROXIMATE. For a bernoulli, binomial (logit) or poisson (log) model with one
grouping factor, with units i (cells or rows) in group j, weights w_i, trials
n_i, offsets o_i and one block of q terms,

    eta_i = Xc_i b + Z_i' L z_j + o_i,    z_j ~ N(0, I),    u_j = L z_j

(L the block's Cholesky factor: diag(SD), or PyMC's packed LKJ Cholesky factor
as in :mod:`bayesmlm.fastpath.glmm_kernel`). Per group the kernel finds the
mode z*_j of F_j(z) = sum_i loglik_i(eta_i) - z'z / 2 by Newton's method (from
zero, halving a step that lowers F: F is concave), and writes

    log p(y_j | b, L) ~ F_j(z*_j) - 1/2 log det B_j,    B_j = I + L' G_j L,    G_j = sum_i W_i Z_i Z_i'

(W_i = -d^2 loglik_i / d eta_i^2; in z the prior is N(0, I), so no Sigma^-1
appears and an SD near zero is harmless). Its gradient in (b, L) is exact at
the mode (Margossian et al. 2020, with the implicit function theorem): F's
part by the envelope theorem, and log det B's through W_i(eta_i) with
dz*/dtheta = B^-1 d(grad_z F)/dtheta. With h_i = W'_i Z_i' M Z_i,
M = L B^-1 L', hz = sum_i h_i Z_i, zr = sum_i r_i Z_i, a = B^-1 L' hz:

    d logdetB / db   = sum_i h_i Xc_i - (L a)' sum_i W_i Z_i Xc_i'
    d logdetB / dL   = 2 G L B^-1 + hz z' + zr a' - (G L a) z'

The density is the Laplace marginal plus the priors of b (``b_centred``) and of
the SDs (or the LKJ Cholesky density), with the log Jacobians of the log scale,
as the full model's kernel writes them: x is ``b_centred (p) | SD parameters``.

Units are sorted by group in the buffer (:func:`pack_buffer`). Nothing is
written between calls (nutpie calls from several threads): each group's
Newton iterations start from zero, or, once :func:`set_reference` has filled
the buffer's predictor (the fit does at the posterior mode), at the mode
predicted linearly from the reference point; where the first Newton step from
there is below ``_SHORTCUT``, it is taken analytically (F and log det B moved
to the mode to O(step^3) and O(step^2), F's gradient to first order) and the
group costs one pass over its units plus the cheap gradient pass. The value is
then a deterministic function of x within ~1e-8 per group of the converged
Laplace marginal; its gradient within O(step) in the log det term.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from .prior_density import prior_logp

__all__ = ["HEAD", "BINOMIAL", "POISSON", "pack_buffer", "set_reference", "laplace_logp_grad", "group_modes",
           "conditional_draws",
           "expand", "logp_cfunc", "expand_cfunc"]

BINOMIAL, POISSON = 0, 1
HEAD = 21  # d[0] length, n_dim, p, q, J, N, family, correlated, lkj eta, constant, intercept, o_units, o_X, o_Z,
#           o_starts, o_fixed, o_sd, o_xc, n_expanded, max Newton steps, o_ref (the starts' predictor; 0: from zero)
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}
_TOL = 1e-6  # Newton stops when its next step is this small (in z, whose prior is N(0, 1)): F is off by ~_TOL^2
_MAX_NEWTON = 50
_SHORTCUT = 3e-4  # from a predicted start, a first Newton step below this is taken analytically (no second pass)


def pack_buffer(family, y, trials, weights, offset, X, x_centre, Z, group, n_groups, fixed_priors, sd_priors,
                correlated, lkj_eta, constant, intercept) -> np.ndarray:
    """The one buffer the kernel reads; units are sorted by group here.

    Parameters
    ----------
    family : int
        :data:`BINOMIAL` (bernoulli and binomial) or :data:`POISSON`.
    y, trials, weights, offset : arrays (N,)
    X : array (N, p)
        Uncentred; ``x_centre`` (p,) is subtracted (and kept, for ``fixef``).
    Z : array (N, q)
    group : array (N,) of int
        Each unit's level, 0..n_groups-1.
    fixed_priors : array (p, 4); sd_priors : array (q, 4)
        :func:`bayesmlm.fastpath.prior_density.prior_row` of ``b_centred`` and of each SD.
    correlated : bool
    lkj_eta : float
    constant : float
    intercept : int
        The intercept's column (-1: none).

    Examples
    --------
    >>> d = pack_buffer(BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], np.ones((2, 1)), [0, 1], 2,
    ...                 [[0, 0, 2.5, 0]], [[2, 1, 0, 0]], False, 1.0, 0.0, 0)
    >>> int(d[1]), int(d[18])  # n_dim (b, log sd), n_expanded (fixef, sd, then x)
    (2, 4)

    The buffer ends with the starts' predictor, zero until :func:`set_reference` fills it (then each group's Newton
    iterations start at u_ref_j + J_j (x - x_ref) rather than at zero).
    """
    group = np.asarray(group, dtype=np.int64)
    order = np.argsort(group, kind="stable")
    X = np.asarray(X, dtype=np.float64)[order] - np.asarray(x_centre, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)[order]
    N, p = X.shape
    q = Z.shape[1]
    starts = np.searchsorted(group[order], np.arange(n_groups + 1))
    n_sd = q * (q + 1) // 2 if correlated else q
    n_dim = p + n_sd
    n_expanded = p + q + (q * (q - 1) // 2 if correlated else 0) + n_dim
    units = [np.asarray(a, dtype=np.float64).ravel()[order] for a in (y, trials, weights, offset)]
    o_units = HEAD
    o_X = o_units + 4 * N
    o_Z = o_X + N * p
    o_starts = o_Z + N * q
    o_fixed = o_starts + n_groups + 1
    o_sd = o_fixed + 4 * p
    o_xc = o_sd + 4 * q
    o_ref = o_xc + p
    head = [0.0, n_dim, p, q, n_groups, N, family, float(bool(correlated)), lkj_eta, constant, intercept, o_units, o_X,
            o_Z, o_starts, o_fixed, o_sd, o_xc, n_expanded, _MAX_NEWTON, 0.0]
    d = np.concatenate([np.asarray(head, dtype=np.float64), *units, X.ravel(), Z.ravel(),
                        starts.astype(np.int64).view(np.float64), np.asarray(fixed_priors, dtype=np.float64).ravel(),
                        np.asarray(sd_priors, dtype=np.float64).ravel(), np.asarray(x_centre, dtype=np.float64),
                        np.zeros(1 + n_dim + n_groups * q * (1 + n_dim))])
    d[20] = o_ref
    d[0] = len(d)
    return d


def set_reference(d, x_ref, modes, jacobian) -> None:
    """Fill the buffer's predictor of the Newton starts: u_j(x) ~ modes[j] + jacobian[j] @ (x - x_ref).

    A start only: the kernel's value does not depend on it (Newton converges from anywhere; a start whose
    likelihood is not finite falls back to zero), but a good one saves Newton steps.

    Examples
    --------
    >>> d = pack_buffer(BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], np.ones((2, 1)), [0, 1], 2,
    ...                 [[0, 0, 2.5, 0]], [[2, 1, 0, 0]], False, 1.0, 0.0, 0)
    >>> set_reference(d, np.zeros(2), np.zeros((2, 1)), np.zeros((2, 1, 2)))
    >>> float(d[int(d[20])])  # the flag: the predictor is set
    1.0
    """
    n_dim, q, J, o = int(d[1]), int(d[3]), int(d[4]), int(d[20])
    d[o] = 1.0
    d[o + 1:o + 1 + n_dim] = x_ref
    d[o + 1 + n_dim:o + 1 + n_dim + J * q] = np.asarray(modes, dtype=np.float64).ravel()
    d[o + 1 + n_dim + J * q:o + 1 + n_dim + J * q * (1 + n_dim)] = np.asarray(jacobian, dtype=np.float64).ravel()


@numba.njit(**_OPTIONS)
def _start(x, d, j, L, z):
    """z's start for group j: L^-1 of the predicted mode (:func:`set_reference`), or zero; True if predicted."""
    n_dim, q, J, o = int(d[1]), int(d[3]), int(d[4]), int(d[20])
    if d[o] == 0.0:
        for a in range(q):
            z[a] = 0.0
        return False
    at_u = o + 1 + n_dim + j * q
    at_j = o + 1 + n_dim + J * q + j * q * n_dim
    for a in range(q):
        acc = d[at_u + a]
        for k in range(n_dim):
            acc += d[at_j + a * n_dim + k] * (x[k] - d[o + 1 + k])
        for c in range(a):
            acc -= L[a, c] * z[c]
        z[a] = acc / L[a, a]
    return True


@numba.njit(**_OPTIONS)
def _cholesky_factor(x, d, L):
    """L (q x q, lower) from x: diag(exp) of the log SDs, or the packed Cholesky factor (rows, log diagonal)."""
    p, q, corr = int(d[2]), int(d[3]), int(d[7])
    for a in range(q):
        for c in range(q):
            L[a, c] = 0.0
    if corr == 0:
        for a in range(q):
            L[a, a] = math.exp(x[p + a])
        return
    i = p
    for a in range(q):
        for c in range(a + 1):
            L[a, c] = math.exp(x[i]) if c == a else x[i]
            i += 1


@numba.njit(**_OPTIONS)
def _sd_prior(x, d, L, dL, grad):
    """The SD priors (or pm.LKJCholeskyCov's density) with the log Jacobians; dL chained into x's SD parameters."""
    p, q, corr, eta, o_sd = int(d[2]), int(d[3]), int(d[7]), d[8], int(d[16])
    lp = 0.0
    if corr == 0:
        for a in range(q):
            s = L[a, a]
            o = o_sd + 4 * a
            v, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], s)
            lp += v + x[p + a]
            grad[p + a] += (dL[a, a] + dv) * s + 1.0
        return lp
    lp += (q - 1) * math.lgamma(eta + 0.5 * (q - 1))
    for k in range(1, q):
        lp -= 0.5 * k * math.log(math.pi) + math.lgamma(eta + 0.5 * (q - 1 - k))
    i = p
    for a in range(q):
        ss = 0.0
        for c in range(a + 1):
            ss += L[a, c] * L[a, c]
        s = math.sqrt(ss)
        o = o_sd + 4 * a
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


@numba.njit(**_OPTIONS)
def _cholesky(B, C, q):
    """C C' = B (q x q, C lower); False where B is not positive definite."""
    for a in range(q):
        for c in range(a + 1):
            s = B[a, c]
            for k in range(c):
                s -= C[a, k] * C[c, k]
            if c == a:
                if not s > 0.0:
                    return False
                C[a, a] = math.sqrt(s)
            else:
                C[a, c] = s / C[c, c]
        for c in range(a + 1, q):
            C[a, c] = 0.0
    return True


@numba.njit(**_OPTIONS)
def _solve(C, v, out, q):
    """out = (C C')^-1 v."""
    for a in range(q):
        s = v[a]
        for k in range(a):
            s -= C[a, k] * out[k]
        out[a] = s / C[a, a]
    for a in range(q - 1, -1, -1):
        s = out[a]
        for k in range(a + 1, q):
            s -= C[k, a] * out[k]
        out[a] = s / C[a, a]


@numba.njit(**_OPTIONS)
def _unit(family, e, y, n, w):
    """(loglik, r = d/deta, W = -d2/deta2, W' = dW/deta) of one unit at eta = e."""
    if family == 1:
        mu = math.exp(e)
        return w * (y * e - mu), w * (y - mu), w * mu, w * mu
    ex = math.exp(-abs(e))
    sp = max(e, 0.0) + math.log(1.0 + ex)
    prob = (1.0 if e > 0.0 else ex) / (1.0 + ex)
    W = w * n * prob * (1.0 - prob)
    return w * (y * e - n * sp), w * (y - n * prob), W, W * (1.0 - 2.0 * prob)


@numba.njit(**_OPTIONS)
def _group_mode(d, j, b, L, eta0, z, zprev, zr, G, B, C, step, u, scratch, shortcut):
    """Newton's method for group j's mode z (from z's value on entry); returns (F at z, Newton steps, converged).

    On return zr, G, B and C (B's Cholesky factor) are at z, and scratch[i] holds (r_i, W_i, W'_i) there. Where the
    first Newton step from the start is below ``shortcut`` (0: never), it stops there with steps = -1: z is the start,
    ``step`` the Newton step to the mode (z* = z + step to O(step^2)) and ``u`` the gradient g at z."""
    q, N, family, max_steps = int(d[3]), int(d[5]), int(d[6]), int(d[19])
    o_units, o_X, o_Z, o_starts = int(d[11]), int(d[12]), int(d[13]), int(d[14])
    p = int(d[2])
    di = d.view(np.int64)
    s, e = di[o_starts + j], di[o_starts + j + 1]
    for i in range(s, e):
        acc = d[o_units + 3 * N + i]
        for t in range(p):
            acc += d[o_X + i * p + t] * b[t]
        eta0[i - s] = acc
    F_prev = -np.inf
    steps = 0
    halvings = 0
    while True:
        for a in range(q):
            acc = 0.0
            for c in range(a + 1):
                acc += L[a, c] * z[c]
            u[a] = acc
            zr[a] = 0.0
            for c in range(q):
                G[a, c] = 0.0
        F = 0.0
        for i in range(s, e):
            zo = o_Z + i * q
            eta = eta0[i - s]
            for a in range(q):
                eta += d[zo + a] * u[a]
            ll, r, W, Wd = _unit(family, eta, d[o_units + i], d[o_units + N + i], d[o_units + 2 * N + i])
            F += ll
            scratch[i, 0], scratch[i, 1], scratch[i, 2] = r, W, Wd
            for a in range(q):
                za = d[zo + a]
                zr[a] += r * za
                for c in range(a + 1):
                    G[a, c] += W * za * d[zo + c]
        for a in range(q):
            F -= 0.5 * z[a] * z[a]
            for c in range(a):
                G[c, a] = G[a, c]
        if not math.isfinite(F):
            return F, steps, False
        if F < F_prev - 1e-12 * (1.0 + abs(F_prev)) and halvings < 60:  # overshot: halve the step back
            halvings += 1
            for a in range(q):
                z[a] = 0.5 * (z[a] + zprev[a])
            continue
        # B = I + L' G L, g = L' zr - z
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for k in range(a, q):
                    for m in range(c, q):
                        acc += L[k, a] * G[k, m] * L[m, c]
                B[a, c] = acc + (1.0 if a == c else 0.0)
        if not _cholesky(B, C, q):
            return F, steps, False
        for a in range(q):
            acc = -z[a]
            for k in range(a, q):
                acc += L[k, a] * zr[k]
            u[a] = acc  # g
        _solve(C, u, step, q)
        big = 0.0
        for a in range(q):
            big = max(big, abs(step[a]))
        if steps == 0 and big < shortcut:
            return F, -1, True
        if big < _TOL or steps >= max_steps or halvings >= 60:
            return F, steps, big < 1e-6
        F_prev = F
        for a in range(q):
            zprev[a] = z[a]
            z[a] += step[a]
        steps += 1
        halvings = 0


@numba.njit(**_OPTIONS)
def laplace_logp_grad(x, d, grad):
    """The Laplace log density at x (see the module's docstring); its gradient is written into grad.

    Returns -inf where a group's Newton iterations did not converge."""
    n_dim, p, q, J, N = int(d[1]), int(d[2]), int(d[3]), int(d[4]), int(d[5])
    o_X, o_Z, o_starts, o_fixed = int(d[12]), int(d[13]), int(d[14]), int(d[15])
    di = d.view(np.int64)
    for i in range(n_dim):
        grad[i] = 0.0
    lp = d[9]
    b = np.empty(p)
    for t in range(p):
        b[t] = x[t]
        o = o_fixed + 4 * t
        v, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], x[t])
        lp += v
        grad[t] += dv
    L = np.zeros((q, q))
    _cholesky_factor(x, d, L)
    nmax = 1
    for j in range(J):
        nmax = max(nmax, di[o_starts + j + 1] - di[o_starts + j])
    eta0 = np.empty(nmax)
    scratch = np.empty((N, 3))
    z, zprev, zr, step, u = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
    hz, a_, la, v, Gla = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
    G, B, C = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
    M, GLBi, Binv = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
    WZX = np.empty((q, p))
    gb = np.zeros(p)
    dL = np.zeros((q, q))
    col, tmp = np.empty(q), np.empty(q)
    for j in range(J):
        F, steps, ok = _group_mode(d, j, b, L, eta0, z, zprev, zr, G, B, C, step, u, scratch, _SHORTCUT) \
            if _start(x, d, j, L, z) else (0.0, 0, False)
        if not ok:
            for a in range(q):
                z[a] = 0.0
            F, steps, ok = _group_mode(d, j, b, L, eta0, z, zprev, zr, G, B, C, step, u, scratch, 0.0)
        if not ok:
            return -np.inf
        short = steps == -1
        if short:  # F at z* = z + step, to O(step^3): F(z) + g'step / 2 (B step = g)
            for a in range(q):
                F += 0.5 * u[a] * step[a]
        logdet = 0.0
        for a in range(q):
            logdet += 2.0 * math.log(C[a, a])
        lp += F - 0.5 * logdet
        # B^-1 column by column, then M = L B^-1 L' and G L B^-1
        for c in range(q):
            for a in range(q):
                col[a] = 1.0 if a == c else 0.0
            _solve(C, col, tmp, q)
            for a in range(q):
                Binv[a, c] = tmp[a]
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for k in range(a + 1):
                    for m in range(c + 1):
                        acc += L[a, k] * Binv[k, m] * L[c, m]
                M[a, c] = acc
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for k in range(q):
                    for m in range(k, q):
                        acc += G[a, m] * L[m, k] * Binv[k, c]
                GLBi[a, c] = acc
            hz[a] = 0.0
            for t in range(p):
                WZX[a, t] = 0.0
        s, e = di[o_starts + j], di[o_starts + j + 1]
        for i in range(s, e):
            zo, xo = o_Z + i * q, o_X + i * p
            r, W, Wd = scratch[i, 0], scratch[i, 1], scratch[i, 2]
            lev = 0.0
            for a in range(q):
                acc = 0.0
                for c in range(q):
                    acc += M[a, c] * d[zo + c]
                lev += d[zo + a] * acc
            h = Wd * lev
            for t in range(p):
                gb[t] += (r - 0.5 * h) * d[xo + t]
            for a in range(q):
                za = d[zo + a]
                hz[a] += h * za
                for t in range(p):
                    WZX[a, t] += W * za * d[xo + t]
        # a = B^-1 L' hz; L a; G L a
        for a in range(q):
            acc = 0.0
            for k in range(a, q):
                acc += L[k, a] * hz[k]
            v[a] = acc
        _solve(C, v, a_, q)
        for a in range(q):
            acc = 0.0
            for c in range(a + 1):
                acc += L[a, c] * a_[c]
            la[a] = acc
        if short:  # log det B at z*, to O(step^2) (v is its gradient in z), and F's gradient moved to z* to first order
            Lstep = tmp
            for a in range(q):
                lp -= 0.5 * v[a] * step[a]
                acc = 0.0
                for c in range(a + 1):
                    acc += L[a, c] * step[c]
                Lstep[a] = acc
            for t in range(p):
                acc = 0.0
                for a in range(q):
                    acc += Lstep[a] * WZX[a, t]
                gb[t] -= acc
            for a in range(q):
                acc = 0.0
                for c in range(q):
                    acc += G[a, c] * Lstep[c]
                col[a] = acc  # G L step
            for a in range(q):
                for c in range(a + 1):
                    dL[a, c] += (zr[a] - col[a]) * (z[c] + step[c]) - zr[a] * z[c]
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += G[a, c] * la[c]
            Gla[a] = acc
        for t in range(p):
            acc = 0.0
            for a in range(q):
                acc += la[a] * WZX[a, t]
            gb[t] += 0.5 * acc
        for a in range(q):
            for c in range(a + 1):
                dlogdet = 2.0 * GLBi[a, c] + hz[a] * z[c] + zr[a] * a_[c] - Gla[a] * z[c]
                dL[a, c] += zr[a] * z[c] - 0.5 * dlogdet
    for t in range(p):
        grad[t] += gb[t]
    lp += _sd_prior(x, d, L, dL, grad)
    return lp


@numba.njit(**_OPTIONS)
def group_modes(x, d, modes, chol):
    """Each group's mode u*_j = L z*_j (J x q) and the Cholesky factor of its conditional covariance in u.

    ``chol[j]`` (q x q) is S_j = L C_j^-T, with C_j C_j' = B_j, so S_j S_j' = L B_j^-1 L' = H_j^-1. Returns the
    number of groups whose Newton iterations did not converge."""
    p, q, J, N, o_starts = int(d[2]), int(d[3]), int(d[4]), int(d[5]), int(d[14])
    di = d.view(np.int64)
    b = np.empty(p)
    for t in range(p):
        b[t] = x[t]
    L = np.zeros((q, q))
    _cholesky_factor(x, d, L)
    nmax = 1
    for j in range(J):
        nmax = max(nmax, di[o_starts + j + 1] - di[o_starts + j])
    eta0 = np.empty(nmax)
    scratch = np.empty((N, 3))
    z, zprev, zr, step, u = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
    G, B, C = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
    Cinvt = np.empty((q, q))
    failed = 0
    for j in range(J):
        _, steps, ok = _group_mode(d, j, b, L, eta0, z, zprev, zr, G, B, C, step, u, scratch, _SHORTCUT) \
            if _start(x, d, j, L, z) else (0.0, 0, False)
        if not ok:
            for a in range(q):
                z[a] = 0.0
            _, steps, ok = _group_mode(d, j, b, L, eta0, z, zprev, zr, G, B, C, step, u, scratch, 0.0)
        failed += 0 if ok else 1
        if steps == -1:
            for a in range(q):
                z[a] += step[a]
        for a in range(q):
            acc = 0.0
            for c in range(a + 1):
                acc += L[a, c] * z[c]
            modes[j, a] = acc
        # C^-T (upper): solve C' X = I column by column
        for c in range(q):
            for a in range(q - 1, -1, -1):
                acc = 1.0 if a == c else 0.0
                for k in range(a + 1, q):
                    acc -= C[k, a] * Cinvt[k, c]
                Cinvt[a, c] = acc / C[a, a]
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for k in range(a + 1):
                    acc += L[a, k] * Cinvt[k, c]
                chol[j, a, c] = acc
    return failed


@numba.njit(**_OPTIONS, parallel=True)
def conditional_draws(xs, d, normals, out):
    """u draws (S x J x q): at each unconstrained draw xs[s], u_j = u*_j + S_j e_j with e = normals[s] ~ N(0, I).

    Returns the number of (draw, group) pairs whose Newton iterations did not converge."""
    S = xs.shape[0]
    q, J = int(d[3]), int(d[4])
    failed = np.zeros(S, np.int64)
    for s in numba.prange(S):
        modes = np.empty((J, q))
        chol = np.empty((J, q, q))
        failed[s] = group_modes(xs[s], d, modes, chol)
        for j in range(J):
            for a in range(q):
                acc = modes[j, a]
                for c in range(q):
                    acc += chol[j, a, c] * normals[s, j, c]
                out[s, j, a] = acc
    return failed.sum()


@numba.njit(**_OPTIONS)
def expand(x, d, out):
    """fixef (p), the SDs, the correlations (upper triangle by rows), then x itself (for the effects' draws)."""
    n_dim, p, q, corr, i0, o_xc = int(d[1]), int(d[2]), int(d[3]), int(d[7]), int(d[10]), int(d[17])
    for t in range(p):
        out[t] = x[t]
    if i0 >= 0:
        for t in range(p):
            out[i0] -= x[t] * d[o_xc + t]
    L = np.zeros((q, q))
    _cholesky_factor(x, d, L)
    sd = np.empty(q)
    at = p
    for a in range(q):
        ss = 0.0
        for c in range(a + 1):
            ss += L[a, c] * L[a, c]
        sd[a] = math.sqrt(ss)
        out[at + a] = sd[a]
    at += q
    if corr == 1:
        for a in range(q):
            for b in range(a + 1, q):
                cv = 0.0
                for c in range(a + 1):
                    cv += L[b, c] * L[a, c]
                out[at] = cv / (sd[a] * sd[b])
                at += 1
    for i in range(n_dim):
        out[at + i] = x[i]
    return 0


_PTR = types.CPointer(types.double)


@numba.cfunc(types.int64(types.uint64, _PTR, _PTR, _PTR, types.voidptr), **_OPTIONS)
def logp_cfunc(dim, x_, grad_, logp_, data_):
    """nutpie's log-density callback: the buffer is the model's user data."""
    head = numba.carray(data_, (HEAD,), dtype=np.float64)
    if dim != int(head[1]):
        return -1
    d = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    x = numba.carray(x_, (dim,))
    grad = numba.carray(grad_, (dim,))
    value = laplace_logp_grad(x, d, grad)
    logp_[0] = value
    if not math.isfinite(value):
        return 4
    for i in range(dim):
        if not math.isfinite(grad[i]):
            return 3
    return 0


@numba.cfunc(types.int64(types.uint64, types.uint64, _PTR, _PTR, types.voidptr), **_OPTIONS)
def expand_cfunc(dim, n_expanded, x_, out_, data_):
    """nutpie's callback writing the stored values of a draw."""
    head = numba.carray(data_, (HEAD,), dtype=np.float64)
    if dim != int(head[1]) or n_expanded != int(head[18]):
        return -1
    d = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    return expand(numba.carray(x_, (dim,)), d, numba.carray(out_, (n_expanded,)))

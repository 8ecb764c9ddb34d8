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
group costs one pass over its units plus the cheap gradient pass. That pass runs over chunks of whole groups:
each group's start and predictor, then the units' log likelihood and derivatives in one branch-free loop
(vectorised by LLVM), then per group the sums and the Newton step; only groups whose step is not small go on
to Newton's method one at a time. The value is
then a deterministic function of x within ~1e-8 per group of the converged
Laplace marginal; its gradient within O(step) in the log det term.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .branchless_math import exp_clamped, log1p_unit
from .prior_density import prior_logp, sd_block_logp

__all__ = ["HEAD", "BINOMIAL", "POISSON", "pack_buffer", "set_reference", "laplace_logp_grad", "group_modes",
           "conditional_draws",
           "expand", "logp_cfunc", "expand_cfunc"]

BINOMIAL, POISSON = 0, 1
HEAD = 21  # d[0] length, n_dim, p, q, J, N, family, correlated, lkj eta, constant, intercept, o_units, o_X, o_Z,
#           o_starts, o_fixed, o_sd, o_xc, n_expanded, max Newton steps, o_ref (the starts' predictor; 0: from zero)
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}
# the small helpers called per group are inlined at Numba's level: a call with array arguments costs an atomic
# reference count increment and decrement per array (~40% of a gradient's time when they were calls)
_INLINE = {**_OPTIONS, "inline": "always"}
_TOL = 1e-6  # Newton stops when its next step is this small (in z, whose prior is N(0, 1)): F is off by ~_TOL^2
_MAX_NEWTON = 50
_SHORTCUT = 3e-4  # from a predicted start, a first Newton step below this is taken analytically (no second pass)
_CHUNK = 2048  # cells per chunk of whole groups in laplace_logp_grad's first pass (its arrays stay in L1/L2)


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


@intrinsic
def _borrowed(typingctx, arr):
    """The array ``arr`` without its reference count (meminfo NULL): its views are passed to calls without atomic
    increments and decrements. The caller keeps ``arr`` itself alive (uses it last) while the view is in use."""
    def codegen(context, builder, signature, args):
        view = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0])
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()
    return arr(arr), codegen


@numba.njit(**_INLINE)
def _take(work, at, n):
    """work[at:at + n] and at + n."""
    return work[at:at + n], at + n


@numba.njit(**_INLINE)
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
    return sd_block_logp(x, d, int(d[3]), int(d[7]) != 0, int(d[2]), d[8], int(d[16]), L, dL, grad)


@numba.njit(**_INLINE)
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


@numba.njit(**_INLINE)
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
def _units(d, lo, n, eta, ll, R, Wa, Wda):
    """Each unit's (loglik, r = d/deta, W = -d2/deta2, W' = dW/deta) over units lo .. lo + n: ll[:n] from eta[:n],
    (r, W, W') into R, Wa, Wda at lo .. lo + n."""
    if int(d[6]) == 1:
        _poisson_units(d, lo, n, eta, ll, R[lo:], Wa[lo:], Wda[lo:])
    else:
        _binomial_units(d, lo, n, eta, ll, R[lo:], Wa[lo:], Wda[lo:])


@numba.njit(**_OPTIONS)
def _binomial_units(d, lo, n, eta, ll, r, Wa, Wda):
    """The binomial case of :func:`_units` over units lo .. lo + n, its outputs from index 0.

    No indirect access and no library calls (exp and log1p from :mod:`branchless_math`), so LLVM vectorises it (the
    outputs are views starting at 0: written at lo + i, the loop stays scalar)."""
    N, o_units = int(d[5]), int(d[11])
    # views, indexed by the loop's counter: d[at + i] is a signed index that Numba wraps, which keeps an AVX2 loop scalar
    y, trials, weight = d[o_units + lo:o_units + lo + n], d[o_units + N + lo:o_units + N + lo + n], \
        d[o_units + 2 * N + lo:o_units + 2 * N + lo + n]
    for i in range(n):
        e = eta[i]
        ex = exp_clamped(-abs(e))  # below exp(-708) its floor changes nothing at double precision
        sp = max(e, 0.0) + log1p_unit(ex)
        prob = (1.0 if e > 0.0 else ex) / (1.0 + ex)
        w, tr = weight[i], trials[i]
        W = w * tr * prob * (1.0 - prob)
        ll[i] = w * (y[i] * e - tr * sp)
        r[i] = w * (y[i] - tr * prob)
        Wa[i] = W
        Wda[i] = W * (1.0 - 2.0 * prob)


@numba.njit(**_OPTIONS)
def _poisson_units(d, lo, n, eta, ll, r, Wa, Wda):
    """The poisson case of :func:`_units` over units lo .. lo + n, its outputs from index 0."""
    N, o_units = int(d[5]), int(d[11])
    y, weight = d[o_units + lo:o_units + lo + n], d[o_units + 2 * N + lo:o_units + 2 * N + lo + n]  # views, as above
    for i in range(n):
        e = eta[i]
        mu = exp_clamped(e) if e < 709.0 else math.inf  # overflows as math.exp does; its floor below -708 is 3e-308
        w = weight[i]
        ll[i] = w * (y[i] * e - mu)
        r[i] = w * (y[i] - mu)
        Wa[i] = w * mu
        Wda[i] = w * mu


@numba.njit(**_INLINE)
def _newton_step(L, z, zr, G, B, C, u, step, q):
    """B = I + L' G L, C its Cholesky factor, u = g = L' zr - z, step = B^-1 g; the largest |step|, or -1 where B is
    not positive definite."""
    if q == 2:
        l00, l10, l11 = L[0, 0], L[1, 0], L[1, 1]
        g00, g01, g11 = G[0, 0], G[1, 0], G[1, 1]
        t00 = l00 * g00 + l10 * g01  # (L' G)
        t01 = l00 * g01 + l10 * g11
        t11 = l11 * g11
        t10 = l11 * g01
        b00 = 1.0 + t00 * l00 + t01 * l10
        b10 = t10 * l00 + t11 * l10
        b11 = 1.0 + t11 * l11
        B[0, 0], B[1, 0], B[0, 1], B[1, 1] = b00, b10, b10, b11
        if not b00 > 0.0:
            return -1.0
        c00 = math.sqrt(b00)
        c10 = b10 / c00
        s11 = b11 - c10 * c10
        if not s11 > 0.0:
            return -1.0
        c11 = math.sqrt(s11)
        C[0, 0], C[1, 0], C[0, 1], C[1, 1] = c00, c10, 0.0, c11
        g0 = l00 * zr[0] + l10 * zr[1] - z[0]
        g1 = l11 * zr[1] - z[1]
        u[0], u[1] = g0, g1
        w0 = g0 / c00
        w1 = (g1 - c10 * w0) / c11
        s1 = w1 / c11
        s0 = (w0 - c10 * s1) / c00
        step[0], step[1] = s0, s1
        return max(abs(s0), abs(s1))
    for a in range(q):
        for c in range(q):
            acc = 0.0
            for k in range(a, q):
                for m in range(c, q):
                    acc += L[k, a] * G[k, m] * L[m, c]
            B[a, c] = acc + (1.0 if a == c else 0.0)
    if not _cholesky(B, C, q):
        return -1.0
    for a in range(q):
        acc = -z[a]
        for k in range(a, q):
            acc += L[k, a] * zr[k]
        u[a] = acc  # g
    _solve(C, u, step, q)
    big = 0.0
    for a in range(q):
        big = max(big, abs(step[a]))
    return big


@numba.njit(**_INLINE)
def _sums(d, s, e, lo, ll, Wa, R, q, zr, G):
    """sum ll over units s .. e (ll indexed from lo), zr = sum r_i Z_i and G = sum W_i Z_i Z_i' (both triangles)."""
    o_Z = int(d[13])
    F = 0.0
    for i in range(s, e):
        F += ll[i - lo]
    if q == 2:
        r0, r1, g00, g01, g11 = 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(s, e):
            z0, z1 = d[o_Z + 2 * i], d[o_Z + 2 * i + 1]
            r, W = R[i], Wa[i]
            r0 += r * z0
            r1 += r * z1
            g00 += W * z0 * z0
            g01 += W * z0 * z1
            g11 += W * z1 * z1
        zr[0], zr[1] = r0, r1
        G[0, 0], G[1, 0], G[0, 1], G[1, 1] = g00, g01, g01, g11
        return F
    for a in range(q):
        zr[a] = 0.0
        for c in range(q):
            G[a, c] = 0.0
    for i in range(s, e):
        zo = o_Z + i * q
        r, W = R[i], Wa[i]
        for a in range(q):
            za = d[zo + a]
            zr[a] += r * za
            for c in range(a + 1):
                G[a, c] += W * za * d[zo + c]
    for a in range(q):
        for c in range(a):
            G[c, a] = G[a, c]
    return F


@numba.njit(**_INLINE)
def _predictor(d, s, e, lo, b, u, eta0, eta):
    """eta0[i - lo] = o_i + X_i b and eta[i - lo] = eta0[i - lo] + Z_i' u over units s .. e."""
    p, q, N = int(d[2]), int(d[3]), int(d[5])
    o_units, o_X, o_Z = int(d[11]), int(d[12]), int(d[13])
    for i in range(s, e):
        acc = d[o_units + 3 * N + i]
        for t in range(p):
            acc += d[o_X + i * p + t] * b[t]
        eta0[i - lo] = acc
    _shift(d, s, e, lo, u, eta0, eta)


@numba.njit(**_INLINE)
def _shift(d, s, e, lo, u, eta0, eta):
    """eta[i - lo] = eta0[i - lo] + Z_i' u over units s .. e."""
    q, o_Z = int(d[3]), int(d[13])
    if q == 2:
        u0, u1 = u[0], u[1]
        for i in range(s, e):
            eta[i - lo] = eta0[i - lo] + d[o_Z + 2 * i] * u0 + d[o_Z + 2 * i + 1] * u1
        return
    if q == 1:
        u0 = u[0]
        for i in range(s, e):
            eta[i - lo] = eta0[i - lo] + d[o_Z + i] * u0
        return
    for i in range(s, e):
        acc = eta0[i - lo]
        for a in range(q):
            acc += d[o_Z + i * q + a] * u[a]
        eta[i - lo] = acc


@numba.njit(**_OPTIONS)
def _group_mode(d, j, b, L, eta0, eta, ll, z, zprev, zr, G, B, C, step, u, R, Wa, Wda, shortcut):
    """Newton's method for group j's mode z (from z's value on entry); returns (F at z, Newton steps, converged).

    On return zr, G, B and C (B's Cholesky factor) are at z, and (R, Wa, Wda)[i] hold (r_i, W_i, W'_i) there. Where
    the first Newton step from the start is below ``shortcut`` (0: never), it stops there with steps = -1: z is the
    start, ``step`` the Newton step to the mode (z* = z + step to O(step^2)) and ``u`` the gradient g at z. eta0, eta
    and ll are scratch of at least the group's size."""
    q, max_steps, o_starts = int(d[3]), int(d[19]), int(d[14])
    di = d.view(np.int64)
    s, e = di[o_starts + j], di[o_starts + j + 1]
    F_prev = -np.inf
    steps = 0
    halvings = 0
    first = True
    while True:
        for a in range(q):
            acc = 0.0
            for c in range(a + 1):
                acc += L[a, c] * z[c]
            u[a] = acc
        if first:
            _predictor(d, s, e, s, b, u, eta0, eta)
            first = False
        else:
            _shift(d, s, e, s, u, eta0, eta)
        _units(d, s, e - s, eta, ll, R, Wa, Wda)
        F = _sums(d, s, e, s, ll, Wa, R, q, zr, G)
        for a in range(q):
            F -= 0.5 * z[a] * z[a]
        if not math.isfinite(F):
            return F, steps, False
        if F < F_prev - 1e-12 * (1.0 + abs(F_prev)) and halvings < 60:  # overshot: halve the step back
            halvings += 1
            for a in range(q):
                z[a] = 0.5 * (z[a] + zprev[a])
            continue
        big = _newton_step(L, z, zr, G, B, C, u, step, q)
        if big < 0.0:
            return F, steps, False
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
    nmax = 1
    for j in range(J):
        nmax = max(nmax, di[o_starts + j + 1] - di[o_starts + j])
    size = max(nmax, min(N, _CHUNK))
    # the scratch: one allocation, handed out as views without reference counts (see _borrowed)
    owner = np.empty(2 * p + 3 * size + 3 * nmax + 3 * N + J * q + 12 * q + q * p + 8 * q * q)
    work = _borrowed(owner)
    b, at = _take(work, 0, p)
    gb, at = _take(work, at, p)
    eta0, at = _take(work, at, size)  # the chunk's
    eta, at = _take(work, at, size)
    ll, at = _take(work, at, size)
    geta0, at = _take(work, at, nmax)  # one group's, for _group_mode
    geta, at = _take(work, at, nmax)
    gll, at = _take(work, at, nmax)
    R, at = _take(work, at, N)
    Wa, at = _take(work, at, N)
    Wda, at = _take(work, at, N)
    zs_, at = _take(work, at, J * q)
    zs = zs_.reshape((J, q))
    z, at = _take(work, at, q)
    zprev, at = _take(work, at, q)
    zr, at = _take(work, at, q)
    step, at = _take(work, at, q)
    u, at = _take(work, at, q)
    hz, at = _take(work, at, q)
    a_, at = _take(work, at, q)
    la, at = _take(work, at, q)
    v, at = _take(work, at, q)
    Gla, at = _take(work, at, q)
    col, at = _take(work, at, q)
    tmp, at = _take(work, at, q)
    WZX_, at = _take(work, at, q * p)
    WZX = WZX_.reshape((q, p))
    mats = work[at:at + 8 * q * q].reshape((8, q, q))
    L, G, B, C, M, GLBi, Binv, dL = mats[0], mats[1], mats[2], mats[3], mats[4], mats[5], mats[6], mats[7]
    for t in range(p):
        gb[t] = 0.0
    for a in range(q):
        for c in range(q):
            dL[a, c] = 0.0
    for t in range(p):
        b[t] = x[t]
        o = o_fixed + 4 * t
        v_, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], x[t])
        lp += v_
        grad[t] += dv
    _cholesky_factor(x, d, L)
    predicted = np.empty(J, np.bool_)
    # whole groups in chunks of about _CHUNK units: each group's start and eta (gathers), the units' log likelihood
    # and derivatives (one vectorised pass), then per group its sums, the Newton step from the start and, where it is
    # below _SHORTCUT, no second pass; where not (or with no predicted start), Newton's method in _group_mode
    g1 = 0
    while g1 < J:
        g0 = g1
        lo = di[o_starts + g0]
        while g1 < J and (g1 == g0 or di[o_starts + g1 + 1] - lo <= size):
            g1 += 1
        hi = di[o_starts + g1]
        for j in range(g0, g1):
            predicted[j] = _start(x, d, j, L, z)
            for a in range(q):
                zs[j, a] = z[a]
                acc = 0.0
                for c in range(a + 1):
                    acc += L[a, c] * z[c]
                u[a] = acc
            _predictor(d, di[o_starts + j], di[o_starts + j + 1], lo, b, u, eta0, eta)
        _units(d, lo, hi - lo, eta, ll, R, Wa, Wda)
        for j in range(g0, g1):
            s, e = di[o_starts + j], di[o_starts + j + 1]
            for a in range(q):
                z[a] = zs[j, a]
            ok = False
            steps = 0
            F = 0.0
            if predicted[j]:
                F = _sums(d, s, e, lo, ll, Wa, R, q, zr, G)
                for a in range(q):
                    F -= 0.5 * z[a] * z[a]
                if math.isfinite(F):
                    big = _newton_step(L, z, zr, G, B, C, u, step, q)
                    if big >= 0.0 and big < _SHORTCUT:
                        ok, steps = True, -1
                    elif big >= 0.0:
                        F, steps, ok = _group_mode(d, j, b, L, geta0, geta, gll, z, zprev, zr, G, B, C, step, u, R, Wa,
                                                     Wda, _SHORTCUT)
            if not ok:
                for a in range(q):
                    z[a] = 0.0
                F, steps, ok = _group_mode(d, j, b, L, geta0, geta, gll, z, zprev, zr, G, B, C, step, u, R, Wa, Wda, 0.0)
            if not ok:
                owner[0] = 0.0  # alive to here
                return -np.inf
            short = steps == -1
            if short:  # F at z* = z + step, to O(step^3): F(z) + g'step / 2 (B step = g)
                for a in range(q):
                    F += 0.5 * u[a] * step[a]
            logdet = 0.0
            for a in range(q):
                logdet += 2.0 * math.log(C[a, a])
            lp += F - 0.5 * logdet
            if q == 2:  # B^-1 = C^-T C^-1, M = L B^-1 L', G L B^-1 in closed form
                i00, i11 = 1.0 / C[0, 0], 1.0 / C[1, 1]
                i10 = -C[1, 0] * i00 * i11
                v00, v01, v11 = i00 * i00 + i10 * i10, i10 * i11, i11 * i11
                l00, l10, l11 = L[0, 0], L[1, 0], L[1, 1]
                t00, t01 = l00 * v00, l00 * v01  # L B^-1
                t10, t11 = l10 * v00 + l11 * v01, l10 * v01 + l11 * v11
                M[0, 0] = t00 * l00
                M[0, 1] = t00 * l10 + t01 * l11
                M[1, 0] = M[0, 1]
                M[1, 1] = t10 * l10 + t11 * l11
                g00, g01, g11 = G[0, 0], G[0, 1], G[1, 1]
                GLBi[0, 0] = g00 * t00 + g01 * t10
                GLBi[0, 1] = g00 * t01 + g01 * t11
                GLBi[1, 0] = g01 * t00 + g11 * t10
                GLBi[1, 1] = g01 * t01 + g11 * t11
                for a in range(q):
                    hz[a] = 0.0
                    for t in range(p):
                        WZX[a, t] = 0.0
            else:
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
            if q == 2:  # lev_i = Z_i' M Z_i
                m00, m01, m11 = M[0, 0], M[0, 1] + M[1, 0], M[1, 1]
                h0, h1 = 0.0, 0.0
                for i in range(s, e):
                    z0, z1 = d[o_Z + 2 * i], d[o_Z + 2 * i + 1]
                    h = Wda[i] * (m00 * z0 * z0 + m01 * z0 * z1 + m11 * z1 * z1)
                    cr, W = R[i] - 0.5 * h, Wa[i]
                    h0 += h * z0
                    h1 += h * z1
                    xo = o_X + i * p
                    for t in range(p):
                        xt = d[xo + t]
                        gb[t] += cr * xt
                        WZX[0, t] += W * z0 * xt
                        WZX[1, t] += W * z1 * xt
                hz[0], hz[1] = h0, h1
            for i in range(s, e if q != 2 else s):
                zo, xo = o_Z + i * q, o_X + i * p
                r, W, Wd = R[i], Wa[i], Wda[i]
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
    owner[0] = 0.0  # alive to here: the views above are into it
    return lp


@numba.njit(**_OPTIONS)
def group_modes(x, d, modes, chol):
    """Each group's mode u*_j = L z*_j (J x q) and the Cholesky factor of its conditional covariance in u.

    ``chol[j]`` (q x q) is S_j = L C_j^-T, with C_j C_j' = B_j, so S_j S_j' = L B_j^-1 L' = H_j^-1. Returns the
    number of groups whose Newton iterations did not converge. The groups are taken as :func:`laplace_logp_grad`
    takes them: chunks of whole groups, the units' log likelihood and derivatives in one vectorised pass, and where
    the first Newton step from the predicted start is below ``_SHORTCUT`` the mode is start + step (B_j at the start),
    otherwise Newton's method one group at a time.

    Examples
    --------
    >>> d = pack_buffer(BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], np.ones((2, 1)), [0, 1], 2,
    ...                 [[0, 0, 2.5, 0]], [[2, 1, 0, 0]], False, 1.0, 0.0, 0)
    >>> modes, chol = np.empty((2, 1)), np.empty((2, 1, 1))
    >>> group_modes(np.zeros(2), d, modes, chol), bool(modes[0, 0] > 0.0 > modes[1, 0])
    (0, True)
    """
    owner = np.empty(_modes_scratch(d))
    return _modes(x, d, modes, chol, owner)


@numba.njit(**_OPTIONS)
def _sizes(d):
    """The largest group's units and the chunk's size."""
    J, N, o_starts = int(d[4]), int(d[5]), int(d[14])
    di = d.view(np.int64)
    nmax = 1
    for j in range(J):
        nmax = max(nmax, di[o_starts + j + 1] - di[o_starts + j])
    return nmax, max(nmax, min(N, _CHUNK))


@numba.njit(**_OPTIONS)
def _modes_scratch(d):
    """The length of :func:`_modes`' scratch."""
    p, q, J, N = int(d[2]), int(d[3]), int(d[4]), int(d[5])
    nmax, size = _sizes(d)
    return p + 3 * size + 3 * nmax + 3 * N + J * q + 5 * q + 5 * q * q


@numba.njit(**_OPTIONS)
def _modes(x, d, modes, chol, owner):
    """:func:`group_modes` with its scratch (``owner``, :func:`_modes_scratch` long) given: one allocation for many
    draws."""
    p, q, J, N, o_starts = int(d[2]), int(d[3]), int(d[4]), int(d[5]), int(d[14])
    di = d.view(np.int64)
    nmax, size = _sizes(d)
    work = _borrowed(owner)
    b, at = _take(work, 0, p)
    eta0, at = _take(work, at, size)  # the chunk's
    eta, at = _take(work, at, size)
    ll, at = _take(work, at, size)
    geta0, at = _take(work, at, nmax)  # one group's, for _group_mode
    geta, at = _take(work, at, nmax)
    gll, at = _take(work, at, nmax)
    R, at = _take(work, at, N)
    Wa, at = _take(work, at, N)
    Wda, at = _take(work, at, N)
    zs_, at = _take(work, at, J * q)
    zs = zs_.reshape((J, q))
    z, at = _take(work, at, q)
    zprev, at = _take(work, at, q)
    zr, at = _take(work, at, q)
    step, at = _take(work, at, q)
    u, at = _take(work, at, q)
    mats = work[at:at + 5 * q * q].reshape((5, q, q))
    L, G, B, C, Cinvt = mats[0], mats[1], mats[2], mats[3], mats[4]
    for t in range(p):
        b[t] = x[t]
    _cholesky_factor(x, d, L)
    predicted = d[int(d[20])] != 0.0
    failed = 0
    g1 = 0
    while g1 < J:
        g0 = g1
        lo = di[o_starts + g0]
        while g1 < J and (g1 == g0 or di[o_starts + g1 + 1] - lo <= size):
            g1 += 1
        hi = di[o_starts + g1]
        if predicted:
            for j in range(g0, g1):
                _start(x, d, j, L, z)
                for a in range(q):
                    zs[j, a] = z[a]
                    acc = 0.0
                    for c in range(a + 1):
                        acc += L[a, c] * z[c]
                    u[a] = acc
                _predictor(d, di[o_starts + j], di[o_starts + j + 1], lo, b, u, eta0, eta)
            _units(d, lo, hi - lo, eta, ll, R, Wa, Wda)
        for j in range(g0, g1):
            ok = False
            steps = 0
            if predicted:
                for a in range(q):
                    z[a] = zs[j, a]
                F = _sums(d, di[o_starts + j], di[o_starts + j + 1], lo, ll, Wa, R, q, zr, G)
                if math.isfinite(F):
                    big = _newton_step(L, z, zr, G, B, C, u, step, q)
                    if big >= 0.0 and big < _SHORTCUT:
                        ok, steps = True, -1
                    elif big >= 0.0:
                        _, steps, ok = _group_mode(d, j, b, L, geta0, geta, gll, z, zprev, zr, G, B, C, step, u, R,
                                                   Wa, Wda, 0.0)
            if not ok:
                for a in range(q):
                    z[a] = 0.0
                _, steps, ok = _group_mode(d, j, b, L, geta0, geta, gll, z, zprev, zr, G, B, C, step, u, R, Wa, Wda,
                                           0.0)
            failed += 0 if ok else 1
            if ok:  # the last Newton step too (below _TOL or _SHORTCUT): z* to O(step^2)
                for a in range(q):
                    z[a] += step[a]
            for a in range(q):
                acc = 0.0
                for c in range(a + 1):
                    acc += L[a, c] * z[c]
                modes[j, a] = acc
            if q == 2:  # S_j = L C^-T in closed form
                i00, i11 = 1.0 / C[0, 0], 1.0 / C[1, 1]
                i01 = -C[1, 0] * i00 * i11
                chol[j, 0, 0] = L[0, 0] * i00
                chol[j, 0, 1] = L[0, 0] * i01
                chol[j, 1, 0] = L[1, 0] * i00
                chol[j, 1, 1] = L[1, 0] * i01 + L[1, 1] * i11
                continue
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
    owner[0] = 0.0  # alive to here: the views above are into it
    return failed


@numba.njit(**_OPTIONS)
def conditional_draws(xs, d, normals, out):
    """u draws (S x J x q): at each unconstrained draw xs[s], u_j = u*_j + S_j e_j with e = normals[s] ~ N(0, I).

    One thread (it releases the GIL: the fit runs blocks of draws on several). Returns the number of (draw, group)
    pairs whose Newton iterations did not converge.

    Examples
    --------
    >>> d = pack_buffer(BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], np.ones((2, 1)), [0, 1], 2,
    ...                 [[0, 0, 2.5, 0]], [[2, 1, 0, 0]], False, 1.0, 0.0, 0)
    >>> out = np.empty((1, 2, 1))
    >>> conditional_draws(np.zeros((1, 2)), d, np.zeros((1, 2, 1)), out), bool(out[0, 0, 0] > 0.0 > out[0, 1, 0])
    (0, True)
    """
    S = xs.shape[0]
    q, J = int(d[3]), int(d[4])
    owner = np.empty(_modes_scratch(d))
    modes = np.empty((J, q))
    chol = np.empty((J, q, q))
    failed = 0
    for s in range(S):
        failed += _modes(xs[s], d, modes, chol, owner)
        for j in range(J):
            for a in range(q):
                acc = modes[j, a]
                for c in range(q):
                    acc += chol[j, a, c] * normals[s, j, c]
                out[s, j, a] = acc
    return failed


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

"""Stage 4, sample (crossed route): the log density and its gradient as one Numba kernel, and nutpie's C callbacks.

The unconstrained vector x is

    b_centred (p) | per sampled block its effects (z or v, J_k each) | log SD per block (all K) | log sigma

where each sampled block is non-centred (u = tau z, z ~ N(0, 1)) or centred
(v ~ N(mu, tau^2), u = v - mu, mu the centred intercept b_centred[0] or a slope's
fixed effect where the block is centred on it, else 0; or, for a block nested
in another centred block of the same term, mu_j the v of level j's parent:
lecturers centred on their department, so the two carry no ridge). A parent
block can instead be integrated out (kind :data:`MARGINAL`): its effects enter
the likelihood only through its children's v (Z_parent = Z_child P), so the
children's prior becomes, per parent level l with n_l children and e = v - mu,

    e_l ~ N(0, tau^2 I + tau_p^2 1 1'),

a rank-one covariance like the collapsed factor's (the funnel of a small
factor's SD near zero against its few effects goes with them; they are drawn
afterwards from their exact conditional). With theta = (b, u) and
the collapsed factor's statistics (:mod:`bayesmlm.fastpath.crossed_stats`),
a_j = sigma^2 + n_j tau_c^2 and s = Z_c'y* - B theta:

    loglik = -1/2 [N log 2 pi + (N - J_c) log sigma^2 + sum_j log a_j
                   + r'r / sigma^2 - tau_c^2 sum_j s_j^2 / (sigma^2 a_j)]
    d loglik / d theta = (W'y* - W'W theta - B' (w * s)) / sigma^2,   w_j = tau_c^2 / a_j

and the derivatives in tau_c^2 and sigma^2 are sums over j (written below).
Priors are those of :mod:`bayesmlm.design.priors` (SDs and sigma on the log
scale, with the log Jacobian), as in the full model. Everything the kernel
reads is one float64 buffer (:func:`pack_buffer`); the sparse index arrays are
stored as int64 bit patterns in it. Compiled once per machine (Numba's disk cache).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from .prior_density import PRIOR_CODES
from .prior_density import prior_logp as _prior

__all__ = ["PRIOR_CODES", "NON_CENTRED", "CENTRED", "COLLAPSED", "MARGINAL", "HEAD", "REC", "pack_buffer", "logp_grad", "expand",
           "logp_cfunc", "expand_cfunc"]

COLLAPSED, NON_CENTRED, CENTRED, MARGINAL = 0, 1, 2, 3
REC = 11  # per block: kind, x start, size, mu_at, map_at, parent's x start, prior (4), parent block
HEAD = 12  # d[0] = buffer length, then n_dim, p, M, J_c, nnz(W'W), B's ones, K, n_obs, n_expanded, U (distinct n_j), B's others
# Reassociation and contraction, but not "no NaN / no infinity": a NaN must still reach the sampler.
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}
_LOG_2PI = math.log(2.0 * math.pi)


def pack_buffer(stats, kinds, mu_index, prior_rows, fixed_rows, sigma_row, parents=None) -> np.ndarray:
    """The one buffer the kernel reads.

    Parameters
    ----------
    stats : CrossedStats
    kinds : sequence of int
        Per block (sampled blocks in ``stats.sampled_blocks`` order, then any
        integrated-out parent blocks, then the collapsed block last):
        :data:`NON_CENTRED`, :data:`CENTRED`, :data:`MARGINAL` or :data:`COLLAPSED`.
    mu_index : sequence of int
        Per block, the fixed coefficient a centred block is centred on (-1: zero);
        for a block whose parent is :data:`MARGINAL`, the parent's.
    prior_rows, fixed_rows : arrays (K, 4), (p, 4)
        SD priors per block and fixed-effect priors: (code, param, param, param).
    sigma_row : array (4,)
    parents : sequence of (int, ndarray) or None, optional
        Per block, for a centred block nested in another centred or
        :data:`MARGINAL` block: the index of that block and each level's parent
        level (its v is then centred on the parent's v, or its prior is the
        parent's marginal); None (or -1) for none. A :data:`MARGINAL` block's
        size is the number of parent levels its child's map names.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.crossed_stats import crossed_stats
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> d = pack_buffer(crossed_stats(m.design), [CENTRED, COLLAPSED], [0, -1], [[2, 1, 0, 0]] * 2, [[0, 23, 5, 0]],
    ...                 [4, 1, 0, 0])
    >>> int(d[1]), int(d[3])  # n_dim (1 + 6 + 2 + 1), M (1 + 6)
    (10, 7)
    """
    p, K = len(stats.fixed_terms), len(kinds)
    parents = parents or [None] * K
    sampled = iter(stats.block_sizes)
    sizes = [len(stats.zcy) if kind == COLLAPSED else 0 if kind == MARGINAL else next(sampled) for kind in kinds]
    for parent in parents:
        if parent is not None and parent[0] >= 0 and kinds[parent[0]] == MARGINAL:
            sizes[parent[0]] = int(np.max(parent[1])) + 1
    M, Jc = stats.n_theta, len(stats.zcy)
    n_dim = p + sum(stats.block_sizes) + K + 1
    n_expanded = p + K + 1 + sum(stats.block_sizes)
    in_x = [kind in (CENTRED, NON_CENTRED) for kind in kinds]
    starts = np.cumsum([p] + [sizes[k] if in_x[k] else 0 for k in range(K)])[:-1]
    # the collapsed levels' a_j = sigma^2 + n_j tau_c^2 take few distinct values (n_j rows per level): their logs
    # and inverses are computed once per distinct n_j, not once per level
    n_values, n_index = np.unique(stats.zcz, return_inverse=True)
    # B = Z_c'W holds mostly ones (one rating of a lecturer by a student): those entries are kept as column
    # indices only, which halves what each gradient reads; the rest keep their values
    is_one = stats.b.data == 1.0
    ones, rest = stats.b.copy(), stats.b.copy()
    ones.data = is_one.astype(np.float64)
    rest.data = np.where(is_one, 0.0, stats.b.data)
    ones.eliminate_zeros()
    rest.eliminate_zeros()

    def bits(a):  # indices kept as int64 bit patterns, read back through d.view(np.int64)
        return np.asarray(a, dtype=np.int64).view(np.float64)

    parts = [np.ravel(fixed_rows), sigma_row, stats.x_centre, [stats.y_shift, stats.yty], stats.wty,
             bits(stats.wtw.indptr), bits(stats.wtw.indices), stats.wtw.data, bits(ones.indptr), bits(ones.indices),
             bits(rest.indptr), bits(rest.indices), rest.data, stats.zcy, stats.zcz, n_values, bits(n_index)]
    end = HEAD + REC * K + sum(np.size(a) for a in parts)
    blocks, maps = [], []
    for k in range(K):
        map_at, parent_start, parent_block = -1, -1, -1
        if parents[k] is not None and parents[k][0] >= 0:
            parent_block = int(parents[k][0])
            map_at = end
            parent_start = int(starts[parent_block]) if in_x[parent_block] else -1
            maps.append(parents[k][1])
            end += len(parents[k][1])
        blocks += [kinds[k], starts[k] if in_x[k] else -1, sizes[k], mu_index[k], map_at, parent_start,
                   *prior_rows[k], parent_block]
    head = [0.0, n_dim, p, M, Jc, stats.wtw.nnz, ones.nnz, K, stats.n_obs, n_expanded, len(n_values), rest.nnz]
    d = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in [head, blocks, *parts, *maps]])
    d[0] = len(d)
    return d


@numba.njit(**_OPTIONS)
def _layout(d):
    """Offsets of each part of the buffer."""
    p, M, Jc, nw, nb, K = int(d[2]), int(d[3]), int(d[4]), int(d[5]), int(d[6]), int(d[7])
    o_blocks = HEAD
    o_fixed = o_blocks + REC * K
    o_sigma = o_fixed + 4 * p
    o_xc = o_sigma + 4
    o_ys = o_xc + p
    o_wty = o_ys + 2
    o_wp = o_wty + M
    o_wi = o_wp + M + 1
    o_wd = o_wi + nw
    nr = int(d[11])
    o_bp = o_wd + nw
    o_bi = o_bp + Jc + 1
    o_rp = o_bi + nb
    o_ri = o_rp + Jc + 1
    o_rd = o_ri + nr
    o_zcy = o_rd + nr
    o_zcz = o_zcy + Jc
    o_nu = o_zcz + Jc
    o_ni = o_nu + int(d[10])
    return (o_blocks, o_fixed, o_sigma, o_xc, o_ys, o_wty, o_wp, o_wi, o_wd, o_bp, o_bi, o_rp, o_ri, o_rd, o_zcy, o_nu,
            o_ni)


@numba.njit(**_OPTIONS)
def _theta(x, d, theta):
    """theta = (b, u) from x; returns nothing, fills theta (M,)."""
    p, K = int(d[2]), int(d[7])
    o_blocks = HEAD
    n_eff = int(d[3]) - p
    for i in range(p):
        theta[i] = x[i]
    o_sd = p + n_eff
    for k in range(K):
        r = o_blocks + REC * k
        kind, start, size, mu_at, map_at, parent = int(d[r]), int(d[r + 1]), int(d[r + 2]), int(d[r + 3]), \
            int(d[r + 4]), int(d[r + 5])
        if kind == 1:
            tau = math.exp(x[o_sd + k])
            for j in range(size):
                theta[start + j] = tau * x[start + j]
        elif kind == 2 and map_at >= 0 and parent >= 0:
            for j in range(size):
                theta[start + j] = x[start + j] - x[parent + int(d[map_at + j])]
        elif kind == 2:  # centred on mu (also a child of a MARGINAL block: u + u_parent = v - mu)
            mu = x[mu_at] if mu_at >= 0 else 0.0
            for j in range(size):
                theta[start + j] = x[start + j] - mu


@numba.njit(**_OPTIONS)
def _marginal_prior(x, d, grad, gtheta, r, start, size, mu_at, map_at, at_sd, lt):
    """The likelihood's and the prior's terms of a centred block whose parent block is integrated out.

    e = v - mu; per parent level l, e_l ~ N(0, t2 I + p2 11'), a_l = t2 + n_l p2:
    log density -1/2 [size log 2 pi + (size - L) log t2 + sum_l log a_l + e'e / t2 - p2 sum_l S_l^2 / (t2 a_l)].
    Adds the gradients (of v, mu, log tau and the parent's log tau) to grad; returns the log density.
    """
    pb = int(d[r + 10])
    at_psd = int(d[3]) + pb
    L = int(d[HEAD + REC * pb + 2])
    t2 = math.exp(2.0 * lt)
    p2 = math.exp(2.0 * x[at_psd])
    mu = x[mu_at] if mu_at >= 0 else 0.0
    S = np.zeros(L)
    n = np.zeros(L)
    q = 0.0
    for j in range(size):
        e = x[start + j] - mu
        l = int(d[map_at + j])
        S[l] += e
        n[l] += 1.0
        q += e * e
    logdet, quad, dt2, dp2 = 0.0, 0.0, 0.0, 0.0
    for l in range(L):
        a = t2 + n[l] * p2
        ss = S[l] * S[l]
        logdet += math.log(a)
        quad += ss / a
        dp2 += -n[l] / a + ss / (a * a)
        dt2 += 1.0 / a + p2 * ss * (a + t2) / (a * a * t2 * t2)
        S[l] = p2 * S[l] / a  # now w_l S_l
    gsum = 0.0
    for j in range(size):
        e = x[start + j] - mu
        g = gtheta[start + j] - (e - S[int(d[map_at + j])]) / t2
        grad[start + j] += g
        gsum += g
    if mu_at >= 0:
        grad[mu_at] -= gsum
    grad[at_sd] += -0.5 * ((size - L) / t2 + dt2 - q / (t2 * t2)) * 2.0 * t2
    grad[at_psd] += 0.5 * dp2 * 2.0 * p2
    return -0.5 * (size * _LOG_2PI + (size - L) * math.log(t2) + logdet + q / t2 - p2 * quad / t2)


@numba.njit(**_OPTIONS)
def logp_grad(x, d, grad):
    """The log density at x (see the module's docstring); its gradient is written into grad."""
    p, M, Jc, K, n_obs = int(d[2]), int(d[3]), int(d[4]), int(d[7]), d[8]
    (o_blocks, o_fixed, o_sigma, o_xc, o_ys, o_wty, o_wp, o_wi, o_wd, o_bp, o_bi, o_rp, o_ri, o_rd, o_zcy, o_nu,
     o_ni) = _layout(d)
    n_eff = M - p
    o_sd = p + n_eff
    n_dim = o_sd + K + 1
    for i in range(n_dim):
        grad[i] = 0.0
    theta = np.empty(M)
    _theta(x, d, theta)
    theta[0] -= d[o_ys] if p > 0 and d[o_xc] == 0.0 else 0.0  # y was shifted by y_shift: theta's intercept too
    lp = 0.0
    # fixed-effect priors
    for i in range(p):
        r = o_fixed + 4 * i
        v, dv = _prior(int(d[r]), d[r + 1], d[r + 2], d[r + 3], x[i])
        lp += v
        grad[i] += dv
    # sigma
    ls = x[n_dim - 1]
    sg = math.exp(ls)
    s2 = sg * sg
    v, dv = _prior(int(d[o_sigma]), d[o_sigma + 1], d[o_sigma + 2], d[o_sigma + 3], sg)
    lp += v + ls
    grad[n_dim - 1] += dv * sg + 1.0
    # the likelihood in theta: r'r and W'W theta
    wtwt = np.empty(M)
    rr = d[o_ys + 1]
    di = d.view(np.int64)
    for a in range(M):
        acc = 0.0
        for k in range(di[o_wp + a], di[o_wp + a + 1]):
            acc += d[o_wd + k] * theta[di[o_wi + k]]
        wtwt[a] = acc
        rr += theta[a] * (acc - 2.0 * d[o_wty + a])
    gtheta = np.empty(M)
    for a in range(M):
        gtheta[a] = d[o_wty + a] - wtwt[a]
    # the collapsed factor: its block is the one of kind 0
    tc = 1.0
    kc = 0
    for k in range(K):
        if int(d[o_blocks + REC * k]) == 0:
            kc = k
            tc = math.exp(x[o_sd + k])
    t2 = tc * tc
    # per distinct n_j: 1 / a, 1 / a^2, (a + s2) / a^2 and log a, looked up per level
    U = int(d[10])
    inv_a = np.empty(U)
    inv_a2 = np.empty(U)
    c_s2 = np.empty(U)
    log_a = np.empty(U)
    for u in range(U):
        a = s2 + d[o_nu + u] * t2
        inv_a[u] = 1.0 / a
        inv_a2[u] = inv_a[u] * inv_a[u]
        c_s2[u] = (a + s2) * inv_a2[u]
        log_a[u] = math.log(a)
    logdet = 0.0
    quad = 0.0
    dt2 = 0.0
    ds2_a = 0.0
    ds2_b = 0.0
    for j in range(Jc):
        s = d[o_zcy + j]
        k0, k1 = di[o_bp + j], di[o_bp + j + 1]
        r0, r1 = di[o_rp + j], di[o_rp + j + 1]
        for k in range(k0, k1):
            s -= theta[di[o_bi + k]]
        for k in range(r0, r1):
            s -= d[o_rd + k] * theta[di[o_ri + k]]
        u = di[o_ni + j]
        ia = inv_a[u]
        ss = s * s
        logdet += log_a[u]
        quad += ss * ia
        dt2 += ss * inv_a2[u] - d[o_nu + u] * ia
        ds2_a += ia
        ds2_b += ss * c_s2[u]
        ws = t2 * s * ia
        for k in range(k0, k1):
            gtheta[di[o_bi + k]] -= ws
        for k in range(r0, r1):
            gtheta[di[o_ri + k]] -= d[o_rd + k] * ws
    ds2 = ds2_a + t2 * ds2_b / (s2 * s2)
    lp += -0.5 * (n_obs * _LOG_2PI + (n_obs - Jc) * math.log(s2) + logdet + rr / s2 - t2 * quad / s2)
    grad[n_dim - 1] += -0.5 * ((n_obs - Jc) / s2 + ds2 - rr / (s2 * s2)) * 2.0 * s2
    grad[o_sd + kc] += 0.5 * dt2 * 2.0 * t2
    for a in range(M):
        gtheta[a] /= s2
    for i in range(p):
        grad[i] += gtheta[i]
    # the SDs' priors, and the sampled blocks' priors and reparameterisations
    for k in range(K):
        r = o_blocks + REC * k
        kind, start, size, mu_at, map_at, parent = int(d[r]), int(d[r + 1]), int(d[r + 2]), int(d[r + 3]), \
            int(d[r + 4]), int(d[r + 5])
        lt = x[o_sd + k]
        tau = math.exp(lt)
        v, dv = _prior(int(d[r + 6]), d[r + 7], d[r + 8], d[r + 9], tau)
        lp += v + lt
        grad[o_sd + k] += dv * tau + 1.0
        if kind == 1:  # u = tau z, z ~ N(0, 1)
            acc = 0.0
            for j in range(size):
                z = x[start + j]
                g = gtheta[start + j]
                lp += -0.5 * z * z
                grad[start + j] += tau * g - z
                acc += z * g
            lp -= 0.5 * size * _LOG_2PI
            grad[o_sd + k] += tau * acc
        elif kind == 2 and map_at >= 0 and parent < 0:  # e = v - mu ~ N(0, tau^2 I + tau_p^2 11') per parent level
            lp += _marginal_prior(x, d, grad, gtheta, r, start, size, mu_at, map_at, o_sd + k, lt)
        elif kind == 2 and map_at >= 0:  # v ~ N(v_parent, tau^2), u = v - v_parent
            sq = 0.0
            for j in range(size):
                at = parent + int(d[map_at + j])
                e = x[start + j] - x[at]
                g = gtheta[start + j] - e / (tau * tau)
                grad[start + j] += g
                grad[at] -= g
                sq += e * e
            lp += -0.5 * sq / (tau * tau) - size * lt - 0.5 * size * _LOG_2PI
            grad[o_sd + k] += sq / (tau * tau) - size
        elif kind == 2:  # v ~ N(mu, tau^2), u = v - mu
            mu = x[mu_at] if mu_at >= 0 else 0.0
            ti2 = 1.0 / (tau * tau)
            acc, sq, gsum = 0.0, 0.0, 0.0
            for j in range(size):
                e = x[start + j] - mu
                g = gtheta[start + j]
                grad[start + j] += g - e * ti2
                acc += e
                sq += e * e
                gsum += g
            lp += -0.5 * sq * ti2 - size * lt - 0.5 * size * _LOG_2PI
            grad[o_sd + k] += sq * ti2 - size
            if mu_at >= 0:
                grad[mu_at] += acc * ti2 - gsum
    return lp


@numba.njit(**_OPTIONS)
def expand(x, d, out):
    """fixef (p), the SD of each block (K), sigma, then u of each sampled block, from x."""
    p, M, K = int(d[2]), int(d[3]), int(d[7])
    o_xc = HEAD + REC * K + 4 * p + 4
    theta = np.empty(M)
    _theta(x, d, theta)
    gm0 = x[0]
    for i in range(1, p):
        gm0 -= x[i] * d[o_xc + i]
    for i in range(p):
        out[i] = x[i]
    if p > 0 and d[o_xc] == 0.0:
        out[0] = gm0
    o_sd = M
    for k in range(K):
        out[p + k] = math.exp(x[o_sd + k])
    out[p + K] = math.exp(x[o_sd + K])
    for a in range(p, M):
        out[K + 1 + a] = theta[a]
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
    value = logp_grad(x, d, grad)
    logp_[0] = value
    for i in range(dim):
        if not math.isfinite(grad[i]):
            return 3
    if not math.isfinite(value):
        return 4
    return 0


@numba.cfunc(types.int64(types.uint64, types.uint64, _PTR, _PTR, types.voidptr), **_OPTIONS)
def expand_cfunc(dim, n_expanded, x_, out_, data_):
    """nutpie's callback writing the stored values of a draw."""
    head = numba.carray(data_, (HEAD,), dtype=np.float64)
    if dim != int(head[1]) or n_expanded != int(head[9]):
        return -1
    d = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    return expand(numba.carray(x_, (dim,)), d, numba.carray(out_, (n_expanded,)))

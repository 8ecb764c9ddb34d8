"""Numba kernels of the nested route: the collapsed likelihood of a tree of grouping factors, and exact draws of u.

Levels 0 (top, e.g. school) .. D-1 (leaf, e.g. class); level l has q_l random
terms and T_l = L_l L_l'. Every group ("node") at every level has its own
effects; Z'Z over all effects is non-zero only between a node and itself or
one of its ancestors, so M = sigma^2 I + L' Z'Z L (L block diagonal) is a tree
of blocks. Eliminating the leaves first (a block Cholesky M = Lc Lc' in that
order) creates no fill outside the ancestor pattern: node i keeps its
Cholesky block C_i and F_ia = C_i^-1 M_ia for each ancestor a, and the
ancestors' blocks are updated by -F' F. With b = L'Z'r, h_i = C_i^-1 b_i
(after the updates from i's descendants):

    log det M = sum_i 2 log det C_i,   b'M^-1 b = sum_i |h_i|^2,

and the collapsed log-likelihood is that of the one-factor route with q
replaced by the total number of effects (DESIGN.md, "The fast path"):

    log p(y) = -1/2 [ N log 2 pi + (N - Q) log sigma^2 + log det M + (r'r - b'M^-1 b) / sigma^2 ].

The gradient needs G = M^-1 + v v' / sigma^2 (v = M^-1 b) only on the
ancestor pattern, which the selected inverse gives top-down (Takahashi):
W_ia = -C_i^-T sum_a' F_ia' W_a'a and W_ii = C_i^-T (C_i^-1 - sum_a F_ia W_ia').
Then, as in :mod:`bayesmlm.fastpath.op`, dT/dL = 2 S L G - 2 z v' / sigma^2
(restricted to the diagonal blocks of L, summed over each level's nodes),
dT/dz = -2 L v / sigma^2 and dT/dsigma^2 = tr G + |h|^2 / sigma^4, with
T = log det M - b'M^-1 b / sigma^2. The cost is O(nodes x D^2 x q^3): the
rows never enter.

A draw of every u at once is u = L x with Lc' x = h + sigma e (top-down),
x ~ N(M^-1 b, sigma^2 M^-1): the exact joint conditional of all levels.

The statistics travel as one float vector ``tail`` (so the nutpie C callback
reads one buffer), laid out by :func:`bayesmlm.fastpath.nested_stats.tree_layout`.

These loops take any structure and are the reference: the PyMC Op of
:mod:`bayesmlm.fastpath.nested_model` calls them. The sampler's density and
the draws of u run the same algebra generated for the structure at hand
(:mod:`bayesmlm.fastpath.tree_codegen`, :func:`bayesmlm.fastpath.kernels.tree_kernels`),
about ten times faster; ``tests/test_nested.py`` holds the two to each other.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["tree_terms", "tree_draws", "KERNEL_VERSION"]

KERNEL_VERSION = 2  # of this generic version; the sampler's density and the u draws run the generated one
# Reassociation and contraction, but not "no NaN / no infinity": a NaN must still reach the sampler.
_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}


@numba.njit(**_OPTIONS)
def _views(tail, depth, qmax, p):
    n = int(tail[0])
    k = 2
    level = tail[k:k + n]
    k += n
    anc = tail[k:k + n * depth].reshape((n, depth))
    k += n * depth
    zz = tail[k:k + n * depth * qmax * qmax].reshape((n, depth, qmax, qmax))
    k += n * depth * qmax * qmax
    zy = tail[k:k + n * qmax].reshape((n, qmax))
    k += n * qmax
    xz = tail[k:k + n * p * qmax].reshape((n, p, qmax))
    return n, level, anc, zz, zy, xz


@numba.njit(**_OPTIONS)
def _eliminate(gt, L, s2, tail, qs, qoff):
    """Forward pass: z, and the leaf-first block Cholesky (K holds C_i, F holds F_ia, h holds h_i); logdet, quad."""
    depth, qmax, p = len(qs), max(qs), len(gt)
    n, level, anc, zz, zy, xz = _views(tail, depth, qmax, p)
    z = np.zeros((n, qmax))
    h = np.zeros((n, qmax))
    K = np.zeros((n, qmax, qmax))
    F = np.zeros((n, depth, qmax, qmax))
    tmp = np.empty((qmax, qmax))
    for i in range(n):
        lv = int(level[i])
        q, o = qs[lv], qoff[lv]
        for a in range(q):
            s = zy[i, a]
            for k in range(p):
                s -= gt[k] * xz[i, k, a]
            z[i, a] = s
        for a in range(q):
            s = 0.0
            for d in range(a, q):
                s += L[o + d, o + a] * z[i, d]
            h[i, a] = s
        for m in range(lv + 1):
            qm, om = qs[m], qoff[m]
            for a in range(q):  # tmp = S_im L_m
                for c in range(qm):
                    s = 0.0
                    for d in range(c, qm):
                        s += zz[i, m, a, d] * L[om + d, om + c]
                    tmp[a, c] = s
            for a in range(q):  # L_l' tmp
                for c in range(qm):
                    s = 0.0
                    for d in range(a, q):
                        s += L[o + d, o + a] * tmp[d, c]
                    if m == lv:
                        K[i, a, c] = s + (s2 if a == c else 0.0)
                    else:
                        F[i, m, a, c] = s
    logdet = 0.0
    quad = 0.0
    for i in range(n - 1, -1, -1):  # leaves first: nodes are ordered by level
        lv = int(level[i])
        q = qs[lv]
        for c in range(q):  # Cholesky of K_i in place (lower)
            s = K[i, c, c]
            for k in range(c):
                s -= K[i, c, k] * K[i, c, k]
            if s <= 0.0:
                return z, h, K, F, np.nan, np.nan
            K[i, c, c] = math.sqrt(s)
            for r in range(c + 1, q):
                s = K[i, r, c]
                for k in range(c):
                    s -= K[i, r, k] * K[i, c, k]
                K[i, r, c] = s / K[i, c, c]
            for r in range(c):
                K[i, r, c] = 0.0
            logdet += 2.0 * math.log(K[i, c, c])
        for a in range(q):  # h_i = C_i^-1 b_i
            s = h[i, a]
            for k in range(a):
                s -= K[i, a, k] * h[i, k]
            h[i, a] = s / K[i, a, a]
            quad += h[i, a] * h[i, a]
        for m in range(lv):  # F_im = C_i^-1 M_im
            for c in range(qs[m]):
                for a in range(q):
                    s = F[i, m, a, c]
                    for k in range(a):
                        s -= K[i, a, k] * F[i, m, k, c]
                    F[i, m, a, c] = s / K[i, a, a]
        for m in range(lv):  # update the ancestors: b_a -= F_m' h, M_a,a2 -= F_m' F_m2
            a_node = int(anc[i, m])
            for c in range(qs[m]):
                s = 0.0
                for k in range(q):
                    s += F[i, m, k, c] * h[i, k]
                h[a_node, c] -= s
            for m2 in range(m + 1):
                for c in range(qs[m]):
                    for e in range(qs[m2]):
                        s = 0.0
                        for k in range(q):
                            s += F[i, m, k, c] * F[i, m2, k, e]
                        if m2 == m:
                            K[a_node, c, e] -= s
                        else:
                            F[a_node, m2, c, e] -= s
    return z, h, K, F, logdet, quad


@numba.njit(inline="always", **_OPTIONS)
def _w_pair(W_diag, W_off, anc, i, m1, m2, a, b):
    """W between i's ancestors at levels m1 and m2, entry (a, b)."""
    if m1 == m2:
        return W_diag[int(anc[i, m1]), a, b]
    if m1 > m2:
        return W_off[int(anc[i, m1]), m2, a, b]
    return W_off[int(anc[i, m2]), m1, b, a]


@numba.njit(**_OPTIONS)
def tree_terms(gt, L, s2, tail, qs, qoff):
    """T = log det M - b'M^-1 b / sigma^2 and its gradient in gamma-tilde, L and sigma^2 (see the module docstring).

    Parameters
    ----------
    gt : ndarray (p,)
        Coefficients of the shifted columns of X.
    L : ndarray (Q, Q)
        Block-diagonal Cholesky factor of all levels' covariances, the levels' blocks at ``qoff``.
    s2 : float
    tail : ndarray
        :func:`tree_layout`'s vector.
    qs, qoff : ndarray of int (D,)
        Random terms per level and their offset in L.

    Returns
    -------
    T, dT/dgt (p,), dT/dL (Q, Q), dT/ds2, Q (the number of effects, from ``tail``)

    Examples
    --------
    >>> import numpy as np  # one top node with one leaf, one row y = 1: T = log 3 - 2/3
    >>> tail = np.array([2., 2., 0., 1., 0., 0., 0., 1., 1., 0., 1., 1., 1., 1., 0., 0.])
    >>> out = tree_terms(np.zeros(1), np.eye(2), 1.0, tail, np.array([1, 1]), np.array([0, 1]))
    >>> round(float(out[0]), 6)
    0.431946
    """
    depth, qmax, p = len(qs), max(qs), len(gt)
    n, level, anc, zz, zy, xz = _views(tail, depth, qmax, p)
    Q = L.shape[0]
    z, h, C, F, logdet, quad = _eliminate(gt, L, s2, tail, qs, qoff)
    dgt = np.zeros(p)
    dL = np.zeros((Q, Q))
    if not math.isfinite(logdet):
        return np.nan, dgt, dL, np.nan, tail[1]
    v = np.zeros((n, qmax))
    W_diag = np.zeros((n, qmax, qmax))
    W_off = np.zeros((n, depth, qmax, qmax))
    Ci = np.zeros((qmax, qmax))  # C_i^-1
    R = np.zeros((qmax, qmax))
    G = np.zeros((qmax, qmax))
    SL = np.zeros((qmax, qmax))
    SLt = np.zeros((qmax, qmax))
    ts2 = 0.0
    for i in range(n):  # top-down
        lv = int(level[i])
        q = qs[lv]
        for c in range(q):  # Ci = C_i^-1 (lower)
            for r in range(q):
                Ci[r, c] = 0.0
            Ci[c, c] = 1.0 / C[i, c, c]
            for r in range(c + 1, q):
                s = 0.0
                for k in range(c, r):
                    s -= C[i, r, k] * Ci[k, c]
                Ci[r, c] = s / C[i, r, r]
        for a in range(q):  # t = h_i - sum_m F_im v_anc  ->  v_i = C_i^-T t
            s = h[i, a]
            for m in range(lv):
                a_node = int(anc[i, m])
                for c in range(qs[m]):
                    s -= F[i, m, a, c] * v[a_node, c]
            R[0, a] = s
        for a in range(q - 1, -1, -1):
            s = R[0, a]
            for k in range(a + 1, q):
                s -= C[i, k, a] * v[i, k]
            v[i, a] = s / C[i, a, a]
        for m in range(lv):  # W_im = -C_i^-T sum_m2 F_im2 W_(m2, m)
            for c in range(qs[m]):
                for a in range(q):
                    s = 0.0
                    for m2 in range(lv):
                        for e in range(qs[m2]):
                            s += F[i, m2, a, e] * _w_pair(W_diag, W_off, anc, i, m2, m, e, c)
                    R[a, 0] = s
                for a in range(q):  # C_i^-T R[:, 0]
                    s = 0.0
                    for k in range(a, q):
                        s += Ci[k, a] * R[k, 0]
                    W_off[i, m, a, c] = -s
        for a in range(q):  # W_ii = C_i^-T (C_i^-1 - sum_m F_im W_im')
            for c in range(q):
                s = Ci[a, c]
                for m in range(lv):
                    for e in range(qs[m]):
                        s -= F[i, m, a, e] * W_off[i, m, c, e]
                R[a, c] = s
        for a in range(q):
            for c in range(q):
                s = 0.0
                for k in range(a, q):
                    s += Ci[k, a] * R[k, c]
                W_diag[i, a, c] = s
        # this node's share of the gradient (its W and v, and its ancestors', are known now)
        o = qoff[lv]
        for a in range(q):
            ts2 += W_diag[i, a, a] + v[i, a] * v[i, a] / s2
        for m in range(lv + 1):
            qm, om = qs[m], qoff[m]
            a_node = int(anc[i, m])
            for a in range(q):  # G = G_im (q x qm)
                for c in range(qm):
                    w = W_diag[i, a, c] if m == lv else W_off[i, m, a, c]
                    G[a, c] = w + v[i, a] * v[a_node, c] / s2
            for a in range(q):  # SL = S_im L_m (q x qm)
                for c in range(qm):
                    s = 0.0
                    for d in range(c, qm):
                        s += zz[i, m, a, d] * L[om + d, om + c]
                    SL[a, c] = s
            for a in range(q):  # dL_l += 2 S_im L_m G_im'
                for c in range(q):
                    s = 0.0
                    for e in range(qm):
                        s += SL[a, e] * G[c, e]
                    dL[o + a, o + c] += 2.0 * s
            if m < lv:  # dL_m += 2 S_im' L_l G_im
                for a in range(qm):  # SLt = S_im' L_l (qm x q)
                    for d in range(q):
                        t = 0.0
                        for e in range(d, q):
                            t += zz[i, m, e, a] * L[o + e, o + d]
                        SLt[a, d] = t
                for a in range(qm):
                    for c in range(qm):
                        s = 0.0
                        for d in range(q):
                            s += SLt[a, d] * G[d, c]
                        dL[om + a, om + c] += 2.0 * s
        for a in range(q):
            for c in range(q):
                dL[o + a, o + c] -= 2.0 * z[i, a] * v[i, c] / s2
        for a in range(q):  # dz = -2 L v / s2; dgt -= dz X'Z
            s = 0.0
            for b in range(a + 1):
                s += L[o + a, o + b] * v[i, b]
            dz = -2.0 * s / s2
            for k in range(p):
                dgt[k] -= dz * xz[i, k, a]
    ts2 += quad / (s2 * s2)
    return logdet - quad / s2, dgt, dL, ts2, tail[1]


@numba.njit(**_OPTIONS)
def tree_draws(gt, L, sigma, tail, qs, qoff, eps):
    """u (S, nodes, qmax) for draws of gamma-tilde (S, p), L (S, Q, Q), sigma (S,) and noise eps (S, nodes, qmax).

    Each draw is exact from the joint Gaussian conditional of every level's effects (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> tail = np.array([2., 2., 0., 1., 0., 0., 0., 1., 1., 0., 1., 1., 1., 1., 0., 0.])
    >>> u = tree_draws(np.zeros((1, 1)), np.eye(2)[None], np.ones(1), tail, np.array([1, 1]), np.array([0, 1]),
    ...                np.zeros((1, 2, 1)))
    >>> u.round(4).ravel().tolist()  # the conditional means: y = 1 shared by both effects and the noise
    [0.3333, 0.3333]
    """
    S = gt.shape[0]
    depth, qmax = len(qs), max(qs)
    n = int(tail[0])
    anc = _views(tail, depth, qmax, gt.shape[1])[2]
    level = _views(tail, depth, qmax, gt.shape[1])[1]
    u = np.zeros((S, n, qmax))
    x = np.zeros((n, qmax))
    t = np.zeros(qmax)
    for s_ in range(S):
        s2 = sigma[s_] * sigma[s_]
        z, h, C, F, logdet, quad = _eliminate(gt[s_], L[s_], s2, tail, qs, qoff)
        if not math.isfinite(logdet):
            u[s_] = np.nan
            continue
        for i in range(n):
            lv = int(level[i])
            q, o = qs[lv], qoff[lv]
            for a in range(q):
                s = h[i, a] + sigma[s_] * eps[s_, i, a]
                for m in range(lv):
                    a_node = int(anc[i, m])
                    for c in range(qs[m]):
                        s -= F[i, m, a, c] * x[a_node, c]
                t[a] = s
            for a in range(q - 1, -1, -1):
                s = t[a]
                for k in range(a + 1, q):
                    s -= C[i, k, a] * x[i, k]
                x[i, a] = s / C[i, a, a]
            for a in range(q):
                s = 0.0
                for b in range(a + 1):
                    s += L[s_, o + a, o + b] * x[i, b]
                u[s_, i, a] = s
    return u

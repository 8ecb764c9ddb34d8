"""Stage 4, sample (generalized full model): its log density and gradient as one Numba kernel, and nutpie's C callbacks.

The model is :func:`bayesmlm.build.full.build_full_model`'s for a bernoulli,
binomial (logit link) or poisson (log link) outcome, over cells or rows. With
units i (cells or rows), weights w_i (1 without), trials n_i and offsets o_i,

    eta_i = Xc_i b + sum_k Z_ki u_k[g_k(i)] + o_i
    loglik = sum_i w_i (y_i eta_i - n_i softplus(eta_i))      (bernoulli, binomial)
             sum_i w_i (y_i eta_i - exp(eta_i))               (poisson)
             + the constant (binomial coefficients, log y!, the aggregation's)

with Xc = X minus its centre and b = ``b_centred``. The unconstrained vector x is

    b_centred (p) | per block its effects (J_k x q_k, by level) | per block its SD parameters

Each block is non-centred (u_j = L z_j, z ~ N(0, I)) or centred (v_j, with
u_j = A (v_j - H_j b), A^-1 :func:`bayesmlm.build.full.centred_basis` and H
:func:`bayesmlm.design.block_means.block_means`). The centred density, PyMC's
MvNormal(H_j b, chol(A^-1 L L' A^-T)) (or Normal(H_j b, sd) for a diagonal
block with A = I), is written as log N(u_j | 0, L L'): A is unit triangular, so
the two are equal exactly. L is diag(SD) with the SDs on the log scale
(uncorrelated block) or PyMC's packed LKJ Cholesky factor, rows of the lower
triangle with the diagonal on the log scale, and the density of
``pm.LKJCholeskyCov`` (the same terms as :mod:`bayesmlm.fastpath.kernels`).
Priors are :mod:`bayesmlm.fastpath.prior_density`'s, as PyMC's, with the log
Jacobians, so the kernel's log density is the PyMC model's, constants included.

The likelihood reads eta = Xr b + sum_k Z_k w_k with w = L z (non-centred), A v
(centred) and Xr = Xc - sum_k Z_k A_k H_k without its vanishing columns
(:func:`reduced_design`): a fixed effect a block absorbs costs no per-unit work,
and the units, in chunks of three passes each (eta by gathers; the log
likelihood and its derivative r in a loop that LLVM vectorises, with
:mod:`bayesmlm.fastpath.branchless_math`'s exp and log1p; r scattered into b
and the effects), give the log likelihood and its gradient. A cumulative model
(:mod:`bayesmlm.fastpath.cumulative_kernel`) takes all units as one chunk: eta
into an array, its log likelihood over all units, then d/deta into b and the
effects; its located intercept's shift is in w as in u, so the shift's gradient
takes the likelihood's part as well as the prior's.

A centred block may be centred on its parent block (:mod:`bayesmlm.design.nested_centring`):
u_j = A (v_j - H_j b) - P w_parent[parent(j)], with w_parent what the parent's part of eta reads. The
parent's shared columns are zero in its Z (the child's A v_j carries them), its mean is still absorbed
from the full Z (``Z_absorbed``), and the child's prior gradient P' (L L')^-1 u_j joins the parent's
likelihood gradient in w before the parent's own density chains it into z or v. The per-unit loop is
unchanged; the block table's fields 14 to 16 hold the parent, its level per child level and P.

A centred block's parent may instead be integrated out of its prior (:data:`CENTRED_MARGINAL`, where
:func:`bayesmlm.design.nested_centring.integrable_parents` allows it: one term in each block, the parent
read by nothing else). The parent is then no block of the kernel: with r_j = v_j - H_j b, a = sd_child^2 and
c = sd_parent^2, the n_l children of parent level l are jointly N(0, a I + c 1 1'), so per level

    log p = -n_l/2 log 2 pi - 1/2 [(n_l - 1) log a + log(a + n_l c) + (SS_l - S_l^2 / n_l) / a + S_l^2 / (n_l (a + n_l c))]

with S_l and SS_l the sum and the sum of squares of its children's r_j. The child's SD parameters are its
own then the parent's (its prior row after the child's), field 17 holds the parent's number of levels, and
expand writes the child's r_j as its u and the parent's SD after them; the parent's effects are drawn from
their exact conditional after sampling (:mod:`bayesmlm.fastpath.parent_draws`).

Everything the kernel reads is one float64 buffer (:func:`pack_buffer`);
index arrays are stored as int64 bit patterns. Its header's flags (:data:`FLAGS_SLOT`) and each block's last
field say which unit columns are constant (no offset, unit weights, one trial; a random intercept's Z of ones),
so that the unit loops neither read them nor keep them in cache: VerbAgg's rows then read 24 bytes each, not 64.
The unit loops index views (:func:`_view`, :func:`_levels`), never ``d[at + i]``: Numba wraps a signed index
that may be negative, and AVX2 cannot do that on four int64 lanes at once, so such a loop loads one value at a
time. On bernoulli rows (one trial, unit weights) the sum of log(1 + s_i) is the log of their product, one log per
256 units. On VerbAgg, on an AVX2 machine, one gradient went from 112 to 42 us (``benchmarks/glmm_kernel_timing.md``).
The kernel is the same for every model (nothing is generated), so Numba compiles it once per machine.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types

from . import cumulative_kernel as cumulative
from .branchless_math import exp_clamped, log1p_unit
from .prior_density import prior_logp, sd_block_logp

__all__ = ["HEAD", "BLOCK_FIELDS", "FLAGS_SLOT", "NO_OFFSET", "UNIT_WEIGHTS", "ONE_TRIAL", "NON_CENTRED", "CENTRED",
           "CENTRED_MARGINAL", "BINOMIAL", "POISSON", "KernelBlock", "reduced_design", "pack_buffer",
           "logp_grad", "expand", "logp_cfunc", "expand_cfunc"]

NON_CENTRED, CENTRED, CENTRED_MARGINAL = 1, 2, 3
BINOMIAL, POISSON = 0, 1
HEAD = 18  # d[0] length, n_dim, p, K, N, family, n_expanded, constant, intercept, o_blocks, o_units, o_fixed, o_xc,
#           o_X (the reduced design), its number of columns, o_cols (their indices in b), the family's section
#           (cumulative_kernel.SECTION_SLOT; 0 without), the units' flags (FLAGS_SLOT)
BLOCK_FIELDS = 19  # the last: 1 where the block's Z is all ones (a random intercept), so the unit loops skip reading it
FLAGS_SLOT = 17
NO_OFFSET, UNIT_WEIGHTS, ONE_TRIAL = 1, 2, 4  # d[FLAGS_SLOT]'s bits: every offset 0, every weight 1, every trial 1
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}
_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK = 1024  # units per chunk: eta and r stay in L1
_ONE = np.uint64(1)
_PRODUCT = 256  # units a product of (1 + s_i) runs over in _binomial_units


class KernelBlock:
    """One random block as the kernel reads it.

    Attributes
    ----------
    kind : int
        :data:`NON_CENTRED`, :data:`CENTRED` or :data:`CENTRED_MARGINAL` (centred, its parent integrated out).
    correlated : bool
    index : ndarray (N,) of int
        Each unit's level.
    Z : ndarray (N, q)
    priors : ndarray (q, 4), or (q + 1, 4) for CENTRED_MARGINAL
        The SD prior of each term (:func:`bayesmlm.fastpath.prior_density.prior_row`), then the integrated parent's.
    eta : float
        The LKJ shape (correlated blocks).
    n_levels : int
    H : ndarray (J, q, p) or None
        A centred block's mean, ``H[j] @ b_centred`` (None: zero).
    A : ndarray (q, q)
        u_j = A (v_j - H_j b) for a centred block (the inverse of its basis).
    parent : int
        The block (its position in the list) a centred block is centred on, -1 for none
        (:mod:`bayesmlm.design.nested_centring`): u_j = A (v_j - H_j b) - P w_parent[parent_levels[j]].
    parent_levels : ndarray (J,) of int
        Each level's parent level (a child centred on its parent, or CENTRED_MARGINAL).
    P : ndarray (q, q_parent)
    Z_absorbed : ndarray (N, q) or None
        A parent's Z before its shared columns moved to its children (zero in ``Z``): what its mean absorbs from
        the fixed design (:func:`reduced_design`). None: ``Z``.
    n_parent : int
        CENTRED_MARGINAL: the integrated parent's number of levels.
    """

    def __init__(self, kind, correlated, index, Z, priors, eta, n_levels, H=None, A=None, parent=-1, parent_levels=None,
                 P=None, Z_absorbed=None, n_parent=0):
        self.kind, self.correlated, self.eta, self.n_levels = int(kind), bool(correlated), float(eta), int(n_levels)
        self.index = np.asarray(index, dtype=np.int64)
        self.Z = np.ascontiguousarray(Z, dtype=np.float64)
        self.q = self.Z.shape[1]
        self.priors = np.asarray(priors, dtype=np.float64).reshape(-1, 4)
        self.n_parent = int(n_parent)
        if (self.kind == CENTRED_MARGINAL) != (len(self.priors) == self.q + 1) or (self.kind == CENTRED_MARGINAL
                                                                                      and self.q != 1):
            raise ValueError("A CENTRED_MARGINAL block has one term and two prior rows (its own, its parent's); "
                             "other blocks one prior row per term.")
        self.H = None if H is None or not np.any(H) else np.ascontiguousarray(H, dtype=np.float64)
        self.A = np.eye(self.q) if A is None else np.asarray(A, dtype=np.float64)
        self.parent = int(parent)
        self.parent_levels = np.zeros(0, np.int64) if parent_levels is None else np.asarray(parent_levels, np.int64)
        self.P = np.zeros((self.q, 0)) if P is None else np.asarray(P, dtype=np.float64)
        self.Z_absorbed = self.Z if Z_absorbed is None else np.ascontiguousarray(Z_absorbed, dtype=np.float64)

    @property
    def n_sd(self) -> int:
        """The SD parameters in x: q log SDs, or the q (q + 1) / 2 packed Cholesky entries (and the integrated parent's)."""
        return self.q * (self.q + 1) // 2 if self.correlated else self.q + (self.kind == CENTRED_MARGINAL)


def reduced_design(Xc: np.ndarray, blocks) -> tuple[np.ndarray, np.ndarray]:
    """The fixed design the likelihood reads, Xc - sum_k Z_k A_k H_k, without the columns that vanish.

    A centred block's effects are u_j = A (v_j - H_j b), so
    eta = Xc b + Z u = (Xc - Z A H) b + Z A v: a fixed column that a block
    absorbs (and the centred intercept) is zero to rounding there for every
    unit, and the kernel then does no per-unit work for it. Returns the kept
    columns (N x p_kept) and their indices in b.

    Examples
    --------
    >>> H = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])  # both levels' mean is b[0]
    >>> b = KernelBlock(CENTRED, False, [0, 1], np.ones((2, 1)), [[2, 1, 0, 0]], 1.0, 2, H=H)
    >>> Xr, cols = reduced_design(np.array([[1.0, 0.5], [1.0, -0.5]]), [b])
    >>> cols.tolist(), Xr.ravel().tolist()  # the first column is the block's mean: it drops
    ([1], [0.5, -0.5])
    """
    Xr = np.array(Xc, dtype=np.float64)
    scale = np.abs(Xr).max(axis=0, initial=0.0)
    for b in blocks:
        if b.kind in (CENTRED, CENTRED_MARGINAL) and b.H is not None:
            ZA = b.Z_absorbed @ b.A
            for lo in range(0, len(Xr), 1 << 20):  # in chunks: H by unit is N x q x p
                part = slice(lo, lo + (1 << 20))
                absorbed = np.einsum("ib,ibt->it", ZA[part], b.H[b.index[part]])
                scale = np.maximum(scale, np.abs(absorbed).max(axis=0, initial=0.0))
                Xr[part] -= absorbed
    cols = np.flatnonzero(np.abs(Xr).max(axis=0, initial=0.0) > 1e-12 * np.maximum(scale, 1.0))
    return np.ascontiguousarray(Xr[:, cols]), cols


def pack_buffer(family, y, trials, weights, offset, X, x_centre, fixed_priors, blocks, constant, intercept) -> np.ndarray:
    """The one buffer the kernel reads.

    Parameters
    ----------
    family : int
        :data:`BINOMIAL` (bernoulli and binomial), :data:`POISSON`, or
        :data:`bayesmlm.fastpath.cumulative_kernel.CUMULATIVE` (then extended by its ``extend_buffer``).
    y, trials, weights, offset : arrays (N,)
        Per unit (cell or row); trials are ignored for poisson.
    X : array (N, p)
        The fixed-effect columns, uncentred; ``x_centre`` (p,) is subtracted (and kept, for ``fixef``).
    fixed_priors : array (p, 4)
        Prior rows of ``b_centred``.
    blocks : list of KernelBlock
    constant : float
        Added to the log density (binomial coefficients, log y!, the aggregation's constant).
    intercept : int
        The intercept's column (-1: none), for ``fixef``.

    Examples
    --------
    >>> b = KernelBlock(NON_CENTRED, False, [0, 1], np.ones((2, 1)), [[2, 1, 0, 0]], 1.0, 2)
    >>> d = pack_buffer(BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], [[0, 0, 2.5, 0]], [b], 0.0, 0)
    >>> int(d[1]), int(d[6])  # n_dim (1 + 2 + 1), n_expanded (fixef, sd, u)
    (4, 4)
    """
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64) - np.asarray(x_centre, dtype=np.float64))
    N, p = X.shape
    K = len(blocks)
    Xr, cols = reduced_design(X, blocks)
    bits = lambda a: np.asarray(a, dtype=np.int64).view(np.float64)  # noqa: E731  (read back through d.view)
    o_blocks = HEAD
    o_units = o_blocks + BLOCK_FIELDS * K
    o_fixed = o_units + 4 * N
    o_xc = o_fixed + 4 * p
    o_cols = o_xc + p
    o_X = o_cols + len(cols)
    end = o_X + Xr.size
    parts, table = [], []
    x_at = p + sum(b.n_levels * b.q for b in blocks)
    n_dim = x_at + sum(b.n_sd for b in blocks)
    e_at, out_at = p, p
    for b in blocks:
        arrays = [b.priors.ravel(), bits(b.index), b.Z.ravel(), b.A.ravel(), bits(b.parent_levels), b.P.ravel()]
        arrays += [b.H.ravel()] if b.H is not None else []
        starts = np.cumsum([end] + [a.size for a in arrays])
        parts += arrays
        end = int(starts[-1])
        table.append([b.kind, b.q, b.n_levels, int(b.correlated), e_at, x_at, b.eta, starts[0], starts[1], starts[2],
                      starts[6] if b.H is not None else -1, starts[3], out_at, 0, b.parent, starts[4], starts[5],
                      b.n_parent, int(b.q == 1 and bool(np.all(b.Z == 1.0)))])
        e_at += b.n_levels * b.q
        x_at += b.n_sd
        out_at += b.q + (b.q * (b.q - 1) // 2 if b.correlated else 0) + b.n_levels * b.q + (b.kind == CENTRED_MARGINAL)
    units = [np.asarray(a, dtype=np.float64).ravel() for a in (y, trials, weights, offset)]
    flags = (NO_OFFSET * bool(np.all(units[3] == 0.0)) + UNIT_WEIGHTS * bool(np.all(units[2] == 1.0))
             + ONE_TRIAL * bool(np.all(units[1] == 1.0)))
    head = [0.0, n_dim, p, K, N, family, out_at, constant, intercept, o_blocks, o_units, o_fixed, o_xc, o_X, len(cols),
            o_cols, 0.0, flags]
    assert len(head) == HEAD and cumulative.SECTION_SLOT == 16 and FLAGS_SLOT == 17
    d = np.concatenate([np.asarray(head, dtype=np.float64), np.asarray(table, dtype=np.float64).ravel(), *units,
                        np.asarray(fixed_priors, dtype=np.float64).ravel(), np.asarray(x_centre, dtype=np.float64),
                        bits(cols), Xr.ravel(), *parts])
    d[0] = len(d)
    return d


@numba.njit(**_OPTIONS)
def _cholesky_factor(x, d, r, L):
    """L (q x q, lower) of block row r from x: diag(exp) of the log SDs, or the packed Cholesky factor."""
    q, corr, sd_at = int(d[r + 1]), int(d[r + 3]), int(d[r + 5])
    for a in range(q):
        for c in range(q):
            L[a, c] = 0.0
    if corr == 0:
        for a in range(q):
            L[a, a] = math.exp(x[sd_at + a])
        return
    i = sd_at
    for a in range(q):
        for c in range(a + 1):
            L[a, c] = math.exp(x[i]) if c == a else x[i]
            i += 1


@numba.njit(**_OPTIONS)
def _effects(x, d, r, L, u, mean):
    """u (J x q) of block row r: L z_j (non-centred) or A (v_j - mean H_j b) (centred); flat, by level.

    ``mean`` is 1.0 or 0.0 (A v_j, what the likelihood reads), a float so that Numba compiles one version, not one per
    literal."""
    kind, q, J, e_at, h_at, a_at = int(d[r]), int(d[r + 1]), int(d[r + 2]), int(d[r + 4]), int(d[r + 10]), int(d[r + 11])
    p, loc = int(d[2]), int(d[r + cumulative.LOCATION_FIELD])
    shift = cumulative.threshold_mean(x, d) if loc > 0 else 0.0  # a cumulative model's intercept, centred on -mean(c)
    if q == 1 and loc == 0:  # one term, the common case: a loop without the q x q inner loops
        v, scale = _view(x, e_at, J), L[0, 0] if kind == 1 else d[a_at]
        if kind >= 2 and h_at >= 0 and mean != 0.0:
            H = _view(d, h_at, J * p)
            for j in range(J):
                m = 0.0
                for t in range(p):
                    m += H[j * p + t] * x[t]
                u[j] = scale * (v[j] - m)
        else:
            for j in range(J):
                u[j] = scale * v[j]
        return
    e = np.empty(q)
    for j in range(J):
        for a in range(q):
            e[a] = x[e_at + j * q + a]
        if kind >= 2 and h_at >= 0 and mean != 0.0:
            for a in range(q):
                m = 0.0
                for t in range(p):
                    m += d[h_at + (j * q + a) * p + t] * x[t]
                e[a] -= m
        if loc > 0:
            e[loc - 1] += shift
        for a in range(q):
            acc = 0.0
            if kind == 1:
                for c in range(a + 1):
                    acc += L[a, c] * e[c]
            else:
                for c in range(q):
                    acc += d[a_at + a * q + c] * e[c]
            u[j * q + a] = acc


@numba.njit(**_OPTIONS)
def _subtract_parent(d, r, u, wp):
    """u_j -= P w_parent[parent(j)] for block row r, whose parent's w (what its likelihood part reads) is wp."""
    q, J, lv_at, P_at = int(d[r + 1]), int(d[r + 2]), int(d[r + 15]), int(d[r + 16])
    qp = int(d[HEAD + BLOCK_FIELDS * int(d[r + 14]) + 1])
    di = d.view(np.int64)
    for j in range(J):
        o = qp * di[lv_at + j]
        for a in range(q):
            acc = 0.0
            for c in range(qp):
                acc += d[P_at + a * qp + c] * wp[o + c]
            u[j * q + a] -= acc
    return 0


@numba.njit(**_OPTIONS)
def _whiten(L, u, o, q, w, g):
    """w = L^-1 u[o:o + q] and g = L^-T w = (L L')^-1 u[o:o + q] (L lower triangular)."""
    for a in range(q):
        acc = u[o + a]
        for c in range(a):
            acc -= L[a, c] * w[c]
        w[a] = acc / L[a, a]
    for a in range(q - 1, -1, -1):
        acc = w[a]
        for c in range(a + 1, q):
            acc -= L[c, a] * g[c]
        g[a] = acc / L[a, a]


@numba.njit(**_OPTIONS)
def _to_parent(d, r, L, u, gup):
    """The child's prior gradient in its parent's w, P' (L L')^-1 u_j, into gup (block row r, centred on its parent)."""
    q, J, lv_at, P_at = int(d[r + 1]), int(d[r + 2]), int(d[r + 15]), int(d[r + 16])
    qp = int(d[HEAD + BLOCK_FIELDS * int(d[r + 14]) + 1])
    di = d.view(np.int64)
    w = np.empty(q)
    g = np.empty(q)
    for j in range(J):
        o = j * q
        _whiten(L, u, o, q, w, g)
        op = qp * di[lv_at + j]
        for c in range(qp):
            acc = 0.0
            for a in range(q):
                acc += d[P_at + a * qp + c] * g[a]
            gup[op + c] += acc
    return 0


@numba.njit(**_OPTIONS)
def _sd_prior(x, d, r, L, dL, grad):
    """The SD priors (or the LKJ Cholesky density) of block row r, with dL chained into x; returns the log density."""
    return sd_block_logp(x, d, int(d[r + 1]), int(d[r + 3]) != 0, int(d[r + 5]), d[r + 6], int(d[r + 7]), L, dL, grad)


@numba.njit(**_OPTIONS)
def _marginal_density(x, d, r, L, u, gu, dL, grad):
    """A CENTRED_MARGINAL block's prior with its parent integrated out (the module's docstring), chained into x.

    Fills dL (the child's SD) as :func:`_block_density` does and adds the parent's SD prior itself."""
    J, e_at, sd_at, h_at, prior_at = int(d[r + 2]), int(d[r + 4]), int(d[r + 5]), int(d[r + 10]), int(d[r + 7])
    lv_at, Jp, p = int(d[r + 15]), int(d[r + 17]), int(d[2])
    di = d.view(np.int64)
    a = L[0, 0] * L[0, 0]
    s_parent = math.exp(x[sd_at + 1])
    c = s_parent * s_parent
    S = np.zeros(Jp)
    SS = np.zeros(Jp)
    n = np.zeros(Jp)
    for j in range(J):
        lv = di[lv_at + j]
        S[lv] += u[j]
        SS[lv] += u[j] * u[j]
        n[lv] += 1.0
    lp = -0.5 * J * _LOG_2PI
    da, dc = 0.0, 0.0
    for lv in range(Jp):
        if n[lv] == 0.0:  # a parent level without children: its effect integrates to 1
            continue
        tau = a + n[lv] * c
        within = SS[lv] - S[lv] * S[lv] / n[lv]
        between = S[lv] * S[lv] / n[lv]
        lp -= 0.5 * ((n[lv] - 1.0) * math.log(a) + math.log(tau) + within / a + between / tau)
        da += 0.5 * (within / (a * a) + between / (tau * tau) - (n[lv] - 1.0) / a - 1.0 / tau)
        dc += 0.5 * (S[lv] * S[lv] / (tau * tau) - n[lv] / tau)
        S[lv] = c * S[lv] / tau  # from here: the parent's conditional mean
    for j in range(J):  # (the covariance)^-1 r: g_j = (r_j - E[w_parent | r]) / a
        g = (u[j] - S[di[lv_at + j]]) / a
        grad[e_at + j] += gu[j] - g  # d/dv_j: the likelihood's part (A = 1) and the prior's
        if h_at >= 0:  # the prior's part reaches b through -H_j
            for s in range(p):
                grad[s] += d[h_at + j * p + s] * g
    dL[0, 0] = 2.0 * L[0, 0] * da
    Lp = np.empty((1, 1))
    dLp = np.empty((1, 1))
    Lp[0, 0] = s_parent
    dLp[0, 0] = 2.0 * s_parent * dc
    return lp + sd_block_logp(x, d, 1, False, sd_at + 1, 1.0, prior_at + 4, Lp, dLp, grad)


@numba.njit(**_OPTIONS)
def _block_density_one(x, d, r, sd, u, gu, dL, grad):
    """:func:`_block_density` of a one-term block (q = 1, not cumulative's location), without its constant."""
    kind, J, e_at, h_at, p = int(d[r]), int(d[r + 2]), int(d[r + 4]), int(d[r + 10]), int(d[2])
    z, gz = _view(x, e_at, J), _view(grad, e_at, J)
    lp, dsd = 0.0, 0.0
    if kind == 1:  # z ~ N(0, 1), u = sd z
        for j in range(J):
            lp -= 0.5 * z[j] * z[j]
            gz[j] += sd * gu[j] - z[j]
            dsd += gu[j] * z[j]
        dL[0, 0] = dsd
        return lp
    a = d[int(d[r + 11])]  # A (1 x 1)
    inv = 1.0 / sd
    for j in range(J):  # centred: w = u / sd, g = w / sd; d/dv = a (gu - g), the prior's -a g to b through -H_j
        w = u[j] * inv
        lp -= 0.5 * w * w
        dsd += w * w * inv
        gz[j] += a * (gu[j] - w * inv)
    if h_at >= 0:
        H = _view(d, h_at, J * p)
        for s in range(p):
            acc = 0.0
            for j in range(J):
                acc += H[j * p + s] * u[j]
            grad[s] += a * inv * inv * acc
    dL[0, 0] = dsd - J * inv
    return lp - J * math.log(sd)


@numba.njit(**_OPTIONS)
def _block_density(x, d, r, L, u, gu, dL, grad):
    """The effects' own density of block row r and the likelihood's gradient gu chained into x; fills dL."""
    kind, q, J, e_at, h_at, a_at = int(d[r]), int(d[r + 1]), int(d[r + 2]), int(d[r + 4]), int(d[r + 10]), int(d[r + 11])
    p, loc = int(d[2]), int(d[r + cumulative.LOCATION_FIELD])
    if kind == 3:
        return _marginal_density(x, d, r, L, u, gu, dL, grad)
    g_loc = 0.0
    for a in range(q):
        for c in range(q):
            dL[a, c] = 0.0
    lp = -0.5 * J * q * _LOG_2PI
    if q == 1 and loc == 0:
        return lp + _block_density_one(x, d, r, L[0, 0], u, gu, dL, grad)
    w = np.empty(q)
    g = np.empty(q)
    t = np.empty(q)
    for j in range(J):
        o = j * q
        if kind == 1:  # z ~ N(0, I), u = L z
            for c in range(q):
                z = x[e_at + o + c]
                acc = 0.0
                for a in range(c, q):
                    acc += L[a, c] * gu[o + a]
                lp -= 0.5 * z * z
                grad[e_at + o + c] += acc - z
                for a in range(c, q):
                    dL[a, c] += gu[o + a] * z
            continue
        # centred: log N(u | 0, L L'); w = L^-1 u, g = L^-T w = (L L')^-1 u
        _whiten(L, u, o, q, w, g)
        for a in range(q):
            lp -= 0.5 * w[a] * w[a]
            for c in range(a + 1):
                dL[a, c] += g[a] * w[c]
        # d/dv = A' (gu - g), gu the likelihood's gradient in A v; the prior's part -A' g goes to b through -H_j
        # (the likelihood reaches b through the reduced design, see reduced_design)
        for c in range(q):
            acc = 0.0
            prior = 0.0
            for a in range(q):
                acc += d[a_at + a * q + c] * (gu[o + a] - g[a])
                prior -= d[a_at + a * q + c] * g[a]
            t[c] = prior
            grad[e_at + o + c] += acc
            if c == loc - 1:
                g_loc = acc
        if h_at >= 0:
            for a in range(q):
                for s in range(p):
                    grad[s] -= d[h_at + (o + a) * p + s] * t[a]
        if loc > 0:  # w = A (v + shift e_loc) as u does: the likelihood reaches the shift too, so A' (gu - g)
            cumulative.add_location_grad(d, grad, g_loc)
    if kind == 2:
        for a in range(q):
            lp -= J * math.log(L[a, a])
            dL[a, a] -= J / L[a, a]
    return lp


@numba.njit(**_OPTIONS)
def _linear_predictor(d, lo, n, b, w, kq, kat, kix, kzs, kones, eta):
    """eta[:n] of units lo .. lo + n: the offset, plus Xr b, plus per block Z_k w_k at each unit's level."""
    N, o_units, o_X, pr = int(d[4]), int(d[10]), int(d[13]), len(b)
    if int(d[FLAGS_SLOT]) & NO_OFFSET:
        for i in range(n):
            eta[i] = 0.0
    else:
        off = _view(d, o_units + 3 * N + lo, n)
        for i in range(n):
            eta[i] = off[i]
    X = _view(d, o_X + lo * pr, n * pr)
    for t in range(pr):  # by column: a strided loop that vectorises, where a loop over a row's pr columns does not
        bt = b[t]
        for i in range(n):
            eta[i] += X[i * pr + t] * bt
    for k in range(len(kq)):
        q = kq[k]
        level, Z, wk = _levels(d, kix[k] + lo, n), _view(d, kzs[k] + lo * q, n * q), w[kat[k]:]
        if q == 1 and kones[k]:
            for i in range(n):
                eta[i] += wk[level[i]]
        elif q == 1:
            for i in range(n):
                eta[i] += Z[i] * wk[level[i]]
        elif q == 2:
            for i in range(n):
                o = level[i] + level[i]  # unsigned: 2 * level would be int64 times uint64, a float in Numba
                eta[i] += Z[2 * i] * wk[o] + Z[2 * i + 1] * wk[o + _ONE]
        else:
            for i in range(n):
                o = int(level[i]) * q
                e = 0.0
                for a in range(q):
                    e += Z[i * q + a] * wk[o + a]
                eta[i] += e


@numba.njit(**_OPTIONS)
def _scatter(d, lo, n, res, gb, gu, kq, kat, kix, kzs, kones):
    """r of units lo .. lo + n into b's gradient (through Xr) and each block's effects (through Z_k).

    Sums are kept in registers, by column for b and over each run of units at one level for an effect: adding into
    memory unit by unit chains each addition to the last one's store when neighbouring units share a level (units
    sorted by a factor, and every unit for b)."""
    o_X, pr = int(d[13]), len(gb)
    X = _view(d, o_X + lo * pr, n * pr)
    for t in range(pr):
        acc = 0.0
        for i in range(n):
            acc += res[i] * X[i * pr + t]
        gb[t] += acc
    if n == 0:
        return
    for k in range(len(kq)):
        q = kq[k]
        level, Z, gk = _levels(d, kix[k] + lo, n), _view(d, kzs[k] + lo * q, n * q), gu[kat[k]:]
        j = level[0]
        if q == 1 and kones[k]:
            acc = 0.0
            for i in range(n):
                if level[i] != j:
                    gk[j] += acc
                    j, acc = level[i], 0.0
                acc += res[i]
            gk[j] += acc
        elif q == 1:
            acc = 0.0
            for i in range(n):
                if level[i] != j:
                    gk[j] += acc
                    j, acc = level[i], 0.0
                acc += res[i] * Z[i]
            gk[j] += acc
        elif q == 2:
            acc0, acc1 = 0.0, 0.0
            for i in range(n):
                if level[i] != j:
                    gk[j + j] += acc0
                    gk[j + j + _ONE] += acc1
                    j, acc0, acc1 = level[i], 0.0, 0.0
                acc0 += res[i] * Z[2 * i]
                acc1 += res[i] * Z[2 * i + 1]
            gk[j + j] += acc0
            gk[j + j + _ONE] += acc1
        else:
            for i in range(n):
                o = int(level[i]) * q
                for a in range(q):
                    gk[o + a] += res[i] * Z[i * q + a]


@numba.njit(**_OPTIONS)
def _view(d, at, n):
    """d[at:at + n], a view (of the buffer, x or the gradient): indexed by a loop's counter, LLVM knows each index is in
    range, where d[at + i] leaves it a signed sum to wrap (Numba's negative indices), which AVX2 cannot do on four
    int64 lanes at once, so the loop loads one value at a time."""
    return d[at:at + n]


@numba.njit(**_OPTIONS)
def _levels(d, at, n):
    """The levels d[at:at + n] (int64 bit patterns) as uint64: an unsigned index is not wrapped (see :func:`_view`),
    so a gather by it vectorises."""
    return d.view(np.uint64)[at:at + n]


@numba.njit(**_OPTIONS)
def _binomial_units(d, lo, n, eta, res):
    """sum w_i (y_i eta_i - n_i softplus(eta_i)) over units lo .. lo + n; res[:n] its derivatives in eta."""
    N, o_units = int(d[4]), int(d[10])
    y, trials, weight = _view(d, o_units + lo, n), _view(d, o_units + N + lo, n), _view(d, o_units + 2 * N + lo, n)
    ll = 0.0
    if (int(d[FLAGS_SLOT]) & (UNIT_WEIGHTS | ONE_TRIAL)) == (UNIT_WEIGHTS | ONE_TRIAL):  # bernoulli rows: y and eta only
        # sum log(1 + s_i) as the log of their product, one log per run of _PRODUCT units (each factor in (1, 2], so
        # a run's product stays below 2^256 however LLVM splits it into lanes): a multiply a unit, not log1p's
        # polynomial and division; the sum is within about 1e-15 relatively of the sum of logs
        for lo_run in range(0, n, _PRODUCT):
            prod = 1.0
            for i in range(lo_run, min(lo_run + _PRODUCT, n)):
                e = eta[i]
                ex = exp_clamped(-abs(e))
                t = 1.0 + ex
                prod *= t
                ll += y[i] * e - max(e, 0.0)
                res[i] = y[i] - (1.0 if e > 0.0 else ex) / t
            ll -= math.log(prod)
        return ll
    for i in range(n):
        e = eta[i]
        ex = exp_clamped(-abs(e))  # below exp(-708) its floor changes nothing at double precision
        sp = max(e, 0.0) + log1p_unit(ex)
        prob = (1.0 if e > 0.0 else ex) / (1.0 + ex)
        ll += weight[i] * (y[i] * e - trials[i] * sp)
        res[i] = weight[i] * (y[i] - trials[i] * prob)
    return ll


@numba.njit(**_OPTIONS)
def _poisson_units(d, lo, n, eta, res):
    """sum w_i (y_i eta_i - exp(eta_i)) over units lo .. lo + n; res[:n] its derivatives in eta."""
    N, o_units = int(d[4]), int(d[10])
    y, weight = _view(d, o_units + lo, n), _view(d, o_units + 2 * N + lo, n)
    ll = 0.0
    for i in range(n):
        e = eta[i]
        mu = exp_clamped(e) if e < 709.0 else math.inf  # overflows as math.exp does; its floor below -708 is 3e-308
        ll += weight[i] * (y[i] * e - mu)
        res[i] = weight[i] * (y[i] - mu)
    return ll


@numba.njit(**_OPTIONS)
def logp_grad(x, d, grad):
    """The log density at x (see the module's docstring); its gradient is written into grad."""
    n_dim, p, K, N, family = int(d[1]), int(d[2]), int(d[3]), int(d[4]), int(d[5])
    o_blocks, o_units, o_fixed, o_xc, o_X = int(d[9]), int(d[10]), int(d[11]), int(d[12]), int(d[13])
    di = d.view(np.int64)
    for i in range(n_dim):
        grad[i] = 0.0
    lp = d[7]
    for t in range(p):
        o = o_fixed + 4 * t
        v, dv = prior_logp(int(d[o]), d[o + 1], d[o + 2], d[o + 3], x[t])
        lp += v
        grad[t] += dv
    n_eff, qmax = 0, 1
    for k in range(K):
        r = o_blocks + BLOCK_FIELDS * k
        n_eff += int(d[r + 1]) * int(d[r + 2])
        qmax = max(qmax, int(d[r + 1]))
    Ls = np.zeros((K, qmax, qmax))
    u = np.empty(n_eff)  # the effects, for their density
    w = np.empty(n_eff)  # what the likelihood reads: u, or A v for a centred block with a mean
    gu = np.zeros(n_eff)
    kq, kat, kix, kzs = np.empty(K, np.int64), np.empty(K, np.int64), np.empty(K, np.int64), np.empty(K, np.int64)
    kones = np.empty(K, np.bool_)
    for k in range(K):
        r = o_blocks + BLOCK_FIELDS * k
        at = int(d[r + 4]) - p
        kq[k], kat[k], kix[k], kzs[k], kones[k] = int(d[r + 1]), at, int(d[r + 8]), int(d[r + 9]), d[r + 18] != 0.0
        _cholesky_factor(x, d, r, Ls[k])
        _effects(x, d, r, Ls[k], u[at:], 1.0)
        if int(d[r]) >= 2 and int(d[r + 10]) >= 0:
            _effects(x, d, r, Ls[k], w[at:], 0.0)
        else:
            for c in range(kq[k] * int(d[r + 2])):
                w[at + c] = u[at + c]
    for k in range(K):  # a child centred on its parent: u = A (v - H b) - P w_parent (w is complete by now)
        r = o_blocks + BLOCK_FIELDS * k
        if int(d[r + 14]) >= 0:
            _subtract_parent(d, r, u[kat[k]:], w[kat[int(d[r + 14])]:])
    pr, o_cols = int(d[14]), int(d[15])
    b = np.empty(pr)
    gb = np.zeros(pr)
    for t in range(pr):
        b[t] = x[di[o_cols + t]]
    # the units in chunks, each in three passes: eta (gathers), the log likelihood and r = d loglik / d eta (no
    # indirect access and no library calls, so LLVM vectorises it), r into b and the effects (scatters); a cumulative
    # model takes all units as one chunk, its log likelihood over them between the gather and the scatter
    ordinal = family == cumulative.CUMULATIVE
    size = N if ordinal else min(N, _CHUNK)
    eta = np.empty(size)
    res = np.empty(size)
    ll = 0.0
    for lo in range(0, N, max(size, 1)):
        n = min(size, N - lo)
        _linear_predictor(d, lo, n, b, w, kq, kat, kix, kzs, kones, eta)
        if ordinal:
            ll = cumulative.loglik(x, d, eta, res, grad)
        elif family == 1:
            ll += _poisson_units(d, lo, n, eta, res)
        else:
            ll += _binomial_units(d, lo, n, eta, res)
        _scatter(d, lo, n, res, gb, gu, kq, kat, kix, kzs, kones)
    for t in range(pr):
        grad[di[o_cols + t]] += gb[t]
    lp += ll
    for k in range(K):  # the children's prior reaches their parent's w: before the parent's density reads gu
        r = o_blocks + BLOCK_FIELDS * k
        if int(d[r + 14]) >= 0:
            _to_parent(d, r, Ls[k], u[kat[k]:], gu[kat[int(d[r + 14])]:])
    dL = np.empty((qmax, qmax))
    for k in range(K):
        r = o_blocks + BLOCK_FIELDS * k
        at = int(d[r + 4]) - p
        lp += _block_density(x, d, r, Ls[k], u[at:], gu[at:], dL, grad)
        lp += _sd_prior(x, d, r, Ls[k], dL, grad)
    if family == cumulative.CUMULATIVE:
        lp += cumulative.finish(x, d, grad)
    return lp


@numba.njit(**_OPTIONS)
def expand(x, d, out):
    """fixef (p), then per block its SDs, correlations (upper triangle by rows) and u (by level), from x."""
    p, K, o_blocks, o_xc, i0 = int(d[2]), int(d[3]), int(d[9]), int(d[12]), int(d[8])
    for t in range(p):
        out[t] = x[t]
    if i0 >= 0:
        for t in range(p):
            out[i0] -= x[t] * d[o_xc + t]
    for k in range(K):
        r = o_blocks + BLOCK_FIELDS * k
        q, J, corr, at = int(d[r + 1]), int(d[r + 2]), int(d[r + 3]), int(d[r + 12])
        L = np.zeros((q, q))
        _cholesky_factor(x, d, r, L)
        sd = np.empty(q)
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
        _effects(x, d, r, L, out[at:at + J * q], 1.0)
        kp = int(d[r + 14])
        if kp >= 0:  # reported u: the deviations from the parent
            rp = o_blocks + BLOCK_FIELDS * kp
            qp = int(d[rp + 1])
            Lp = np.zeros((qp, qp))
            _cholesky_factor(x, d, rp, Lp)
            wp = np.empty(qp * int(d[rp + 2]))
            _effects(x, d, rp, Lp, wp, 0.0)
            _subtract_parent(d, r, out[at:at + J * q], wp)
        if int(d[r]) == 3:  # the integrated parent's SD (its effects: drawn after sampling)
            out[at + J * q] = math.exp(x[int(d[r + 5]) + 1])
    if int(d[5]) == cumulative.CUMULATIVE:
        cumulative.expand_thresholds(x, d, out)
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
    if dim != int(head[1]) or n_expanded != int(head[6]):
        return -1
    d = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    return expand(numba.carray(x_, (dim,)), d, numba.carray(out_, (n_expanded,)))

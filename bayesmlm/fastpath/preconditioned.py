"""Stage 4, sample (generalized full model): each group's effects through a Laplace map that moves with the SDs.

The kernel's centred block samples v_j (u_j = A (v_j - H_j b), u_j ~ N(0, L L'),
:mod:`bayesmlm.fastpath.glmm_kernel`). Where the data say about as much about
u_j as the prior does (``design.parameterization``'s kappa near 1), v_j and the
SDs are coupled (the funnel, half open): measured on the big bernoulli model
(``benchmarks/geometry_results.md``) the SDs and the correlation mix worst,
with 4 to 8 times fewer effective draws than the effects. A diagonal (or
low-rank) mass matrix cannot undo a coupling between one SD and every group.

This module samples z_j instead, with

    v_j = mu_j(theta) + R_j(theta)^-T z_j,        P_j = Lam_j + Omega = R_j R_j'
    mu_j = P_j^-1 (Lam_j vhat_j + Omega H_j b),    Omega = A' (L L')^-1 A

where Lam_j (q x q) and vhat_j are the Gaussian approximation of group j's
likelihood in v_j, taken once, before sampling, at a Laplace-type optimum
(:func:`laplace_point`): the likelihood's curvature at the conditional mode and
its Newton target. For a Gaussian likelihood mu_j and R_j^-T are the exact
conditional mean and Cholesky factor of v_j given theta, so z_j ~ N(0, I)
independently of theta and b; for a group whose data say nothing (Lam_j = 0)
it is the non-centred form, and for one whose data say all, the centred form.
The map is a bijection for every theta and b, and the sampler's density is the
kernel's at v(z) plus the log Jacobian, -sum_j log det R_j (which depends on
theta and is differentiated with it), so the posterior is exactly the kernel's
(Papaspiliopoulos, Roberts and Skold 2007 on partial non-centring; this is
the per-group, curvature-weighted version). Lam_j and vhat_j only choose the
map: a poor optimum makes sampling slower, never wrong.

The Numba function :func:`logp_grad` maps z to x, calls
:func:`bayesmlm.fastpath.glmm_kernel.logp_grad` (unchanged) and maps its
gradient back, with the chain through mu_j and R_j into b and the SD
parameters. Its buffer is the kernel's followed by this module's section.
Only centred blocks are mapped; non-centred ones are sampled as the kernel
samples them.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numpy as np
from numba import types

from . import glmm_kernel as kernel

__all__ = ["PreconditionedPlan", "laplace_point",
           "preconditioned_plan", "logp_grad", "expand", "logp_cfunc", "expand_cfunc"]


_SECTION = 3  # per mapped block in the section: the kernel's block row, o_lam (J q q), o_lv (J q)
_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}


def _drop_stale_cache() -> None:
    """Numba keys a cached function on its own file: this module's inline glmm_kernel's, so a change there must
    drop them (the stamp is the kernel's sources' hash)."""
    here = Path(__file__).parent
    stamp = hashlib.sha1(b"".join((here / f).read_bytes() for f in
                                  ("glmm_kernel.py", "cumulative_kernel.py", "prior_density.py"))).hexdigest()
    cache = here / "__pycache__"
    mark = cache / "preconditioned.kernel-stamp"
    try:
        if mark.exists() and mark.read_text() == stamp:
            return
        cache.mkdir(exist_ok=True)
        for f in cache.glob("preconditioned.*.nb[ic]"):
            f.unlink()
        mark.write_text(stamp)
    except OSError:  # a read-only install: Numba then caches nothing either
        pass


_drop_stale_cache()


def _layout(plan):
    """Per kernel block: (its row in the buffer, where its effects start in x, where its SD parameters start)."""
    d = plan.buffer
    out = []
    for k in range(len(plan.blocks)):
        r = kernel.HEAD + kernel.BLOCK_FIELDS * k
        out.append((r, int(d[r + 4]), int(d[r + 5])))
    return out


def _cholesky(x_sd: np.ndarray, q: int, correlated: bool) -> np.ndarray:
    """L from a block's SD parameters, as the kernel reads them (packed rows, log diagonal; or log SDs)."""
    if not correlated:
        return np.diag(np.exp(x_sd))
    L = np.zeros((q, q))
    L[np.tril_indices(q)] = x_sd
    L[np.diag_indices(q)] = np.exp(np.diag(L))
    return L


def _packed(L: np.ndarray, correlated: bool) -> np.ndarray:
    """The inverse of :func:`_cholesky`."""
    if not correlated:
        return np.log(np.diag(L))
    P = L.copy()
    P[np.diag_indices(len(L))] = np.log(np.diag(L))
    return P[np.tril_indices(len(L))]


def _hessian_blocks(plan, x: np.ndarray, e_at: int, J: int, q: int, h: float = 1e-4):
    """The kernel's gradient at x and its Hessian's (J, q, q) diagonal blocks in one block's effects.

    Central differences, one component of every group at a time: within a
    block the groups' effects do not meet in the density, so one perturbation
    gives every group's column at once."""
    _, g0 = plan.logp(x)
    Hs = np.empty((J, q, q))
    for a in range(q):
        idx = e_at + np.arange(J) * q + a
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        diff = (plan.logp(xp)[1] - plan.logp(xm)[1])[e_at:e_at + J * q].reshape(J, q) / (2 * h)
        Hs[:, :, a] = diff
    return g0, 0.5 * (Hs + Hs.transpose(0, 2, 1))


def _prior_precision(blk, L: np.ndarray) -> np.ndarray:
    """Omega = A' (L L')^-1 A, the prior precision of v_j."""
    K = np.linalg.solve(L, blk.A)
    return K.T @ K


def _effects_mean(blk, b: np.ndarray) -> np.ndarray:
    """H_j b (J, q): the prior mean of v_j (zero without H)."""
    return np.zeros((blk.n_levels, blk.q)) if blk.H is None else blk.H @ b


def laplace_point(plan, iterations: int = 12) -> tuple[np.ndarray, dict]:
    """A Laplace-type optimum of the kernel's density, and each centred block's likelihood approximation there.

    From the prior's support point: Newton steps on the centred effects (each
    group alone, its Hessian block by differences of the kernel's gradient),
    then the EM update of each block's covariance, T = mean_j (u_j u_j' +
    Cov u_j) (the Laplace approximation's), and a Newton step on b; then Lam_j,
    the likelihood's curvature in v_j at the conditional mode, and Lam_j vhat_j,
    its Newton target (the curvature times the mode plus the likelihood's gradient).

    Returns
    -------
    x : ndarray
        The optimum as the kernel's unconstrained vector.
    approx : dict of int to (ndarray (J, q, q), ndarray (J, q))
        Per centred block (its index in ``plan.blocks``): Lam_j and Lam_j vhat_j.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.glmm_fit import glmm_plan
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> x, approx = laplace_point(glmm_plan(m.design, m.prior_dict, parameterization={"herd": "centred"}))
    >>> approx[0][0].shape
    (15, 1, 1)
    """
    x = plan.support_point().copy()
    p = int(plan.buffer[2])
    layout = _layout(plan)
    centred = [k for k, blk in enumerate(plan.blocks) if blk.kind == kernel.CENTRED]

    def newton(k, steps):  # on each group's v_j: concave for these families
        blk, e_at = plan.blocks[k], layout[k][1]
        J, q = blk.n_levels, blk.q
        for _ in range(steps):
            g, Hs = _hessian_blocks(plan, x, e_at, J, q)
            step = np.linalg.solve(-Hs + 1e-8 * np.eye(q), g[e_at:e_at + J * q].reshape(J, q, 1))[..., 0]
            x[e_at:e_at + J * q] += np.clip(step, -3.0, 3.0).ravel()

    for it in range(iterations + 1):
        for k in centred:
            newton(k, 2)
        if it == iterations:  # the blocks of crossed factors meet in the likelihood: a few more rounds
            for _ in range(3 if len(centred) > 1 else 0):
                for k in centred:
                    newton(k, 2)
            break
        for k in centred:
            blk, (_, e_at, sd_at) = plan.blocks[k], layout[k]
            J, q = blk.n_levels, blk.q
            # EM: T = mean(u u' + A P^-1 A'), u_j = A (v_j - H_j b)
            g, Hs = _hessian_blocks(plan, x, e_at, J, q)
            cov_v = np.linalg.inv(-Hs + 1e-8 * np.eye(q))
            u = (x[e_at:e_at + J * q].reshape(J, q) - _effects_mean(blk, x[:p])) @ blk.A.T
            T = (u.T @ u + np.einsum("ab,jbc,dc->ad", blk.A, cov_v, blk.A)) / J
            L = np.linalg.cholesky(T + 1e-10 * np.eye(q)) if blk.correlated else np.diag(np.sqrt(np.diag(T)))
            x[sd_at:sd_at + blk.n_sd] = _packed(L, blk.correlated)
        # a Newton step on b, its Hessian by central differences
        g0 = plan.logp(x)[1][:p]
        Hb = np.empty((p, p))
        for t in range(p):
            xp, xm = x.copy(), x.copy()
            xp[t] += 1e-5
            xm[t] -= 1e-5
            Hb[:, t] = (plan.logp(xp)[1][:p] - plan.logp(xm)[1][:p]) / 2e-5
        Hb = 0.5 * (Hb + Hb.T)
        try:
            x[:p] += np.clip(np.linalg.solve(-Hb, g0), -1.0, 1.0)
        except np.linalg.LinAlgError:
            pass
    approx = {}
    for k in centred:
        blk, (_, e_at, sd_at) = plan.blocks[k], layout[k]
        J, q = blk.n_levels, blk.q
        g, Hs = _hessian_blocks(plan, x, e_at, J, q)
        omega = _prior_precision(blk, _cholesky(x[sd_at:sd_at + blk.n_sd], q, blk.correlated))
        lam = -Hs - omega
        w, V = np.linalg.eigh(lam)  # a likelihood's curvature is semi-definite: clip the differences' noise
        lam = np.einsum("jab,jb,jcb->jac", V, np.maximum(w, 0.0), V)
        v = x[e_at:e_at + J * q].reshape(J, q)
        g_lik = g[e_at:e_at + J * q].reshape(J, q) + (v - _effects_mean(blk, x[:p])) @ omega
        approx[k] = (lam, np.einsum("jab,jb->ja", lam, v) + g_lik)
    return x, approx


class PreconditionedPlan:
    """The kernel's plan with each centred block's effects through the map of this module.

    Attributes
    ----------
    base : GlmmPlan
        :class:`bayesmlm.fastpath.glmm_fit.GlmmPlan`.
    design, dims, integrated :
        The base plan's.
    x_hat : ndarray
        The optimum (:func:`laplace_point`), in the kernel's coordinates.
    buffer : ndarray
        The kernel's buffer followed by this module's section.
    n_dim : int
    mapped : list of int
        The blocks mapped (their index in ``base.blocks``).
    """

    def __init__(self, base, x_hat: np.ndarray, approx: dict):
        self.base, self.x_hat, self.n_dim, self.dims, self.design = base, x_hat, base.n_dim, base.dims, base.design
        self.integrated = base.integrated
        self.mapped = sorted(approx)
        layout = _layout(base)
        n0 = len(base.buffer)
        head = [0.0, len(self.mapped)]
        start = n0 + len(head) + _SECTION * len(self.mapped)
        rows, arrays = [], []
        for k in self.mapped:
            lam, lv = approx[k]
            rows += [layout[k][0], start, start + lam.size]
            arrays += [lam.ravel(), lv.ravel()]
            start += lam.size + lv.size
        section = np.concatenate([np.asarray(head + rows, dtype=np.float64), *arrays])
        section[0] = len(section)
        self.buffer = np.concatenate([base.buffer, section])
        self.z_hat = np.empty(self.n_dim)
        to_z(np.ascontiguousarray(x_hat), self.buffer, self.z_hat)

    def initial_point(self, seed) -> np.ndarray:
        """The optimum in the sampler's coordinates, z_j there jittered by U(-1, 1) and b, the SDs by U(-0.1, 0.1)."""
        rng = np.random.default_rng(seed)
        z = self.z_hat.copy()
        mapped = np.zeros(self.n_dim, dtype=bool)
        for k in self.mapped:
            blk, e_at = self.base.blocks[k], _layout(self.base)[k][1]
            mapped[e_at:e_at + blk.n_levels * blk.q] = True
        return z + np.where(mapped, rng.uniform(-1.0, 1.0, self.n_dim), rng.uniform(-0.1, 0.1, self.n_dim))

    def to_x(self, z) -> np.ndarray:
        """The kernel's vector of a sampler's vector (for tests and checks)."""
        x = np.empty(self.n_dim)
        _map(np.ascontiguousarray(z, dtype=np.float64), self.buffer, x, np.empty(_work_size(self.buffer)))
        return x

    def logp(self, z) -> tuple[float, np.ndarray]:
        """The sampler's log density and gradient: the kernel's at :meth:`to_x` plus the log Jacobian."""
        grad = np.empty(self.n_dim)
        value = logp_grad(np.ascontiguousarray(z, dtype=np.float64), self.buffer, grad)
        return float(value), grad


def preconditioned_plan(base, iterations: int = 12) -> PreconditionedPlan:
    """The map of a :class:`~bayesmlm.fastpath.glmm_fit.GlmmPlan` at its :func:`laplace_point`.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.glmm_fit import glmm_plan
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> plan = preconditioned_plan(glmm_plan(m.design, m.prior_dict, parameterization={"herd": "centred"}))
    >>> plan.n_dim, plan.mapped
    (20, [0])
    """
    x_hat, approx = laplace_point(base, iterations)
    return PreconditionedPlan(base, x_hat, approx)


@numba.njit(**_OPTIONS)
def _omega(x, d, r, L, K, omega):
    """L of block row r from x; K = L^-1 A; Omega = K' K."""
    q, corr, sd_at, a_at = int(d[r + 1]), int(d[r + 3]), int(d[r + 5]), int(d[r + 11])
    for a in range(q):
        for c in range(q):
            L[a, c] = 0.0
    if corr == 0:
        for a in range(q):
            L[a, a] = math.exp(x[sd_at + a])
    else:
        i = sd_at
        for a in range(q):
            for c in range(a + 1):
                L[a, c] = math.exp(x[i]) if c == a else x[i]
                i += 1
    for c in range(q):  # forward substitution, column by column of A
        for a in range(q):
            acc = d[a_at + a * q + c]
            for s in range(a):
                acc -= L[a, s] * K[s, c]
            K[a, c] = acc / L[a, a]
    for a in range(q):
        for c in range(q):
            acc = 0.0
            for s in range(q):
                acc += K[s, a] * K[s, c]
            omega[a, c] = acc


@numba.njit(**_OPTIONS)
def _group(d, lam_at, lv_at, j, q, omega, w, o):
    """P_j = Lam_j + Omega = R R' (R lower), mu_j = P_j^-1 (Lam_j vhat_j + Omega H_j b); returns log det R.

    ``w[o:]`` holds R (q x q), then mu_j, then H_j b (read) and q floats of scratch (flat: no array views in the
    per-group loops, whose reference counting cost more than the arithmetic)."""
    lo, R, mu, hb, t = lam_at + j * q * q, o, o + q * q, o + q * q + q, o + q * q + 2 * q
    for a in range(q):
        for c in range(a + 1):
            acc = d[lo + a * q + c] + omega[a, c]
            for s in range(c):
                acc -= w[R + a * q + s] * w[R + c * q + s]
            if c == a:
                w[R + a * q + a] = math.sqrt(acc) if acc > 0.0 else 1e-150
            else:
                w[R + a * q + c] = acc / w[R + c * q + c]
        for c in range(a + 1, q):
            w[R + a * q + c] = 0.0
    for a in range(q):  # R t = rhs
        acc = d[lv_at + j * q + a]
        for c in range(q):
            acc += omega[a, c] * w[hb + c]
        for c in range(a):
            acc -= w[R + a * q + c] * w[t + c]
        w[t + a] = acc / w[R + a * q + a]
    logdet = 0.0
    for a in range(q - 1, -1, -1):  # R' mu = t
        acc = w[t + a]
        for c in range(a + 1, q):
            acc -= w[R + c * q + a] * w[mu + c]
        w[mu + a] = acc / w[R + a * q + a]
        logdet += math.log(w[R + a * q + a])
    return logdet


@numba.njit(**_OPTIONS)
def _hb(x, d, r, j, w, o):
    """H_j b of block row r into w[o:o + q] (zero without H)."""
    q, h_at, p = int(d[r + 1]), int(d[r + 10]), int(d[2])
    for a in range(q):
        acc = 0.0
        if h_at >= 0:
            for t in range(p):
                acc += d[h_at + (j * q + a) * p + t] * x[t]
        w[o + a] = acc


@numba.njit(**_OPTIONS)
def _work_size(d):
    """Floats of the scratch that :func:`_map` fills: per mapped group R_j (q x q), mu_j, H_j b and q of scratch."""
    n0 = int(d[0])
    size = 0
    for k in range(int(d[n0 + 1])):
        r = int(d[n0 + 2 + _SECTION * k])
        q, J = int(d[r + 1]), int(d[r + 2])
        size += J * q * (q + 3)
    return size


@numba.njit(**_OPTIONS)
def _map(z, d, x, work):
    """x from the sampler's z: v_j = mu_j + R_j^-T z_j in every mapped block; R_j, mu_j, H_j b into work;
    returns -sum log det R_j."""
    n0 = int(d[0])
    n_dim, m = int(d[1]), int(d[n0 + 1])
    for i in range(n_dim):
        x[i] = z[i]
    total = 0.0
    w_at = 0
    for k in range(m):
        r, lam_at, lv_at = int(d[n0 + 2 + _SECTION * k]), int(d[n0 + 3 + _SECTION * k]), int(d[n0 + 4 + _SECTION * k])
        q, J, e_at = int(d[r + 1]), int(d[r + 2]), int(d[r + 4])
        L, K, omega = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
        _omega(z, d, r, L, K, omega)
        for j in range(J):
            R = w_at + j * q * (q + 3)
            _hb(z, d, r, j, work, R + q * q + q)
            total -= _group(d, lam_at, lv_at, j, q, omega, work, R)
            o = e_at + j * q
            for a in range(q - 1, -1, -1):  # s = R^-T z_j
                acc = z[o + a]
                for c in range(a + 1, q):
                    acc -= work[R + c * q + a] * x[o + c]
                x[o + a] = acc / work[R + a * q + a]
            for a in range(q):
                x[o + a] += work[R + q * q + a]
        w_at += J * q * (q + 3)
    return total


@numba.njit(**_OPTIONS)
def to_z(x, d, z):
    """The inverse of :func:`_map` (z_j = R_j' (v_j - mu_j)): the sampler's vector of a kernel's vector."""
    n0 = int(d[0])
    n_dim, m = int(d[1]), int(d[n0 + 1])
    for i in range(n_dim):
        z[i] = x[i]
    for k in range(m):
        r, lam_at, lv_at = int(d[n0 + 2 + _SECTION * k]), int(d[n0 + 3 + _SECTION * k]), int(d[n0 + 4 + _SECTION * k])
        q, J, e_at = int(d[r + 1]), int(d[r + 2]), int(d[r + 4])
        L, K, omega = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
        w = np.empty(q * (q + 3))
        _omega(x, d, r, L, K, omega)
        for j in range(J):
            _hb(x, d, r, j, w, q * q + q)
            _group(d, lam_at, lv_at, j, q, omega, w, 0)
            o = e_at + j * q
            for c in range(q):
                acc = 0.0
                for a in range(c, q):
                    acc += w[a * q + c] * (x[o + a] - w[q * q + a])
                z[o + c] = acc
    return 0


@numba.njit(**_OPTIONS)
def logp_grad(z, d, grad):
    """The sampler's log density at z (the kernel's at x(z) plus the log Jacobian); its gradient into grad."""
    n0 = int(d[0])
    n_dim, m, p = int(d[1]), int(d[n0 + 1]), int(d[2])
    x = np.empty(n_dim)
    work = np.empty(_work_size(d))
    lp = _map(z, d, x, work)
    gx = np.empty(n_dim)
    lp += kernel.logp_grad(x, d, gx)
    for i in range(n_dim):
        grad[i] = gx[i]
    w_at = 0
    for k in range(m):
        r = int(d[n0 + 2 + _SECTION * k])
        q, J, corr, e_at = int(d[r + 1]), int(d[r + 2]), int(d[r + 3]), int(d[r + 4])
        sd_at, h_at = int(d[r + 5]), int(d[r + 10])
        n_sd = q * (q + 1) // 2 if corr == 1 else q
        L, K, omega = np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
        _omega(z, d, r, L, K, omega)
        # dOmega / d(each SD parameter): dK = -L^-1 dL K, dOmega = dK' K + K' dK
        dom = np.zeros((n_sd, q, q))
        dL = np.zeros((q, q))
        dK = np.empty((q, q))
        i = 0
        for a in range(q):
            for c in range(a + 1 if corr == 1 else 1):
                cc = c if corr == 1 else a
                for s in range(q):
                    for t in range(q):
                        dL[s, t] = 0.0
                dL[a, cc] = L[a, a] if cc == a else 1.0
                for t in range(q):  # dK[:, t] = -L^-1 (dL K[:, t])
                    for s in range(q):
                        acc = 0.0
                        for w in range(q):
                            acc -= dL[s, w] * K[w, t]
                        for w in range(s):
                            acc -= L[s, w] * dK[w, t]
                        dK[s, t] = acc / L[s, s]
                for s in range(q):
                    for t in range(q):
                        acc = 0.0
                        for w in range(q):
                            acc += dK[w, s] * K[w, t] + K[w, s] * dK[w, t]
                        dom[i, s, t] = acc
                i += 1
        g, gz, w_, e, y = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
        Rinv, S = np.empty((q, q)), np.zeros((q, q))
        for j in range(J):
            R = w_at + j * q * (q + 3)
            mu, hb = R + q * q, R + q * q + q
            o = e_at + j * q
            for a in range(q):
                g[a] = gx[o + a]
            for a in range(q):  # gz = R^-1 g (d/dz), then w = R^-T gz = P^-1 g
                acc = g[a]
                for c in range(a):
                    acc -= work[R + a * q + c] * gz[c]
                gz[a] = acc / work[R + a * q + a]
            for a in range(q - 1, -1, -1):
                acc = gz[a]
                for c in range(a + 1, q):
                    acc -= work[R + c * q + a] * w_[c]
                w_[a] = acc / work[R + a * q + a]
            for a in range(q):
                grad[o + a] = gz[a]
                e[a] = work[hb + a] - work[mu + a]
            if h_at >= 0:  # d mu / d b = P^-1 Omega H_j: b gets H_j' Omega w
                for a in range(q):
                    acc = 0.0
                    for c in range(q):
                        acc += omega[a, c] * w_[c]
                    for t in range(p):
                        grad[t] += d[h_at + (o - e_at + a) * p + t] * acc
            for a in range(q):  # R^-1 (lower)
                for c in range(q):
                    acc = 1.0 if a == c else 0.0
                    for s in range(a):
                        acc -= work[R + a * q + s] * Rinv[s, c]
                    Rinv[a, c] = acc / work[R + a * q + a]
            # d/dOmega, summed over groups and contracted with each dOmega once (below): from mu,
            # g' dmu = w' dOmega (H b - mu); from the map's R^-T z, -z' Phi(M) gz with M = R^-1 dOmega R^-T and
            # Phi the lower triangle with half the diagonal; from the log Jacobian -log det R, -tr(M) / 2. So
            # S += w (Hb - mu)' - R^-T E R^-1, E lower with E_ac = z_a gz_c (c < a), (z_a gz_a + 1) / 2 on the diagonal
            for a in range(q):
                for c in range(q):
                    S[a, c] += w_[a] * e[c]
            for a in range(q):
                y[a] = z[o + a]
            for a in range(q):
                for c in range(a + 1):
                    E = y[a] * gz[c] if c < a else 0.5 * (y[a] * gz[a] + 1.0)
                    for s in range(a + 1):
                        ras = Rinv[a, s] * E
                        for t in range(c + 1):
                            S[s, t] -= ras * Rinv[c, t]
        for i in range(n_sd):
            acc = 0.0
            for a in range(q):
                for c in range(q):
                    acc += dom[i, a, c] * S[a, c]
            grad[sd_at + i] += acc
        w_at += J * q * (q + 3)
    return lp


@numba.njit(**_OPTIONS)
def expand(z, d, out):
    """The kernel's expansion (fixef, SDs, correlations, u) of x(z)."""
    x = np.empty(int(d[1]))
    _map(z, d, x, np.empty(_work_size(d)))
    return kernel.expand(x, d, out)


_PTR = types.CPointer(types.double)


@numba.cfunc(types.int64(types.uint64, _PTR, _PTR, _PTR, types.voidptr), **_OPTIONS)
def logp_cfunc(dim, x_, grad_, logp_, data_):
    """nutpie's log-density callback: the buffer (the kernel's, then the section) is the model's user data."""
    head = numba.carray(data_, (kernel.HEAD,), dtype=np.float64)
    if dim != int(head[1]):
        return -1
    n0 = int(head[0])
    top = numba.carray(data_, (n0 + 1,), dtype=np.float64)
    d = numba.carray(data_, (n0 + int(top[n0]),), dtype=np.float64)
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
    head = numba.carray(data_, (kernel.HEAD,), dtype=np.float64)
    if dim != int(head[1]) or n_expanded != int(head[6]):
        return -1
    n0 = int(head[0])
    top = numba.carray(data_, (n0 + 1,), dtype=np.float64)
    d = numba.carray(data_, (n0 + int(top[n0]),), dtype=np.float64)
    return expand(numba.carray(x_, (dim,)), d, numba.carray(out_, (n_expanded,)))

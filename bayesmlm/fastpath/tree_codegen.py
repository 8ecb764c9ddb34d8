"""The nested route's tree likelihood written out for one structure (depth, terms per level, p, non-zero L).

:func:`bayesmlm.fastpath.tree_kernel.tree_terms` is the same algebra as
generic loops over every node's q x q blocks (its docstring has the math:
leaf-first block Cholesky, then the selected inverse top-down). Here every
loop over terms is unrolled into scalar statements for the structure at hand,
L's structural zeros are skipped, and only the non-leaf levels keep their
factors and inverses between the two passes: a leaf's blocks are recomputed
from its statistics in the second pass, so the leaves (most nodes) cost no
memory traffic beyond their statistics and nothing is allocated per leaf.
The generated ``tree_terms(gt, L, s2, tail)`` returns what the generic
kernel returns (dL on L's non-zero lower entries only) and goes into the
density kernel's source (:func:`bayesmlm.fastpath.kernels.density_source`),
so the C callback nutpie calls runs it without the GIL.
"""

from __future__ import annotations

__all__ = ["tree_terms_source", "tree_draws_source"]


def _sum(terms) -> str:
    terms = [t for t in terms if t]
    return " + ".join(terms) if terms else "0.0"


class _Levels:
    """Names and offsets of one structure: level l's terms are global indices off[l] .. off[l] + qs[l] - 1."""

    def __init__(self, qs, p, nz):
        self.qs, self.p, self.D = tuple(int(q) for q in qs), int(p), len(qs)
        self.off = [sum(self.qs[:l]) for l in range(self.D)]
        self.qmax = max(self.qs)
        self.nz = {(int(a), int(b)) for a, b in nz}

    def l(self, lv, a, b):
        """Entry (a, b) of level lv's Cholesky block (local indices), or None where it is zero."""
        g = (self.off[lv] + a, self.off[lv] + b)
        return f"l_{g[0]}_{g[1]}" if a >= b and g in self.nz else None

    def nz_local(self, lv):
        q = self.qs[lv]
        return [(a, b) for a in range(q) for b in range(a + 1) if self.l(lv, a, b)]


def _prod(x, y):
    return f"{x} * {y}" if x and y else None


def _z_lines(q: int, p: int, Q: int, ind: str) -> list[str]:
    """z_a = Z_i'y - Z_i'X gamma for node i, one statement per term a."""
    out = []
    for a in range(q):
        xz = [f"gt{k} * t[XZ0 + (i * {p} + {k}) * {Q} + {a}]" for k in range(p)]
        out.append(f"{ind}z_{a} = t[ZY0 + i * {Q} + {a}] - ({_sum(xz)})")
    return out


def _node_forward(S: _Levels, lv: int, ind: str, acc: bool, fail: str = "return FAIL") -> list[str]:
    """Statements for node i at level lv: z, S blocks, K = L'SL + s2 I (+ acc), M_im, h; Cholesky C, w, F_im.

    Names: z_a, s{m}_a_c (S_im), k_a_c, m{m}_a_c, c_a_b (C), w_a, f{m}_a_c (F_im = C^-1 M_im).
    """
    q, D, p, Q = S.qs[lv], S.D, S.p, S.qmax
    out = []
    out.extend(_z_lines(q, p, Q, ind))
    for m in range(lv + 1):
        for a in range(q):
            for c in range(S.qs[m]):
                if m == lv and c > a:
                    continue  # S_ii is symmetric: its lower triangle is read
                out.append(f"{ind}s{m}_{a}_{c} = t[ZZ0 + ((i * {D} + {m}) * {Q} + {a}) * {Q} + {c}]")

    def s(m, a, c):
        if m == lv and c > a:
            return f"s{m}_{c}_{a}"
        return f"s{m}_{a}_{c}"

    for a in range(q):  # b = L_l' z
        out.append(f"{ind}w_{a} = " + _sum([_prod(S.l(lv, d, a), f"z_{d}") for d in range(a, q)])
                   + (f" + H{lv}[j, {a}]" if acc else ""))
    for m in range(lv + 1):
        qm = S.qs[m]
        for a in range(q):  # sl = S_im L_m
            for c in range(qm):
                out.append(f"{ind}sl_{a}_{c} = " + _sum([_prod(s(m, a, d), S.l(m, d, c)) for d in range(c, qm)]))
        for a in range(q):  # L_l' sl
            for c in range(qm):
                if m == lv and c > a:
                    continue
                v = _sum([_prod(S.l(lv, d, a), f"sl_{d}_{c}") for d in range(a, q)])
                if m == lv:
                    extra = (" + s2" if a == c else "") + (f" + K{lv}[j, {a * q + c}]" if acc else "")
                    out.append(f"{ind}k_{a}_{c} = {v}{extra}")
                else:
                    extra = f" + F{lv}_{m}[j, {a * qm + c}]" if acc else ""
                    out.append(f"{ind}m{m}_{a}_{c} = {v}{extra}")
    for c in range(q):  # C C' = K
        piv = f"k_{c}_{c} - (" + _sum([f"c_{c}_{k} * c_{c}_{k}" for k in range(c)]) + ")"
        out += [f"{ind}piv = {piv}", f"{ind}if not piv > 0.0:", f"{ind}    {fail}",
                f"{ind}c_{c}_{c} = math.sqrt(piv)", f"{ind}r_{c} = 1.0 / c_{c}_{c}", f"{ind}logdet += math.log(piv)"]
        for r in range(c + 1, q):
            out.append(f"{ind}c_{r}_{c} = (k_{r}_{c} - (" + _sum([f"c_{r}_{k} * c_{c}_{k}" for k in range(c)]) + f")) * r_{c}")
    for a in range(q):  # w = C^-1 b
        out.append(f"{ind}w_{a} = (w_{a} - (" + _sum([f"c_{a}_{k} * w_{k}" for k in range(a)]) + f")) * r_{a}")
    out.append(f"{ind}quad += " + _sum([f"w_{a} * w_{a}" for a in range(q)]))
    for m in range(lv):  # F_im = C^-1 M_im
        for c in range(S.qs[m]):
            for a in range(q):
                out.append(f"{ind}f{m}_{a}_{c} = (m{m}_{a}_{c} - (" + _sum([f"c_{a}_{k} * f{m}_{k}_{c}" for k in range(a)])
                           + f")) * r_{a}")
    return out


def _ancestors(S: _Levels, lv: int, ind: str) -> list[str]:
    """a{m}: node i's ancestor at level m, as a row of that level's arrays."""
    return [f"{ind}a{m} = int(t[ANC0 + i * {S.D} + {m}]) - st{m}" for m in range(lv)]


def _forward(S: _Levels, fail: str = "return FAIL", keep_leaves: bool = False) -> list[str]:
    out = []
    ind = " " * 8
    for lv in range(S.D - 1, -1, -1):
        q, leaf = S.qs[lv], lv == S.D - 1
        out.append(f"    for i in range(st{lv}, st{lv + 1}):")
        out.append(f"{ind}j = i - st{lv}")
        out += _ancestors(S, lv, ind)
        out += _node_forward(S, lv, ind, acc=not leaf, fail=fail)
        for m in range(lv):  # the ancestors' updates: b_a -= F_m' w, M_a,a2 -= F_m' F_m2
            qm = S.qs[m]
            for c in range(qm):
                out.append(f"{ind}H{m}[a{m}, {c}] -= " + _sum([f"f{m}_{k}_{c} * w_{k}" for k in range(q)]))
            for m2 in range(m + 1):
                for c in range(qm):
                    for e in range(S.qs[m2]):
                        if m2 == m and e > c:
                            continue
                        target = f"K{m}[a{m}, {c * qm + e}]" if m2 == m else f"F{m}_{m2}[a{m}, {c * S.qs[m2] + e}]"
                        out.append(f"{ind}{target} -= " + _sum([f"f{m}_{k}_{c} * f{m2}_{k}_{e}" for k in range(q)]))
        if not leaf or keep_leaves:  # keep C, w and F for the second pass
            out += [f"{ind}K{lv}[j, {a * q + b}] = c_{a}_{b}" for a in range(q) for b in range(a + 1)]
            out += [f"{ind}H{lv}[j, {a}] = w_{a}" for a in range(q)]
            out += [f"{ind}F{lv}_{m}[j, {a * S.qs[m] + c}] = f{m}_{a}_{c}" for m in range(lv) for a in range(q)
                    for c in range(S.qs[m])]
    return out


def _stored(S: _Levels, lv: int, ind: str) -> list[str]:
    """A non-leaf node's C, w and F from the first pass, and its S blocks and z from the tail."""
    q, D, p, Q = S.qs[lv], S.D, S.p, S.qmax
    out = []
    out.extend(_z_lines(q, p, Q, ind))
    for m in range(lv + 1):
        for a in range(q):
            for c in range(S.qs[m]):
                if not (m == lv and c > a):
                    out.append(f"{ind}s{m}_{a}_{c} = t[ZZ0 + ((i * {D} + {m}) * {Q} + {a}) * {Q} + {c}]")
    out += [f"{ind}c_{a}_{b} = K{lv}[j, {a * q + b}]" for a in range(q) for b in range(a + 1)]
    out += [f"{ind}r_{a} = 1.0 / c_{a}_{a}" for a in range(q)]
    out += [f"{ind}w_{a} = H{lv}[j, {a}]" for a in range(q)]
    out += [f"{ind}f{m}_{a}_{c} = F{lv}_{m}[j, {a * S.qs[m] + c}]" for m in range(lv) for a in range(q)
            for c in range(S.qs[m])]
    return out


def _wpair(S: _Levels, m2: int, m: int, e: int, c: int) -> str:
    """W between node i's ancestors at levels m2 and m, entry (e, c)."""
    if m2 == m:
        return f"WD{m}[a{m}, {e * S.qs[m] + c}]"
    if m2 > m:
        return f"WO{m2}_{m}[a{m2}, {e * S.qs[m] + c}]"
    return f"WO{m}_{m2}[a{m}, {c * S.qs[m2] + e}]"


def _vanc(m: int, c: int) -> str:
    return f"V{m}[a{m}, {c}]"


def _backward(S: _Levels) -> list[str]:
    out = []
    ind = " " * 8
    for lv in range(S.D):
        q, leaf = S.qs[lv], lv == S.D - 1
        out.append(f"    for i in range(st{lv}, st{lv + 1}):")
        out.append(f"{ind}j = i - st{lv}")
        out += _ancestors(S, lv, ind)
        if leaf:
            body = _node_forward(S, lv, ind, acc=False)
            out += [x for x in body if "logdet +=" not in x and "quad +=" not in x]
        else:
            out += _stored(S, lv, ind)
        for c in range(q):  # ci = C^-1 (lower)
            out.append(f"{ind}ci_{c}_{c} = r_{c}")
            for r in range(c + 1, q):
                out.append(f"{ind}ci_{r}_{c} = -(" + _sum([f"c_{r}_{k} * ci_{k}_{c}" for k in range(c, r)]) + f") * r_{r}")

        def ci(a, b):
            return f"ci_{a}_{b}" if a >= b else None

        for a in range(q):  # v = C^-T (w - sum_m F_im v_anc)
            out.append(f"{ind}tt_{a} = w_{a} - (" + _sum([f"f{m}_{a}_{c} * {_vanc(m, c)}" for m in range(lv)
                                                          for c in range(S.qs[m])]) + ")")
        for a in range(q - 1, -1, -1):
            out.append(f"{ind}v_{a} = (tt_{a} - (" + _sum([f"c_{k}_{a} * v_{k}" for k in range(a + 1, q)]) + f")) * r_{a}")
        for m in range(lv):  # W_im = -C^-T sum_m2 F_im2 W(m2, m)
            for c in range(S.qs[m]):
                for a in range(q):
                    out.append(f"{ind}rr_{a} = " + _sum([f"f{m2}_{a}_{e} * {_wpair(S, m2, m, e, c)}" for m2 in range(lv)
                                                        for e in range(S.qs[m2])]))
                for a in range(q):
                    out.append(f"{ind}wo{m}_{a}_{c} = -(" + _sum([_prod(ci(k, a), f"rr_{k}") for k in range(a, q)]) + ")")
        for a in range(q):  # W_ii = C^-T (C^-1 - sum_m F_im W_im')
            for c in range(q):
                out.append(f"{ind}rd_{a}_{c} = " + (ci(a, c) or "0.0") + " - (" + _sum(
                    [f"f{m}_{a}_{e} * wo{m}_{c}_{e}" for m in range(lv) for e in range(S.qs[m])]) + ")")
        for a in range(q):
            for c in range(q):
                out.append(f"{ind}wd_{a}_{c} = " + _sum([_prod(ci(k, a), f"rd_{k}_{c}") for k in range(a, q)]))
        out.append(f"{ind}ts2 += " + _sum([f"wd_{a}_{a} + v_{a} * v_{a} * is2" for a in range(q)]))
        for m in range(lv + 1):
            qm = S.qs[m]
            for a in range(q):  # G_im
                for c in range(qm):
                    w = f"wd_{a}_{c}" if m == lv else f"wo{m}_{a}_{c}"
                    vv = f"v_{c}" if m == lv else _vanc(m, c)
                    out.append(f"{ind}g_{a}_{c} = {w} + v_{a} * {vv} * is2")

            def s(a, c):
                return f"s{m}_{c}_{a}" if m == lv and c > a else f"s{m}_{a}_{c}"

            for a in range(q):  # SL = S_im L_m
                for c in range(qm):
                    out.append(f"{ind}sl_{a}_{c} = " + _sum([_prod(s(a, d), S.l(m, d, c)) for d in range(c, qm)]))
            for a, c in S.nz_local(lv):  # dL_l += 2 S_im L_m G_im'
                out.append(f"{ind}dl_{S.off[lv] + a}_{S.off[lv] + c} += 2.0 * ("
                           + _sum([f"sl_{a}_{e} * g_{c}_{e}" for e in range(qm)]) + ")")
            if m < lv:  # dL_m += 2 S_im' L_l G_im
                for a in range(qm):
                    for d in range(q):
                        out.append(f"{ind}st_{a}_{d} = " + _sum([_prod(s(e, a), S.l(lv, e, d)) for e in range(d, q)]))
                for a, c in S.nz_local(m):
                    out.append(f"{ind}dl_{S.off[m] + a}_{S.off[m] + c} += 2.0 * ("
                               + _sum([f"st_{a}_{d} * g_{d}_{c}" for d in range(q)]) + ")")
        for a, c in S.nz_local(lv):
            out.append(f"{ind}dl_{S.off[lv] + a}_{S.off[lv] + c} -= 2.0 * z_{a} * v_{c} * is2")
        for a in range(q):  # dz = -2 L v / s2; dgt -= dz X'Z
            out.append(f"{ind}dz_{a} = -2.0 * (" + _sum([_prod(S.l(lv, a, b), f"v_{b}") for b in range(a + 1)]) + ") * is2")
        for k in range(S.p):
            out.append(f"{ind}dgt{k} -= " + _sum([f"dz_{a} * t[XZ0 + (i * {S.p} + {k}) * {S.qmax} + {a}]" for a in range(q)]))
        if not leaf:
            out += [f"{ind}V{lv}[j, {a}] = v_{a}" for a in range(q)]
            out += [f"{ind}WD{lv}[j, {a * q + c}] = wd_{a}_{c}" for a in range(q) for c in range(q)]
            out += [f"{ind}WO{lv}_{m}[j, {a * S.qs[m] + c}] = wo{m}_{a}_{c}" for m in range(lv) for a in range(q)
                    for c in range(S.qs[m])]
    return out


def tree_terms_source(qs, p: int, nz) -> str:
    """Source of ``tree_terms(gt, L, s2, t)`` for one structure: T and its gradient, as the generic kernel's.

    Parameters
    ----------
    qs : sequence of int
        Random terms per level, top first.
    p : int
        Fixed-effect columns.
    nz : iterable of (int, int)
        L's structurally non-zero lower entries (global indices); dL is filled there only.

    The function needs ``math`` and ``numpy as np`` in its module and returns
    (T, dT/dgt (p,), dT/dL (Q, Q), dT/ds2, number of effects), NaN for T and
    dT/ds2 where a block of M is not positive definite.

    Examples
    --------
    >>> src = tree_terms_source((2, 1), 2, [(0, 0), (1, 0), (1, 1), (2, 2)])
    >>> src.splitlines()[0]
    'def tree_terms(gt, L, s2, t):'
    """
    S = _Levels(qs, p, nz)
    D, Q, n_nz = S.D, S.qmax, sorted(S.nz)
    lines = ["def tree_terms(gt, L, s2, t):", "    n = int(t[0])", f"    ANC0 = 2 + n", f"    ZZ0 = ANC0 + n * {D}",
             f"    ZY0 = ZZ0 + n * {D * Q * Q}", f"    XZ0 = ZY0 + n * {Q}", "    lev = t[2:2 + n]", "    st0 = 0"]
    lines += [f"    st{lv} = int(np.searchsorted(lev, {lv - 0.5}))" for lv in range(1, D)] + [f"    st{D} = n"]
    lines += [f"    gt{k} = gt[{k}]" for k in range(p)] + [f"    l_{a}_{b} = L[{a}, {b}]" for a, b in n_nz]
    lines += ["    is2 = 1.0 / s2", "    logdet = 0.0", "    quad = 0.0", "    ts2 = 0.0"]
    lines += [f"    dgt{k} = 0.0" for k in range(p)] + [f"    dl_{a}_{b} = 0.0" for a, b in n_nz]
    lines.append(f"    FAIL = (np.nan, np.zeros({p}), np.zeros(({sum(S.qs)}, {sum(S.qs)})), np.nan, t[1])")
    for m in range(D - 1):  # the non-leaf levels' blocks, kept between the passes
        q = S.qs[m]
        rows = f"st{m + 1} - st{m}"
        lines += [f"    K{m} = np.zeros(({rows}, {q * q}))", f"    H{m} = np.zeros(({rows}, {q}))",
                  f"    V{m} = np.empty(({rows}, {q}))", f"    WD{m} = np.empty(({rows}, {q * q}))"]
        for m2 in range(m):
            lines += [f"    F{m}_{m2} = np.zeros(({rows}, {q * S.qs[m2]}))", f"    WO{m}_{m2} = np.empty(({rows}, {q * S.qs[m2]}))"]
    lines += _forward(S)
    lines += _backward(S)
    lines.append(f"    dgt = np.empty({p})")
    lines += [f"    dgt[{k}] = dgt{k}" for k in range(p)]
    lines.append(f"    dL = np.zeros(({sum(S.qs)}, {sum(S.qs)}))")
    lines += [f"    dL[{a}, {b}] = dl_{a}_{b}" for a, b in n_nz]
    lines.append("    ts2 += quad * is2 * is2")
    lines.append("    return logdet - quad * is2, dgt, dL, ts2, t[1]")
    return "\n".join(lines) + "\n"


def tree_draws_source(qs, p: int, nz) -> str:
    """Source of ``tree_draws(gt, L, sigma, t, eps)``: u (S, nodes, qmax), one exact joint draw per posterior draw.

    The structure's version of :func:`bayesmlm.fastpath.tree_kernel.tree_draws`
    (same arguments without ``qs`` and ``qoff``, same result): per draw, the
    first pass of :func:`tree_terms_source` keeping every node's blocks, then
    x = C^-T (w + sigma e - sum_m F_im x_anc) top-down and u = L x. A draw
    whose M is not positive definite is NaN.

    Examples
    --------
    >>> tree_draws_source((1, 1), 1, [(0, 0), (1, 1)]).splitlines()[0]
    'def tree_draw(gt, L, s2, sigma, t, e, u):'
    """
    S = _Levels(qs, p, nz)
    D, Q, n_nz = S.D, S.qmax, sorted(S.nz)
    lines = ["def tree_draw(gt, L, s2, sigma, t, e, u):", "    n = int(t[0])", "    ANC0 = 2 + n",
             f"    ZZ0 = ANC0 + n * {D}", f"    ZY0 = ZZ0 + n * {D * Q * Q}", f"    XZ0 = ZY0 + n * {Q}",
             "    lev = t[2:2 + n]", "    st0 = 0"]
    lines += [f"    st{lv} = int(np.searchsorted(lev, {lv - 0.5}))" for lv in range(1, D)] + [f"    st{D} = n"]
    lines += [f"    gt{k} = gt[{k}]" for k in range(p)] + [f"    l_{a}_{b} = L[{a}, {b}]" for a, b in n_nz]
    lines += ["    logdet = 0.0", "    quad = 0.0"]
    for m in range(D):
        q = S.qs[m]
        rows = f"st{m + 1} - st{m}"
        lines += [f"    K{m} = np.zeros(({rows}, {q * q}))", f"    H{m} = np.zeros(({rows}, {q}))",
                  f"    X{m} = np.empty(({rows}, {q}))"]
        lines += [f"    F{m}_{m2} = np.zeros(({rows}, {q * S.qs[m2]}))" for m2 in range(m)]
    lines += _forward(S, fail="return 1", keep_leaves=True)
    ind = " " * 8
    for lv in range(D):
        q = S.qs[lv]
        lines += [f"    for i in range(st{lv}, st{lv + 1}):", f"{ind}j = i - st{lv}"] + _ancestors(S, lv, ind)
        for a in range(q):
            anc = [f"F{lv}_{m}[j, {a * S.qs[m] + c}] * X{m}[a{m}, {c}]" for m in range(lv) for c in range(S.qs[m])]
            lines.append(f"{ind}tt_{a} = H{lv}[j, {a}] + sigma * e[i, {a}] - ({_sum(anc)})")
        for a in range(q - 1, -1, -1):
            back = [f"K{lv}[j, {k * q + a}] * x_{k}" for k in range(a + 1, q)]
            lines.append(f"{ind}x_{a} = (tt_{a} - ({_sum(back)})) / K{lv}[j, {a * q + a}]")
        lines += [f"{ind}X{lv}[j, {a}] = x_{a}" for a in range(q)]
        lines += [f"{ind}u[i, {a}] = " + _sum([_prod(S.l(lv, a, b), f"x_{b}") for b in range(a + 1)]) for a in range(q)]
    lines.append("    return 0")
    lines += ["", "", "def tree_draws(gt, L, sigma, t, e):", "    n = int(t[0])",
              f"    u = np.zeros((gt.shape[0], n, {Q}))", "    for s in range(gt.shape[0]):",
              "        if tree_draw(gt[s], L[s], sigma[s] * sigma[s], sigma[s], t, e[s], u[s]) != 0:",
              "            u[s] = np.nan", "    return u"]
    return "\n".join(lines) + "\n"

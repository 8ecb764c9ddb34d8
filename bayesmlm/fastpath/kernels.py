"""Numba kernels of the fast path's q x q algebra, written out for each q.

Per group j (and, for the recovery, per posterior draw), with S = Z_j'Z_j,
z = Z_j'r_j and T = L L':

    M = sigma^2 I + L' S L = C C',   b = L' z,   w = C^-1 b,   v = C^-T w = M^-1 b.

``group_terms`` returns T_sum = sum_j [2 sum_i log C_ii - |w|^2 / sigma^2] and
its gradient in z, L and sigma^2 (see :mod:`bayesmlm.fastpath.op`);
``conditional_draws`` returns u = L C^-T (w + sigma e), an exact draw from
u_j's Gaussian conditional (see :mod:`bayesmlm.fastpath.recover`).

A generic loop over q x q matrices ran at about 100 ns per group; the same
algebra written as straight-line code for a fixed q runs several times
faster, so the source of each kernel is generated for the q at hand (every
loop over terms unrolled into scalar statements; the likelihood's factorisation
is the square-root-free M = Lt D Lt', one logarithm per group), written to a cache folder
(``$BAYESMLM_CACHE`` or ``~/.cache/bayesmlm``) and compiled by Numba with its
on-disk cache: each q is compiled once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["group_terms_kernel", "conditional_draws_kernel", "kernel_source", "DensityPlan", "density_source",
           "density_kernels", "pack_data", "tree_kernels"]

_VERSION = 3
# Reassociation and contraction, but not "no NaN / no infinity": a NaN must still reach the sampler.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _lower(q):
    return [(a, b) for a in range(q) for b in range(a + 1)]


def _sum(terms):
    return " + ".join(terms) if terms else "0.0"


def _common(q: int, zr: str, indent: str) -> list[str]:
    """Statements from S (s_a_b), L (l_a_b), s2 and z (z_a) to M, C, logdet, w, quad and v."""
    lines = []
    for a in range(q):  # SL[a, c] = sum_{d >= c} S[a, d] L[d, c]
        for c in range(q):
            lines.append(f"sl_{a}_{c} = " + _sum([f"s_{min(a, d)}_{max(a, d)} * l_{d}_{c}" for d in range(c, q)]))
    for a in range(q):  # M[a, c] = sum_{d >= a} L[d, a] SL[d, c]
        for c in range(a, q):
            extra = " + s2" if a == c else ""
            lines.append(f"m_{a}_{c} = " + _sum([f"l_{d}_{a} * sl_{d}_{c}" for d in range(a, q)]) + extra)
        lines.append(f"b_{a} = " + _sum([f"l_{d}_{a} * {zr.format(d)}" for d in range(a, q)]))
    for i in range(q):  # M = C C'
        for m in range(i + 1):
            rest = f"m_{m}_{i}" + "".join(f" - c_{i}_{n} * c_{m}_{n}" for n in range(m))
            lines.append(f"c_{i}_{m} = math.sqrt({rest})" if i == m else f"c_{i}_{m} = ({rest}) / c_{m}_{m}")
    lines.append("logdet = " + _sum([f"2.0 * math.log(c_{i}_{i})" for i in range(q)]))
    for i in range(q):
        lines.append(f"w_{i} = (b_{i}" + "".join(f" - c_{i}_{n} * w_{n}" for n in range(i)) + f") / c_{i}_{i}")
    lines.append("quad = " + _sum([f"w_{i} * w_{i}" for i in range(q)]))
    for i in reversed(range(q)):
        lines.append(f"v_{i} = (w_{i}" + "".join(f" - c_{n}_{i} * v_{n}" for n in range(i + 1, q)) + f") / c_{i}_{i}")
    return [indent + line for line in lines]


def _ldl(q: int, indent: str, nz=None) -> list[str]:
    """Statements from S, L, s2 and z to M = Lt D Lt' (unit lower Lt, no square roots), logdet, quad, v and M^-1.

    ``nz``: the entries (a, b) of L that can be non-zero (default: the whole lower triangle).
    """
    nz = set(_lower(q)) if nz is None else set(nz)
    lines = []
    for a in range(q):
        for c in range(q):
            lines.append(f"sl_{a}_{c} = " + _sum([f"s_{min(a, d)}_{max(a, d)} * l_{d}_{c}" for d in range(c, q)
                                                   if (d, c) in nz]))
    for a in range(q):
        for c in range(a, q):
            extra = " + s2" if a == c else ""
            lines.append(f"m_{a}_{c} = " + _sum([f"l_{d}_{a} * sl_{d}_{c}" for d in range(a, q) if (d, a) in nz]) + extra)
        lines.append(f"b_{a} = " + _sum([f"l_{d}_{a} * z_{d}" for d in range(a, q) if (d, a) in nz]))
    for i in range(q):
        for j in range(i):
            rest = f"m_{j}_{i}" + "".join(f" - lt_{i}_{k} * lt_{j}_{k} * d_{k}" for k in range(j))
            lines.append(f"lt_{i}_{j} = ({rest}) * r_{j}")
        lines.append(f"d_{i} = m_{i}_{i}" + "".join(f" - lt_{i}_{k} * lt_{i}_{k} * d_{k}" for k in range(i)))
        lines.append(f"r_{i} = 1.0 / d_{i}")
    lines.append("logdet = math.log(" + " * ".join(f"d_{i}" for i in range(q)) + ")")
    for i in range(q):
        lines.append(f"y_{i} = b_{i}" + "".join(f" - lt_{i}_{k} * y_{k}" for k in range(i)))
    lines.append("quad = " + _sum([f"y_{i} * y_{i} * r_{i}" for i in range(q)]))
    for i in reversed(range(q)):
        lines.append(f"v_{i} = y_{i} * r_{i}" + "".join(f" - lt_{k}_{i} * v_{k}" for k in range(i + 1, q)))
    for i in range(q):  # li = Lt^-1, unit lower
        for m in range(i):
            lines.append(f"li_{i}_{m} = -(" + " + ".join(f"lt_{i}_{n} * li_{n}_{m}" if n != m else f"lt_{i}_{m}"
                                                        for n in range(m, i)) + ")")
    def li(n, a):
        return "1.0" if n == a else f"li_{n}_{a}"
    for a in range(q):  # M^-1 = li' D^-1 li
        for c in range(a, q):
            lines.append(f"mi_{a}_{c} = " + _sum([f"{li(n, a)} * r_{n} * {li(n, c)}" for n in range(c, q)]))
    return [indent + line for line in lines]


def _load_s(q: int, source: str, indent: str) -> list[str]:
    lines, k = [], 0
    for a in range(q):
        for b in range(a, q):
            lines.append(f"{indent}s_{a}_{b} = {source}[{k}, j]")
            k += 1
    return lines


def _group_terms_source(q: int) -> str:
    ind = " " * 8
    lines = ["def group_terms(ztz, zr, L, s2):", "    J = zr.shape[1]", "    total = 0.0", "    ds2 = 0.0",
             f"    dzr = np.empty(({q}, J))"]
    lines += [f"    l_{a}_{b} = L[{a}, {b}]" for a, b in _lower(q)]
    lines += [f"    dl_{a}_{b} = 0.0" for a in range(q) for b in range(q)]
    lines += ["    for j in range(J):"] + _load_s(q, "ztz", ind)
    lines += [f"{ind}z_{a} = zr[{a}, j]" for a in range(q)]
    lines += _ldl(q, ind)
    lines.append(f"{ind}total += logdet - quad / s2")
    for a in range(q):  # G = M^-1 + v v' / s2
        for c in range(a, q):
            lines.append(f"{ind}g_{a}_{c} = mi_{a}_{c} + v_{a} * v_{c} / s2")
    lines.append(f"{ind}ds2 += " + _sum([f"g_{a}_{a}" for a in range(q)]) + " + quad / (s2 * s2)")
    for x in range(q):
        for y in range(q):
            g = _sum([f"sl_{x}_{c} * g_{min(c, y)}_{max(c, y)}" for c in range(q)])
            lines.append(f"{ind}dl_{x}_{y} += 2.0 * ({g}) - 2.0 * z_{x} * v_{y} / s2")
        lines.append(f"{ind}dzr[{x}, j] = -2.0 * (" + _sum([f"l_{x}_{a} * v_{a}" for a in range(x + 1)]) + ") / s2")
    rows = ", ".join("[" + ", ".join(f"dl_{a}_{b}" for b in range(q)) + "]" for a in range(q))
    lines.append(f"    return total, dzr, np.array([{rows}]), ds2")
    lines += ["", "", "def group_terms_op(ztz, zr, L, s2):",
              "    total, dzr, dL, ds2 = group_terms(ztz, zr, L, s2[()])",
              "    return np.asarray(total), dzr, dL, np.asarray(ds2)"]
    return "\n".join(lines)


def _conditional_draws_source(q: int) -> str:
    ind = " " * 12
    lines = ["def conditional_draws(L, sigma, ztz, zty, xtz, gamma, eps):",
             "    S, J = gamma.shape[0], zty.shape[1]", "    p = gamma.shape[1]", f"    u = np.empty((S, J, {q}))",
             "    for s in range(S):", "        s2 = sigma[s] * sigma[s]"]
    lines += [f"        l_{a}_{b} = L[s, {a}, {b}]" for a, b in _lower(q)]
    lines += ["        for j in range(J):"] + _load_s(q, "ztz", ind)
    for a in range(q):
        lines += [f"{ind}z_{a} = zty[{a}, j]", f"{ind}for k in range(p):", f"{ind}    z_{a} -= gamma[s, k] * xtz[{a}, k, j]"]
    lines += _common(q, "z_{}", ind)
    for i in range(q):  # t = C^-T (w + sigma e)
        lines.append(f"{ind}e_{i} = w_{i} + sigma[s] * eps[s, j, {i}]")
    for i in reversed(range(q)):
        lines.append(f"{ind}t_{i} = (e_{i}" + "".join(f" - c_{n}_{i} * t_{n}" for n in range(i + 1, q)) + f") / c_{i}_{i}")
    for a in range(q):  # u = L t
        lines.append(f"{ind}u[s, j, {a}] = " + _sum([f"l_{a}_{b} * t_{b}" for b in range(a + 1)]))
    lines.append("    return u")
    return "\n".join(lines)


def kernel_source(kind: str, q: int) -> str:
    """The generated source of a kernel (``"group_terms"`` or ``"conditional_draws"``) for q terms.

    Examples
    --------
    >>> "math.sqrt" in kernel_source("conditional_draws", 2)
    True
    """
    body = {"group_terms": _group_terms_source, "conditional_draws": _conditional_draws_source}[kind](int(q))
    return "import math\n\nimport numpy as np\n\n\n" + body + "\n"


def _cache_dir() -> Path:
    root = os.environ.get("BAYESMLM_CACHE") or Path.home() / ".cache" / "bayesmlm"
    return Path(root) / "kernels"


def _load(stem: str, source: str, jitted: tuple[str, ...], cfuncs: dict | None = None):
    """Write a kernel's source to the cache folder (once), import it, and compile its functions with Numba's disk cache.

    ``jitted`` are compiled as ``numba.njit`` functions (nogil: a caller may run them in threads), then
    ``cfuncs`` (name to C signature) as C callbacks, which may call the jitted ones.
    """
    import numba

    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}_v{_VERSION}_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"bayesmlm_kernel_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache and PyTensor's wrappers look functions up by module name
    spec.loader.exec_module(module)
    # error_model="numpy": a division by zero gives inf or NaN (a rejected proposal), not an exception
    options = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy"}
    for name in jitted:
        setattr(module, name, numba.njit(nogil=True, **options)(getattr(module, name)))
    for name, signature in (cfuncs or {}).items():
        setattr(module, name, numba.cfunc(signature, **options)(getattr(module, name)))
    return module


@lru_cache(maxsize=None)
def _module(kind: str, q: int):
    names = {"group_terms": ("group_terms", "group_terms_op"), "conditional_draws": ("conditional_draws",)}[kind]
    return _load(f"{kind}_q{q}", kernel_source(kind, q), names)


def group_terms_kernel(q: int, *, op: bool = False):
    """The compiled group-terms kernel for q random terms (``op=True``: scalars as 0-d arrays, for PyTensor).

    Examples
    --------
    >>> import numpy as np
    >>> T, dz, dL, ds2 = group_terms_kernel(1)(np.ones((1, 2)), np.zeros((1, 2)), np.eye(1), 1.0)
    >>> round(float(T), 6)
    1.386294
    """
    module = _module("group_terms", int(q))
    return module.group_terms_op if op else module.group_terms


def conditional_draws_kernel(q: int):
    """The compiled kernel drawing u per (draw, group) for q random terms (see :mod:`bayesmlm.fastpath.recover`).

    Examples
    --------
    >>> import numpy as np
    >>> u = conditional_draws_kernel(1)(np.ones((1, 1, 1)), np.ones(1), np.ones((1, 2)), np.zeros((1, 2)),
    ...                                 np.zeros((1, 1, 2)), np.zeros((1, 1)), np.zeros((1, 2, 1)))
    >>> u.shape
    (1, 2, 1)
    """
    return _module("conditional_draws", int(q)).conditional_draws


# -- the collapsed model's whole log-density, for the sampler ------------------------------------------------------

_POSITIVE = ("half_normal", "half_student_t", "exponential")  # sampled on the log scale, as PyMC's default transform
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)


@dataclass(frozen=True)
class DensityPlan:
    """What the collapsed log-density kernel is generated from: sizes, prior families, where each number sits.

    A prior is ``(dist, offsets)``: a distribution of :mod:`bayesmlm.design.priors` and
    the positions of its parameters (in that module's order) in ``constants``.

    Attributes
    ----------
    fixed : tuple of priors
        One per fixed coefficient (the intercept's is on the outcome at the
        predictors' means).
    intercept : int
        Index of the intercept among the fixed terms; -1 without one.
    blocks : tuple of (size, correlated, sd priors, eta offset)
        The random blocks in Z's column order: one SD prior per term, and the
        LKJ parameter's position (-1 when the block is not correlated).
    sigma : prior
    slots : tuple of int
        Positions in ``constants`` of x_centre, x_shift, y_shift, n_obs,
        xtx_total, xty_total, yty_total and log_w_total.
    n_const : int
        Length of ``constants``. ``group_stats`` has the rows Z'Z (upper
        triangle, by rows), Z'y (q rows), then X'Z (p rows per random term).

    The unconstrained vector is the PyMC model's (:mod:`bayesmlm.fastpath.model`):
    the fixed coefficients, then per block the packed Cholesky factor with its
    diagonal on the log scale (correlated) or the log SDs, then log sigma; a
    prior of a positive distribution is on the log scale with its Jacobian.
    """

    fixed: tuple
    intercept: int
    blocks: tuple
    sigma: tuple
    slots: tuple
    n_const: int

    @property
    def p(self) -> int:
        return len(self.fixed)

    @property
    def q(self) -> int:
        return sum(size for size, *_ in self.blocks)

    @property
    def n_rows(self) -> int:
        return self.q * (self.q + 3) // 2 + self.q * self.p

    @property
    def n_dim(self) -> int:
        return self.p + sum(n * (n + 1) // 2 if cor else n for n, cor, *_ in self.blocks) + 1

    @property
    def n_expanded(self) -> int:
        return self.p + sum(n + n * (n - 1) // 2 if cor else n for n, cor, *_ in self.blocks) + 1


def _prior_terms(prior, v: str, const) -> tuple[str, str]:
    """(log density, its derivative in v) of a prior at v, as expressions; ``const(k)`` reads constants[k]."""
    dist, offsets = prior
    par = [const(k) for k in offsets]
    if dist == "normal":
        mu, s = par
        return f"-0.5 * (({v} - {mu}) / {s}) ** 2 - {_LOG_SQRT_2PI!r} - math.log({s})", f"-({v} - {mu}) / ({s} * {s})"
    if dist == "student_t":
        nu, mu, s = par
        return (f"math.lgamma(({nu} + 1.0) / 2.0) + 0.5 * math.log(1.0 / ({s} * {s}) / ({nu} * math.pi)) - "
                f"math.lgamma({nu} / 2.0) - ({nu} + 1.0) / 2.0 * math.log1p(({v} - {mu}) ** 2 / ({nu} * {s} * {s}))",
                f"-({nu} + 1.0) * ({v} - {mu}) / ({nu} * {s} * {s} + ({v} - {mu}) ** 2)")
    if dist == "half_normal":
        (s,) = par
        return f"-0.5 * ({v} / {s}) ** 2 + {_LOG_SQRT_2_OVER_PI!r} - math.log({s})", f"-{v} / ({s} * {s})"
    if dist == "half_student_t":
        nu, s = par
        return (f"{math.log(2.0)!r} + math.lgamma(({nu} + 1.0) / 2.0) - math.lgamma({nu} / 2.0) - "
                f"0.5 * math.log({nu} * math.pi * {s} * {s}) - ({nu} + 1.0) / 2.0 * math.log1p({v} * {v} / ({nu} * {s} * {s}))",
                f"-({nu} + 1.0) * {v} / ({nu} * {s} * {s} + {v} * {v})")
    if dist == "exponential":
        (lam,) = par
        return f"math.log({lam}) - {lam} * {v}", f"-{lam}"
    raise ValueError(f"No log density for the prior distribution '{dist}'.")


def _read(plan: DensityPlan, density: bool) -> tuple[list[str], dict, list]:
    """Statements from x to the constrained values: bc<k>, l_<a>_<b>, sg (and, with ``density``, lp's Jacobians).

    Returns the statements, the position in x of each L entry, and the non-zero entries of L.
    """
    lines, i, where, nz = [], 0, {}, []

    def value(name, positive):
        nonlocal i
        lines.append(f"    {name} = math.exp(x[{i}])" if positive else f"    {name} = x[{i}]")
        if positive and density:
            lines.append(f"    lp += x[{i}]")
        i += 1

    for k, (dist, _) in enumerate(plan.fixed):
        value(f"bc{k}", dist in _POSITIVE)
    o = 0
    for n, correlated, sds, _ in plan.blocks:
        for r in range(n):
            for k in (range(r + 1) if correlated else (r,)):
                where[o + r, o + k] = i
                nz.append((o + r, o + k))
                value(f"l_{o + r}_{o + k}", k == r and (correlated or sds[r][0] in _POSITIVE))
        o += n
    value("sg", plan.sigma[0] in _POSITIVE)
    return lines, where, nz


def _gamma(plan: DensityPlan, const) -> list[str]:
    """gm<k> (fixef) and gt<k> (the coefficients of the shifted columns) from bc<k>."""
    p, i0, (xc, xs, ys, *_) = plan.p, plan.intercept, plan.slots
    lines = [f"    gm{k} = bc{k}" for k in range(p) if k != i0]
    if i0 >= 0:
        lines.append(f"    gm{i0} = bc{i0} - (" + _sum([f"bc{k} * {const(xc + k)}" for k in range(p)]) + ")")
        lines += [f"    gt{k} = gm{k}" for k in range(p) if k != i0]
        lines.append(f"    gt{i0} = gm{i0} + (" + _sum([f"gm{k} * {const(xs + k)}" for k in range(p)]) + f") - {const(ys)}")
    else:
        lines += [f"    gt{k} = gm{k}" for k in range(p)]
    return lines


def _grouped_terms(plan: DensityPlan, nz) -> list[str]:
    """Statements from gt, L and s2 to tot, ts2, dgt<k> and dl_<a>_<b>: the loop over one factor's groups."""
    p, q = plan.p, plan.q
    lines = []
    lines += ["    tot = 0.0", "    ts2 = 0.0"] + [f"    dgt{k} = 0.0" for k in range(p)]
    lines += [f"    dl_{a}_{b} = 0.0" for a, b in nz]
    n_ztz = q * (q + 1) // 2
    lines += [f"    o{r} = {1 + plan.n_const} + {r} * J" for r in range(plan.n_rows)]
    ind = " " * 8
    lines.append("    for j in range(J):")
    k = 0
    for a in range(q):
        for b in range(a, q):
            lines.append(f"{ind}s_{a}_{b} = d[o{k} + j]")
            k += 1
    for a in range(q):
        xtz = [f"gt{m} * d[o{n_ztz + q + a * p + m} + j]" for m in range(p)]
        lines.append(f"{ind}z_{a} = d[o{n_ztz + a} + j] - (" + _sum(xtz) + ")")
    lines += _ldl(q, ind, nz)
    lines.append(f"{ind}tot += logdet - quad / s2")
    for a in range(q):
        for c in range(a, q):
            lines.append(f"{ind}g_{a}_{c} = mi_{a}_{c} + v_{a} * v_{c} / s2")
    lines.append(f"{ind}ts2 += " + _sum([f"g_{a}_{a}" for a in range(q)]) + " + quad / (s2 * s2)")
    for x, y in nz:
        g = _sum([f"sl_{x}_{c} * g_{min(c, y)}_{max(c, y)}" for c in range(q)])
        lines.append(f"{ind}dl_{x}_{y} += 2.0 * ({g}) - 2.0 * z_{x} * v_{y} / s2")
    for a in range(q):
        lines.append(f"{ind}dz_{a} = -2.0 * (" + _sum([f"l_{a}_{b} * v_{b}" for b in range(a + 1) if (a, b) in nz]) + ") / s2")
    for m in range(p):
        lines.append(f"{ind}dgt{m} -= " + _sum([f"dz_{a} * d[o{n_ztz + q + a * p + m} + j]" for a in range(q)]))
    return lines


def _tree_terms(plan: DensityPlan, nz) -> list[str]:
    """The same statements for nested factors: one call of the structure's ``tree_terms``
    (:func:`bayesmlm.fastpath.tree_codegen.tree_terms_source`, in the same generated module)."""
    p, q = plan.p, plan.q
    lines = [f"    Lm = np.zeros(({q}, {q}))"] + [f"    Lm[{a}, {b}] = l_{a}_{b}" for a, b in nz]
    lines += [f"    gtv = np.empty({p})"] + [f"    gtv[{k}] = gt{k}" for k in range(p)]
    lines.append(f"    tot, dgtv, dlm, ts2, nq = tree_terms(gtv, Lm, s2, d[{1 + plan.n_const}:])")
    lines += [f"    dgt{k} = dgtv[{k}]" for k in range(p)] + [f"    dl_{a}_{b} = dlm[{a}, {b}]" for a, b in nz]
    return lines


def _density_source(plan: DensityPlan, tree: tuple | None = None) -> str:
    p, q = plan.p, plan.q
    const = lambda k: f"d[{1 + k}]"  # noqa: E731  (d[0] is the number of groups)
    xc, xs, ys, n_obs, xtx, xty, yty, log_w = plan.slots
    lines = ["def logp_grad(x, d, grad):", "    J = int(d[0])", "    lp = 0.0"]
    reads, where, nz = _read(plan, density=True)
    lines += reads
    # priors, with each one's derivative in its constrained value (dv_*)
    for k, prior in enumerate(plan.fixed):
        lp, dv = _prior_terms(prior, f"bc{k}", const)
        lines += [f"    lp += {lp}", f"    dv_bc{k} = {dv}"]
    o = 0
    for n, correlated, sds, eta_at in plan.blocks:
        if correlated:  # PyMC's LKJCholeskyCov density of the packed Cholesky factor
            eta = const(eta_at)
            norm = [f"{n - 1} * math.lgamma({eta} + {0.5 * (n - 1)!r})"]
            norm += [f"{0.5 * k * math.log(math.pi)!r} + math.lgamma({eta} + {0.5 * (n - 1 - k)!r})" for k in range(1, n)]
            lines.append(f"    lp += {norm[0]}" + "".join(f" - ({t})" for t in norm[1:]))
            for r in range(n):
                a = o + r
                lines.append(f"    sd_{a} = math.sqrt(" + _sum([f"l_{a}_{o + k} * l_{a}_{o + k}" for k in range(r + 1)]) + ")")
                lp, dv = _prior_terms(sds[r], f"sd_{a}", const)
                lines += [f"    cd_{a} = math.log(l_{a}_{a} / sd_{a})",
                          f"    lp += {lp} + (2.0 * {eta} - 2.0 + {n - r}) * cd_{a} - {r} * math.log(sd_{a})",
                          f"    dsd_{a} = ({dv} - (2.0 * {eta} + {n - 2}) / sd_{a}) / sd_{a}"]
                for k in range(r + 1):
                    extra = f" + (2.0 * {eta} - 2.0 + {n - r}) / l_{a}_{a}" if k == r else ""
                    lines.append(f"    dv_l_{a}_{o + k} = dsd_{a} * l_{a}_{o + k}{extra}")
        else:
            for r in range(n):
                a = o + r
                lp, dv = _prior_terms(sds[r], f"l_{a}_{a}", const)
                lines += [f"    lp += {lp}", f"    dv_l_{a}_{a} = {dv}"]
        o += n
    lp, dv = _prior_terms(plan.sigma, "sg", const)
    lines += [f"    lp += {lp}", f"    dv_sg = {dv}"]
    # the likelihood: totals, then the q x q algebra of each group (see group_terms)
    lines += _gamma(plan, const)
    lines.append("    s2 = sg * sg")
    lines += _tree_terms(plan, nz) if tree else _grouped_terms(plan, nz)
    effects = "nq" if tree else f"J * {q}"
    n = const(n_obs)
    quad = [f"gt{a} * {const(xtx + a * p + b)} * gt{b}" for a in range(p) for b in range(p)]
    lines += [f"    rr = {const(yty)} - 2.0 * (" + _sum([f"gt{a} * {const(xty + a)}" for a in range(p)]) + ") + (" + _sum(quad) + ")",
              f"    lp += -0.5 * ({n} * {2 * _LOG_SQRT_2PI!r} + ({n} - {effects}) * math.log(s2) + tot + rr / s2 - {const(log_w)})"]
    for a in range(p):
        sym = _sum([f"({const(xtx + a * p + b)} + {const(xtx + b * p + a)}) * gt{b}" for b in range(p)])
        lines.append(f"    dgt{a} = -0.5 * (dgt{a} + (-2.0 * {const(xty + a)} + {sym}) / s2)")
    lines.append(f"    dv_sg += -0.5 * (({n} - {effects}) / s2 + ts2 - rr / (s2 * s2)) * 2.0 * sg")
    lines += [f"    dv_l_{a}_{b} += -0.5 * dl_{a}_{b}" for a, b in nz]
    i0 = plan.intercept  # back through gt -> gm -> bc
    if i0 >= 0:
        lines += [f"    dgm{k} = dgt{k} + dgt{i0} * {const(xs + k)}" for k in range(p)]
        lines += [f"    dv_bc{k} += dgm{k} - dgm{i0} * {const(xc + k)}" for k in range(p)]
    else:
        lines += [f"    dv_bc{k} += dgt{k}" for k in range(p)]
    # the gradient in x: through exp where a value is on the log scale (+1, its Jacobian)
    def out(i, name, positive):
        lines.append(f"    grad[{i}] = dv_{name} * {name} + 1.0" if positive else f"    grad[{i}] = dv_{name}")
    for k, (dist, _) in enumerate(plan.fixed):
        out(k, f"bc{k}", dist in _POSITIVE)
    o = 0
    for n_b, correlated, sds, _ in plan.blocks:
        for a, b in [e for e in nz if o <= e[0] < o + n_b]:
            out(where[a, b], f"l_{a}_{b}", a == b and (correlated or sds[a - o][0] in _POSITIVE))
        o += n_b
    out(plan.n_dim - 1, "sg", plan.sigma[0] in _POSITIVE)
    lines.append("    return lp")
    return "\n".join(lines)


def _expand_source(plan: DensityPlan) -> str:
    """fixef, then per block its SDs (and correlations, upper triangle by rows), then sigma, from x."""
    const = lambda k: f"d[{1 + k}]"  # noqa: E731
    reads, _, _ = _read(plan, density=False)
    lines = ["def expand(x, d, out):"] + reads + _gamma(plan, const)
    lines += [f"    out[{k}] = gm{k}" for k in range(plan.p)]
    i, o = plan.p, 0
    for n, correlated, _, _ in plan.blocks:
        if correlated:
            for a in range(n):
                for b in range(a + 1):
                    lines.append(f"    cv_{a}_{b} = " + _sum([f"l_{o + a}_{o + k} * l_{o + b}_{o + k}" for k in range(b + 1)]))
            lines += [f"    sd_{a} = math.sqrt(cv_{a}_{a})" for a in range(n)]
            lines += [f"    out[{i + a}] = sd_{a}" for a in range(n)]
            i += n
            for a in range(n):
                for b in range(a + 1, n):
                    lines.append(f"    out[{i}] = cv_{b}_{a} / (sd_{a} * sd_{b})")
                    i += 1
        else:
            lines += [f"    out[{i + a}] = l_{o + a}_{o + a}" for a in range(n)]
            i += n
        o += n
    lines += [f"    out[{i}] = sg", "    return 0"]
    return "\n".join(lines)


_CALLBACKS = """
def logp_cfunc(dim, x_, grad_, logp_, data_):
    if dim != N_DIM:
        return -1
    head = numba.carray(data_, (1,), dtype=np.float64)
    d = numba.carray(data_, (1 + N_CONST + N_ROWS * int(head[0]),), dtype=np.float64)
    x = numba.carray(x_, (N_DIM,))
    grad = numba.carray(grad_, (N_DIM,))
    value = logp_grad(x, d, grad)
    logp_[0] = value
    for i in range(N_DIM):
        if not math.isfinite(grad[i]):
            return 3
    if not math.isfinite(value):
        return 4
    return 0


def expand_cfunc(dim, n_expanded, x_, out_, data_):
    if dim != N_DIM or n_expanded != N_EXPANDED:
        return -1
    head = numba.carray(data_, (1,), dtype=np.float64)
    d = numba.carray(data_, (1 + N_CONST + N_ROWS * int(head[0]),), dtype=np.float64)
    return expand(numba.carray(x_, (N_DIM,)), d, numba.carray(out_, (N_EXPANDED,)))
"""


def density_source(plan: DensityPlan, tree: tuple | None = None) -> str:
    """The generated source of the collapsed model's log-density kernels for a plan.

    ``logp_grad(x, d, grad)`` returns the log density at the unconstrained
    vector x and writes its gradient into grad; ``expand(x, d, out)`` writes
    fixef, the SDs and correlations of each block, and sigma. ``d`` is
    :func:`pack_data`'s buffer. ``logp_cfunc`` and ``expand_cfunc`` are the two
    as C callbacks of the signatures nutpie's compiled models take.

    Examples
    --------
    >>> plan = DensityPlan((("normal", (0, 1)),), 0, ((1, False, (("half_normal", (2,)),), -1),),
    ...                    ("exponential", (3,)), (4, 5, 6, 7, 8, 9, 10, 11), 12)
    >>> "def logp_grad(x, d, grad):" in density_source(plan)
    True
    """
    consts = (f"N_DIM = {plan.n_dim}\nN_CONST = {plan.n_const}\nN_ROWS = {1 if tree else plan.n_rows}\n"
              f"N_EXPANDED = {plan.n_expanded}\n")
    imports = "import math\n\nimport numba\nimport numpy as np\n"
    tree_source = ""
    if tree:  # nested factors: d[0] is the length of the tree's statistics, which follow the constants
        from .tree_codegen import tree_terms_source

        tree_source = tree_terms_source(tree[0], plan.p, _read(plan, density=False)[2]) + "\n\n"
    return (imports + "\n" + consts + "\n\n" + tree_source + _density_source(plan, tree) + "\n\n\n"
            + _expand_source(plan) + "\n\n" + _CALLBACKS)


def pack_data(constants, group_stats):
    """The one buffer the density kernels read: the number of groups, ``constants``, then ``group_stats`` by rows.

    Examples
    --------
    >>> import numpy as np
    >>> pack_data(np.array([1.0, 2.0]), np.zeros((3, 4))).shape
    (15,)
    """
    import numpy as np

    stats = np.asarray(group_stats, dtype=np.float64)
    return np.concatenate([[float(stats.shape[1])], np.asarray(constants, dtype=np.float64).ravel(), stats.ravel()])


@lru_cache(maxsize=None)
def density_kernels(plan: DensityPlan, tree: tuple | None = None):
    """The compiled density kernels of a plan (a module: ``logp_grad``, ``expand``, ``logp_cfunc``, ``expand_cfunc``).

    Compiled once per machine (Numba's disk cache, under the kernel cache folder), once per process after that.

    Examples
    --------
    The sleepstudy model's log density and gradient are the PyMC model's
    (:mod:`bayesmlm.fastpath.model`), Jacobians and constants included
    (``benchmarks/check_density.py`` checks many structures and priors):

    >>> import bayesmlm, numpy as np
    >>> from bayesmlm.fastpath.model import build_collapsed_model, collapsed_data, collapsed_structure
    >>> from bayesmlm.fastpath.nutpie_driver import density_plan
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = collapsed_structure(m.design, m.prior_dict)
    >>> data = collapsed_data(s, group_stats(m.design), m.prior_dict, [0.0, 4.5])
    >>> pmodel = build_collapsed_model(s, m.prior_dict, data)
    >>> x = np.array([250.0, 10.0, 3.2, 0.1, 1.7, 3.3])  # b_centred, packed log-Cholesky, log sigma
    >>> point = {"b_centred": x[:2], "chol_Subject_cholesky-cov-packed__": x[2:5], "sigma_log__": x[5]}
    >>> grad = np.empty(6)
    >>> value = density_kernels(density_plan(s, m.prior_dict)).logp_grad(x, pack_data(**data), grad)
    >>> bool(np.isclose(value, pmodel.compile_logp()(point), rtol=1e-12))
    True
    >>> bool(np.allclose(grad, pmodel.compile_dlogp()(point), rtol=1e-10))
    True
    """
    from numba import types

    ptr = types.CPointer(types.double)
    signatures = {"logp_cfunc": types.int64(types.uint64, ptr, ptr, ptr, types.voidptr),
                  "expand_cfunc": types.int64(types.uint64, types.uint64, ptr, ptr, types.voidptr)}
    stem = f"density_p{plan.p}_q{plan.q}" + ("_tree" if tree else "")
    jitted = ("tree_terms", "logp_grad", "expand") if tree else ("logp_grad", "expand")
    return _load(stem, density_source(plan, tree), jitted, signatures)


@lru_cache(maxsize=None)
def tree_kernels(qs: tuple, p: int, nz: tuple):
    """The nested route's kernels generated for one tree structure (a module: ``tree_terms``, ``tree_draws``).

    ``qs``: random terms per level (top first), ``p``: fixed-effect columns,
    ``nz``: L's structurally non-zero lower entries; see
    :mod:`bayesmlm.fastpath.tree_codegen`. Compiled once per machine (Numba's disk cache).

    Examples
    --------
    >>> import numpy as np  # one top node with one leaf, one row y = 1: T = log 3 - 2/3
    >>> tail = np.array([2., 2., 0., 1., 0., 0., 0., 1., 1., 0., 1., 1., 1., 1., 0., 0.])
    >>> k = tree_kernels((1, 1), 1, ((0, 0), (1, 1)))
    >>> round(float(k.tree_terms(np.zeros(1), np.eye(2), 1.0, tail)[0]), 6)
    0.431946
    """
    from .tree_codegen import tree_draws_source, tree_terms_source

    qs, nz = tuple(int(q) for q in qs), tuple(sorted((int(a), int(b)) for a, b in nz))
    source = ("import math\n\nimport numpy as np\n\n\n" + tree_terms_source(qs, p, nz) + "\n\n"
              + tree_draws_source(qs, p, nz))
    stem = "tree_q" + "_".join(map(str, qs)) + f"_p{p}"
    return _load(stem, source, ("tree_terms", "tree_draw", "tree_draws"))

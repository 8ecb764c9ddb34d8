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
import os
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["group_terms_kernel", "conditional_draws_kernel", "kernel_source"]

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


def _ldl(q: int, indent: str) -> list[str]:
    """Statements from S, L, s2 and z to M = Lt D Lt' (unit lower Lt, no square roots), logdet, quad, v and M^-1."""
    lines = []
    for a in range(q):
        for c in range(q):
            lines.append(f"sl_{a}_{c} = " + _sum([f"s_{min(a, d)}_{max(a, d)} * l_{d}_{c}" for d in range(c, q)]))
    for a in range(q):
        for c in range(a, q):
            extra = " + s2" if a == c else ""
            lines.append(f"m_{a}_{c} = " + _sum([f"l_{d}_{a} * sl_{d}_{c}" for d in range(a, q)]) + extra)
        lines.append(f"b_{a} = " + _sum([f"l_{d}_{a} * z_{d}" for d in range(a, q)]))
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


@lru_cache(maxsize=None)
def _module(kind: str, q: int):
    import numba

    source = kernel_source(kind, q)
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}_q{q}_v{_VERSION}_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"bayesmlm_kernel_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache and PyTensor's wrappers look functions up by module name
    spec.loader.exec_module(module)
    for name in list(vars(module)):
        if name in ("group_terms", "group_terms_op", "conditional_draws"):
            # error_model="numpy": a division by zero gives inf or NaN (a rejected proposal), not an exception
            setattr(module, name, numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy")(getattr(module, name)))
    return module


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

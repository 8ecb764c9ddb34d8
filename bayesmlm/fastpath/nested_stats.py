"""Stage 2, design (nested route): statistics per leaf group, and the tree's statistics built from them.

Everything the nested collapsed likelihood needs (:mod:`bayesmlm.fastpath.tree_kernel`)
is the one-factor statistics (:class:`~bayesmlm.fastpath.stats.GroupStats`) per
*leaf* group, with Z every level's random terms side by side, plus each
group's parent: a group's statistics at a coarser level are sums of its
leaves'. Those sums are group-by sums like the one-factor route's, so files and
Dask compute them the same way. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design.matrices import Design
from ..errors import SpecError
from .nesting import level_blocks, nesting_order, parent_index
from .stats import GroupStats, accumulate, default_shift

__all__ = ["NestedStats", "nested_stats", "nested_from_leaf", "tree_layout"]


def tree_layout(n_nodes: int, depth: int, qmax: int, p: int) -> dict[str, tuple[int, int]]:
    """(start, length) in ``tail`` of each array: header, ``level``, ``anc``, ``zz``, ``zy``, ``xz``.

    ``tail[0]`` is the number of nodes and ``tail[1]`` the total number of
    effects Q. Nodes are ordered by level (top first). ``anc`` (nodes, D):
    the node's ancestor at each level above it and itself at its own; ``zz``
    (nodes, D, qmax, qmax): Z_i'Z_anc(i, m) for m up to the node's level; ``zy``
    (nodes, qmax): Z_i'y; ``xz`` (nodes, p, qmax): X'Z_i.

    Examples
    --------
    >>> tree_layout(3, 2, 1, 1)["zz"]
    (11, 6)
    """
    out, k = {}, 0
    for name, length in [("header", 2), ("level", n_nodes), ("anc", n_nodes * depth),
                         ("zz", n_nodes * depth * qmax * qmax), ("zy", n_nodes * qmax), ("xz", n_nodes * p * qmax)]:
        out[name] = (k, length)
        k += length
    return out


@dataclass(frozen=True, eq=False)
class NestedStats:
    """Sufficient statistics of a Gaussian model with nested grouping factors.

    Attributes
    ----------
    factors : tuple of str
        Top to leaf.
    levels : tuple of tuple of str
        Each factor's levels (as the Design orders them).
    parents : tuple of ndarray
        ``parents[l]`` (l >= 1): the level-(l-1) group of each level-l group.
    level_terms : tuple of tuple of str
        Each factor's random terms, in the leaf statistics' Z order.
    leaf : GroupStats
        Per leaf group, Z being every level's random terms side by side.
    """

    factors: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    parents: tuple[np.ndarray, ...]
    level_terms: tuple[tuple[str, ...], ...]
    leaf: GroupStats

    @property
    def n_obs(self) -> int:
        """Rows summarised."""
        return self.leaf.n_obs

    @property
    def qs(self) -> np.ndarray:
        """Random terms per level."""
        return np.array([len(t) for t in self.level_terms], dtype=np.int64)

    @property
    def qoff(self) -> np.ndarray:
        """Offset of each level's terms in Z (and L)."""
        return np.concatenate([[0], np.cumsum(self.qs)[:-1]]).astype(np.int64)

    def ancestors(self) -> list[np.ndarray]:
        """``out[m]``: each leaf's group at level m (the leaf's own index at the last level)."""
        depth = len(self.factors)
        out = [None] * depth
        out[-1] = np.arange(len(self.levels[-1]))
        for m in range(depth - 1, 0, -1):
            out[m - 1] = self.parents[m][out[m]]
        return out

    def tail(self) -> np.ndarray:
        """The statistics per group at every level, laid out for :mod:`bayesmlm.fastpath.tree_kernel`.

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
        >>> s = nested_stats(m.design)
        >>> t = s.tail()
        >>> int(t[0]), int(t[1])  # 10 batches + 30 casks, one effect each
        (40, 40)
        """
        leaf, depth, qs, qoff = self.leaf, len(self.factors), self.qs, self.qoff
        qmax, p = int(qs.max()), len(leaf.fixed_terms)
        sizes = [len(lv) for lv in self.levels]
        start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(start[-1])
        anc_leaf = self.ancestors()
        level = np.repeat(np.arange(depth), sizes).astype(float)
        anc = np.zeros((n, depth))
        zz = np.zeros((n, depth, qmax, qmax))
        zy = np.zeros((n, qmax))
        xz = np.zeros((n, p, qmax))
        for lv in range(depth):
            rows = slice(start[lv], start[lv + 1])
            own = anc_leaf[lv]  # each leaf's group at this level
            ql, ol = qs[lv], qoff[lv]
            for m in range(lv + 1):
                first = np.zeros(sizes[lv], dtype=np.int64)
                first[own] = anc_leaf[m]
                anc[rows, m] = start[m] + first
                for a in range(ql):
                    for c in range(qs[m]):
                        zz[rows, m, a, c] = np.bincount(own, leaf.ZtZ[:, ol + a, qoff[m] + c], minlength=sizes[lv])
            for a in range(ql):
                zy[rows, a] = np.bincount(own, leaf.Zty[:, ol + a], minlength=sizes[lv])
                for k in range(p):
                    xz[rows, k, a] = np.bincount(own, leaf.XtZ[:, k, ol + a], minlength=sizes[lv])
        layout = tree_layout(n, depth, qmax, p)
        out = np.empty(sum(length for _, length in layout.values()))
        for name, value in [("header", [n, float(qs @ np.array(sizes))]), ("level", level), ("anc", anc), ("zz", zz),
                            ("zy", zy), ("xz", xz)]:
            s, length = layout[name]
            out[s:s + length] = np.ravel(value)
        return out


def nested_from_leaf(factors, levels, parents, level_terms, leaf: GroupStats) -> NestedStats:
    """A :class:`NestedStats` from leaf statistics (files and Dask compute those), checked for shape.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> s = nested_stats(m.design)
    >>> nested_from_leaf(s.factors, s.levels, s.parents, s.level_terms, s.leaf).n_obs
    60
    """
    q = sum(len(t) for t in level_terms)
    if leaf.ZtZ.shape[1] != q or leaf.n_groups != len(levels[-1]):
        raise SpecError(f"The leaf statistics have {leaf.n_groups} groups and {leaf.ZtZ.shape[1]} random terms; the "
                        f"nested model has {len(levels[-1])} groups of '{factors[-1]}' and {q} random terms.")
    return NestedStats(tuple(factors), tuple(tuple(lv) for lv in levels), tuple(parents), tuple(level_terms), leaf)


def nested_stats(design: Design, x_shift=None, y_shift: float | None = None) -> NestedStats:
    """Statistics of an in-memory design whose grouping factors are nested, in O(N).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> s = nested_stats(m.design)
    >>> s.factors, s.leaf.n_groups, s.parents[1][:4].tolist()
    (('batch', 'batch:cask'), 30, [0, 0, 0, 1])
    """
    if design.spec.family.name != "gaussian":
        raise SpecError(f"The nested route needs a gaussian outcome; the family is '{design.spec.family.name}'.")
    factors, problem = nesting_order(design)
    if problem:
        raise SpecError(f"No nested statistics for this model: {problem}.")
    d_x, d_y = default_shift(design)
    x_shift = d_x if x_shift is None else np.asarray(x_shift, dtype=float)
    y_shift = d_y if y_shift is None else float(y_shift)
    blocks = level_blocks(design, factors)
    Z = np.column_stack([b.Z for bl in blocks for b in bl])
    leaf = design.factors[factors[-1]]
    y = design.y - design.offset if design.offset is not None else design.y
    sums = accumulate(leaf.index, leaf.n_levels, design.X - x_shift, Z, y - y_shift)
    terms = tuple(t for bl in blocks for b in bl for t in b.terms)
    stats = GroupStats(leaf.name, tuple(leaf.levels), tuple(design.fixed_terms), terms, x_shift, y_shift, **sums)
    parents = [np.zeros(0, dtype=np.int64)]
    for top, low in zip(factors, factors[1:]):
        first, _ = parent_index(design.factors[low].index, design.factors[top].index, design.factors[low].n_levels)
        parents.append(first)
    return NestedStats(factors, tuple(tuple(design.factors[f].levels) for f in factors), tuple(parents),
                       tuple(tuple(t for b in bl for t in b.terms) for bl in blocks), stats)

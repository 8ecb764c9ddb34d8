"""Stage 2, design (nested route): which grouping factors nest in which.

Factor B is nested in factor A when every level of B occurs with exactly one
level of A (labels unique within the parent, or made unique by ``a:b``).
When each of a design's factors is nested in the one with the next fewer
levels they form a chain, top to leaf, and the collapsed likelihood
factorises along the tree (:mod:`bayesmlm.fastpath.nested_stats`,
:mod:`bayesmlm.fastpath.tree_kernel`). Nothing here imports PyMC.
"""

from __future__ import annotations

import numpy as np

from ..design.matrices import Design

__all__ = ["nesting_order", "nesting_problem", "parent_index", "level_blocks"]


def parent_index(child: np.ndarray, parent: np.ndarray, n_child: int) -> tuple[np.ndarray | None, int | None]:
    """Each child level's one parent level (from the rows' codes), or (None, a child level with two parents).

    Examples
    --------
    >>> import numpy as np
    >>> parent_index(np.array([0, 1, 1, 2]), np.array([0, 0, 0, 1]), 3)[0].tolist()
    [0, 0, 1]
    >>> parent_index(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)[1]
    1
    """
    first = np.full(n_child, -1, dtype=np.int64)
    first[child[::-1]] = parent[::-1]  # the parent of each child's first row
    bad = np.flatnonzero(first[child] != parent)
    if bad.size:
        return None, int(child[bad[0]])
    return first, None


def nesting_order(design: Design) -> tuple[tuple[str, ...], str | None]:
    """The design's grouping factors ordered top to leaf, and None if each is nested in the one before; else why not.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> nesting_order(m.design)
    (('batch', 'batch:cask'), None)
    """
    factors = sorted((design.factors[g] for g in design.spec.groups), key=lambda f: f.n_levels)
    names = tuple(f.name for f in factors)
    for top, low in zip(factors, factors[1:]):
        _, bad = parent_index(low.index, top.index, low.n_levels)
        if bad is not None:
            seen = sorted({top.levels[k] for k in top.index[low.index == bad]})
            return names, (f"the grouping factors '{top.name}' and '{low.name}' are crossed, not nested: level "
                           f"'{low.levels[bad]}' of '{low.name}' occurs with {len(seen)} levels of '{top.name}' "
                           f"({', '.join(map(str, seen[:3]))}{', ...' if len(seen) > 3 else ''}). If one is nested in the "
                           f"other and its labels repeat across parents, make them unique: write (1 | parent/child), "
                           f"(1 | {low.name}/{top.name}) or (1 | {top.name}/{low.name})")
    return names, None


def nesting_problem(design: Design) -> str | None:
    """Why the design's grouping factors do not nest (None if they do: one factor nests trivially).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> nesting_problem(m.design).startswith("the grouping factors 'sample' and 'plate' are crossed")
    True
    """
    return nesting_order(design)[1]


def level_blocks(design: Design, factors: tuple[str, ...]) -> list[list]:
    """The random blocks of each factor (top to leaf), in Z's column order within a factor.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> [[b.label for b in bl] for bl in level_blocks(m.design, ("batch", "batch:cask"))]
    [['batch'], ['batch:cask']]
    """
    return [[b for b in design.blocks if b.group == f] for f in factors]

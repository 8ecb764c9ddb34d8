"""How the grouping factors of a design relate, read from the data: nested or crossed.

For two factors a and b, b is *nested* in a when every level of b occurs
with one level of a only (classes in schools, casks in batches: the labels of
b are unique within a's levels). They are *crossed* when every combination of
their levels occurs (plates and samples), *partially crossed* when some
levels of each occur with several of the other but not every combination
does (students and lecturers). A chain of nested factors, outermost first,
is a multilevel hierarchy: ``school`` > ``school:class`` is a three-level
model (pupils in classes in schools).

The one ambiguity the data cannot settle is a nested factor whose labels
repeat across its parents (class 1, 2, 3 in every school), written as
``(1 | school) + (1 | class)``: as written, every class labelled 1 is one
group, crossed with school. :func:`check_repeated_labels` warns about it
(:class:`~bayesmlm.errors.NestingWarning`) and says how to write the nesting.
Nothing here changes the model. Nothing here imports PyMC.

Examples
--------
>>> import bayesmlm
>>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
>>> s = factor_structure(m.design)
>>> s.pairs[["outer", "inner", "relation"]].values.tolist()
[['batch', 'batch:cask', 'nested']]
>>> s.hierarchy
('batch', 'batch:cask')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ..errors import NestingWarning
from .matrices import Design

__all__ = ["RELATIONS", "FactorStructure", "classify_pair", "factor_structure", "check_repeated_labels"]

RELATIONS = ("nested", "crossed", "partially crossed", "same groups")


def classify_pair(a: np.ndarray, b: np.ndarray) -> str:
    """The relation of two factors given each row's level codes: one of :data:`RELATIONS`.

    ``"nested"`` means one is nested in the other (see :class:`FactorStructure`
    for which); ``"same groups"`` that they split the rows alike.

    Examples
    --------
    >>> import numpy as np
    >>> school, klass = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 2, 2, 3])
    >>> classify_pair(school, klass), classify_pair(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    ('nested', 'crossed')
    """
    b_in_a, a_in_b = _nested_in(b, a), _nested_in(a, b)
    if b_in_a and a_in_b:
        return "same groups"
    if b_in_a or a_in_b:
        return "nested"
    cells = len(np.unique(np.stack([a, b]), axis=1)[0])
    return "crossed" if cells == len(np.unique(a)) * len(np.unique(b)) else "partially crossed"


def _nested_in(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether every level of ``inner`` occurs with one level of ``outer`` only."""
    return bool((pd.Series(outer).groupby(inner).nunique() == 1).all())


@dataclass(frozen=True, eq=False)
class FactorStructure:
    """The relations between the grouping factors of a design.

    Attributes
    ----------
    factors : tuple of str
        The grouping factors, in the order the formula first names them.
    pairs : DataFrame
        One row per pair of factors: outer, inner (for nested pairs the
        parent and the child; otherwise in the order written), relation (one
        of :data:`RELATIONS`), outer_levels, inner_levels, cells (the
        combinations observed) and rows_per_cell (median rows per observed
        combination).
    parents : dict of str to tuple of str
        Per factor, the factors it is nested in, outermost first.
    """

    factors: tuple[str, ...]
    pairs: pd.DataFrame
    parents: dict

    @property
    def hierarchy(self) -> tuple[str, ...] | None:
        """The factors as one chain of nesting, outermost first (a multilevel model), or None.

        Two factors nested one in the other give a three-level model; one
        factor, a two-level model. Crossed factors give None.
        """
        chain = sorted(self.factors, key=lambda f: len(self.parents[f]))
        ok = all(self.parents[f] == tuple(chain[:i]) for i, f in enumerate(chain))
        return tuple(chain) if ok else None

    def relation(self, a: str, b: str) -> str:
        """The relation of two factors (either order), one of :data:`RELATIONS`.

        Examples
        --------
        >>> m.structure.relation("plate", "sample")  # doctest: +SKIP
        'crossed'
        """
        for r in self.pairs.itertuples():
            if {r.outer, r.inner} == {a, b}:
                return r.relation
        raise KeyError(f"No pair of grouping factors '{a}' and '{b}'. This model's factors: {', '.join(self.factors)}.")

    def __str__(self) -> str:
        if not len(self.pairs):
            return f"One grouping factor: {self.factors[0]} (a two-level model)."
        lines = []
        for r in self.pairs.itertuples():
            if r.relation == "nested":
                lines.append(f"{r.inner} ({r.inner_levels} levels) is nested in {r.outer} ({r.outer_levels} levels)")
            else:
                lines.append(f"{r.outer} ({r.outer_levels} levels) and {r.inner} ({r.inner_levels} levels) are "
                             f"{r.relation} ({r.cells} of {r.outer_levels * r.inner_levels} combinations observed)")
        h = self.hierarchy
        if h:
            lines.append(f"A {len(h) + 1}-level model: " + " > ".join(h) + " > observations.")
        return "\n".join(lines)

    __repr__ = __str__


def factor_structure(design: Design) -> FactorStructure:
    """Classify every pair of a design's grouping factors as nested, crossed or partially crossed.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> factor_structure(m.design).relation("plate", "sample")
    'crossed'
    """
    factors = design.spec.groups
    if len(factors) > 1:  # one factor has nothing to relate, and a design of per-group sums (no rows) may have one
        design.require_rows("The nesting of the grouping factors")
    codes = {f: design.factors[f].index for f in factors}
    rows, parents = [], {f: [] for f in factors}
    for a, b in combinations(factors, 2):
        rel = classify_pair(codes[a], codes[b])
        outer, inner = (a, b)
        if rel == "nested" and not _nested_in(codes[b], codes[a]):
            outer, inner = b, a
        if rel == "nested":
            parents[inner].append(outer)
        cell = pd.Series(0, index=pd.MultiIndex.from_arrays([codes[outer], codes[inner]])).groupby(level=[0, 1]).size()
        rows.append({"outer": outer, "inner": inner, "relation": rel, "outer_levels": design.factors[outer].n_levels,
                     "inner_levels": design.factors[inner].n_levels, "cells": len(cell),
                     "rows_per_cell": float(cell.median())})
    pairs = pd.DataFrame(rows, columns=["outer", "inner", "relation", "outer_levels", "inner_levels", "cells",
                                        "rows_per_cell"])
    depth = {f: len(p) for f, p in parents.items()}
    ordered = {f: tuple(sorted(p, key=lambda g: depth[g])) for f, p in parents.items()}
    return FactorStructure(tuple(factors), pairs, ordered)


def check_repeated_labels(design: Design) -> None:
    """Warn where a factor's labels seem to repeat across another's, written as if crossed.

    The pattern of ``(1 | school) + (1 | class)`` with classes numbered 1, 2,
    3 within each school: the two factors are crossed in the data, no
    ``school:class`` term is in the model, and each observed combination has
    several rows (in a crossed design such as raters by items most have one).
    Then a :class:`~bayesmlm.errors.NestingWarning` names the labels and says
    how to write the nesting; the model is left as written, since a design
    crossed with replicates looks the same.

    Examples
    --------
    >>> import bayesmlm, warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     _ = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | cask)", bayesmlm.datasets.load("pastes"))
    >>> "(1 | batch/cask)" in str(w[0].message)
    True
    """
    if not design.has_rows or len(design.spec.groups) < 2:
        return
    written = set(design.spec.groups)
    for r in factor_structure(design).pairs.itertuples():
        if r.relation not in ("crossed", "partially crossed") or r.rows_per_cell < 2:
            continue
        if f"{r.outer}:{r.inner}" in written or f"{r.inner}:{r.outer}" in written:
            continue
        # The factor with fewer levels is the one whose labels would be reused (class 1, 2, 3 in each school).
        outer, inner = sorted((r.outer, r.inner), key=lambda f: -design.factors[f].n_levels)
        o, i = design.factors[outer].index, design.factors[inner].index
        if ":" in inner or not _labels_are_an_index(o, i):
            continue
        where = pd.Series(o).groupby(i).nunique()
        label = design.factors[inner].levels[int(where.idxmax())]
        warnings.warn(
            f"The labels of '{inner}' repeat across '{outer}': {inner} '{label}' occurs in {where.max()} of the "
            f"{design.factors[outer].n_levels} levels of '{outer}', with {r.rows_per_cell:g} rows per combination "
            f"(median). As written, every {inner} labelled '{label}' is one group, crossed with {outer}. If each level "
            f"of {outer} has its own {inner} (nested), write (1 | {outer}/{inner}) or (1 | {outer}) + "
            f"(1 | {outer}:{inner}); if the same {inner} occurs in several levels of {outer} (crossed), the model is "
            "right as written: silence this with warnings.filterwarnings('ignore', category=bayesmlm.NestingWarning).",
            NestingWarning, stacklevel=4)


def _labels_are_an_index(outer: np.ndarray, inner: np.ndarray) -> bool:
    """Whether each outer level uses the first k of one sequence of inner labels, as numbering within parents does.

    Classes numbered 1..k_j in school j: the labels in each school are the
    k_j labels found in most schools. Students rating lectures of a few
    departments each use no such common prefix.
    """
    cells = pd.DataFrame({"o": outer, "i": inner}).drop_duplicates()
    count = cells.groupby("i").size()
    ranked = np.sort(count.to_numpy())[::-1]
    per_outer = cells.assign(c=count.reindex(cells["i"]).to_numpy()).groupby("o")["c"].agg(["min", "size"])
    k = per_outer["size"].to_numpy()
    next_best = np.where(k < len(ranked), ranked[np.minimum(k, len(ranked) - 1)], -1)
    return bool((per_outer["min"].to_numpy() >= next_best).all())

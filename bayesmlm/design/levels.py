"""The two-level reading of a design: which fixed terms belong to which level.

Every fixed-effect column is a product of a level-1 part (varies within
groups; ``(Intercept)`` when there is none) and a level-2 part W (constant
within groups; 1 when there is none). ``meanses:cses`` is level-1 ``cses``
times level-2 ``meanses``: the cross-level interaction gamma_11. This reading
gives the level equations and the group-specific coefficients
b_kj = sum_m gamma_km W_mj + u_kj. Nothing here imports PyMC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from .matrices import Design, lme4_name

__all__ = ["LevelStructure", "level_structure", "level1_column", "split_interaction", "is_group_level"]


@dataclass(frozen=True, eq=False)
class LevelStructure:
    """How fixed and random terms map onto level-1 coefficients of one factor.

    Attributes
    ----------
    factor : str
        The grouping factor (level 2).
    level1_terms : tuple of str
        The level-1 coefficients b_kj, ``(Intercept)`` first.
    fixed_level1 : tuple of str
        For each fixed column, the level-1 term it belongs to.
    fixed_level2 : tuple of str
        For each fixed column, its level-2 part (``"1"`` for none).
    W : ndarray (J, p)
        For each group and fixed column, the value of the level-2 part.
    random_terms : tuple of str
        The level-1 terms that get a u_kj for this factor.
    """

    factor: str
    level1_terms: tuple[str, ...]
    fixed_level1: tuple[str, ...]
    fixed_level2: tuple[str, ...]
    W: np.ndarray
    random_terms: tuple[str, ...]

    def loadings(self) -> np.ndarray:
        """(J, K, p) array A with coef_j = A_j @ gamma + u_j (over level-1 terms)."""
        J, p = self.W.shape
        A = np.zeros((J, len(self.level1_terms), p))
        for c, term in enumerate(self.fixed_level1):
            A[:, self.level1_terms.index(term), c] = self.W[:, c]
        return A


def split_interaction(term: str) -> list[str]:
    """The parts of an interaction label, split on ':' outside brackets and parentheses.

    Examples
    --------
    >>> split_interaction("C(x)[a]:w")
    ['C(x)[a]', 'w']
    """
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(term):
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if ch == ":" and depth == 0:
            parts.append(term[start:i])
            start = i + 1
    return parts + [term[start:]]


def is_group_level(component: str, columns: set, level2: frozenset) -> bool:
    """Whether a part of a term reads only columns constant within groups (``level2``: a factor's such columns).

    Examples
    --------
    >>> is_group_level("np.log(w)", {"w", "x"}, frozenset({"w"})), is_group_level("x", {"w", "x"}, frozenset({"w"}))
    (True, False)
    """
    names = set(re.findall(r"[A-Za-z_.][\w.]*", component)) & columns
    return bool(names) and names <= level2


def level_structure(design: Design, factor: str | None = None) -> LevelStructure:
    """Read the design as level-1 and level-2 equations for one grouping factor.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("mAch ~ meanses * cses + (1 + cses | school)", bayesmlm.datasets.load("hsb82"))
    >>> s = level_structure(m.design)
    >>> s.level1_terms, s.fixed_level2
    (('(Intercept)', 'cses'), ('1', 'meanses', '1', 'meanses'))
    """
    factor = factor or design.spec.groups[0]
    level2 = design.level2[factor]
    columns = set(design.data.columns)
    random_terms = design.random_terms(factor)
    l1_of, l2_of = [], []
    for label in design.fixed_labels:
        if label == "Intercept":
            l1_of.append("(Intercept)")
            l2_of.append("1")
            continue
        parts = split_interaction(label)
        l1 = [p for p in parts if not is_group_level(p, columns, level2)]
        l2 = [p for p in parts if is_group_level(p, columns, level2)]
        l1_of.append(lme4_name(":".join(l1)) if l1 else "(Intercept)")
        l2_of.append(lme4_name(":".join(l2)) if l2 else "1")
    level1_terms = list(dict.fromkeys(["(Intercept)"] * ("(Intercept)" in l1_of + list(random_terms)) + l1_of + list(random_terms)))
    index = design.factors[factor].index
    J = design.factors[factor].n_levels
    W = np.ones((J, len(design.fixed_terms)))
    for c, (l1, l2) in enumerate(zip(l1_of, l2_of)):
        if l2 == "1":
            continue
        x = design.X[:, c]
        base = level1_column(design, l1)
        # W_j is constant within group j: read it off a row where the level-1 part is non-zero.
        ok = base != 0
        Wc = np.full(J, np.nan)
        ratio = np.where(ok, x / np.where(ok, base, 1.0), np.nan)
        rows = np.flatnonzero(ok)
        groups, first = np.unique(index[rows], return_index=True)
        Wc[groups] = ratio[rows[first]]
        W[:, c] = Wc
    return LevelStructure(factor, tuple(level1_terms), tuple(l1_of), tuple(l2_of), W, random_terms)


def level1_column(design: Design, term: str) -> np.ndarray:
    """The values of a level-1 term, one per row used (the intercept is ones).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> level1_column(m.design, "Days")[:3]
    array([0., 1., 2.])
    """
    if term == "(Intercept)":
        return np.ones(design.n_obs)
    if term in design.fixed_terms:
        return design.X[:, design.fixed_terms.index(term)]
    for b in design.blocks:
        if term in b.terms:
            return b.Z[:, b.terms.index(term)]
    if term in design.data.columns:
        return design.data[term].to_numpy(dtype=float)
    raise SpecError(f"The level-1 part '{term}' of a fixed term has no column of its own; add '{term}' to the formula "
                    "so that its group-specific coefficient is defined.")

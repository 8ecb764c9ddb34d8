"""Stage 2, design: a centred factor nested in another is centred on its parent (hierarchical centring).

With broods in locations, ``(1 | BROOD) + (1 | LOCATION)``, the data see
u_LOCATION[l] + u_BROOD[j] for each brood j of location l, not the two apart:
where a location has few broods they form a ridge that no diagonal mass matrix
follows. Centring the child on its parent (Gelfand, Sahu and Carlin 1995)
removes it: the child samples its groups' total coefficients

    v_j ~ N(H_j b + A^-1 P w_parent[parent(j)], A^-1 Sigma_child A^-T)

where w_parent is what the parent's block contributes for the terms the two
blocks share (P maps the parent's terms onto the child's; A and H as for any
centred block, :func:`bayesmlm.build.full.centred_basis` and
:mod:`bayesmlm.design.block_means`). The linear predictor then reads v_j for
the shared terms, and the parent's shared terms reach the likelihood only
through their children's prior; the parent's other terms stay in the linear
predictor. The model is unchanged (u_child = A (v_j - H_j b) - P w_parent, a
shift with unit Jacobian), and the reported u_child are the deviations from
the parent, as lme4's ``ranef``.

A centred block gets a parent when its factor is nested in another factor of
the model (each of its levels occurs with one level of the other) whose block
shares at least one term with it (the same term name and the same Z column);
of several, the one with the most levels (the nearest). A parent block's term
moves into one child only (two children both reading it would count it twice):
the child with the most levels takes it. Cumulative models are left alone (their
located intercept would need the same treatment).

Centring leaves the parent's own funnel: its effects w_l, informed only by the
few children of each level, against its SD. Where the parent's block is one
term that moved into a one-term child (``(1 | BROOD) + (1 | LOCATION)``), the
parent can go altogether: its effects enter nothing but the children's prior,
which is Gaussian, so they integrate out exactly (the children of level l
jointly N(H b, a I + c 1 1'), :mod:`bayesmlm.fastpath.glmm_kernel`) and are
drawn from their exact conditional after sampling. :func:`integrable_parents`
says where. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matrices import Design

__all__ = ["ParentLink", "centred_parents", "parent_levels", "integrable_parents", "INTEGRATED"]

INTEGRATED = "collapsed"
"""The parameterisation of a parent factor integrated out of its child's prior (:func:`integrable_parents`): "collapsed",
as the crossed route says of the factors it integrates out."""


@dataclass(frozen=True, eq=False)
class ParentLink:
    """A centred block's parent block.

    Attributes
    ----------
    child, parent : str
        The blocks' labels.
    parent_group : str
        The parent's grouping factor.
    levels : ndarray (J_child,) of int
        Each child level's parent level.
    P : ndarray (q_child, q_parent)
        1 where a child term is the parent's term (the shared terms), else 0.
    """

    child: str
    parent: str
    parent_group: str
    levels: np.ndarray
    P: np.ndarray

    @property
    def shared(self) -> np.ndarray:
        """The parent's terms that move into the child (a boolean per parent term)."""
        return self.P.any(axis=0)


def parent_levels(child: np.ndarray, parent: np.ndarray, n_child: int) -> np.ndarray | None:
    """Each child level's parent level from the rows' codes, or None if a child level has two parents.

    Examples
    --------
    >>> parent_levels(np.array([0, 1, 1, 2]), np.array([0, 0, 0, 1]), 3).tolist()
    [0, 0, 1]
    >>> parent_levels(np.array([0, 1, 1]), np.array([0, 0, 1]), 2) is None
    True
    """
    first = np.full(n_child, -1, dtype=np.int64)
    first[child[::-1]] = parent[::-1]  # the parent of each child level's first row
    return first if np.all(first[child] == parent) else None


def centred_parents(design: Design, parameterization: dict[str, str]) -> dict[str, ParentLink]:
    """Per centred block nested in another factor's block that shares a term with it, its parent (the rule above).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", bayesmlm.datasets.load("grouseticks"),
    ...                  family="poisson")
    >>> links = centred_parents(m.design, {"BROOD": "centred", "LOCATION": "non-centred"})
    >>> [(k, v.parent, v.P.tolist()) for k, v in links.items()]
    [('BROOD', 'LOCATION', [[1.0]])]
    >>> centred_parents(m.design, {"BROOD": "non-centred", "LOCATION": "centred"})
    {}
    """
    if design.spec.family.name == "cumulative" or design.n_obs == 0 or len(design.factors) < 2:
        return {}
    centred = [b for b in design.blocks if parameterization.get(b.group, "non-centred") == "centred"]
    taken: set[tuple[str, str]] = set()  # (parent label, term) already moved into a child
    out: dict[str, ParentLink] = {}
    for child in sorted(centred, key=lambda b: -design.factors[b.group].n_levels):  # the most levels first
        fc = design.factors[child.group]
        options = []
        for parent in design.blocks:
            fp = design.factors[parent.group]
            if parent.group == child.group or fp.n_levels >= fc.n_levels:
                continue
            shared = [t for t in child.terms if t in parent.terms and (parent.label, t) not in taken
                      and np.array_equal(child.Z[:, child.terms.index(t)], parent.Z[:, parent.terms.index(t)])]
            if not shared:
                continue
            levels = parent_levels(fc.index, fp.index, fc.n_levels)
            if levels is not None:
                options.append((fp.n_levels, parent, shared, levels))
        if not options:
            continue
        _, parent, shared, levels = max(options, key=lambda o: o[0])
        P = np.zeros((child.q, parent.q))
        for t in shared:
            P[child.terms.index(t), parent.terms.index(t)] = 1.0
            taken.add((parent.label, t))
        out[child.label] = ParentLink(child.label, parent.label, parent.group, levels, P)
    return {b.label: out[b.label] for b in design.blocks if b.label in out}


def integrable_parents(design: Design, parameterization: dict[str, str], fixed: set | frozenset = frozenset()) -> dict[str, str]:
    """Per parent factor whose effects can be integrated out of its one child's prior, that child's block label.

    A parent qualifies when its factor has one block, of one term, all of which
    moved into a child of one term (so the likelihood reads none of it), it is
    not itself centred on a parent, and the user did not fix its
    parameterisation (``fixed`` names the factors they did). The model is the
    same; what the sampler sees is not.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", bayesmlm.datasets.load("grouseticks"),
    ...                  family="poisson")
    >>> integrable_parents(m.design, {"BROOD": "centred", "LOCATION": "non-centred"})
    {'LOCATION': 'BROOD'}
    >>> integrable_parents(m.design, {"BROOD": "centred", "LOCATION": "non-centred"}, fixed={"LOCATION"})
    {}
    """
    links = centred_parents(design, parameterization)
    by_label = {b.label: b for b in design.blocks}
    out = {}
    for ln in links.values():
        parent, child = by_label[ln.parent], by_label[ln.child]
        own = [b for b in design.blocks if b.group == parent.group]
        if (len(own) == 1 and parent.q == 1 and child.q == 1 and ln.shared.all() and ln.parent not in links
                and parent.group not in fixed):
            out[parent.group] = ln.child
    return out

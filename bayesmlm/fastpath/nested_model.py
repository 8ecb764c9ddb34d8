"""Stage 3, build (nested route): the collapsed model of nested grouping factors.

The same sampled variables, priors and names as the one-factor collapsed
model (:mod:`bayesmlm.fastpath.model`: ``fixef``, ``sd_*``, ``cor_*``,
``sigma``), with every level's random blocks side by side in one
block-diagonal Cholesky factor, and the likelihood of the tree
(:mod:`bayesmlm.fastpath.tree_kernel`) instead of the per-group one. The tree's
statistics are the model's ``group_stats`` data (one row), so nutpie's driver
(:mod:`bayesmlm.fastpath.nutpie_driver`) runs it as it runs the one-factor model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ..design.priors import Prior
from .model import CollapsedStructure, collapsed_data, unpacked_data
from .nested_stats import NestedStats
from .nesting import level_blocks
from .tree_kernel import tree_terms

__all__ = ["NestedStructure", "nested_structure", "nested_data", "tree_loglik", "tree_loglik_at"]


@dataclass(frozen=True)
class NestedStructure(CollapsedStructure):
    """A collapsed structure whose blocks (top level first) belong to nested factors.

    Attributes
    ----------
    qs, qoff : tuple of int
        Random terms of each level and their offset in Z (and in T's Cholesky factor).
    """

    qs: tuple[int, ...] = ()
    qoff: tuple[int, ...] = ()

    @property
    def tree(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(qs, qoff), as the density kernel takes them."""
        return self.qs, self.qoff


def nested_structure(design, priors: dict[str, Prior], factors: tuple[str, ...]) -> NestedStructure:
    """The structure of a nested design's collapsed model, its blocks ordered top level first.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> s = nested_structure(m.design, m.prior_dict, ("batch", "batch:cask"))
    >>> s.qs, s.qoff, [b[0] for b in s.blocks]
    ((1, 1), (0, 1), ['batch', 'batch:cask'])
    """
    per_level = level_blocks(design, factors)
    blocks = tuple((b.label, tuple(b.terms), bool(b.correlated)) for bl in per_level for b in bl)
    qs = tuple(sum(b.q for b in bl) for bl in per_level)
    qoff = tuple(int(v) for v in np.concatenate([[0], np.cumsum(qs)[:-1]]))
    return NestedStructure(tuple(design.fixed_terms), blocks, tuple((k, p.dist) for k, p in priors.items()),
                           bool(design.has_intercept), qs, qoff)


def nested_data(structure: NestedStructure, stats: NestedStats, priors: dict[str, Prior], x_centre) -> dict[str, np.ndarray]:
    """The model's data: ``constants`` as the one-factor model's, ``group_stats`` the tree's statistics (one row).

    ``x_centre``: column means of X (0 for the intercept), as for :func:`~bayesmlm.fastpath.model.collapsed_data`.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.nested_stats import nested_stats
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> s = nested_structure(m.design, m.prior_dict, ("batch", "batch:cask"))
    >>> nested_data(s, nested_stats(m.design), m.prior_dict, [0.0])["group_stats"].shape
    (1, 282)
    """
    const = collapsed_data(structure, stats.leaf, priors, x_centre)["constants"]
    return {"constants": const, "group_stats": stats.tail()[None, :]}


class TreeTerms(Op):
    """T of the tree (:func:`~bayesmlm.fastpath.tree_kernel.tree_terms`) of (gt, L, sigma^2, tail); outputs T, its
    gradient in gt, L and sigma^2, and the number of effects."""

    __props__ = ("qs", "qoff")

    def __init__(self, qs, qoff):
        self.qs, self.qoff = tuple(int(v) for v in qs), tuple(int(v) for v in qoff)

    def make_node(self, gt, L, s2, tail):
        gt, L, s2, tail = (pt.as_tensor_variable(v, dtype="float64") for v in (gt, L, s2, tail))
        return Apply(self, [gt, L, s2, tail], [pt.dscalar(), pt.dvector(), pt.dmatrix(), pt.dscalar(), pt.dscalar()])

    def perform(self, node, inputs, outputs):
        gt, L, s2, tail = inputs
        result = tree_terms(np.ascontiguousarray(gt, dtype=float), np.ascontiguousarray(L, dtype=float), float(s2),
                            np.ascontiguousarray(tail, dtype=float), np.array(self.qs, dtype=np.int64),
                            np.array(self.qoff, dtype=np.int64))
        for out, value in zip(outputs, result):
            out[0] = np.asarray(value, dtype=float)

    def connection_pattern(self, node):
        return [[True, False, False, False, False], [True, False, False, False, False],
                [True, False, False, False, False], [False] * 5]

    def pullback(self, inputs, outputs, cotangents):
        _, dgt, dL, ds2, _ = outputs
        g = cotangents[0]
        return [g * dgt, g * dL, g * ds2, disconnected_type()]


def tree_loglik(structure: NestedStructure):
    """The nested collapsed log-likelihood, as ``loglik(L, sigma, gamma_t, data)`` for
    :func:`~bayesmlm.fastpath.model.build_collapsed_model`.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.model import build_collapsed_model
    >>> from bayesmlm.fastpath.nested_stats import nested_stats
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> s = nested_structure(m.design, m.prior_dict, ("batch", "batch:cask"))
    >>> pmodel = build_collapsed_model(s, m.prior_dict, nested_data(s, nested_stats(m.design), m.prior_dict, [0.0]),
    ...                                loglik=tree_loglik(s))
    >>> sorted(v.name for v in pmodel.free_RVs)
    ['b_centred', 'sd_batch', 'sd_batch_cask', 'sigma']
    """
    op = TreeTerms(structure.qs, structure.qoff)

    def loglik(L, sigma, gamma_t, data):
        q = structure.q
        s2 = sigma**2
        Lmat = pt.stack([pt.stack([L[a, b] if (a, b) in L else pt.constant(0.0) for b in range(q)]) for a in range(q)])
        terms, _, _, _, n_effects = op(gamma_t, Lmat, s2, data.g[0])
        rr = (data["yty_total"] - 2.0 * pt.dot(gamma_t, data["xty_total"])
              + pt.dot(gamma_t, pt.dot(data["xtx_total"], gamma_t)))
        n = data["n_obs"]
        return -0.5 * (n * np.log(2 * np.pi) + (n - n_effects) * pt.log(s2) + terms + rr / s2)

    return loglik


def tree_loglik_at(stats: NestedStats, gamma, covs, sigma: float) -> float:
    """The nested collapsed log-likelihood at given gamma, per-level covariances and sigma.

    The expression the PyMC model differentiates, at numbers: to check it
    against the dense multivariate normal density. ``covs``: one positive
    definite matrix per level (top first), over that level's random terms.

    Examples
    --------
    >>> import bayesmlm, numpy as np
    >>> from bayesmlm.fastpath.nested_stats import nested_stats
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> round(tree_loglik_at(nested_stats(m.design), [60.05], [[[1.29 ** 2]], [[2.90 ** 2]]], 0.82), 3)
    -124.024
    """
    leaf = stats.leaf
    p, has_intercept = len(leaf.fixed_terms), "(Intercept)" in leaf.fixed_terms
    blocks = tuple((f"T{lv}", tuple(t), True) for lv, t in enumerate(stats.level_terms))
    structure = NestedStructure(tuple(leaf.fixed_terms), blocks, (), has_intercept,
                                tuple(int(v) for v in stats.qs), tuple(int(v) for v in stats.qoff))
    data = nested_data(structure, stats, {}, np.zeros(p))
    unpacked = unpacked_data(structure, {}, data)
    gamma_t = np.array(gamma, dtype=float)
    if has_intercept:
        gamma_t[leaf.fixed_terms.index("(Intercept)")] += gamma_t @ leaf.x_shift - leaf.y_shift
    L = {}
    for o, cov in zip(structure.qoff, covs):
        chol = np.linalg.cholesky(np.atleast_2d(np.asarray(cov, dtype=float)))
        L |= {(o + a, o + b): chol[a, b] for a in range(len(chol)) for b in range(a + 1)}
    return float(tree_loglik(structure)(L, float(sigma), gamma_t, unpacked).eval())

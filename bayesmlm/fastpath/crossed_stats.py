"""Stage 2, design (crossed route): when it applies, and the sparse cross-products it samples on.

The crossed route (:mod:`bayesmlm.fastpath.crossed_fit`) integrates the grouping
factor with the most levels, ``c``, out exactly given everything else, and
samples the other factors' effects. With theta = (b, u_other) the coefficients
of W = [X - x_centre, Z_other] and y* = y - offset - y_shift, the rows of level
j of ``c`` have r_j = y*_j - W_j theta and, with z_j the column of Z_c on them,

    r_j ~ N(0, sigma^2 I + tau_c^2 z_j z_j'),

a rank-one covariance: the likelihood needs per level only n_j = z_j'z_j and
s_j = z_j'r_j, and overall r'r. Both are linear or quadratic in theta through

    W'W, W'y*, y*'y*   (r'r = y*'y* - 2 theta'W'y* + theta'W'W theta)
    B = Z_c'W, Z_c'y*   (s = Z_c'y* - B theta),

sparse matrices computed once here in O(N); every density evaluation afterwards
costs O(nnz(W'W) + nnz(B)), not O(N). Every random block must have one term
(random intercepts, or uncorrelated ``(0 + x | g)`` slopes); the collapsed
factor must have one block. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..design.matrices import Design
from ..errors import SpecError

__all__ = ["crossed_problem", "is_nested", "collapsed_factor", "CrossedStats", "crossed_stats"]


def is_nested(design: Design, inner: str, outer: str) -> bool:
    """Whether every level of factor ``inner`` lies within one level of factor ``outer`` in the data.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | batch:cask)", bayesmlm.datasets.load("pastes"))
    >>> is_nested(m.design, "batch:cask", "batch"), is_nested(m.design, "batch", "batch:cask")
    (True, False)
    """
    a, b = design.factors[inner], design.factors[outer]
    pairs = np.unique(a.index.astype(np.int64) * b.n_levels + b.index)
    return len(pairs) == a.n_levels


def collapsed_factor(design: Design) -> str:
    """The factor the crossed route integrates out: the one with the most levels among those with a single block.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> collapsed_factor(m.design)
    'plate'
    """
    counts = {}
    for b in design.blocks:
        counts[b.group] = counts.get(b.group, 0) + 1
    single = [f for f in design.spec.groups if counts.get(f) == 1]
    return max(single, key=lambda f: design.factors[f].n_levels)


def crossed_problem(design: Design) -> str | None:
    """Why the crossed route does not apply to a design, or None if it does.

    It applies to a gaussian outcome with two or more grouping factors of
    which at least two are crossed (neither nested in the other: nested
    designs have their own route), every random block of one term, and a
    design that keeps its rows.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> crossed_problem(m.design) is None
    True
    >>> crossed_problem(bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy")).design)
    'the model has 1 grouping factor; the crossed route needs two or more, at least two of them crossed'
    """
    family = design.spec.family.name
    if family != "gaussian":
        return f"the family is '{family}': the crossed route integrates out gaussian random effects only"
    groups = list(design.spec.groups)
    if len(groups) < 2:
        return (f"the model has {len(groups)} grouping factor; the crossed route needs two or more, at least two of "
                "them crossed")
    wide = [b.expr_text for b in design.blocks if b.q != 1]
    if wide:
        return (f"the blocks {', '.join(wide)} have more than one term; the crossed route takes blocks of one term "
                "(random intercepts, or uncorrelated slopes written (0 + x | g))")
    if not design.has_rows:
        return "the model keeps no rows (MLM.from_files or from_dask), and the crossed route reads them once"
    if design.weights is not None:
        return "the model has weights, and the crossed route's statistics are not weighted yet"
    if all(is_nested(design, a, b) or is_nested(design, b, a) for i, a in enumerate(groups) for b in groups[i + 1:]):
        return f"the grouping factors {', '.join(groups)} are nested, not crossed"
    return None


@dataclass(frozen=True, eq=False)
class CrossedStats:
    """The cross-products the crossed route's density reads (see the module's docstring).

    Attributes
    ----------
    collapsed : str
        The factor integrated out; its block is ``collapsed_block``.
    collapsed_block : str
    sampled_blocks : tuple of str
        Labels of the blocks whose effects are sampled, in theta's order after b.
    block_sizes : tuple of int
        Levels of each sampled block's factor.
    fixed_terms : tuple of str
    x_centre : ndarray (p,)
        Where X's columns are centred (0 for the intercept).
    y_shift : float
        Subtracted from y - offset (its mean, with an intercept; else 0).
    n_obs : int
    wtw : csr_matrix (M, M)
    wty : ndarray (M,)
    yty : float
    b : csr_matrix (J_c, M)
        Z_c'W.
    zcy : ndarray (J_c,)
    zcz : ndarray (J_c,)
        n_j = z_j'z_j (the rows of level j, for a random intercept).
    """

    collapsed: str
    collapsed_block: str
    sampled_blocks: tuple[str, ...]
    block_sizes: tuple[int, ...]
    fixed_terms: tuple[str, ...]
    x_centre: np.ndarray
    y_shift: float
    n_obs: int
    wtw: sp.csr_matrix
    wty: np.ndarray
    yty: float
    b: sp.csr_matrix
    zcy: np.ndarray
    zcz: np.ndarray

    @property
    def n_theta(self) -> int:
        """Length of theta = (b, sampled effects)."""
        return len(self.fixed_terms) + sum(self.block_sizes)


def _column_matrix(block, factor, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((block.Z[:, 0].astype(float), (np.arange(n), factor.index)), shape=(n, factor.n_levels))


def crossed_stats(design: Design, leave_out: tuple[str, ...] = ()) -> CrossedStats:
    """The crossed route's sparse cross-products of an in-memory design, in O(N).

    ``leave_out`` names blocks (labels) left out of W: a block nested in a
    sampled block of the same term, whose effects the sampled block's absorb
    (Z_parent = Z_child P), so that the density integrates them out of the
    child's prior (:data:`bayesmlm.fastpath.crossed_kernel.MARGINAL`).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> s = crossed_stats(m.design)
    >>> s.collapsed, s.sampled_blocks, s.b.shape, s.zcz[:3].tolist()
    ('plate', ('sample',), (24, 7), [6.0, 6.0, 6.0])
    >>> crossed_stats(m.design, leave_out=("sample",)).b.shape
    (24, 1)
    """
    problem = crossed_problem(design)
    if problem:
        raise SpecError(f"The crossed route cannot fit this model: {problem}. Use method='full'.")
    n = design.n_obs
    collapsed = collapsed_factor(design)
    x_centre = design.x_centre
    y = design.y - design.offset if design.offset is not None else design.y
    y_shift = float(y.mean()) if design.has_intercept else 0.0
    y = y - y_shift
    sampled = [b for b in design.blocks if b.group != collapsed and b.label not in leave_out]
    (cblock,) = [b for b in design.blocks if b.group == collapsed]
    W = sp.hstack([sp.csr_matrix(design.X - x_centre)]
                  + [_column_matrix(b, design.factors[b.group], n) for b in sampled], format="csc")
    Zc = _column_matrix(cblock, design.factors[collapsed], n).tocsc()
    wtw = (W.T @ W).tocsr()
    B = (Zc.T @ W).tocsr()
    for m in (wtw, B):
        m.sort_indices()
    return CrossedStats(collapsed, cblock.label, tuple(b.label for b in sampled),
                        tuple(design.factors[b.group].n_levels for b in sampled), tuple(design.fixed_terms), x_centre,
                        y_shift, n, wtw, np.asarray(W.T @ y).ravel(), float(y @ y), B, np.asarray(Zc.T @ y).ravel(),
                        np.asarray(Zc.multiply(Zc).sum(axis=0)).ravel())

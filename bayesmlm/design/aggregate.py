"""Stage 2, design: exact aggregation of a generalized model's rows into cells.

Rows that share every grouping level and the same model-matrix row (X and
every block's Z) have the same linear predictor at every parameter value, so
their likelihood terms can be added up before sampling:

- bernoulli rows become one binomial count per cell (successes, trials =
  rows), binomial rows one count with the successes and the trials summed;
  the offset is part of the cell's key (it moves the linear predictor);
- poisson rows become one count with the counts summed and the exposure
  summed: if y_i ~ Poisson(exp(o_i) lambda) independently with the same
  lambda = exp(eta), then sum_i y_i ~ Poisson(lambda sum_i exp(o_i)), so the
  cell's offset is log(sum_i exp(o_i)) (a log-sum-exp). The offset need not be
  part of the key: rows with different exposures still collapse.

- cumulative (ordinal) rows become one row of category counts per cell: the
  rows of a cell share their category probabilities p_1..p_K, so their
  log-likelihood is sum_k n_ck log p_k exactly (no constant: each row's term
  is log p_{y_i}, with nothing in front).

The cell likelihood differs from the product of its rows' likelihoods only by
a term that does not depend on the parameters: for binomial cells
sum_i log C(n_i, y_i) - log C(N_c, S_c), for poisson cells
sum_i (y_i o_i - log y_i!) - (S_c O_c - log S_c!). :attr:`Cells.constant` is
its sum over the cells, and the full model adds it (a ``pm.Potential``), so
the aggregated log-density equals the row-wise one at every parameter value,
not only up to a constant.

The group-by is an integer factorisation of each key column followed by one
:func:`numpy.unique` of the combined codes, O(N log N). Where rows barely
collapse (continuous predictors: cells > ``max_ratio`` x rows, default
:data:`AGGREGATE_MAX_RATIO` = 0.5) nothing is aggregated; a column with more
distinct values than that already decides it, before the full group-by.
Everything that reads the rows afterwards (tables, predictions, ppc and the
pointwise log-likelihood behind LOO) still reads the design's rows: a cell's
log-likelihood is split back into its rows exactly by computing each row's own
term, so LOO leaves one row out, not one cell. Gaussian rows are never
aggregated here (their sufficient statistics are the fast path's); nor are
student or negbinomial rows: their per-row likelihood has no count that adds
up over rows (a sum of negative binomials with a shared mean is negative
binomial only with the shapes added, and a Student-t has no sufficient
statistic), so :func:`aggregate_rows` returns None for them and the model
runs over the rows. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .matrices import Design

__all__ = ["AGGREGATE_MAX_RATIO", "AGGREGATED_FAMILIES", "Cells", "cell_keys", "aggregate_rows"]

AGGREGATE_MAX_RATIO = 0.5  # aggregate only where the cells are at most half the rows
AGGREGATED_FAMILIES = ("bernoulli", "binomial", "poisson", "cumulative")


@dataclass(frozen=True, eq=False)
class Cells:
    """A generalized model's rows collapsed into cells that share their likelihood term.

    Attributes
    ----------
    family : str
        ``"bernoulli"`` or ``"binomial"`` (cells are binomial counts), ``"poisson"``, or ``"cumulative"``.
    row_cell : ndarray (N,)
        The cell of each row.
    first : ndarray (C,)
        One row of each cell: its X and Z rows, group levels (and, for
        bernoulli and binomial cells, offset) are the cell's.
    y : ndarray (C,), or (C, K) for cumulative cells
        Successes or counts, summed over the cell's rows; for cumulative
        cells the count of the cell's rows in each category.
    trials : ndarray (C,) or None
        Trials summed over the cell's rows (a bernoulli row is one trial; for
        cumulative cells, the cell's rows); None for poisson cells.
    offset : ndarray (C,) or None
        The cell's offset on the link scale: the rows' own for bernoulli and
        binomial cells (None without one); log(sum_i exp(o_i)) for poisson
        cells (log of the row count without an offset).
    constant : float
        The rows' log-likelihood minus the cells' (binomial or poisson)
        log-likelihood: the same at every parameter value.

    Examples
    --------
    >>> import bayesmlm
    >>> wvs = bayesmlm.datasets.load("wvs7_sim").assign(hi=lambda d: d.tech >= 8)
    >>> m = bayesmlm.MLM("hi ~ smu + (1 + smu | country)", wvs, family="bernoulli")
    >>> cells = aggregate_rows(m.design)
    >>> cells.n_rows, cells.n_cells
    (91175, 320)
    """

    family: str
    row_cell: np.ndarray
    first: np.ndarray
    y: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray | None
    constant: float

    @property
    def n_rows(self) -> int:
        """Rows aggregated."""
        return len(self.row_cell)

    @property
    def n_cells(self) -> int:
        """Cells the rows became."""
        return len(self.first)


def cell_keys(design: Design) -> np.ndarray:
    """The columns whose values decide a row's cell: X, every block's Z, every grouping index, and the offset
    (except for poisson models, where rows of different exposure still collapse).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> cell_keys(m.design).shape
    (180, 5)
    """
    cols = [design.X, *(b.Z for b in design.blocks),
            np.column_stack([f.index for f in design.factors.values()]).astype(float)]
    if design.offset is not None and design.spec.family.name != "poisson":
        cols.append(design.offset[:, None])
    return np.column_stack(cols)


def _factorise(keys: np.ndarray, limit: int) -> np.ndarray | None:
    """Integer codes of each key column, or None as soon as a column has more than ``limit`` distinct values."""
    codes = np.empty(keys.shape, dtype=np.int64)
    for k in range(keys.shape[1]):
        uniq, inv = np.unique(keys[:, k], return_inverse=True)
        if len(uniq) > limit:
            return None
        codes[:, k] = inv.ravel()
    return codes


def _group(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each cell, cell of each row) of rows with equal codes."""
    cards = codes.max(axis=0) + 1
    if np.sum(np.log2(cards.astype(float))) < 62:  # one mixed-radix integer key per row
        key = np.zeros(len(codes), dtype=np.int64)
        for k, c in enumerate(cards):
            key = key * int(c) + codes[:, k]
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, inv = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return first, inv.ravel()


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def aggregate_rows(design: Design, max_ratio: float = AGGREGATE_MAX_RATIO) -> Cells | None:
    """Collapse the rows of a bernoulli, binomial, poisson or cumulative design into cells; None where that does not pay.

    Parameters
    ----------
    design : Design
    max_ratio : float
        Aggregate only where the cells number at most ``max_ratio`` x the
        rows; 1.0 aggregates whatever collapses.

    Returns
    -------
    Cells or None
        None for a gaussian, student or negbinomial design, a design without
        rows, or rows that do not collapse enough.

    Examples
    --------
    >>> import bayesmlm
    >>> ucb = bayesmlm.datasets.load("ucb_admissions_wide")
    >>> m = bayesmlm.MLM("cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", ucb, family="binomial")
    >>> aggregate_rows(m.design) is None   # 12 rows, 12 different cells
    True
    """
    family = design.spec.family.name
    if family not in AGGREGATED_FAMILIES or not design.has_rows:
        return None
    n = design.n_obs
    limit = int(np.floor(max_ratio * n))
    codes = _factorise(cell_keys(design), limit)
    if codes is None:
        return None
    first, inv = _group(codes)
    if len(first) > limit:
        return None
    C = len(first)
    y = design.y.astype(float)
    if family == "cumulative":
        K = len(design.categories)
        counts = np.zeros((C, K))
        np.add.at(counts, (inv, design.y.astype(np.int64)), 1.0)
        offset = None if design.offset is None else design.offset[first]
        return Cells(family, inv, first, counts, counts.sum(axis=1), offset, 0.0)
    S = np.bincount(inv, weights=y, minlength=C)
    if family == "poisson":
        o = design.offset if design.offset is not None else np.zeros(n)
        top = np.full(C, -np.inf)
        np.maximum.at(top, inv, o)
        O = top + np.log(np.bincount(inv, weights=np.exp(o - top[inv]), minlength=C))
        constant = (np.sum(y * o - gammaln(y + 1)) - np.sum(S * O - gammaln(S + 1))) if n else 0.0
        return Cells(family, inv, first, S, None, O, float(constant))
    n_i = design.trials.astype(float) if design.trials is not None else np.ones(n)
    N = np.bincount(inv, weights=n_i, minlength=C)
    constant = np.sum(_log_choose(n_i, y)) - np.sum(_log_choose(N, S))
    offset = None if design.offset is None else design.offset[first]
    return Cells(family, inv, first, S, N, offset, float(constant))

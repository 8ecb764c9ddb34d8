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
:func:`numpy.unique` of the combined codes, O(N log N). Data too large for
memory are aggregated chunk by chunk into the same cells by
:mod:`bayesmlm.fastpath.cell_readers` (``MLM.from_files``), with the same
reduction, :func:`cell_sums`. Where rows barely
collapse (continuous predictors: cells > ``max_ratio`` x rows, default
:data:`AGGREGATE_MAX_RATIO` = 0.5) nothing is aggregated; a column with more
distinct values than that already decides it, before the full group-by.
With weights (``Design.weights``: each row's log-likelihood times w_i) a
cell's log-likelihood is sum_i w_i log p(y_i | eta), still a function of the
cell's eta alone: for bernoulli and binomial rows
(sum_i w_i y_i) log mu + (sum_i w_i (n_i - y_i)) log(1 - mu) + const, a binomial
kernel with the weighted successes and trials; for poisson rows
(sum_i w_i y_i) eta - exp(eta) sum_i w_i exp(o_i) + const, a poisson kernel
with the weighted count and the weighted exposure. Weighted counts need not be
integers, so such cells carry ``weighted=True`` and the full model writes their
kernels out; ``constant`` is then the rows' weighted log-likelihood minus the
cells' kernels. Integer weights give the cells of the expanded rows (each row
repeated w_i times), up to that constant.

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

__all__ = ["AGGREGATE_MAX_RATIO", "AGGREGATED_FAMILIES", "Cells", "cell_keys", "aggregate_rows", "cell_sums", "cell_constant"]

AGGREGATE_MAX_RATIO = 0.5  # aggregate only where the cells are at most half the rows
AGGREGATED_FAMILIES = ("bernoulli", "binomial", "poisson", "cumulative")


@dataclass(frozen=True, eq=False)
class Cells:
    """A generalized model's rows collapsed into cells that share their likelihood term.

    Attributes
    ----------
    family : str
        ``"bernoulli"`` or ``"binomial"`` (cells are binomial counts), ``"poisson"``, or ``"cumulative"``
        (cells are category counts).
    row_cell : ndarray (N,) or None
        The cell of each row; None for cells read from files
        (:mod:`bayesmlm.fastpath.cell_readers`), which keep no rows.
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
        log-likelihood: the same at every parameter value. For weighted cells
        the rows' weighted log-likelihood minus the cells' kernels
        (y log mu + (trials - y) log(1 - mu), or y eta - exp(eta)).
    weighted : bool
        The design had weights: ``y``, ``trials`` and the poisson exposure
        are weighted sums (see the module's notes).
    rows_read : int or None
        The rows the cells came from, where ``row_cell`` is None.

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
    row_cell: np.ndarray | None
    first: np.ndarray
    y: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray | None
    constant: float
    weighted: bool = False
    rows_read: int | None = None

    @property
    def n_rows(self) -> int:
        """Rows aggregated."""
        return len(self.row_cell) if self.row_cell is not None else int(self.rows_read)

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
    if family == "cumulative":  # the (weighted) count of each category per cell; no constant
        K = len(design.categories)
        counts = np.zeros((C, K))
        np.add.at(counts, (inv, design.y.astype(np.int64)), 1.0 if design.weights is None else design.weights)
        offset = None if design.offset is None else design.offset[first]
        return Cells(family, inv, first, counts, counts.sum(axis=1), offset, 0.0,
                     weighted=design.weights is not None)
    if design.weights is not None:
        return _weighted_cells(design, first, inv)
    trials = design.trials.astype(float) if design.trials is not None else None
    S, N, O, row_constant = cell_sums(family, inv, C, design.y.astype(float), trials, design.offset)
    offset = O if family == "poisson" else (None if design.offset is None else design.offset[first])
    return Cells(family, inv, first, S, N, offset, float(row_constant - cell_constant(family, S, N, O)))


def _weighted_cells(design: Design, first: np.ndarray, inv: np.ndarray) -> Cells:
    """Cells of a weighted design: weighted counts, trials and exposure, the constant against the cells' kernels."""
    family, n, C = design.spec.family.name, design.n_obs, len(first)
    w, y = design.weights, design.y.astype(float)
    S = np.bincount(inv, weights=w * y, minlength=C)
    if family == "poisson":
        o = design.offset if design.offset is not None else np.zeros(n)
        top = np.full(C, -np.inf)
        np.maximum.at(top, inv, o)
        exposure = np.bincount(inv, weights=w * np.exp(o - top[inv]), minlength=C)
        # A cell of zero-weight rows has exposure 0 and no term: an offset of -1000 makes exp(eta + O) exactly 0
        # in float64 (for eta below 290) where log 0 would make 0 * -inf in y * eta.
        O = np.where(exposure > 0, top + np.log(np.where(exposure > 0, exposure, 1.0)), -1000.0)
        constant = np.sum(w * (y * o - gammaln(y + 1))) - np.sum(S * O)
        return Cells(family, inv, first, S, None, O, float(constant), weighted=True)
    n_i = design.trials.astype(float) if design.trials is not None else np.ones(n)
    N = np.bincount(inv, weights=w * n_i, minlength=C)
    offset = None if design.offset is None else design.offset[first]
    return Cells(family, inv, first, S, N, offset, float(np.sum(w * _log_choose(n_i, y))), weighted=True)


def cell_sums(family: str, row_cell: np.ndarray, n_cells: int, y: np.ndarray, trials: np.ndarray | None = None,
              offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
    """The cell reduction: per cell the summed outcome, trials and (poisson) log exposure, and the rows' constant.

    The one place where rows become cells (in memory here, chunk by chunk in
    :mod:`bayesmlm.fastpath.cell_readers`). Partial results of disjoint rows
    of the same cells merge by adding S, N and the constant, and by
    ``logaddexp`` of O.

    Parameters
    ----------
    family : str
    row_cell : ndarray (N,)
        Each row's cell, 0 .. n_cells - 1.
    n_cells : int
    y : ndarray (N,)
        Successes or counts per row.
    trials : ndarray (N,), optional
        Binomial trials per row (None: one per row; ignored for poisson).
    offset : ndarray (N,), optional
        Poisson: the log exposure per row (None: 0).

    Returns
    -------
    S, N, O, row_constant
        Summed outcome; summed trials (None for poisson); log of the summed
        exposure (None unless poisson); the parameter-free part of the rows'
        log-likelihood, sum_i log C(n_i, y_i) or sum_i (y_i o_i - log y_i!).

    Examples
    --------
    >>> import numpy as np
    >>> S, N, O, c = cell_sums("bernoulli", np.array([0, 0, 1]), 2, np.array([1.0, 0.0, 1.0]))
    >>> S.tolist(), N.tolist(), O, c
    ([1.0, 1.0], [2.0, 1.0], None, 0.0)
    """
    S = np.bincount(row_cell, weights=y, minlength=n_cells)
    if family == "poisson":
        o = offset if offset is not None else np.zeros(len(y))
        top = np.full(n_cells, -np.inf)
        np.maximum.at(top, row_cell, o)
        O = top + np.log(np.bincount(row_cell, weights=np.exp(o - top[row_cell]), minlength=n_cells))
        return S, None, O, float(np.sum(y * o - gammaln(y + 1)))
    if trials is None:  # one trial a row: log C(1, y) = 0
        return S, np.bincount(row_cell, minlength=n_cells).astype(float), None, 0.0
    N = np.bincount(row_cell, weights=trials, minlength=n_cells)
    return S, N, None, float(np.sum(_log_choose(trials, y)))


def cell_constant(family: str, S: np.ndarray, N: np.ndarray | None, O: np.ndarray | None) -> float:
    """The parameter-free part of the cells' log-likelihood: sum_c log C(N_c, S_c), or sum_c (S_c O_c - log S_c!).

    :attr:`Cells.constant` is :func:`cell_sums`' row constant minus this.

    Examples
    --------
    >>> import numpy as np
    >>> round(cell_constant("binomial", np.array([1.0]), np.array([2.0]), None), 6)   # log C(2, 1)
    0.693147
    """
    if family == "poisson":
        return float(np.sum(S * O - gammaln(S + 1)))
    return float(np.sum(_log_choose(N, S)))

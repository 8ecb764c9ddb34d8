"""Stage 2, design (files): a generalized model's cells from data that are never in memory at once.

The exact aggregation of :mod:`bayesmlm.design.aggregate` is a group-by, so it
runs chunk by chunk like the Gaussian statistics of
:mod:`bayesmlm.fastpath.readers`, with the same pieces: the first chunk fixes
the design (formulae encodings, categorical levels, checks), every chunk is
cleaned and turned into X, Z and offset by :func:`~bayesmlm.fastpath.readers.clean_chunk`
and :func:`~bayesmlm.fastpath.readers.chunk_matrices`, and :func:`_partial`
reduces it to its cells with :func:`~bayesmlm.design.aggregate.cell_sums`.
:func:`_merge` adds two partials (the same reduction, over their cells), so
the result does not depend on how the rows were split, and Dask can run the
merges as a tree. Memory holds one chunk and the cells, never the rows.

A cell's key is its model-matrix row (X and every block's Z), its group label
per grouping factor and (bernoulli and binomial) its offset. Labels are merged
as sorted unions, so a cell's group codes are the ranks that the in-memory
design gives; at the end the cells are sorted by their keys, the order that
:func:`~bayesmlm.design.aggregate.aggregate_rows` gives the same rows.

Keys are integers wherever that is exact, since hashing floats row by row was
the cost: a chunk's rows are first grouped by their raw values (an integer
column is its distance from its minimum; other columns pandas' codes), with a
table over every possible combined key where the keys are few
(:func:`_first_seen`), so X and Z are built for one row of each raw value;
a partial holds its few distinct model rows once and each cell as the index
of its model row and its group codes, so merges unite the model rows (as
floats, a handful) and then the cells by integers.

The result is a :class:`CellDesign` (its rows are the cells: y the successes
or counts, ``trials`` the summed trials, the offset the cells') and the
:class:`~bayesmlm.design.aggregate.Cells` that ``build_full_model(cells=...)``
runs the likelihood over. Column means and SDs (the centring of X and Z and
the data-scaled priors) are over the rows, each cell counted as many times
as it has rows, so the model is the one the rows in memory would give.
Continuous predictors do not collapse: more cells than ``max_cells``, or at
the end than ``max_ratio`` x rows, is an error that says what to do.
Nothing here imports PyMC.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..arguments import check_count
from ..design.aggregate import AGGREGATE_MAX_RATIO, AGGREGATED_FAMILIES, Cells, cell_constant, cell_sums
from ..design.data_checks import check_outcome_varies, response_columns
from ..design.matrices import BlockDesign, Design, GroupingFactor, build_design, centring, group_labels, outcome_arrays
from ..errors import DataError, RowsDroppedWarning, SeparationWarning, SpecError
from ..spec.formula import ModelSpec
from .readers import (ColumnMoments, SummaryDesign, chunk_matrices, clean_chunk, model_file_columns, read_chunks,
                      stateful_transforms)

__all__ = ["MAX_FILE_CELLS", "CellBlock", "CellDesign", "ReducedCells", "reduce_cell_frames", "reduce_cell_files",
           "reduce_cell_dask"]

MAX_FILE_CELLS = 2_000_000  # about 100 bytes a cell and key column: a few hundred MB at most


@dataclass(frozen=True, eq=False)
class CellBlock(BlockDesign):
    """A random block whose Z rows are cells; ``row_counts`` says how many data rows each stands for."""

    row_counts: np.ndarray | None = field(default=None, repr=False)

    @property
    def z_means(self) -> np.ndarray:
        """Z's column means over the data's rows."""
        return self.row_counts @ self.Z / self.row_counts.sum()


@dataclass(frozen=True, eq=False)
class CellDesign(SummaryDesign):
    """A Design whose rows are a generalized model's cells, reduced from data read in chunks.

    ``X``, the blocks' ``Z``, the factors' indices and ``offset`` are the
    cells'; ``y`` holds each cell's successes (bernoulli, binomial) or counts
    (poisson), ``trials`` its trials (bernoulli too: one per row), ``data``
    each cell's first row (the outcome NaN). ``has_rows`` is False: predictions
    and checks that need the rows refuse.

    Attributes
    ----------
    row_counts : ndarray (C,)
        Data rows per cell.
    """

    row_counts: np.ndarray | None = field(default=None, repr=False)

    @property
    def x_centre(self) -> np.ndarray:
        """X's column means over the data's rows, 0 for the intercept."""
        return centring(self.fixed_terms, self.row_counts @ self.X / self.row_counts.sum())


@dataclass(frozen=True, eq=False)
class ReducedCells:
    """The cells of data read in chunks and the design whose rows they are."""

    design: CellDesign
    cells: Cells


@dataclass
class _Partial:
    labels: list                # per grouping factor: sorted labels (object)
    model_rows: np.ndarray      # (m, k): the distinct model-matrix rows, X, Z and (bernoulli, binomial) offset
    model_row: np.ndarray       # (c,): each cell's row of model_rows
    codes: np.ndarray           # (c, F): each cell's code per grouping factor (into labels)
    S: np.ndarray
    N: np.ndarray | None
    O: np.ndarray | None        # poisson: log of the summed exposure
    rows: np.ndarray            # data rows per cell
    first: np.ndarray           # (c, 2): chunk and row of each cell's first row
    data: pd.DataFrame          # each cell's first row
    row_constant: float
    y_sum: float
    y_sq: float
    n: int
    dropped: dict
    n_dropped: int
    lengths: dict = field(default_factory=dict)  # clean rows per chunk

    def keys(self, template: Design) -> np.ndarray:
        """(c, k) each cell's key: X, Z, one code per factor, offset (bernoulli, binomial)."""
        M = self.model_rows[self.model_row]
        q = template.X.shape[1] + sum(b.q for b in template.blocks)
        return np.column_stack([M[:, :q], self.codes.astype(float), M[:, q:]])


def _template(spec: ModelSpec, first: pd.DataFrame, trials: str | None, offset: str | None, where: str) -> Design:
    """The design of the first chunk: encodings and checks for every chunk.

    Built on the chunk's distinct rows (every column, the outcome too): the
    encodings (categorical levels, which outcome label is 1) and the checks
    depend on the set of values only, so they are the chunk's, at a fraction
    of the time and memory. Two things do count rows and get the whole chunk:
    formulae's stateful transforms (``center(x)``, ``scale(x)``, splines: their
    state is a mean or quantiles of the rows), and a refusal (one row a group
    may be one distinct row a group of several rows; the whole chunk decides).
    """
    if spec.family.name not in AGGREGATED_FAMILIES:
        raise SpecError(f"Cells are read from files for the families {', '.join(AGGREGATED_FAMILIES)}; this model's is "
                        f"'{spec.family.name}'. Gaussian models read their sufficient statistics instead: "
                        "MLM.from_files(formula, paths) with family='gaussian'.")
    distinct = first if stateful_transforms(spec) else first.iloc[_combine(
        [_value_codes(first[c]) for c in first.columns])[1]].reset_index(drop=True)
    try:
        with warnings.catch_warnings():
            # counted again over every chunk; separation is a property of all the rows, not of the first chunk's
            warnings.simplefilter("ignore", RowsDroppedWarning)
            warnings.simplefilter("ignore", SeparationWarning)
            try:
                return build_design(spec, distinct, trials=trials, offset=offset)
            except (DataError, SpecError):
                if len(distinct) == len(first):
                    raise
                return build_design(spec, first, trials=trials, offset=offset)
    except (DataError, SpecError) as err:
        raise type(err)(f"In the first chunk of {where} ({len(first)} rows): {err} The first chunk fixes the design, so it "
                        "must vary in every predictor and hold two or more groups: pass a larger chunksize=, or "
                        "shuffle the rows.") from None


def _outcome(clean: pd.DataFrame, template: Design, chunk_no: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Successes or counts and (binomial) trials per row, coded as the first chunk's design codes them."""
    spec = template.spec
    if template.success is not None:  # two labels: the first chunk decided which is 1
        name = spec.response
        col = clean[name].astype(str)
        known = set(template.data[name].astype(str).unique())
        bad = ~col.isin(known)
        if bad.any():
            raise DataError(f"Chunk {chunk_no}: the outcome '{name}' has the label {col[bad].iloc[0]!r}, which is not one "
                            f"of the two labels of the first chunk ({', '.join(map(repr, sorted(known)))}). Recode it.")
        return (col == template.success).to_numpy(dtype=float), None
    try:
        y, trials, _ = outcome_arrays(spec, clean, template.options.get("trials"))
    except DataError as err:
        raise DataError(f"Chunk {chunk_no}: {err}") from None
    return y, trials


def _combine(codes: list) -> tuple[np.ndarray, np.ndarray]:
    """Cell of each row given integer codes per key column (equal codes share a cell, numbered in order of first
    appearance), and each cell's first row.

    Mixed-radix integers, renumbered whenever the next column could overflow
    them, so the combined code stays below rows x distinct values whatever the
    number of columns.
    """
    if not codes:
        return _first_seen(np.zeros(0, dtype=np.int64), 1)
    key, span = codes[0].astype(np.int64, copy=True), int(codes[0].max()) + 1 if len(codes[0]) else 1
    for c in codes[1:]:
        card = int(c.max()) + 1 if len(c) else 1
        if span * card >= 2**62:
            key, first = _first_seen(key, span)
            span = len(first)
        key *= card  # in place: the rows are many
        key += c
        span *= card
    return _first_seen(key, span)


def _first_seen(key: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys in [0, span) renumbered in order of first appearance, and the first row of each."""
    n = len(key)
    if span <= 2 * n + 2**16:  # a table over every possible key: no hashing, no sort of the rows
        first_at = np.full(span, n, dtype=np.int64)
        np.minimum.at(first_at, key, np.arange(n, dtype=np.int64))
        first = np.sort(first_at[first_at < n])
        rank = np.empty(span, dtype=np.int64)
        rank[key[first]] = np.arange(len(first), dtype=np.int64)
        return rank[key], first
    key = pd.factorize(key)[0].astype(np.int64)
    # codes come in order of first appearance: a row starts a cell where its code exceeds every earlier one
    return key, np.flatnonzero(np.diff(np.maximum.accumulate(key), prepend=-1) > 0)


def _value_codes(col: pd.Series) -> np.ndarray:
    """Integer codes of a column's values, equal values equal codes: an integer column's distance from its minimum
    (no hashing) where its range is small, else pandas' factorisation."""
    v = col.to_numpy() if isinstance(col.dtype, np.dtype) else None
    if v is not None and len(v) and v.dtype.kind == "b":
        return v.astype(np.int64)
    if v is not None and len(v) and v.dtype.kind in "iu":
        lo = v.min()
        if int(v.max()) - int(lo) <= 2 * len(v) + 2**16:
            return np.subtract(v, lo, dtype=np.int64)
    return pd.factorize(col, use_na_sentinel=False)[0].astype(np.int64)  # a missing value is a value here


def _group_keys(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_combine` of the rows of a float matrix."""
    return _combine([pd.factorize(K[:, k])[0].astype(np.int64) for k in range(K.shape[1])])


def _raw_key_columns(template: Design) -> list[str]:
    """The data columns a cell's key is a function of: the predictors, the grouping columns and the offset column."""
    spec = template.spec
    outcome = set(response_columns(spec)) | {template.options.get("trials")}
    return [c for c in template.data.columns if c not in outcome]


def _factor_codes(clean: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code into the sorted labels of one grouping factor, and those labels (as the in-memory design writes them)."""
    cols = name.split(":")
    if len(cols) == 1:
        codes, uniques = pd.factorize(clean[cols[0]])
        labels = group_labels(pd.DataFrame({cols[0]: uniques}), cols[0]).to_numpy(dtype=object)
        # 3 and 3.0 are one label; Python's sort of the distinct labels (strings) is the order np.unique gives, faster
        ordered = sorted(set(labels))
        position = {label: k for k, label in enumerate(ordered)}
        inverse = np.fromiter(map(position.__getitem__, labels), dtype=np.int64, count=len(labels))
        return inverse[codes], np.array(ordered, dtype=object)
    codes, uniques = pd.factorize(group_labels(clean, name), sort=True)
    return codes, np.asarray(uniques, dtype=object)


def _model_rows(template: Design, X: np.ndarray, Z: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    cols = [X, Z]
    if offset is not None and template.spec.family.name != "poisson":
        cols.append(offset[:, None])
    return np.column_stack(cols) + 0.0  # -0.0 and 0.0 are one value


def _partial(chunk: pd.DataFrame, template: Design, chunk_no: int) -> _Partial:
    """One chunk's cells: model rows, group codes, sums, first rows."""
    clean, na_counts = clean_chunk(chunk, template, chunk_no)
    family = template.spec.family.name
    n = len(clean)
    if n == 0:
        empty, none = np.empty(0), np.empty(0, dtype=np.int64)
        return _Partial([np.empty(0, dtype=object) for _ in template.factors], np.empty((0, _n_model(template))), none,
                        np.empty((0, len(template.factors)), dtype=np.int64), empty,
                        None if family == "poisson" else empty, empty if family == "poisson" else None,
                        none, np.empty((0, 2), dtype=np.int64), clean, 0.0, 0.0, 0.0, 0,
                        {c: int(k) for c, k in na_counts.items() if k}, len(chunk), {chunk_no: 0})
    y, trials = _outcome(clean, template, chunk_no)
    # Rows with equal predictor, group and offset values have equal model-matrix rows: group those first (integer
    # codes of the raw columns), and build X and Z for one row of each, not for every row.
    raw_cell, raw_first = _combine([_value_codes(clean[c]) for c in _raw_key_columns(template)])
    distinct = clean.iloc[raw_first].reset_index(drop=True)
    X, Z, offset = chunk_matrices(distinct, template, chunk_no)
    codes, labels = zip(*(_factor_codes(distinct, name) for name in template.factors))
    M = _model_rows(template, X, Z, offset)
    model_row, model_first = _group_keys(M)
    of_distinct, first = _combine([model_row, *codes])
    inv = of_distinct[raw_cell]
    S, N, O, row_constant = cell_sums(family, inv, len(first), y, trials,
                                      offset[raw_cell] if family == "poisson" and offset is not None else None)
    rows = np.bincount(inv, minlength=len(first))
    return _Partial(list(labels), M[model_first], model_row[first],
                    np.column_stack(codes)[first].astype(np.int64), S, N, O, rows,
                    np.column_stack([np.full(len(first), chunk_no), raw_first[first]]),
                    distinct.iloc[first].reset_index(drop=True), row_constant, float(y.sum()), float((y**2).sum()), n,
                    {c: int(k) for c, k in na_counts.items() if k}, len(chunk) - n, {chunk_no: n})


def _n_model(template: Design) -> int:
    has_offset = template.offset is not None and template.spec.family.name != "poisson"
    return template.X.shape[1] + sum(b.q for b in template.blocks) + int(has_offset)


def _factor_columns(template: Design) -> range:
    start = template.X.shape[1] + sum(b.q for b in template.blocks)
    return range(start, start + len(template.factors))


def _merge(a: _Partial, b: _Partial, template: Design, max_cells: int = MAX_FILE_CELLS) -> _Partial:
    """The partial of the union of two disjoint sets of rows, ``a``'s rows before ``b``'s.

    The few distinct model rows are united as floats; the cells then by integer codes (model row, one per factor).
    """
    model_rows = np.concatenate([a.model_rows, b.model_rows])
    united, model_first = _group_keys(model_rows)
    columns = [united[np.concatenate([a.model_row, len(a.model_rows) + b.model_row])]]
    labels = []
    for f in range(len(template.factors)):
        if len(a.labels[f]) == len(b.labels[f]) and (a.labels[f] == b.labels[f]).all():  # the usual case: same groups
            labels.append(a.labels[f])
            columns.append(np.concatenate([a.codes[:, f], b.codes[:, f]]))
            continue
        union = np.union1d(a.labels[f], b.labels[f]).astype(object)
        remap = [np.searchsorted(union, p.labels[f]).astype(np.int64) for p in (a, b)]
        columns.append(np.concatenate([remap[0][a.codes[:, f]], remap[1][b.codes[:, f]]]))
        labels.append(union)
    inv, first = _combine(columns)
    family = template.spec.family.name
    # Adding partial cells is the same reduction as adding rows: sums, and (poisson) log-sum-exp of log exposures,
    # for which cell_sums is the one place; the constant it returns is the cells' and is not wanted here: each
    # partial carries its rows' own.
    S = np.bincount(inv, weights=np.concatenate([a.S, b.S]), minlength=len(first))
    N = O = None
    if family == "poisson":
        O = cell_sums(family, inv, len(first), np.concatenate([a.S, b.S]), None, np.concatenate([a.O, b.O]))[2]
    else:
        N = np.bincount(inv, weights=np.concatenate([a.N, b.N]), minlength=len(first))
    codes = np.column_stack(columns[1:])[first] if labels else np.empty((len(first), 0), dtype=np.int64)
    out = _Partial(labels, model_rows[model_first], columns[0][first], codes, S, N, O,
                   np.bincount(inv, weights=np.concatenate([a.rows, b.rows]), minlength=len(first)).astype(np.int64),
                   np.concatenate([a.first, b.first])[first],
                   pd.concat([a.data, b.data], ignore_index=True).iloc[first].reset_index(drop=True),
                   a.row_constant + b.row_constant, a.y_sum + b.y_sum, a.y_sq + b.y_sq, a.n + b.n,
                   {c: a.dropped.get(c, 0) + b.dropped.get(c, 0) for c in {**a.dropped, **b.dropped}},
                   a.n_dropped + b.n_dropped, {**a.lengths, **b.lengths})
    _check_cells(out, template, max_cells)
    return out


def _check_cells(part: _Partial, template: Design, max_cells: int, max_ratio: float | None = None) -> None:
    """Refuse rows that do not collapse: more than ``max_cells`` cells, or (at the end) more than ``max_ratio`` x rows."""
    C, n = len(part.S), part.n
    over_total = C > max_cells
    if not over_total and (max_ratio is None or C <= max_ratio * n):
        return
    p, q = template.X.shape[1], sum(b.q for b in template.blocks)
    names = list(template.fixed_terms) + [f"{t} (random, {b.group})" for b in template.blocks for t in b.terms]
    keys = part.keys(template)
    distinct = [len(np.unique(keys[:, k])) for k in range(p + q)]
    worst = sorted(range(p + q), key=lambda k: -distinct[k])[:3]
    shown = ", ".join(f"'{names[k]}' ({distinct[k]:,} values)" for k in worst if distinct[k] > 1)
    bound = (f"more than max_cells={max_cells:,}" if over_total
             else f"more than max_ratio={max_ratio:g} x the {n:,} rows")
    raise DataError(f"The rows do not collapse into few enough cells to aggregate from files: {C:,} cells after "
                    f"{n:,} rows, {bound}. A cell is a group and a model-matrix row, so the predictors must be discrete; "
                    f"the terms with the most distinct values: {shown or 'none'}. Load a sample of the rows into memory "
                    "(MLM(formula, data)), or discretise the continuous predictors (round or bin them) in the files.")


def _moments(X: np.ndarray, blocks: list[CellBlock], r: np.ndarray, part: _Partial) -> ColumnMoments:
    """Means and SDs (ddof 1) over the rows, from the cells and their row counts."""
    n = r.sum()

    def sd(M):
        mean = r @ M / n
        return np.sqrt(np.maximum(r @ (M - mean) ** 2 / max(n - 1, 1), 0.0))

    y_mean = part.y_sum / n
    y_sd = float(np.sqrt(max(part.y_sq - n * y_mean**2, 0.0) / max(n - 1, 1)))
    return ColumnMoments(int(n), float(y_mean), y_sd, tuple(float(s) for s in sd(X)),
                         {b.label: tuple(float(s) for s in sd(b.Z)) for b in blocks})


def _finish(part: _Partial, template: Design, source: str, max_ratio: float, max_cells: int) -> ReducedCells:
    if part.n_dropped:
        detail = ", ".join(f"{c}: {n}" for c, n in part.dropped.items())
        warnings.warn(f"Dropped {part.n_dropped} of {part.n + part.n_dropped} rows with missing values ({detail}), "
                      "as lme4's na.omit does.", RowsDroppedWarning, stacklevel=4)
    if part.n == 0:
        raise DataError(f"{source} has no rows without missing values.")
    _check_cells(part, template, max_cells, max_ratio)
    spec, family = template.spec, template.spec.family.name
    for name, labels in zip(template.factors, part.labels):
        if len(labels) < 2:
            raise DataError(f"The grouping factor '{name}' has only one level in {source}: a random effect needs at least "
                            "two groups.")
    check_outcome_varies(part.S, part.N if part.N is not None else None, "poisson" if family == "poisson" else "binomial",
                         spec.response)
    keys = part.keys(template)
    order = np.lexsort(keys.T[::-1])  # the in-memory aggregation's order: by key, first column first
    keys, r = keys[order], part.rows[order].astype(float)
    S = part.S[order]
    N = None if part.N is None else part.N[order]
    p = template.X.shape[1]
    X, k, blocks = keys[:, :p], p, []
    for b in template.blocks:
        blocks.append(CellBlock(b.label, b.group, b.terms, b.correlated, keys[:, k:k + b.q], b.Z_matrix, r))
        k += b.q
    factors = {name: GroupingFactor(name, tuple(str(v) for v in labels), keys[:, col].astype(np.int64))
               for (name, labels), col in zip(zip(template.factors, part.labels), _factor_columns(template))}
    if family == "poisson":
        offset = part.O[order]
    elif template.offset is not None:
        offset = keys[:, -1]
    else:
        offset = None
    data = part.data.iloc[order].reset_index(drop=True)
    for col in [*response_columns(spec), template.options.get("trials")]:
        if col in data.columns:
            data[col] = np.nan  # a cell's first row's outcome is not the cell's
    level2 = {name: frozenset(c for c in data.columns if c not in name.split(":")
                              and (data.groupby(f.index, sort=False)[c].nunique(dropna=False) <= 1).all())
              for name, f in factors.items()}
    design = CellDesign(
        has_rows=False, spec=spec, data=data, y=S, X=X, fixed_terms=template.fixed_terms,
        fixed_labels=template.fixed_labels, blocks=tuple(blocks), factors=factors, level2=level2,
        rows_dropped=part.n_dropped, trials=N, offset=offset, options=template.options,
        fixed_matrix=template.fixed_matrix, success=template.success, moments=_moments(X, blocks, r, part),
        n_rows=part.n, source=source, row_counts=r)
    constant = part.row_constant - cell_constant(family, S, N, offset if family == "poisson" else None)
    cells = Cells(family, None, np.arange(len(S)), S, N, offset, float(constant), rows_read=part.n)
    return ReducedCells(design, cells)


def reduce_cell_frames(spec: ModelSpec, frames, *, trials: str | None = None, offset: str | None = None,
                       source: str = "the data", max_ratio: float = AGGREGATE_MAX_RATIO,
                       max_cells: int = MAX_FILE_CELLS) -> ReducedCells:
    """The cells of a bernoulli, binomial or poisson model over a sequence of DataFrames (chunks of one data set).

    Parameters
    ----------
    spec : ModelSpec
    frames : iterable of DataFrame
        Disjoint chunks of the rows, in order; each is read once and let go.
    trials, offset : str, optional
        Columns with binomial trials, and an offset on the link scale.
    source : str
        Where the rows come from, for messages.
    max_ratio : float
        Refuse more cells than ``max_ratio`` x rows (rows that barely collapse).
    max_cells : int
        Refuse more cells than this, as soon as there are (memory).

    Returns
    -------
    ReducedCells

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec.formula import parse_formula
    >>> wvs = bayesmlm.datasets.load("wvs7_sim").assign(hi=lambda d: d.tech >= 8)
    >>> r = reduce_cell_frames(parse_formula("hi ~ smu + (1 + smu | country)", "bernoulli"), [wvs[:50_000], wvs[50_000:]])
    >>> r.cells.n_rows, r.cells.n_cells
    (91175, 320)
    """
    max_cells = check_count(max_cells, "max_cells")
    frames = iter(frames)
    first = next(frames, None)
    if first is None or len(first) == 0:
        raise DataError(f"{source} has no rows.")
    template = _template(spec, first, trials, offset, source)
    total = _partial(first, template, 0)
    _check_cells(total, template, max_cells)
    for i, frame in enumerate(frames, start=1):
        if len(frame):
            total = _merge(total, _partial(frame, template, i), template, max_cells)
    return _finish(total, template, source, max_ratio, max_cells)


def reduce_cell_files(spec: ModelSpec, paths, *, chunksize: int = 1_000_000, trials: str | None = None,
                      offset: str | None = None, max_ratio: float = AGGREGATE_MAX_RATIO,
                      max_cells: int = MAX_FILE_CELLS) -> ReducedCells:
    """The cells of a bernoulli, binomial or poisson model over CSV or Parquet files, read ``chunksize`` rows at a time.

    Only the model's columns are read (:func:`~bayesmlm.fastpath.readers.read_chunks`);
    memory holds one chunk and the cells.

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> r = reduce_cell_files(parse_formula("y ~ x + (1 + x | g)", "bernoulli"), "big.parquet")  # doctest: +SKIP
    """
    columns = model_file_columns(spec, trials, offset)
    where = ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths))
    text = [c for g in spec.groups for c in g.split(":")]
    chunks = read_chunks(paths, columns, chunksize=chunksize, text_columns=text)
    return reduce_cell_frames(spec, chunks, trials=trials, offset=offset, source=where, max_ratio=max_ratio,
                              max_cells=max_cells)


def reduce_cell_dask(spec: ModelSpec, ddf, *, trials: str | None = None, offset: str | None = None,
                     max_ratio: float = AGGREGATE_MAX_RATIO, max_cells: int = MAX_FILE_CELLS) -> ReducedCells:
    """The cells of a bernoulli, binomial or poisson model over a ``dask.dataframe``, reduced by Dask.

    Each partition becomes its cells where Dask runs it, and the partials
    are merged in a tree, earlier partitions first, so no machine holds more
    than a partition and the cells.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from bayesmlm.spec.formula import parse_formula
    >>> r = reduce_cell_dask(parse_formula("y ~ x + (1 | g)", "bernoulli"), dd.read_parquet("big/"))  # doctest: +SKIP
    """
    import dask

    max_cells = check_count(max_cells, "max_cells")
    columns = model_file_columns(spec, trials, offset)
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise DataError(f"The Dask DataFrame lacks the column(s) {', '.join(map(repr, missing))} that the model uses. "
                        f"Columns it has: {', '.join(map(str, ddf.columns))}.")
    parts = ddf[columns].to_delayed()
    first = parts[0].compute()
    if len(first) == 0:
        raise DataError("The Dask DataFrame's first partition has no rows.")
    template = _template(spec, first, trials, offset, "the Dask DataFrame's first partition")
    nodes = [dask.delayed(_partial)(p, template, i) for i, p in enumerate(parts)]
    while len(nodes) > 1:
        nodes = [dask.delayed(_merge)(nodes[i], nodes[i + 1], template, max_cells) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    return _finish(nodes[0].compute(), template, "the Dask DataFrame", max_ratio, max_cells)


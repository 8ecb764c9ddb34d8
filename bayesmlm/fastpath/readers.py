"""Stage 2, design (fast path): sufficient statistics of data that are never in memory at once.

Files are read in chunks (CSV with pandas, Parquet with pyarrow, only the
model's columns) and a ``dask.dataframe`` is reduced partition by partition by
Dask's own scheduler (a cluster's, if it has one). Both routes run the same two
functions: :func:`_partial` turns one chunk into its per-group sums and
:func:`_merge` adds two such partials, so the result does not depend on how the
rows were split, and the sampler never sees a row.

The first chunk fixes the design: its formulae encodings (categorical levels),
the shift that keeps the sums free of cancellation, and the data checks. The
result is a :class:`Reduced`: the :class:`~bayesmlm.fastpath.stats.GroupStats`
and a :class:`SummaryDesign`, a Design that holds a few representative rows per
group (enough to read level-2 predictors off, for ``Fit.coef``) and the
columns' moments (for the data-scaled default priors) instead of the data.
Nothing here imports PyMC.
"""

from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from formulae.transforms import TRANSFORMS

from ..arguments import check_count
from ..design.data_checks import (
    check_columns,
    check_finite,
    check_numeric_outcome,
    check_weight_sum,
    check_weights,
    is_numeric,
    model_columns,
)
from ..design.matrices import (
    BlockDesign,
    Design,
    GroupingFactor,
    build_design,
    group_labels,
)
from ..design.newdata import new_data_design
from ..errors import DataError, RowsDroppedWarning, SpecError, WeightsWarning
from ..spec.formula import ModelSpec
from .nested_stats import NestedStats, nested_from_leaf
from .nesting import level_blocks, nesting_order, parent_index
from .stats import STATISTICS, GroupStats, accumulate, collapse_problem, default_shift

__all__ = ["ColumnMoments", "SummaryDesign", "Reduced", "stateful_transforms", "reduce_frames", "reduce_files", "reduce_dask", "read_chunks",
           "clean_chunk", "chunk_matrices", "model_file_columns"]


@dataclass(frozen=True)
class ColumnMoments:
    """Mean and SD of the outcome, and SDs of X's and each block's Z columns, over every row.

    Attributes
    ----------
    n : int
    y_mean, y_sd : float
    x_sd : tuple of float
    z_sd : dict of str to tuple of float
        By block label.
    """

    n: int
    y_mean: float
    y_sd: float
    x_sd: tuple
    z_sd: dict


@dataclass(frozen=True, eq=False)
class SummaryDesign(Design):
    """A Design whose rows were reduced to sufficient statistics.

    ``data``, ``X`` and the blocks' ``Z`` hold representative rows: for each
    group its first row and, for each column of X and Z, its first row where
    that column is non-zero, so that level-2 predictors can be read off per
    group. The outcome is NaN there: these rows are not data to fit or plot.
    ``level2`` was computed over every row.

    Attributes
    ----------
    moments : ColumnMoments
        Read by :func:`bayesmlm.design.priors.default_priors`.
    n_rows : int
        Rows summarised (after dropping rows with missing values).
    source : str
        Where the rows came from.
    """

    moments: ColumnMoments | None = None
    n_rows: int = 0
    source: str = ""


@dataclass(frozen=True, eq=False)
class Reduced:
    """Sufficient statistics and the summary design of data read in chunks."""

    design: SummaryDesign
    stats: GroupStats | NestedStats


def _group_columns(template: Design) -> list[str]:
    return list(dict.fromkeys(c for g in template.spec.groups for c in g.split(":")))


def _leaf(template: Design) -> str:
    """The grouping factor the statistics are summed by: the one factor, or the finest of nested ones."""
    return nesting_order(template)[0][-1]


def _parent_labels(clean: pd.DataFrame, codes: np.ndarray, n_groups: int, template: Design, chunk_no) -> dict:
    """For nested factors: each leaf group's label at every coarser level (checked on every row)."""
    out, first = {}, _first_rows(codes, n_groups)
    for factor in nesting_order(template)[0][:-1]:
        labels = group_labels(clean, factor).to_numpy(dtype=object)
        mine = labels[first]
        bad = np.flatnonzero(mine[codes] != labels)
        if bad.size:
            leaf = group_labels(clean, _leaf(template)).iloc[bad[0]]
            raise DataError(f"Chunk {chunk_no}: group '{leaf}' of '{_leaf(template)}' occurs with two levels of "
                            f"'{factor}' ({mine[codes[bad[0]]]!r} and {labels[bad[0]]!r}): the factors are not nested. "
                            "Make the labels unique within their parent, e.g. (1 | parent/child).")
        out[factor] = mine
    return out


def _template(spec: ModelSpec, first: pd.DataFrame, offset: str | None, where: str, weights: str | None = None) -> Design:
    """The design of the first chunk: encodings, shift and checks for every chunk."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RowsDroppedWarning)  # counted again, over all chunks, by _partial
            warnings.simplefilter("ignore", WeightsWarning)  # the sum is checked over all chunks, by _finish
            template = build_design(spec, first, offset=offset, weights=weights)
    except (DataError, SpecError) as err:
        raise type(err)(f"In the first chunk of {where} ({len(first)} rows): {err} The first chunk fixes the design, so it "
                        "must vary in every predictor and hold two or more groups: pass a larger chunksize=, or "
                        "shuffle the rows.") from None
    problem = collapse_problem(template)
    if problem:
        raise SpecError(f"Only the collapsed fit reads data in chunks, and {problem}.")
    return template


@dataclass
class _Partial:
    labels: np.ndarray          # sorted group labels (object)
    sums: dict                  # GroupStats fields, first axis over labels
    moment_sum: np.ndarray      # sums of (v - centre) over rows, v = [y, X..., Z...]
    moment_sq: np.ndarray
    n: int
    dropped: dict               # missing values per column
    n_dropped: int
    level2: dict                # column -> DataFrame(index=label): [lo, hi] (numeric) or [varies, first]
    rep: pd.DataFrame           # representative rows with __label, __chunk, __row, __x*, __z*
    parents: dict = field(default_factory=dict)  # nested factors: coarser factor -> label per leaf group


def _moment_centre(template: Design) -> np.ndarray:
    Z = np.column_stack([b.Z for b in template.blocks])
    return np.concatenate([[template.y.mean()], template.X.mean(axis=0), Z.mean(axis=0)])


def clean_chunk(chunk: pd.DataFrame, template: Design, chunk_no: int) -> tuple[pd.DataFrame, pd.Series]:
    """A chunk's model columns without the rows that miss a value, and the missing values per column.

    The columns are the first chunk's design's (``template``); values that are
    not finite are refused, naming the chunk.

    Examples
    --------
    >>> clean, missing = clean_chunk(chunk, template, 3)  # doctest: +SKIP
    """
    cols = list(template.data.columns)
    check_columns(chunk, cols, where=f"chunk {chunk_no}")
    chunk = chunk[cols]
    na = chunk.isna()
    keep = ~na.any(axis=1)
    clean = chunk.loc[keep].reset_index(drop=True)
    check_finite(clean, where=f" in chunk {chunk_no}")
    return clean, na.sum()


def _group_codes(clean: pd.DataFrame, template: Design) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group code and the sorted labels, as ``str`` of the values (as the in-memory design reads them)."""
    cols = _leaf(template).split(":")
    if len(cols) == 1:
        codes, uniques = pd.factorize(clean[cols[0]])
        labels = group_labels(pd.DataFrame({cols[0]: uniques}), cols[0]).to_numpy(dtype=object)
    else:
        codes, uniques = pd.factorize(group_labels(clean, _leaf(template)))
        labels = np.asarray(uniques, dtype=object)
    order = np.argsort(labels)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], labels[order]


def stateful_transforms(spec: ModelSpec) -> list[str]:
    """The formula's calls of formulae's stateful transforms (their state is a mean, an SD or knots of the rows).

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> stateful_transforms(parse_formula("y ~ center(x) + (1 | g)"))
    ['center']
    """
    names = [k for k, f in TRANSFORMS.items() if getattr(f, "__stateful_transform__", False)]
    return sorted(set(re.findall(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(", spec.formula)))


def chunk_matrices(clean: pd.DataFrame, template: Design, chunk_no: int):
    """X, Z (all blocks, side by side) and the offset of a chunk, with the first chunk's formulae encodings.

    A stateful transform (``center(x)``) would take its state from the first
    chunk only, so a model that is not the in-memory one: refused from the
    second chunk on.

    Examples
    --------
    >>> X, Z, offset = chunk_matrices(clean, template, 3)  # doctest: +SKIP
    """
    calls = stateful_transforms(template.spec) if chunk_no > 0 else []
    if calls:
        raise SpecError(f"The formula calls {', '.join(c + '()' for c in calls)}, whose state (a mean, an SD or knots) "
                        "is computed over the rows; read in chunks it would be the first chunk's, not all rows'. "
                        "Transform the column in the files (e.g. subtract its mean) and use it plainly, or read the "
                        "data in one chunk (a chunksize= larger than the rows) or in memory (MLM(formula, data)).")
    try:
        nd = new_data_design(template, clean, groups=False)
        Z = np.column_stack([b.Z_matrix.evaluate_new_data(clean).as_dataframe().to_numpy(dtype=float)
                             for b in template.blocks])
    except Exception as err:  # formulae raises its own errors for unseen categories
        raise DataError(f"Chunk {chunk_no}: {err} The first chunk fixes the levels of categorical predictors: give "
                        "them a pandas categorical dtype with every level, or put every level in the first chunk.") from None
    return nd.X, Z, nd.offset


def _first_rows(codes: np.ndarray, n_groups: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Per group, the first row (where ``mask``); len(codes) where there is none."""
    rows = np.arange(len(codes))
    if mask is not None:
        codes, rows = codes[mask], rows[mask]
    first = np.full(n_groups, len(mask) if mask is not None else len(rows))
    np.minimum.at(first, codes, rows)
    return first


def _level2_evidence(clean: pd.DataFrame, codes: np.ndarray, labels: np.ndarray, template: Design) -> dict:
    """Per column and group: min and max (numeric columns) or whether it varies and its first value."""
    out, J = {}, len(labels)
    for col in clean.columns:
        if col in _group_columns(template):
            continue
        if is_numeric(template.data[col].dtype):
            v = pd.to_numeric(clean[col], errors="raise").to_numpy(dtype=float)
            lo, hi = np.full(J, np.inf), np.full(J, -np.inf)
            np.minimum.at(lo, codes, v)
            np.maximum.at(hi, codes, v)
            out[col] = pd.DataFrame({"lo": lo, "hi": hi}, index=pd.Index(labels, name="label"))
        else:
            agg = clean[col].groupby(codes).agg(["nunique", "first"])
            out[col] = pd.DataFrame({"varies": agg["nunique"].to_numpy() > 1, "first": agg["first"].to_numpy()},
                                    index=pd.Index(labels[agg.index.to_numpy()], name="label"))
    return out


def _partial(chunk: pd.DataFrame, template: Design, chunk_no: int) -> _Partial:
    """One chunk's per-group sums, moments, level-2 evidence and representative rows."""
    clean, na_counts = clean_chunk(chunk, template, chunk_no)
    y = check_numeric_outcome(clean[template.spec.response], where=f" in chunk {chunk_no}")
    X, Z, offset = chunk_matrices(clean, template, chunk_no)
    codes, labels = _group_codes(clean, template)
    J = len(labels)
    x_shift, y_shift = default_shift(template)
    outcome = y - offset if offset is not None else y
    column = template.options.get("weights")
    w = None if column is None else check_weights(clean[column], where=f" in chunk {chunk_no}")
    sums = accumulate(codes, J, X - x_shift, Z, outcome - y_shift, w)
    v = np.column_stack([y, X, Z]) - _moment_centre(template)
    picks = [_first_rows(codes, J)]
    for col in [*X.T, *Z.T, *(clean[c].to_numpy(dtype=float) for c in clean.columns
                               if c not in _group_columns(template) and is_numeric(template.data[c].dtype))]:
        picks.append(_first_rows(codes, J, col != 0))
    rows = np.unique(np.concatenate(picks))
    rows = rows[rows < len(clean)]
    rep = clean.iloc[rows].reset_index(drop=True).assign(__label=labels[codes[rows]], __chunk=chunk_no, __row=rows)
    for k in range(X.shape[1]):
        rep[f"__x{k}"] = X[rows, k]
    for k in range(Z.shape[1]):
        rep[f"__z{k}"] = Z[rows, k]
    if offset is not None:
        rep["__offset"] = offset[rows]
    return _Partial(labels, sums, v.sum(axis=0), (v**2).sum(axis=0), len(clean),
                    {c: int(n) for c, n in na_counts.items() if n}, len(chunk) - len(clean),
                    _level2_evidence(clean, codes, labels, template), _representatives(rep, template),
                    _parent_labels(clean, codes, J, template, chunk_no))


def _representatives(rep: pd.DataFrame, template: Design) -> pd.DataFrame:
    """Per group: the first row, and the first row where each X, Z or numeric column is non-zero."""
    rep = rep.sort_values(["__chunk", "__row"], kind="stable")
    keep = [rep.groupby("__label", sort=False).head(1).index]
    numeric = [c for c in rep.columns if c.startswith(("__x", "__z"))]
    numeric += [c for c in list(template.data.columns) if c not in _group_columns(template) and is_numeric(template.data[c].dtype)]
    for c in numeric:
        nonzero = rep[rep[c].to_numpy(dtype=float) != 0]
        keep.append(nonzero.groupby("__label", sort=False).head(1).index)
    index = keep[0].append(keep[1:]).unique()
    return rep.loc[rep.index.isin(index)]


def _merge(a: _Partial, b: _Partial, template: Design) -> _Partial:
    """The partial of the union of two disjoint sets of rows."""
    labels = np.union1d(a.labels, b.labels).astype(object)
    ia, ib = np.searchsorted(labels, a.labels), np.searchsorted(labels, b.labels)
    sums = {}
    for key in STATISTICS:
        total = np.zeros((len(labels),) + a.sums[key].shape[1:])
        total[ia] += a.sums[key]
        total[ib] += b.sums[key]
        sums[key] = total
    level2 = {}
    for col in a.level2:
        g = pd.concat([a.level2[col], b.level2[col]]).groupby(level=0)
        if "lo" in a.level2[col]:
            level2[col] = pd.DataFrame({"lo": g["lo"].min(), "hi": g["hi"].max()})
        else:
            level2[col] = pd.DataFrame({"varies": g["varies"].any() | (g["first"].nunique(dropna=False) > 1),
                                        "first": g["first"].first()})
    dropped = dict(a.dropped)
    for c, n in b.dropped.items():
        dropped[c] = dropped.get(c, 0) + n
    parents = {}
    for factor, mine in a.parents.items():
        both = np.full(len(labels), None, dtype=object)
        both[ia] = mine
        clash = np.flatnonzero((both[ib] != None) & (both[ib] != b.parents[factor]))  # noqa: E711
        if clash.size:
            raise DataError(f"Group '{b.labels[clash[0]]}' of '{_leaf(template)}' occurs with two levels of '{factor}' "
                            f"({both[ib][clash[0]]!r} and {b.parents[factor][clash[0]]!r}) in different chunks: the "
                            "factors are not nested. Make the labels unique within their parent, e.g. (1 | parent/child).")
        both[ib] = b.parents[factor]
        parents[factor] = both
    return _Partial(labels, sums, a.moment_sum + b.moment_sum, a.moment_sq + b.moment_sq, a.n + b.n, dropped,
                    a.n_dropped + b.n_dropped, level2, _representatives(pd.concat([a.rep, b.rep], ignore_index=True),
                                                                        template), parents)


def _moments(part: _Partial, template: Design) -> ColumnMoments:
    n = part.n
    mean = _moment_centre(template) + part.moment_sum / n
    var = (part.moment_sq - part.moment_sum**2 / n) / max(n - 1, 1)
    sd = np.sqrt(np.maximum(var, 0.0))
    p = template.X.shape[1]
    z_sd, k = {}, 1 + p
    for b in template.blocks:
        z_sd[b.label] = tuple(float(s) for s in sd[k:k + b.q])
        k += b.q
    return ColumnMoments(n, float(mean[0]), float(sd[0]), tuple(float(s) for s in sd[1:1 + p]), z_sd)


def _finish(part: _Partial, template: Design, source: str) -> Reduced:
    if part.n_dropped:
        detail = ", ".join(f"{c}: {n}" for c, n in part.dropped.items())
        warnings.warn(f"Dropped {part.n_dropped} of {part.n + part.n_dropped} rows with missing values ({detail}), "
                      "as lme4's na.omit does.", RowsDroppedWarning, stacklevel=4)
    factor = _leaf(template)
    if len(part.labels) < 2:
        raise DataError(f"The grouping factor '{factor}' has only one level in {source}: a random effect needs at least two groups.")
    levels = tuple(str(v) for v in part.labels)
    if template.options.get("weights") is not None:
        check_weight_sum(float(part.sums["w_sum"].sum()), part.n, template.options["weights"])
    x_shift, y_shift = default_shift(template)
    stats = GroupStats(factor, levels, tuple(template.fixed_terms), tuple(t for b in template.blocks for t in b.terms),
                       x_shift, y_shift, **part.sums)
    rep = part.rep.sort_values(["__chunk", "__row"], kind="stable").reset_index(drop=True)
    index = np.searchsorted(part.labels, rep["__label"].to_numpy(dtype=object))
    X = rep[[f"__x{k}" for k in range(template.X.shape[1])]].to_numpy(dtype=float)
    blocks, k = [], 0
    for b in template.blocks:
        Z = rep[[f"__z{i}" for i in range(k, k + b.q)]].to_numpy(dtype=float)
        blocks.append(BlockDesign(b.label, b.group, b.terms, b.correlated, Z, b.Z_matrix))
        k += b.q
    data = rep[list(template.data.columns)].copy()
    data[template.spec.response] = np.nan
    level2 = frozenset(c for c, frame in part.level2.items()
                       if ((frame["lo"] == frame["hi"]).all() if "lo" in frame else not frame["varies"].any()))
    factors = {factor: GroupingFactor(factor, levels, index.astype(np.int64))}
    levels2 = {factor: level2}
    for name, mine in part.parents.items():  # nested factors: the coarser ones, and their level-2 columns
        upper = np.unique(mine.astype(str)).astype(object)
        factors[name] = GroupingFactor(name, tuple(str(v) for v in upper),
                                       np.searchsorted(upper, group_labels(rep, name).to_numpy(dtype=object)).astype(np.int64))
        levels2[name] = _coarser_level2(part, mine)
    factors = {g: factors[g] for g in template.spec.groups}
    design = SummaryDesign(
        has_rows=False,
        spec=template.spec, data=data, y=np.full(len(rep), np.nan), X=X, fixed_terms=template.fixed_terms,
        fixed_labels=template.fixed_labels, blocks=tuple(blocks),
        factors=factors, level2=levels2,
        rows_dropped=part.n_dropped, offset=rep["__offset"].to_numpy() if "__offset" in rep else None,
        options=template.options, fixed_matrix=template.fixed_matrix, moments=_moments(part, template), n_rows=part.n,
        source=source)
    if part.parents:
        stats = _nested(stats, design)
    return Reduced(design, stats)


def _coarser_level2(part: _Partial, parent_of_leaf: np.ndarray) -> frozenset:
    """The columns constant within each group of a coarser factor, from the leaf groups' evidence."""
    out = []
    for col, frame in part.level2.items():
        by = pd.Series(parent_of_leaf, index=frame.index)
        if "lo" in frame:
            g = frame.groupby(by)
            if (g["lo"].min() == g["hi"].max()).all():
                out.append(col)
        elif not frame["varies"].any() and (frame["first"].groupby(by).nunique(dropna=False) <= 1).all():
            out.append(col)
    return frozenset(out)


def _nested(leaf: GroupStats, design: Design) -> NestedStats:
    """The leaf statistics (Z in the design's block order) as NestedStats (Z top level first)."""
    factors = nesting_order(design)[0]
    order, k = {}, 0
    for b in design.blocks:
        order[b.label] = list(range(k, k + b.q))
        k += b.q
    per_level = level_blocks(design, factors)
    perm = [i for bl in per_level for b in bl for i in order[b.label]]
    leaf = replace(leaf, random_terms=tuple(leaf.random_terms[i] for i in perm), XtZ=leaf.XtZ[:, :, perm],
                   ZtZ=leaf.ZtZ[:, perm][:, :, perm], Zty=leaf.Zty[:, perm], z_sum=leaf.z_sum[:, perm])
    levels = [tuple(design.factors[f].levels) for f in factors]
    parents = [np.zeros(0, dtype=np.int64)]
    for top, low in zip(factors, factors[1:]):
        first, bad = parent_index(design.factors[low].index, design.factors[top].index, design.factors[low].n_levels)
        if bad is not None or np.any(first < 0):
            raise DataError(f"The factors '{top}' and '{low}' are not nested in the rows read, or a group of '{low}' has "
                            "no representative row; report this as a bug.")
        parents.append(first)
    return nested_from_leaf(factors, levels, parents, tuple(tuple(t for b in bl for t in b.terms) for bl in per_level), leaf)


def reduce_frames(spec: ModelSpec, frames, *, offset: str | None = None, weights: str | None = None,
                  source: str = "the data") -> Reduced:
    """Sufficient statistics of a sequence of DataFrames (chunks of one data set).

    Parameters
    ----------
    spec : ModelSpec
        A gaussian model with one grouping factor.
    frames : iterable of DataFrame
        Disjoint chunks of the rows; each is read once and let go.
    offset : str, optional
        A column to subtract from the outcome.
    weights : str, optional
        A column of precision weights (checked in every chunk, their sum
        over all of them); the statistics are weighted.
    source : str
        Where the rows come from, for messages.

    Returns
    -------
    Reduced

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec.formula import parse_formula
    >>> data = bayesmlm.datasets.load("sleepstudy")
    >>> r = reduce_frames(parse_formula("Reaction ~ Days + (Days | Subject)"), [data[:90], data[90:]])
    >>> r.stats.n_obs, r.stats.n_groups
    (180, 18)
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None or len(first) == 0:
        raise DataError(f"{source} has no rows.")
    template = _template(spec, first, offset, source, weights)
    total = _partial(first, template, 0)
    for i, frame in enumerate(frames, start=1):
        if len(frame):
            total = _merge(total, _partial(frame, template, i), template)
    return _finish(total, template, source)


def read_chunks(paths, columns: list[str], *, chunksize: int = 1_000_000, text_columns=()):
    """DataFrames of at most ``chunksize`` rows from CSV or Parquet files, only ``columns``.

    Parameters
    ----------
    paths : str, Path or list of them
        ``.csv`` / ``.csv.gz`` / ``.txt`` read with pandas; ``.parquet`` /
        ``.pq`` read by row batches with pyarrow.
    columns : list of str
    chunksize : int
    text_columns : sequence of str
        Columns read as text from CSV (grouping factors: labels, never numbers).

    Examples
    --------
    >>> chunks = read_chunks("big.parquet", ["y", "x", "g"], chunksize=500_000)  # doctest: +SKIP
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    chunksize = check_count(chunksize, "chunksize")
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"No such file: '{path}'" + (" (it is a folder)" if path.is_dir() else "") + ".")
        try:
            yield from _read_file(path, columns, chunksize, text_columns)
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zlib.error) as err:  # pandas, pyarrow, gzip: empty, truncated or not that format
            raise DataError(f"Cannot read '{path}' as {_format_name(path)}: {type(err).__name__}: {str(err)[:200]}. Is the "
                            "file complete, and in the format its name says?") from None


def _format_name(path: Path) -> str:
    return "Parquet" if "".join(path.suffixes).lower().endswith((".parquet", ".pq")) else "CSV"


def _read_file(path: Path, columns: list[str], chunksize: int, text_columns):
    """The chunks of one file, by the format its name says."""
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        pfile = pq.ParquetFile(path)
        missing = [c for c in columns if c not in pfile.schema_arrow.names]
        if missing:
            raise DataError(f"'{path}' lacks the column(s) {', '.join(map(repr, missing))} that the model uses. "
                            f"Columns it has: {', '.join(pfile.schema_arrow.names)}.")
        for batch in pfile.iter_batches(batch_size=int(chunksize), columns=columns):
            yield batch.to_pandas()
    elif suffixes.endswith((".csv", ".csv.gz", ".txt", ".csv.bz2", ".csv.zip")):
        header = pd.read_csv(path, nrows=0).columns
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"'{path}' lacks the column(s) {', '.join(map(repr, missing))} that the model uses. "
                            f"Columns it has: {', '.join(header)}.")
        yield from pd.read_csv(path, usecols=columns, chunksize=int(chunksize),
                               dtype={c: str for c in text_columns})
    else:
        raise DataError(f"Cannot tell the format of '{path}' from its name: use .csv (optionally .gz) or .parquet.")


def model_file_columns(spec: ModelSpec, *extra: str | None) -> list[str]:
    """The columns to read: the model's (as build_design reads them) and the ``extra`` ones named (offset, trials).

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> model_file_columns(parse_formula("y ~ x + (1 | g)"), "log_n", None)
    ['y', 'x', 'g', 'log_n']
    """
    cols = model_columns(spec)
    return cols + [c for c in dict.fromkeys(extra) if c and c not in cols]


def reduce_files(spec: ModelSpec, paths, *, chunksize: int = 1_000_000, offset: str | None = None,
                 weights: str | None = None) -> Reduced:
    """Sufficient statistics of CSV or Parquet files, read ``chunksize`` rows at a time.

    Memory holds one chunk and the per-group sums, never the data.

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> r = reduce_files(parse_formula("y ~ x + (1 + x | g)"), "big.parquet")  # doctest: +SKIP
    """
    columns = model_file_columns(spec, offset, weights)
    where = ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths))
    chunks = read_chunks(paths, columns, chunksize=chunksize,
                         text_columns=list(dict.fromkeys(c for g in spec.groups for c in g.split(":"))))
    return reduce_frames(spec, chunks, offset=offset, weights=weights, source=where)


def reduce_dask(spec: ModelSpec, ddf, *, offset: str | None = None, weights: str | None = None) -> Reduced:
    """Sufficient statistics of a ``dask.dataframe``, reduced by Dask.

    Each partition becomes a partial on whatever workers Dask uses, and the
    partials are added in a tree (``_merge`` is associative), so no machine
    holds more than a partition and a few per-group sums.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from bayesmlm.spec.formula import parse_formula
    >>> r = reduce_dask(parse_formula("y ~ x + (1 + x | g)"), dd.read_parquet("big/"))  # doctest: +SKIP
    """
    import dask

    columns = model_file_columns(spec, offset, weights)
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise DataError(f"The Dask DataFrame lacks the column(s) {', '.join(map(repr, missing))} that the model uses. "
                        f"Columns it has: {', '.join(map(str, ddf.columns))}.")
    parts = ddf[columns].to_delayed()
    first = parts[0].compute()
    template = _template(spec, first, offset, "the Dask DataFrame's first partition", weights)
    nodes = [dask.delayed(_partial)(p, template, i) for i, p in enumerate(parts)]
    while len(nodes) > 1:
        nodes = [dask.delayed(_merge)(nodes[i], nodes[i + 1], template) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    total = nodes[0].compute()
    return _finish(total, template, "the Dask DataFrame")

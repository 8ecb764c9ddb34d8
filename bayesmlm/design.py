"""Stage 2, design: data checks and design matrices for a ModelSpec.

Turns a :class:`~bayesmlm.spec.ModelSpec` and a DataFrame into plain arrays:
the outcome, the fixed-effects matrix X with lme4's term names, one Z matrix
per random block, and an integer index per grouping factor. Every check on
the data lives here, so that later stages can trust what they get. Nothing
here imports PyMC.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulae import design_matrices, model_description
from formulae.environment import Environment

from ._errors import DataError, RowsDroppedWarning, SpecError
from .spec import ModelSpec

__all__ = ["GroupingFactor", "BlockDesign", "Design", "build_design", "lme4_name", "safe_name", "level_dim", "term_dim",
           "pair_dim", "pair_names"]


@dataclass(frozen=True, eq=False)
class GroupingFactor:
    """A grouping column: its levels (as strings) and each row's level index."""

    name: str
    levels: tuple[str, ...]
    index: np.ndarray

    @property
    def n_levels(self) -> int:
        """Number of groups."""
        return len(self.levels)


@dataclass(frozen=True, eq=False)
class BlockDesign:
    """One random block: the columns of Z that share a covariance matrix.

    ``label`` is the block's name in tables: the grouping factor, with ``.1``,
    ``.2`` appended for a second and third block on the same factor (as
    lme4's ``as.data.frame(VarCorr())`` does).
    """

    label: str
    group: str
    terms: tuple[str, ...]
    correlated: bool
    Z: np.ndarray

    @property
    def q(self) -> int:
        """Number of random terms in the block."""
        return len(self.terms)


@dataclass(frozen=True, eq=False)
class Design:
    """Everything the later stages need to know about the data.

    Attributes
    ----------
    spec : ModelSpec
    data : DataFrame
        The model's columns, rows with missing values removed.
    y : ndarray (N,)
    X : ndarray (N, p)
    fixed_terms : tuple of str
        lme4 names of X's columns, e.g. ``"(Intercept)"``, ``"sectorPublic"``.
    fixed_labels : tuple of str
        The same columns as formulae labels them, e.g. ``"sector[Public]"``.
    blocks : tuple of BlockDesign
    factors : dict of str to GroupingFactor
    level2 : dict of str to frozenset
        Per grouping factor, the data columns that are constant within its
        groups (group-level predictors).
    rows_dropped : int
        Rows removed for missing values, as lme4's na.omit does.
    trials : ndarray or None
        Binomial trials per row.
    offset : ndarray or None
        Offset on the link scale per row.
    options : dict
        The column names given as ``trials=`` and ``offset=`` (or None).
    """

    spec: ModelSpec
    data: pd.DataFrame
    y: np.ndarray
    X: np.ndarray
    fixed_terms: tuple[str, ...]
    fixed_labels: tuple[str, ...]
    blocks: tuple[BlockDesign, ...]
    factors: dict
    level2: dict
    rows_dropped: int = 0
    trials: np.ndarray | None = None
    offset: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    fixed_matrix: object = field(default=None, repr=False)

    @property
    def n_obs(self) -> int:
        """Number of rows used."""
        return len(self.y)

    @property
    def has_intercept(self) -> bool:
        """Whether X has lme4's ``(Intercept)`` column."""
        return "(Intercept)" in self.fixed_terms

    def random_terms(self, factor: str) -> tuple[str, ...]:
        """The random terms of one grouping factor, across its blocks."""
        return tuple(t for b in self.blocks if b.group == factor for t in b.terms)


_BRACKET = re.compile(r"([^\[\]:]+)\[([^\]]+)\]")
_ENV = Environment([{"np": np, "numpy": np}])


def lme4_name(label: str) -> str:
    """Translate a formulae column label to lme4's term name.

    Examples
    --------
    >>> lme4_name("sector[Public]:cses")
    'sectorPublic:cses'
    >>> lme4_name("Intercept")
    '(Intercept)'
    """
    if label == "Intercept":
        return "(Intercept)"
    return _BRACKET.sub(lambda m: m.group(1) + m.group(2), label)


def _variables(rhs: str, where: str) -> set[str]:
    try:
        return set(model_description(rhs).var_names)
    except Exception as err:  # formulae raises its own parse errors
        raise SpecError(f"Cannot read the {where} '{rhs}': {err}") from None


def _model_columns(spec: ModelSpec) -> list[str]:
    cols = _response_columns(spec)
    cols += sorted(_variables(spec.fixed, "fixed part"))
    for b in spec.random:
        cols += sorted(_variables(b.expr, f"random term {b.text()}"))
        cols += b.group.split(":")
    return list(dict.fromkeys(cols))


def _response_columns(spec: ModelSpec) -> list[str]:
    m = re.match(r"^cbind\(\s*([\w.]+)\s*,\s*([\w.]+)\s*\)$", spec.response)
    return [m.group(1), m.group(2)] if m else [spec.response]


def _check_columns(data: pd.DataFrame, cols: list[str], extra: dict) -> None:
    missing = [c for c in cols if c not in data.columns]
    missing += [f"{c} (given as {k}=)" for k, c in extra.items() if c is not None and c not in data.columns]
    if missing:
        raise DataError(f"Column(s) {', '.join(map(repr, missing))} not in the data. Columns that exist: {', '.join(map(str, data.columns))}.")


def _drop_missing(data: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, int]:
    complete = data[cols].notna().all(axis=1)
    dropped = int((~complete).sum())
    if dropped == len(data):
        raise DataError(f"Every row has a missing value in the model's columns ({', '.join(cols)}): nothing left to fit.")
    if dropped:
        counts = data.loc[~complete, cols].isna().sum()
        detail = ", ".join(f"{c}: {n}" for c, n in counts.items() if n)
        warnings.warn(f"Dropped {dropped} of {len(data)} rows with missing values ({detail}), as lme4's na.omit does.",
                      RowsDroppedWarning, stacklevel=5)
    return data.loc[complete, cols].reset_index(drop=True), dropped


def _check_finite(data: pd.DataFrame) -> None:
    for col in data.columns:
        if pd.api.types.is_numeric_dtype(data[col]) and not pd.api.types.is_bool_dtype(data[col]):
            bad = ~np.isfinite(data[col].to_numpy(dtype=float))
            if bad.any():
                raise DataError(f"Column '{col}' has {int(bad.sum())} infinite value(s) (first at row {int(np.argmax(bad))}). "
                                "Remove or recode them before fitting.")


def _response(spec: ModelSpec, data: pd.DataFrame, trials: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The outcome vector (and binomial trials) for the spec's family."""
    cols = _response_columns(spec)
    family = spec.family.name
    if family == "gaussian":
        col = data[cols[0]]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"The outcome '{cols[0]}' is {col.dtype}, not numeric: a gaussian model needs a numeric outcome. "
                            "For a yes/no outcome use family='bernoulli'.")
        return col.to_numpy(dtype=float), None
    raise SpecError(f"family='{family}' is not available yet; use family='gaussian'.")


def _fixed_matrix(rhs: str, data: pd.DataFrame, what: str):
    try:
        dm = design_matrices(rhs, data, na_action="error", env=_ENV)
    except Exception as err:
        raise SpecError(f"Cannot build the {what} '{rhs}': {err}") from None
    if dm.common is None:
        return None, np.empty((len(data), 0)), ()
    frame = dm.common.as_dataframe()
    return dm.common, frame.to_numpy(dtype=float), tuple(frame.columns)


def _check_columns_of(M: np.ndarray, names: tuple[str, ...], what: str) -> None:
    """Constant and collinear columns of a design matrix are errors, by name."""
    for j, name in enumerate(names):
        if name != "(Intercept)" and np.ptp(M[:, j]) == 0:
            raise DataError(f"The {what} term '{name}' is constant (every row is {M[0, j]:g}); it cannot be estimated. "
                            "Remove it from the formula.")
    # The Gram matrix has X's rank and is p x p, so this stays cheap for millions of rows.
    scale = np.maximum(np.abs(M).max(axis=0), 1e-300)
    G = (M / scale).T @ (M / scale)
    for j in range(1, M.shape[1]):
        eig = np.linalg.eigvalsh(G[: j + 1, : j + 1])
        if eig[0] <= 1e-10 * max(eig[-1], 1e-300):
            raise DataError(f"The {what} term '{names[j]}' is a linear combination of {list(names[:j])} (perfectly collinear). "
                            "Remove it or one of those terms.")


def _factor(data: pd.DataFrame, group: str) -> GroupingFactor:
    cols = group.split(":")
    values = data[cols[0]].astype(str)
    for c in cols[1:]:
        values = values + ":" + data[c].astype(str)
    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) < 2:
        raise DataError(f"The grouping factor '{group}' has only one level ({uniques[0]!r}) in the data used: "
                        "a random effect needs at least two groups.")
    return GroupingFactor(group, tuple(str(u) for u in uniques), codes.astype(np.int64))


def _level2_columns(data: pd.DataFrame, factor: GroupingFactor) -> frozenset:
    """Columns constant within every group of the factor."""
    grouped = data.groupby(factor.index, sort=False)
    return frozenset(c for c in data.columns if c not in factor.name.split(":") and (grouped[c].nunique(dropna=False) <= 1).all())


def build_design(spec: ModelSpec, data: pd.DataFrame, *, trials: str | None = None, offset: str | None = None) -> Design:
    """Check the data against the spec and build the design matrices.

    Parameters
    ----------
    spec : ModelSpec
    data : DataFrame
    trials, offset : str, optional
        Columns with binomial trials, and an offset on the link scale.

    Returns
    -------
    Design

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec import parse_formula
    >>> d = build_design(parse_formula("Reaction ~ Days + (Days | Subject)"),
    ...                  bayesmlm.datasets.load("sleepstudy"))
    >>> d.fixed_terms, d.blocks[0].terms, d.factors["Subject"].n_levels
    (('(Intercept)', 'Days'), ('(Intercept)', 'Days'), 18)
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("The data has no rows.")
    extra = {"trials": trials, "offset": offset}
    cols = _model_columns(spec)
    _check_columns(data, cols, extra)
    cols += [c for c in extra.values() if c is not None and c not in cols]
    clean, dropped = _drop_missing(data, cols)
    _check_finite(clean)
    y, n_trials = _response(spec, clean, trials)
    fixed_matrix, X, fixed_labels = _fixed_matrix(spec.fixed, clean, "fixed part")
    fixed_terms = tuple(lme4_name(c) for c in fixed_labels)
    _check_columns_of(X, fixed_terms, "fixed")
    factors = {g: _factor(clean, g) for g in spec.groups}
    blocks, seen = [], {}
    for b in spec.random:
        _, Z, labels = _fixed_matrix(b.expr, clean, f"random term {b.text()}")
        names = tuple(lme4_name(c) for c in labels)
        if not names:
            raise SpecError(f"The random term {b.text()} has no columns.")
        _check_columns_of(Z, names, f"random ({b.group})")
        k = seen.get(b.group, 0)
        seen[b.group] = k + 1
        label = b.group if k == 0 else f"{b.group}.{k}"
        blocks.append(BlockDesign(label, b.group, names, b.correlated and len(names) > 1, Z))
    for g in factors:
        terms = [t for b in blocks if b.group == g for t in b.terms]
        dup = {t for t in terms if terms.count(t) > 1}
        if dup:
            raise SpecError(f"The random term(s) {sorted(dup)} appear in more than one block for '{g}'. Give each term once.")
    off = clean[offset].to_numpy(dtype=float) if offset is not None else None
    return Design(spec=spec, data=clean, y=y, X=X, fixed_terms=fixed_terms, fixed_labels=fixed_labels, blocks=tuple(blocks), factors=factors,
                  level2={g: _level2_columns(clean, f) for g, f in factors.items()}, rows_dropped=dropped,
                  trials=n_trials, offset=off, options=extra, fixed_matrix=fixed_matrix)


def safe_name(label: str) -> str:
    """A label made safe for a variable or dimension name (``a:b`` -> ``a_b``).

    Examples
    --------
    >>> safe_name("school:class.1")
    'school_class_1'
    """
    return re.sub(r"\W", "_", label)


def level_dim(factor: str) -> str:
    """Dimension name of a grouping factor's levels in the posterior."""
    return safe_name(factor)


def term_dim(label: str) -> str:
    """Dimension name of a random block's terms."""
    return f"{safe_name(label)}_term"


def pair_dim(label: str) -> str:
    """Dimension name of a random block's correlation pairs."""
    return f"{safe_name(label)}_pair"


def pair_names(terms: tuple[str, ...]) -> list[str]:
    """Labels of the correlations of a block, upper triangle by rows.

    Examples
    --------
    >>> pair_names(("(Intercept)", "x", "z"))
    ['(Intercept):x', '(Intercept):z', 'x:z']
    """
    return [f"{a}:{b}" for i, a in enumerate(terms) for b in terms[i + 1:]]

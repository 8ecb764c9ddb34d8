"""Stage 2, design: data checks and design matrices for a ModelSpec.

Turns a :class:`~bayesmlm.spec.formula.ModelSpec` and a DataFrame into plain arrays:
the outcome, the fixed-effects matrix X with lme4's term names, one Z matrix
per random block, and an integer index per grouping factor. Every check on
the data lives here, so that later stages can trust what they get. Nothing
here imports PyMC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulae import design_matrices
from formulae.environment import Environment

from ..errors import DataError, SpecError
from ..spec.formula import ModelSpec
from .data_checks import (
    check_columns,
    check_finite,
    check_numeric_outcome,
    drop_missing,
    model_columns,
    response_columns,
)

__all__ = ["GroupingFactor", "BlockDesign", "Design", "build_design", "assemble_design", "centring", "split_offset", "offset_column", "lme4_name"]


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
    Z_matrix: object = field(default=None, repr=False)

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
        Offset on the link scale per row: the ``offset=`` column plus any
        ``offset(...)`` terms of the formula.
    options : dict
        The column names given as ``trials=`` and ``offset=`` (or None).
    fixed_matrix : formulae CommonTerms or None
        The fixed part's formulae design, for evaluating new data (see
        :func:`new_data_design`); ``offset(...)`` terms included.
    success : str or None
        For a bernoulli outcome written as two labels, the label coded 1.
    has_rows : bool
        False for a design whose rows were reduced to per-group sums
        (:class:`bayesmlm.fastpath.readers.SummaryDesign`): its ``data``,
        ``X`` and ``Z`` then hold representative rows only, not data to
        fit, plot or predict. Check it with :meth:`require_rows`.
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
    success: str | None = None
    has_rows: bool = True

    def require_rows(self, what: str, instead: str = "") -> None:
        """Refuse, naming ``what``, a design that keeps no rows (see ``has_rows``).

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
        >>> m.design.require_rows("shrinkage()")  # has rows: nothing happens
        """
        if not self.has_rows:
            raise ValueError(f"{what} needs the fitted rows, and this model was made from per-group sums "
                             f"(MLM.from_files or MLM.from_dask), which keep no rows. "
                             + (instead or "Build the model from a DataFrame, MLM(formula, data), for this."))

    @property
    def n_obs(self) -> int:
        """Number of rows used."""
        return len(self.y)

    @property
    def has_intercept(self) -> bool:
        """Whether X has lme4's ``(Intercept)`` column."""
        return "(Intercept)" in self.fixed_terms

    @property
    def x_centre(self) -> np.ndarray:
        """X's column means, 0 for the intercept (:func:`centring`).

        Examples
        --------
        >>> import bayesmlm
        >>> bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy")).design.x_centre.tolist()
        [0.0, 4.5]
        """
        return centring(self.fixed_terms, self.X.mean(axis=0))

    def random_terms(self, factor: str) -> tuple[str, ...]:
        """The random terms of one grouping factor, across its blocks."""
        return tuple(t for b in self.blocks if b.group == factor for t in b.terms)


def centring(fixed_terms: tuple[str, ...], column_means) -> np.ndarray:
    """Where X's columns are centred: their means, 0 for the intercept; all 0 without an intercept.

    Centring moves the intercept's prior to the outcome at the predictors'
    means; without an intercept there is nothing to absorb the shift.

    Examples
    --------
    >>> centring(("(Intercept)", "x"), [1.0, 4.5]).tolist(), centring(("x",), [4.5]).tolist()
    ([0.0, 4.5], [0.0])
    """
    means = np.asarray(column_means, dtype=float)
    if "(Intercept)" not in fixed_terms:
        return np.zeros(len(fixed_terms))
    return np.where([t != "(Intercept)" for t in fixed_terms], means, 0.0)


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


def _lme4_terms(labels: tuple[str, ...], rhs: str, columns) -> tuple[str, ...]:
    """lme4's names: interaction parts in the order their variables first appear.

    R writes ``sector * cses`` after ``meanses * cses`` as ``cses:sectorPublic``,
    because ``cses`` appears in the formula before ``sector``.
    """
    order = {}
    for name in re.findall(r"[A-Za-z_.][\w.]*", rhs):
        if name in columns:
            order.setdefault(name, len(order))

    def rank(component: str) -> int:
        found = [order[n] for n in re.findall(r"[A-Za-z_.][\w.]*", component) if n in order]
        return min(found) if found else len(order)

    names = []
    for label in labels:
        parts = re.split(r":(?![^\[]*\])", label)
        names.append(lme4_name(":".join(sorted(parts, key=rank))))
    return tuple(names)


def _response(spec: ModelSpec, data: pd.DataFrame, trials: str | None) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """The outcome vector, binomial trials, and (bernoulli labels) the label coded 1."""
    cols = response_columns(spec)
    family = spec.family.name
    if trials is not None and family != "binomial":
        raise SpecError(f"trials='{trials}' is for family='binomial'; this model's family is '{family}'. Drop trials=, "
                        "or use family='binomial'.")
    if family == "gaussian":
        return check_numeric_outcome(data[cols[0]]), None, None
    if family == "bernoulli":
        y, success = _bernoulli(data[cols[0]])
        return y, None, success
    if family == "poisson":
        return _counts(data[cols[0]], "outcome", "a poisson model needs counts (0, 1, 2, and so on)"), None, None
    if len(cols) == 2:
        if trials is not None:
            raise SpecError(f"The outcome cbind({cols[0]}, {cols[1]}) already gives the trials (successes + failures); "
                            f"drop trials='{trials}'.")
        succ = _counts(data[cols[0]], "successes column", "cbind(successes, failures) needs counts")
        fail = _counts(data[cols[1]], "failures column", "cbind(successes, failures) needs counts")
        return succ, succ + fail, None
    if trials is None:
        raise SpecError(f"family='binomial' needs the number of trials: write the outcome as cbind(successes, failures), "
                        f"or pass trials='<column>' with '{cols[0]}' as the successes. For one yes/no outcome per row "
                        "use family='bernoulli'.")
    succ = _counts(data[cols[0]], "outcome", "a binomial outcome counts successes")
    n = _counts(data[trials], "trials column", "trials= counts the attempts per row")
    over = succ > n
    if over.any():
        i = int(np.argmax(over))
        raise DataError(f"The outcome '{cols[0]}' exceeds the trials column '{trials}' in {int(over.sum())} row(s) "
                        f"(first at row {i}: {succ[i]:g} of {n[i]:g}). Successes must lie between 0 and the trials.")
    return succ, n, None


def _counts(col: pd.Series, what: str, need: str) -> np.ndarray:
    """Non-negative integers as floats; errors name the column."""
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"The {what} '{col.name}' is {col.dtype}: {need}. Convert it to integers.")
    x = col.to_numpy(dtype=float)
    bad = (x < 0) | (x != np.round(x))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"The {what} '{col.name}' has {int(bad.sum())} value(s) that are not non-negative integers "
                        f"(first at row {i}: {x[i]:g}); {need}.")
    return x


def _bernoulli(col: pd.Series) -> tuple[np.ndarray, str | None]:
    """0/1 outcome; a bool is True = 1; two labels: the later (sorted, or last category) is 1."""
    name = col.name
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float), None
    if pd.api.types.is_numeric_dtype(col):
        x = col.to_numpy(dtype=float)
        bad = (x != 0) & (x != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"The outcome '{name}' has {int(bad.sum())} value(s) other than 0 and 1 (first at row {i}: "
                            f"{x[i]:g}); a bernoulli model needs 0/1. For counts use family='poisson'; for successes out "
                            "of several trials, family='binomial' with trials=.")
        return x, None
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = [c for c in col.cat.categories if (col == c).any()]
    else:
        levels = sorted(col.astype(str).unique())
        col = col.astype(str)
    if len(levels) != 2:
        shown = ", ".join(map(repr, levels[:6])) + (", ..." if len(levels) > 6 else "")
        raise DataError(f"The outcome '{name}' has {len(levels)} distinct label(s) ({shown}); a bernoulli model needs "
                        f"exactly two. Recode it, e.g. data['{name}'] = data['{name}'] == {levels[0]!r}.")
    return (col == levels[1]).to_numpy(dtype=float), str(levels[1])


def _fixed_matrix(rhs: str, data: pd.DataFrame, what: str):
    try:
        dm = design_matrices(rhs, data, na_action="error", env=_ENV)
    except Exception as err:
        raise SpecError(f"Cannot build the {what} '{rhs}': {err}") from None
    if dm.common is None:
        return None, np.empty((len(data), 0)), ()
    frame = dm.common.as_dataframe()
    return dm.common, frame.to_numpy(dtype=float), tuple(frame.columns)


def split_offset(M: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], np.ndarray | None]:
    """Take the ``offset(...)`` columns out of a fixed design; return their sum.

    Examples
    --------
    >>> import numpy as np
    >>> M, labels, off = split_offset(np.array([[1.0, 2.0]]), ("Intercept", "offset(log_n)"))
    >>> labels, off.tolist()
    (('Intercept',), [2.0])
    """
    is_off = np.array([lab.startswith("offset(") for lab in labels], dtype=bool)
    if not is_off.any():
        return M, labels, None
    return M[:, ~is_off], tuple(lab for lab, o in zip(labels, is_off) if not o), M[:, is_off].sum(axis=1)


def offset_column(data: pd.DataFrame, offset: str | None) -> np.ndarray | None:
    """The ``offset=`` column as floats (None without one); not numeric is refused, naming it.

    Examples
    --------
    >>> import pandas as pd
    >>> offset_column(pd.DataFrame({"log_n": [0.5]}), "log_n").tolist()
    [0.5]
    """
    if offset is None:
        return None
    col = data[offset]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"The offset column '{offset}' is {col.dtype}, not numeric. An offset is on the link scale, "
                        "e.g. the log of the exposure for a poisson model.")
    return col.to_numpy(dtype=float)


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
    >>> from bayesmlm.spec.formula import parse_formula
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
    cols = model_columns(spec)
    check_columns(data, cols, extra)
    cols += [c for c in extra.values() if c is not None and c not in cols]
    clean, dropped = drop_missing(data, cols)
    check_finite(clean)
    return assemble_design(spec, clean, trials=trials, offset=offset, rows_dropped=dropped)


def assemble_design(spec: ModelSpec, clean: pd.DataFrame, *, trials: str | None = None, offset: str | None = None,
                    rows_dropped: int = 0) -> Design:
    """The design matrices of rows that already passed :func:`build_design`'s data checks.

    For rows that were checked before (a saved fit's rows, read back by
    :func:`bayesmlm.load`): the columns, missing and infinite values are not
    checked again. Use :func:`build_design` for anything else.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec.formula import parse_formula
    >>> spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    >>> d = build_design(spec, bayesmlm.datasets.load("sleepstudy"))
    >>> assemble_design(spec, d.data).fixed_terms == d.fixed_terms
    True
    """
    extra = {"trials": trials, "offset": offset}
    y, n_trials, success = _response(spec, clean, trials)
    fixed_matrix, X, fixed_labels = _fixed_matrix(spec.fixed, clean, "fixed part")
    X, fixed_labels, formula_offset = split_offset(X, fixed_labels)
    fixed_terms = _lme4_terms(fixed_labels, spec.fixed, clean.columns)
    _check_columns_of(X, fixed_terms, "fixed")
    factors = {g: _factor(clean, g) for g in spec.groups}
    blocks, seen = [], {}
    for b in spec.random:
        z_matrix, Z, labels = _fixed_matrix(b.expr, clean, f"random term {b.text()}")
        names = tuple(lme4_name(c) for c in labels)
        if not names:
            raise SpecError(f"The random term {b.text()} has no columns.")
        _check_columns_of(Z, names, f"random ({b.group})")
        k = seen.get(b.group, 0)
        seen[b.group] = k + 1
        label = b.group if k == 0 else f"{b.group}.{k}"
        blocks.append(BlockDesign(label, b.group, names, b.correlated and len(names) > 1, Z, z_matrix))
    for g in factors:
        terms = [t for b in blocks if b.group == g for t in b.terms]
        dup = {t for t in terms if terms.count(t) > 1}
        if dup:
            raise SpecError(f"The random term(s) {sorted(dup)} appear in more than one block for '{g}'. Give each term once.")
    off = offset_column(clean, offset)
    if formula_offset is not None:
        off = formula_offset if off is None else off + formula_offset
    return Design(spec=spec, data=clean, y=y, X=X, fixed_terms=fixed_terms, fixed_labels=fixed_labels, blocks=tuple(blocks), factors=factors,
                  level2={g: _level2_columns(clean, f) for g, f in factors.items()}, rows_dropped=rows_dropped,
                  trials=n_trials, offset=off, options=extra, fixed_matrix=fixed_matrix, success=success)

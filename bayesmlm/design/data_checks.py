"""Data checks every route shares: which columns a model reads, that they exist, missing and infinite values, numeric columns.

Used by :func:`bayesmlm.design.matrices.build_design` on a DataFrame and by
the chunked readers (:mod:`bayesmlm.fastpath.readers`) on each chunk, so a
file and a DataFrame are checked alike. Nothing here imports PyMC.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from formulae import model_description

from ..errors import ArgumentError, DataError, RowsDroppedWarning, SpecError, WeightsWarning
from ..spec.formula import ModelSpec

__all__ = ["formula_variables", "model_columns", "predictor_columns", "response_columns", "check_columns", "check_column_types", "column_kind",
           "drop_missing", "check_finite", "is_numeric", "check_numeric_outcome", "check_outcome_varies",
           "check_level2_constant", "check_weights", "check_weight_sum", "WEIGHT_SUM_RANGE"]

WEIGHT_SUM_RANGE = (0.5, 2.0)  # weights summing outside [0.5 n, 2 n] are warned about as not normalised


def formula_variables(rhs: str, where: str) -> set[str]:
    """The data columns a formula side reads; a parse error names ``where``.

    Examples
    --------
    >>> sorted(formula_variables("1 + x * np.log(w)", "fixed part"))
    ['w', 'x']
    """
    try:
        names = model_description(rhs).var_names
    except Exception as err:  # formulae raises its own parse errors
        raise SpecError(f"Cannot read the {where} '{rhs}': {err}") from None
    return {n for n in names if n}  # a string argument, as in C(x, Treatment("b")), reads as the name ''


def predictor_columns(spec: ModelSpec) -> list[str]:
    """The columns the fixed part and the random terms read (not the outcome, not the grouping columns).

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> predictor_columns(parse_formula("y ~ x * w + (1 + z | g)"))
    ['w', 'x', 'z']
    """
    cols = sorted(formula_variables(spec.fixed, "fixed part"))
    for b in spec.random:
        cols += sorted(formula_variables(b.expr, f"random term {b.text()}"))
    return list(dict.fromkeys(cols))


def model_columns(spec: ModelSpec) -> list[str]:
    """Every data column the model reads: outcome(s), predictors, grouping columns, in that order.

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> model_columns(parse_formula("y ~ x * w + (1 + x | school/class)"))
    ['y', 'w', 'x', 'school', 'class']
    """
    cols = response_columns(spec)
    cols += sorted(formula_variables(spec.fixed, "fixed part"))
    for b in spec.random:
        cols += sorted(formula_variables(b.expr, f"random term {b.text()}"))
        cols += b.group.split(":")
    return list(dict.fromkeys(cols))


def response_columns(spec: ModelSpec) -> list[str]:
    """The outcome's column, or the two columns of ``cbind(successes, failures)``.

    Examples
    --------
    >>> from bayesmlm.spec.formula import parse_formula
    >>> response_columns(parse_formula("cbind(a, b) ~ 1 + (1 | g)", "binomial"))
    ['a', 'b']
    """
    m = re.match(r"^cbind\(\s*([\w.]+)\s*,\s*([\w.]+)\s*\)$", spec.response)
    return [m.group(1), m.group(2)] if m else [spec.response]


def check_columns(data: pd.DataFrame, cols: list[str], extra: dict | None = None, where: str = "the data") -> None:
    """Refuse data that lacks a column the model reads; ``extra`` names the columns given by keyword.

    Examples
    --------
    >>> import pandas as pd
    >>> check_columns(pd.DataFrame({"y": [1.0]}), ["y", "x"])
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: Column(s) 'x' not in the data. Columns that exist: y.
    """
    extra = extra or {}
    for k, c in extra.items():
        if c is not None and not isinstance(c, str):
            raise ArgumentError(f"{k}= names a column of the data (a str); got {c!r}.")
    missing = [c for c in cols if c not in data.columns]
    missing += [f"{c} (given as {k}=)" for k, c in extra.items() if c is not None and c not in data.columns]
    if missing:
        raise DataError(f"Column(s) {', '.join(map(repr, missing))} not in {where}. Columns that exist: "
                        f"{', '.join(map(str, data.columns))}.")
    used = set(cols) | {c for c in extra.values() if c is not None}
    twice = sorted({str(c) for c in data.columns[data.columns.duplicated()] if c in used})
    if twice:
        raise DataError(f"Column name(s) {', '.join(map(repr, twice))} appear more than once in {where}, so the model "
                        "cannot tell which to read. Rename or drop the copies (data.loc[:, ~data.columns.duplicated()]).")


_CONVERT = {
    "datetime": "a date or time: use a number made from it, e.g. days since the first, "
                "(data['{c}'] - data['{c}'].min()).dt.days, or its year, data['{c}'].dt.year",
    "timedelta": "a duration: use it as a number, e.g. data['{c}'].dt.total_seconds()",
    "complex": "complex: a predictor must be real; use its real part or its modulus",
    "period": "a period: use a number made from it, e.g. data['{c}'].dt.year",
    "interval": "an interval: use its midpoint, data['{c}'].array.mid, or its label as a category, data['{c}'].astype(str)",
    "numbers": "numbers stored as objects: convert them, pd.to_numeric(data['{c}'])",
    "mixed": "of mixed types ({kinds}): make it one type, numbers (pd.to_numeric) or labels (data['{c}'].astype(str))",
}


def column_kind(col: pd.Series) -> str:
    """What a column holds: 'numeric', 'bool', 'categorical', 'text', or one of the kinds the model cannot read
    ('datetime', 'timedelta', 'complex', 'period', 'interval', 'numbers' stored as objects, 'mixed').

    Examples
    --------
    >>> import pandas as pd
    >>> column_kind(pd.Series([1, "a"], dtype=object)), column_kind(pd.Series(["a"], dtype="category"))
    ('mixed', 'categorical')
    """
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_complex_dtype(dtype):
        return "complex"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if isinstance(dtype, pd.PeriodDtype):
        return "period"
    if isinstance(dtype, pd.IntervalDtype):
        return "interval"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    inferred = pd.api.types.infer_dtype(col, skipna=True)
    if inferred in ("string", "empty"):
        return "text"
    if inferred in ("integer", "floating", "decimal"):
        return "numbers"
    if inferred in ("datetime", "datetime64", "date", "time"):
        return "datetime"
    return "mixed"


def check_column_types(data: pd.DataFrame, predictors: list[str], groups: list[str]) -> None:
    """Refuse columns whose type the model cannot read, naming the column and the conversion to make.

    Predictors must be numbers, bool, text or categorical; grouping columns may be
    anything but a mix of types (1 and "1" would become one group).

    Examples
    --------
    >>> import pandas as pd
    >>> check_column_types(pd.DataFrame({"z": [1 + 2j]}), ["z"], [])
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: The predictor 'z' is complex128, complex: a predictor must be real; use its real part or its modulus.
    """
    for role, cols in (("predictor", predictors), ("grouping column", groups)):
        for c in cols:
            kind = column_kind(data[c])
            if kind in ("numeric", "bool", "categorical", "text") or (role == "grouping column" and kind != "mixed"):
                continue
            kinds = ", ".join(sorted({type(v).__name__ for v in data[c].dropna().head(1000)}))
            raise DataError(f"The {role} '{c}' is {data[c].dtype}, " + _CONVERT[kind].format(c=c, kinds=kinds) + ".")


def drop_missing(data: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, int]:
    """The model's columns without the rows that miss a value, and how many were dropped (warned, as na.omit).

    Examples
    --------
    >>> import pandas as pd, warnings
    >>> with warnings.catch_warnings(record=True):
    ...     clean, n = drop_missing(pd.DataFrame({"y": [1.0, None]}), ["y"])
    >>> len(clean), n
    (1, 1)
    """
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


def is_numeric(dtype) -> bool:
    """Whether a column's dtype holds numbers (bool is not a number here).

    Examples
    --------
    >>> import numpy as np
    >>> is_numeric(np.dtype(float)), is_numeric(np.dtype(bool))
    (True, False)
    """
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def check_finite(data: pd.DataFrame, where: str = "") -> None:
    """Refuse infinite values in any numeric column, naming it (``where``: e.g. " in chunk 3").

    Examples
    --------
    >>> import pandas as pd
    >>> check_finite(pd.DataFrame({"x": [1.0, float("inf")]}))
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: Column 'x' has 1 infinite value(s) (first at row 1). Remove or recode them.
    """
    for col in data.columns:
        if is_numeric(data[col].dtype):
            bad = ~np.isfinite(data[col].to_numpy(dtype=float))
            if bad.any():
                raise DataError(f"Column '{col}' has {int(bad.sum())} infinite value(s){where} (first at row "
                                f"{int(np.argmax(bad))}). Remove or recode them.")


def check_numeric_outcome(col: pd.Series, where: str = "") -> np.ndarray:
    """A gaussian outcome as floats; anything not numeric is refused, naming the column.

    Examples
    --------
    >>> import pandas as pd
    >>> check_numeric_outcome(pd.Series([True], name="y"))
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: The outcome 'y' is bool, not numeric: a gaussian model needs a numeric outcome. For a yes/no outcome use family='bernoulli'.
    """
    if not is_numeric(col.dtype):
        raise DataError(f"The outcome '{col.name}' is {col.dtype}{where}, not numeric: a gaussian model needs a numeric "
                        "outcome. For a yes/no outcome use family='bernoulli'.")
    return col.to_numpy(dtype=float)


_NO_VARIATION = {
    "gaussian": "every row is {v:g}: there is no variation to model",
    "bernoulli": "every row is {v:g}: a logit model needs both outcomes (its coefficients would go to infinity)",
    "binomial": "every trial is a {what}: a logit model needs both outcomes (its coefficients would go to infinity)",
    "poisson": "every count is 0: a log-rate model needs some counts above 0 (its rate would go to zero)",
    "negbinomial": "every count is 0: a log-rate model needs some counts above 0 (its rate would go to zero)",
    "student": "every row is {v:g}: there is no variation to model",
    "cumulative": "every row is in one category: an ordinal model needs at least two (its thresholds would go to infinity)",
}


def check_outcome_varies(y: np.ndarray, trials: np.ndarray | None, family: str, name: str) -> None:
    """Refuse an outcome with no variation: the model would be fitted to its prior alone.

    Examples
    --------
    >>> import numpy as np
    >>> check_outcome_varies(np.zeros(3), None, "bernoulli", "y")
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: The outcome 'y' has no variation: every row is 0: a logit model needs both outcomes (its coefficients would go to infinity). Check the data (a filter that kept one kind of row?).
    """
    if family == "binomial":
        none, every = bool((y == 0).all()), bool((y == trials).all())
        if not (none or every):
            return
        detail = _NO_VARIATION[family].format(what="failure" if none else "success")
    elif family in ("poisson", "negbinomial"):
        if (y > 0).any():
            return
        detail = _NO_VARIATION[family]
    else:
        if np.ptp(y) > 0:
            return
        detail = _NO_VARIATION[family].format(v=y[0])
    raise DataError(f"The outcome '{name}' has no variation: {detail}. Check the data (a filter that kept one kind of row?).")


def check_level2_constant(data: pd.DataFrame, labels: pd.Series, group: str, level2: dict, *, name: str = "level2"
                          ) -> None:
    """Refuse a level-2 predictor that varies within groups: the level equations would not be the model fitted.

    ``labels`` is each row's group; ``level2`` maps a level-1 term to its
    level-2 right-hand side, as :meth:`bayesmlm.MLM.from_levels` takes it;
    ``name`` is the argument's name in messages (``"level3"`` for the school level).

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"g": ["a", "a", "b"], "w": [1.0, 2.0, 3.0]})
    >>> check_level2_constant(d, d["g"], "g", {"1": "~ 1 + w"})
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: level2['1'] uses 'w', which varies within groups of 'g' (group 'a' has 2 different values): a level-2 predictor must be constant within each group. Use its group mean, data.groupby('g')['w'].transform('mean'), or move 'w' into level1.
    """
    by = data.groupby(labels.to_numpy(), sort=True)
    for term, rhs in level2.items():
        for w in sorted(formula_variables(str(rhs).strip().lstrip("~") or "1", f"{name}['{term}']")):
            counts = by[w].nunique(dropna=False)
            if (counts > 1).any():
                first = counts.index[int(np.argmax(counts.to_numpy() > 1))]
                raise DataError(f"{name}['{term}'] uses '{w}', which varies within groups of '{group}' (group '{first}' has "
                                f"{int(counts[first])} different values): a level-2 predictor must be constant within each "
                                f"group. Use its group mean, data.groupby('{group}')['{w}'].transform('mean'), or move "
                                f"'{w}' into level1.")


def check_weights(col: pd.Series, where: str = "") -> np.ndarray:
    """The ``weights=`` column as floats: numeric, finite and not negative, or a DataError naming the column.

    Zero is allowed for single rows (they drop out of the likelihood); that
    every weight is zero is not. Missing values are not seen here: rows that
    miss a weight are dropped with the other missing values, before this
    check. ``where`` says e.g. " in chunk 3" of a file.

    Examples
    --------
    >>> import pandas as pd
    >>> check_weights(pd.Series([1.0, 0.0, 2.5], name="w")).tolist()
    [1.0, 0.0, 2.5]
    >>> check_weights(pd.Series([1.0, -2.0], name="w"))
    Traceback (most recent call last):
    ...
    bayesmlm.errors.DataError: The weights column 'w' has 1 negative value(s) (first at row 1: -2): weights must be 0 or more. Check how the column was made, or drop those rows.
    """
    name = col.name
    if not is_numeric(col.dtype):
        raise DataError(f"The weights column '{name}' is {col.dtype}{where}, not numeric: weights= names a column of "
                        f"numbers (0 or more). Convert it, pd.to_numeric(data['{name}']).")
    w = col.to_numpy(dtype=float)
    for bad, what in ((np.isnan(w), "missing (NaN)"), (np.isinf(w), "infinite"), (w < 0, "negative")):
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"The weights column '{name}' has {int(bad.sum())} {what} value(s){where} (first at row {i}: "
                            f"{w[i]:g}): weights must be 0 or more. Check how the column was made, or drop those rows.")
    return w


def check_weight_sum(total: float, n_rows: int, column: str) -> None:
    """Refuse weights that sum to zero; warn (:class:`~bayesmlm.errors.WeightsWarning`) when their sum is far from
    the number of rows (outside :data:`WEIGHT_SUM_RANGE` x n), naming the column.

    A weighted likelihood counts the data as sum(w) rows: weights that sum to
    10 n make the posterior about sqrt(10) times too narrow. The decision to
    warn rather than raise lives here, for DataFrames and files alike.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_weight_sum(1000.0, 100, "w")
    >>> caught[0].category.__name__
    'WeightsWarning'
    """
    if not total > 0:
        raise DataError(f"The weights column '{column}' sums to 0 over the {n_rows} rows used: every row would drop out "
                        "of the likelihood. Check the column (a filter that kept only zero-weight rows?).")
    lo, hi = WEIGHT_SUM_RANGE
    if not lo * n_rows <= total <= hi * n_rows:
        warnings.warn(f"The weights column '{column}' sums to {total:.6g} over {n_rows} rows: the weighted likelihood "
                      f"counts the data as {total:.6g} rows, so the posterior's width is off by about "
                      f"sqrt({total / n_rows:.3g}). Survey weights are usually normalised to the sample size first "
                      f"(per country when groups are countries): bayesmlm.normalize_weights(data, '{column}', by=...).",
                      WeightsWarning, stacklevel=5)

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

from ..errors import DataError, RowsDroppedWarning, SpecError
from ..spec.formula import ModelSpec

__all__ = ["formula_variables", "model_columns", "response_columns", "check_columns", "drop_missing", "check_finite", "is_numeric",
           "check_numeric_outcome"]


def formula_variables(rhs: str, where: str) -> set[str]:
    """The data columns a formula side reads; a parse error names ``where``.

    Examples
    --------
    >>> sorted(formula_variables("1 + x * np.log(w)", "fixed part"))
    ['w', 'x']
    """
    try:
        return set(model_description(rhs).var_names)
    except Exception as err:  # formulae raises its own parse errors
        raise SpecError(f"Cannot read the {where} '{rhs}': {err}") from None


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
    missing = [c for c in cols if c not in data.columns]
    missing += [f"{c} (given as {k}=)" for k, c in extra.items() if c is not None and c not in data.columns]
    if missing:
        raise DataError(f"Column(s) {', '.join(map(repr, missing))} not in {where}. Columns that exist: "
                        f"{', '.join(map(str, data.columns))}.")


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
    bayesmlm.errors.DataError: Column 'x' has 1 infinite value(s) (first at row 1). Remove or recode them before fitting.
    """
    for col in data.columns:
        if is_numeric(data[col].dtype):
            bad = ~np.isfinite(data[col].to_numpy(dtype=float))
            if bad.any():
                raise DataError(f"Column '{col}' has {int(bad.sum())} infinite value(s){where} (first at row "
                                f"{int(np.argmax(bad))}). Remove or recode them before fitting.")


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

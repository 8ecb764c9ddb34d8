"""How numbers are written, in every table the package prints: one formatter for text, markdown and HTML.

Examples
--------
>>> format_number(0.0123456), format_number(2.5e-5), format_number(0)
('0.01235', '2.500e-05', '0')
"""

from __future__ import annotations

import pandas as pd

__all__ = ["format_number", "format_values"]


def format_number(x) -> str:
    """Four significant digits; scientific notation below 1e-3 and from 1e6; NaN as empty.

    Examples
    --------
    >>> format_number(1234567.0), format_number(float("nan"))
    ('1.235e+06', '')
    """
    if pd.isna(x):
        return ""
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


def format_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's values as strings, index kept: numbers by :func:`format_number`, ESS as integers, R-hat to 3 decimals.

    Examples
    --------
    >>> format_values(pd.DataFrame({"mean": [0.0123456], "ess_bulk": [812.4], "r_hat": [1.0031]})).iloc[0].tolist()
    ['0.01235', '812', '1.003']
    """
    out = frame.copy()
    for c in out.columns:
        col = out[c]
        if str(c).startswith("ess"):
            out[c] = col.map(lambda v: "" if pd.isna(v) else f"{float(v):.0f}")
        elif c == "r_hat":
            out[c] = col.map(lambda v: "" if pd.isna(v) else f"{float(v):.3f}")
        elif pd.api.types.is_bool_dtype(col):
            out[c] = col.map(lambda v: "yes" if v else "no")
        elif pd.api.types.is_numeric_dtype(col):
            out[c] = col.map(format_number)
        else:
            out[c] = col.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    return out

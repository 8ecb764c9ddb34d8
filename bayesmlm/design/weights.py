"""Survey weights made ready for a weighted likelihood: :func:`normalize_weights`.

A weighted likelihood counts row i as w_i observations, so weights that sum
to N times the sample size (population totals, say) make the posterior about
sqrt(N) times too narrow. The usual practice with design weights (WVS's
W_WEIGHT, ESS's dweight, PISA's student weights) is to rescale them to mean 1,
so that they sum to the sample size, within each country when the groups are
countries (each country then counts as many rows as it has). Nothing here
imports PyMC.
"""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .data_checks import check_columns, check_weights

__all__ = ["normalize_weights"]


def normalize_weights(data: pd.DataFrame, column: str, by: str | None = None) -> pd.Series:
    """The weights ``data[column]`` rescaled to mean 1, overall or within each level of ``by``.

    Each weight is multiplied by n / sum(w) over its rows (of its ``by``
    group), so the weights sum to the number of rows there. Missing weights
    stay missing (the model drops those rows); negative or infinite weights
    are refused, naming the column, as is a group whose weights sum to 0.

    Parameters
    ----------
    data : DataFrame
    column : str
        The weights column.
    by : str, optional
        A column whose groups (countries, say) each get weights of mean 1.

    Returns
    -------
    Series
        Same index as ``data``, named ``column``.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"country": ["a", "a", "b"], "w": [1.0, 3.0, 10.0]})
    >>> normalize_weights(d, "w", by="country").tolist()
    [0.5, 1.5, 1.0]
    """
    check_columns(data, [column] + ([by] if by is not None else []))
    w = data[column]
    present = w.notna()
    check_weights(w[present].reset_index(drop=True).rename(column))
    if by is None:
        total, count = w[present].sum(), int(present.sum())
        if not total > 0:
            raise DataError(f"The weights column '{column}' sums to 0: there is nothing to normalise.")
        return (w * (count / total)).rename(column)
    grouped = w.groupby(data[by], dropna=False, sort=False)
    totals, counts = grouped.transform("sum"), grouped.transform("count")
    zero = present & ~(totals > 0)
    if zero.any():
        first = data.loc[zero, by].iloc[0]
        raise DataError(f"The weights column '{column}' sums to 0 within {by} = {first!r}: those rows have no weight to "
                        "normalise. Drop them, or check the column.")
    return (w * counts / totals).rename(column)

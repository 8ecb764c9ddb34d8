"""New data through a fitted design: the same encodings, columns and group levels, or a clear error.

Used by predictions (:mod:`bayesmlm.predict.predictions`) and by the chunked
readers, whose every chunk is new data for the first chunk's design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .data_checks import check_finite, column_kind, formula_variables
from .matrices import Design, drop_intercept, group_labels, offset_column, split_offset

__all__ = ["NewData", "new_data_design"]

_NUMBERS = ("numeric", "bool")


@dataclass(frozen=True, eq=False)
class NewData:
    """A fitted design evaluated on new rows, for predictions.

    Attributes
    ----------
    X : ndarray (n, p)
        Fixed-effects columns, as ``Design.X``.
    Z : tuple of ndarray (n, q)
        One per random block, as ``BlockDesign.Z``.
    index : dict of str to ndarray
        Per grouping factor, each row's level index in the fitted design, or
        -1 for a level the fit has not seen.
    labels : dict of str to ndarray
        Per grouping factor, each row's level label (as a string).
    offset : ndarray or None
        The offset on the link scale, where the fit has one.
    """

    X: np.ndarray
    Z: tuple
    index: dict
    labels: dict
    offset: np.ndarray | None

    @property
    def n_obs(self) -> int:
        """Number of new rows."""
        return self.X.shape[0]


def new_data_design(design: Design, newdata: pd.DataFrame, *, groups: bool = True) -> NewData:
    """Evaluate a fitted design on new rows, with the fitted formulae encodings.

    Parameters
    ----------
    design : Design
    newdata : DataFrame
        The model's predictor columns (the outcome is not needed), the
        grouping columns unless ``groups=False``, and the offset column where
        the fit had one. Categorical predictors may only take levels seen in
        the fitted data; grouping factors may take new levels (index -1).
    groups : bool
        Whether to read the grouping factors and random-effect columns.

    Returns
    -------
    NewData

    Examples
    --------
    >>> import bayesmlm, pandas as pd
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> nd = new_data_design(m.design, pd.DataFrame({"Days": [0, 5], "Subject": ["308", "999"]}))
    >>> nd.X.tolist(), nd.index["Subject"].tolist()
    ([[1.0, 0.0], [1.0, 5.0]], [0, -1])
    """
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}.")
    if len(newdata) == 0:
        raise DataError("newdata has no rows.")
    spec = design.spec
    need = sorted(formula_variables(spec.fixed, "fixed part"))
    if groups:
        for b in spec.random:
            need += sorted(formula_variables(b.expr, f"random term {b.text()}")) + b.group.split(":")
    offset = design.options.get("offset")
    need = list(dict.fromkeys(need + ([offset] if offset else [])))
    missing = [c for c in need if c not in newdata.columns]
    if missing:
        raise DataError(f"newdata lacks the column(s) {', '.join(map(repr, missing))} that the model uses"
                        + (f" (the fit has offset='{offset}')" if offset in missing else "") + ". Add them.")
    rows = newdata[need].isna().any(axis=1) if need else pd.Series(False, index=newdata.index)
    if rows.any():
        bad = [c for c in need if newdata[c].isna().any()]
        raise DataError(f"newdata has missing values in {', '.join(map(repr, bad))} ({int(rows.sum())} row(s)); "
                        "fill or drop those rows before predicting.")
    group_cols = {c for g in spec.groups for c in g.split(":")}  # labels: 308 and "308" are one group
    for c in need:
        if c in group_cols or c not in design.data.columns:
            continue
        if column_kind(design.data[c]) in _NUMBERS and column_kind(newdata[c]) not in _NUMBERS:
            raise DataError(f"newdata's column '{c}' is {newdata[c].dtype}, but the model was fitted with numbers in '{c}'. "
                            f"Convert it, e.g. pd.to_numeric(newdata['{c}']).")
    data = newdata.reset_index(drop=True)
    check_finite(data[need], where=" in newdata")
    X, labels_x, formula_offset = split_offset(*_evaluate(design.fixed_matrix, data, "fixed part"))
    if design.spec.family.name == "cumulative":
        X, labels_x = drop_intercept(X, labels_x)
    _check_evaluated(X, labels_x, "fixed part", formula_offset)
    Z, index, labels = [], {}, {}
    if groups:
        for b in design.blocks:
            Zb, labels_z = _evaluate(b.Z_matrix, data, f"random term {b.expr_text}")
            _check_evaluated(Zb, labels_z, f"random term {b.expr_text}")
            Z.append(Zb)
        for name, f in design.factors.items():
            values = group_labels(data, name)
            lookup = {lev: i for i, lev in enumerate(f.levels)}
            labels[name] = values.to_numpy(dtype=object)
            index[name] = np.array([lookup.get(v, -1) for v in labels[name]], dtype=np.int64)
    off = offset_column(data, offset)
    if formula_offset is not None:
        off = formula_offset if off is None else off + formula_offset
    return NewData(X, tuple(Z), index, labels, off)


def _check_evaluated(M: np.ndarray, names: tuple[str, ...], what: str, offset: np.ndarray | None = None) -> None:
    """New rows whose transforms (np.log of 0, say) are not finite cannot be predicted: refuse them by term and row."""
    full = M if offset is None else np.column_stack([M, offset])
    bad = ~np.isfinite(full)
    if bad.any():
        j = int(np.argmax(bad.any(axis=0)))
        i = int(np.argmax(bad[:, j]))
        name = names[j] if j < len(names) else "offset"
        raise DataError(f"newdata makes the {what}'s term '{name}' {full[i, j]} in {int(bad[:, j].sum())} row(s) (first at "
                        f"row {i}): a transform in the formula gives values that are not finite there (np.log of 0, say). "
                        "Drop or recode those rows.")


def _evaluate(matrix, data: pd.DataFrame, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if matrix is None:
        return np.empty((len(data), 0)), ()
    try:
        frame = matrix.evaluate_new_data(data).as_dataframe()
        return frame.to_numpy(dtype=float), tuple(frame.columns)
    except Exception as err:  # formulae raises its own errors for unseen categories
        raise DataError(f"Cannot evaluate the {what} on newdata: {str(err).rstrip('.')}. Categorical predictors may only take "
                        "levels that the fitted data has.") from None

"""Pooling: complete, no and partial pooling of the group-specific coefficients.

For one grouping factor and its level-1 terms (the coefficients b_kj that
:meth:`bayesmlm.Fit.coef` reports: the random terms, and any level-1
predictor whose coefficient is fixed):

- complete pooling: one least-squares regression of y on those terms over all
  rows, groups ignored (:func:`complete_pooling`);
- no pooling: one least-squares regression of y on those terms per group
  (:func:`no_pooling`); a group too small or too uniform for a term keeps its
  row, marked ``estimable=False`` with NaN, never dropped;
- partial pooling: the posterior of b_kj (:func:`pooling` of a fit).

The same table carries the numbers behind Simpson's paradox
(:func:`simpson_report`): a pooled slope whose sign differs from most
within-group slopes. The shrinkage plot reads :func:`no_pooling` and
:func:`complete_pooling`; there is no other implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design.levels import level1_column, level_structure
from ..design.matrices import Design

__all__ = ["no_pooling", "complete_pooling", "simpson_report", "pooling"]

_RANK_TOL = 1e-10


def _level1_matrix(design: Design, factor: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The level-1 terms of a factor and their columns."""
    terms = level_structure(design, factor).level1_terms
    columns = [level1_column(design, t) for t in terms]
    return terms, np.column_stack(columns)


def _ols(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares with estimability: (estimate, se, estimable) per column.

    A coefficient is estimable when its unit vector lies in the row space of
    Z (then every least-squares solution agrees on it); its standard error
    needs residual degrees of freedom (n > rank), else it is NaN.
    """
    n, p = Z.shape
    est, se = np.full(p, np.nan), np.full(p, np.nan)
    if n == 0:
        return est, se, np.zeros(p, dtype=bool)
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    rank = int(np.sum(s > _RANK_TOL * max(s[0], 1e-300) * max(n, p)))
    V = Vt[:rank].T
    estimable = np.abs(1.0 - np.sum(V**2, axis=1)) < 1e-8
    solution = V @ ((U[:, :rank].T @ y) / s[:rank])
    est[estimable] = solution[estimable]
    if n > rank:
        sigma2 = float(np.sum((y - Z @ solution) ** 2)) / (n - rank)
        var = np.sum((V / s[:rank]) ** 2, axis=1) * sigma2
        se[estimable] = np.sqrt(var[estimable])
    return est, se, estimable


def no_pooling(design: Design, factor: str | None = None) -> pd.DataFrame:
    """One least-squares regression per group of y on the factor's level-1 terms.

    Parameters
    ----------
    design : Design
        E.g. ``fit.design`` or ``model.design``.
    factor : str, optional
        The grouping factor; needed only when the model has several.

    Returns
    -------
    DataFrame
        Index (group, term), every group of the factor and every level-1 term;
        columns estimate, se (from the group's own residual variance; NaN
        without residual degrees of freedom), n (the group's rows) and
        estimable (False, with NaN estimate and se, where the group's rows
        cannot determine the term: fewer rows than terms, or a predictor
        that does not vary within the group).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> print(round(no_pooling(m.design).loc[("308", "Days"), "estimate"], 2))
    21.76
    """
    factor = design.spec.resolve_group(factor)
    terms, Z = _level1_matrix(design, factor)
    f = design.factors[factor]
    order = np.argsort(f.index, kind="stable")
    bounds = np.searchsorted(f.index[order], np.arange(f.n_levels + 1))
    est, se, ok = (np.empty((f.n_levels, len(terms)), dtype=d) for d in (float, float, bool))
    for j in range(f.n_levels):
        rows = order[bounds[j]:bounds[j + 1]]
        est[j], se[j], ok[j] = _ols(Z[rows], design.y[rows])
    n = np.repeat(np.diff(bounds), len(terms))
    index = pd.MultiIndex.from_product([list(f.levels), list(terms)], names=["group", "term"])
    return pd.DataFrame({"estimate": est.ravel(), "se": se.ravel(), "n": n, "estimable": ok.ravel()}, index=index)


def complete_pooling(design: Design, factor: str | None = None) -> pd.DataFrame:
    """One least-squares regression of y on the factor's level-1 terms, groups ignored.

    Parameters
    ----------
    design : Design
    factor : str, optional
        The grouping factor whose level-1 terms are used; needed only when
        the model has several.

    Returns
    -------
    DataFrame
        Index term; columns estimate, se, n, estimable (as :func:`no_pooling`).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> print(round(complete_pooling(m.design).loc["Days", "estimate"], 2))
    10.47
    """
    factor = design.spec.resolve_group(factor)
    terms, Z = _level1_matrix(design, factor)
    est, se, ok = _ols(Z, design.y)
    return pd.DataFrame({"estimate": est, "se": se, "n": design.n_obs, "estimable": ok},
                        index=pd.Index(list(terms), name="term"))


def _design_of(obj) -> Design:
    if isinstance(obj, Design):
        return obj
    design = getattr(obj, "design", None)
    if not isinstance(design, Design):
        raise TypeError(f"Expected a bayesmlm MLM, Fit or Design; got {type(obj).__name__}.")
    return design


def simpson_report(model_or_fit, factor: str | None = None) -> pd.DataFrame:
    """Slopes whose pooled sign differs from the sign of most within-group slopes.

    For each level-1 term other than the intercept: the complete-pooling
    slope against the no-pooling (within-group) slopes of the groups where
    the slope is estimable. Simpson's paradox is reported when the pooled
    slope is non-zero and more than half of those groups have a slope of
    the opposite sign.

    Parameters
    ----------
    model_or_fit : MLM, Fit or Design
    factor : str, optional

    Returns
    -------
    DataFrame
        Index term; columns pooled, groups (with an estimable slope),
        positive, negative, opposite (groups whose slope has the other sign
        than the pooled one), paradox (bool) and message.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> row = simpson_report(m).loc["Days"]
    >>> int(row["negative"]), bool(row["paradox"])
    (1, False)
    """
    design = _design_of(model_or_fit)
    factor = design.spec.resolve_group(factor)
    pooled = complete_pooling(design, factor)["estimate"]
    within = no_pooling(design, factor)
    rows = {}
    for term in pooled.index.drop("(Intercept)", errors="ignore"):
        w = within.xs(term, level="term")
        slopes = w.loc[w["estimable"], "estimate"]
        b = float(pooled[term])
        pos, neg = int((slopes > 0).sum()), int((slopes < 0).sum())
        opposite = neg if b > 0 else pos if b < 0 else 0
        paradox = b != 0 and opposite > len(slopes) / 2
        sign = "negative" if b > 0 else "positive"
        message = (f"Simpson's paradox for '{term}': the pooled slope is {b:+.4g}, but {opposite} of {len(slopes)} "
                   f"groups of '{factor}' have a {sign} slope within the group." if paradox else
                   f"No Simpson's paradox for '{term}': the pooled slope is {b:+.4g}; {opposite} of {len(slopes)} "
                   f"groups have a slope of the other sign.")
        rows[term] = {"pooled": b, "groups": len(slopes), "positive": pos, "negative": neg, "opposite": opposite,
                      "paradox": bool(paradox), "message": message}
    columns = ["pooled", "groups", "positive", "negative", "opposite", "paradox", "message"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("term")


def _pooling_frame(design: Design, factor: str) -> pd.DataFrame:
    nop = no_pooling(design, factor)
    comp = complete_pooling(design, factor)["estimate"]
    table = pd.DataFrame({"n": nop["n"],
                          "complete": comp.reindex(nop.index.get_level_values("term")).to_numpy(),
                          "no_pooling": nop["estimate"], "no_pooling_se": nop["se"], "estimable": nop["estimable"]},
                         index=nop.index)
    report = simpson_report(design, factor)
    table.attrs["simpson"] = report.reset_index().to_dict("records")
    return table


def pooling(model_or_fit, factor: str | None = None, prob: float = 0.95) -> pd.DataFrame:
    """Complete-, no- and partial-pooling estimates per group and level-1 term.

    An MLM (or a Design) gives the table without the partial-pooling
    columns, which need a posterior.

    Parameters
    ----------
    model_or_fit : MLM, Fit or Design
    factor : str, optional
        The grouping factor; needed only when the model has several.
    prob : float
        Mass of the partial-pooling credible interval (fits only).

    Returns
    -------
    DataFrame
        Index (group, term); columns n, complete, no_pooling, no_pooling_se,
        estimable and, for a fit, partial_mean, partial_lower, partial_upper
        (the posterior of b_kj, as :meth:`bayesmlm.Fit.coef` gives it).
        ``attrs["simpson"]`` holds :func:`simpson_report` as a list of
        records, one per slope.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> bayesmlm.pooling(m).columns.tolist()
    ['n', 'complete', 'no_pooling', 'no_pooling_se', 'estimable']
    """
    design = _design_of(model_or_fit)
    factor = design.spec.resolve_group(factor)
    table = _pooling_frame(design, factor)
    if hasattr(model_or_fit, "coef_draws"):
        coef = model_or_fit.coef(prob, factor).reindex(table.index)
        for col in ("mean", "lower", "upper"):
            table[f"partial_{col}"] = coef[col].to_numpy()
    return table

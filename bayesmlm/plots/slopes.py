"""Per-group predicted lines, with the population line and its credible band."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from . import common as c

__all__ = ["slopes"]

VISUALS = ("lines", "population", "population_band", "highlight", "labels", "legend")


def slopes(fit, term: str | None = None, *, factor: str | None = None, prob: float = 0.95,
           highlight: int | list[str] = 1, ax=None, visuals: dict | None = None):
    """Each group's posterior-mean line over the range of ``term`` observed in that group.

    Group j's line is b_0j + b_1j x, from the posterior means of its
    group-specific intercept and coefficient of ``term`` (level-2 predictors
    folded in, as :meth:`Fit.coef` has them), drawn from the smallest to the
    largest x seen in that group; other level-1 predictors are held at 0.
    The population line gamma_0 + gamma_1 x is drawn bold with its pointwise
    credible band, from the fixed-effect draws.

    Parameters
    ----------
    fit : Fit
    term : str, optional
        A slope term. Default: the first random slope.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    prob : float
        Mass of the population line's credible band.
    highlight : int or list of str
        Groups drawn in colour and labelled: a list of group names, or k for
        the k groups with the lowest and the k with the highest slope (0 for
        none).
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``lines``, ``population``,
        ``population_band``, ``highlight``, ``labels``, ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesmlm.plots.slopes(fit, "smu", highlight=["CHN", "USA"])  # doctest: +SKIP
    """
    vis = c.check_visuals(visuals, VISUALS, "slopes")
    factor = c.resolve_factor(fit, factor)
    term = c.resolve_term(fit, factor, term)
    if term == c.INTERCEPT:
        raise ValueError(f"slopes() draws lines against a predictor; '{term}' is the intercept. Slope terms of "
                         f"'{factor}': {', '.join(t for t in c.coef_terms(fit, factor) if t != c.INTERCEPT)}.")
    fit.design.require_rows(f"slopes() (the range of {term} each group observed)", c.ROWS_INSTEAD)
    ends = _group_lines(fit, factor, term)
    n = len(ends)
    chosen = _highlighted(ends, highlight, factor)
    fig, ax = c.new_axes(ax, (8, 6))

    if (kw := c.style(vis, "lines", color="0.35", alpha=c.clamp(8 / n, 0.06, 0.5), lw=0.9 if n <= 200 else 0.5,
                      label=f"{factor}: posterior-mean line over its observed {term}")) is not None:
        others = ends.drop(index=chosen)
        ax.add_collection(LineCollection(_segments(others), **kw))
    _population(ax, fit, factor, term, prob, ends, vis)
    if (kw := c.style(vis, "highlight", lw=2.2, alpha=0.95)) is not None and chosen:
        for i, g in enumerate(chosen):
            row = ends.loc[g]
            ax.plot([row.x0, row.x1], [row.y0, row.y1], **{"color": f"C{(i + 2) % 10}", **kw})
    ax.autoscale_view()
    x_lo, x_hi = ends.x0.min(), ends.x1.max()
    if (lk := c.style(vis, "labels", fontsize=8, va="center", ha="left")) is not None and chosen:
        rows = ends.loc[chosen]
        lo, hi = ax.get_ylim()
        ys = c.spread(rows.y1.to_numpy(), 0.035 * (hi - lo))
        for i, (g, row) in enumerate(rows.iterrows()):
            ax.annotate(f"{g} (slope {c.fmt(row.slope)})", (row.x1, row.y1),
                        xytext=(row.x1 + 0.02 * (x_hi - x_lo or 1), ys[i]), **{"color": f"C{(i + 2) % 10}", **lk})
    ax.set_xlim(x_lo - 0.03 * (x_hi - x_lo), x_hi + 0.22 * (x_hi - x_lo))
    ax.set_xlabel(term)
    resp = fit.design.spec.response
    outcome = f"Predicted {resp}" if not c.link_suffix(fit) else f"Linear predictor of {resp}{c.link_suffix(fit)}"
    ax.set_ylabel(outcome)
    note = "; other level-1 predictors at 0" if len(c.coef_terms(fit, factor)) > 2 else ""
    ax.set_title(f"{outcome} against {term}: one line per {factor} (posterior means), "
                 f"population line with {c.pct(prob)} band{note}", fontsize=10, wrap=True)
    ax.grid(lw=0.4, alpha=0.5)
    if (kw := c.style(vis, "legend", loc="best", fontsize=8)) is not None:
        ax.legend(**kw)
    return fig


def _group_lines(fit, factor: str, term: str) -> pd.DataFrame:
    """Per group: slope, intercept and the line's ends over the observed range of ``term``."""
    means = fit.coef_draws(factor).mean(("chain", "draw"))
    slope = means.sel(term=term).values
    terms = list(means["term"].values)
    intercept = means.sel(term=c.INTERCEPT).values if c.INTERCEPT in terms else np.zeros_like(slope)
    x = c.predictor(fit, term)
    index = fit.design.factors[factor].index
    J = fit.design.factors[factor].n_levels
    lo = np.full(J, np.inf)
    hi = np.full(J, -np.inf)
    np.minimum.at(lo, index, x)
    np.maximum.at(hi, index, x)
    return pd.DataFrame({"slope": slope, "intercept": intercept, "x0": lo, "x1": hi,
                         "y0": intercept + slope * lo, "y1": intercept + slope * hi},
                        index=pd.Index(fit.design.factors[factor].levels, name="group"))


def _segments(ends: pd.DataFrame) -> np.ndarray:
    return np.stack([ends[["x0", "y0"]].to_numpy(), ends[["x1", "y1"]].to_numpy()], axis=1)


def _highlighted(ends: pd.DataFrame, highlight, factor: str) -> list[str]:
    if isinstance(highlight, (int, np.integer)) and not isinstance(highlight, bool):
        order = ends.sort_values("slope").index
        k = min(int(highlight), len(order) // 2)
        return list(order[:k]) + list(order[len(order) - k:]) if k > 0 else []
    chosen = [str(g) for g in highlight]
    unknown = [g for g in chosen if g not in ends.index]
    if unknown:
        some = ", ".join(ends.index[:20]) + (", ..." if len(ends) > 20 else "")
        raise ValueError(f"Unknown {factor} {', '.join(map(repr, unknown))} in highlight=. Groups: {some}.")
    return chosen


def _population(ax, fit, factor: str, term: str, prob: float, ends: pd.DataFrame, vis: dict) -> None:
    draws = fit.fixef_draws()
    if term not in draws["term"].values:
        return
    grid = np.linspace(ends.x0.min(), ends.x1.max(), 50)
    b1 = draws.sel(term=term).values.reshape(-1)
    b0 = draws.sel(term=c.INTERCEPT).values.reshape(-1) if c.INTERCEPT in draws["term"].values else 0 * b1
    lines = b0[:, None] + b1[:, None] * grid[None, :]
    alpha = (1 - prob) / 2
    lower, upper = np.quantile(lines, [alpha, 1 - alpha], axis=0)
    if (kw := c.style(vis, "population_band", color="C1", alpha=0.3, lw=0)) is not None:
        ax.fill_between(grid, lower, upper, **kw)
    if (kw := c.style(vis, "population", color="C1", lw=3,
                      label=f"population line: {c.population_label(fit, factor, term, prob, also=(c.INTERCEPT,))}")) is not None:
        ax.plot(grid, lines.mean(axis=0), **kw)

"""Forest plot: each group's effect with its own posterior intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import common as c

__all__ = ["forest"]

VISUALS = ("inner", "outer", "points", "zero", "population", "population_band", "gap", "legend")


def forest(fit, term: str | None = None, *, factor: str | None = None, probs: tuple[float, float] = (0.5, 0.95),
           top: int | None = None, max_labels: int = 100, ax=None, visuals: dict | None = None):
    """Groups sorted by effect: posterior mean, a thick inner and a thin outer credible interval.

    Every interval is that group's own equal-tailed posterior interval of its
    group-specific coefficient (level-2 predictors folded in, as
    :meth:`Fit.coef` has it), so precise and imprecise groups look different.
    The population (fixed) effect is a vertical line with its outer
    interval as a band.

    Parameters
    ----------
    fit : Fit
    term : str, optional
        A group-specific coefficient (``"Intercept"`` is accepted for
        ``"(Intercept)"``). Default: the first random slope.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    probs : (float, float)
        Masses of the inner (thick) and outer (thin) intervals.
    top : int, optional
        Show only the ``top`` groups with the lowest and the ``top`` with the
        highest effect (for many groups). Default: all groups.
    max_labels : int
        At most this many group names on the axis (every k-th is shown).
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``inner``, ``outer``, ``points``, ``zero`` (the
        line of no effect; drawn for a slope, for the intercept only when given),
        ``population``, ``population_band``, ``gap`` (the note where groups
        were left out), ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesmlm.plots.forest(fit, "smu", probs=(0.8, 0.95))  # doctest: +SKIP
    >>> fig = bayesmlm.plots.forest(fit_1000_groups, top=20)  # doctest: +SKIP
    """
    vis = c.check_visuals(visuals, VISUALS, "forest")
    factor = c.resolve_factor(fit, factor)
    term = c.resolve_term(fit, factor, term)
    inner_p, outer_p = _check_probs(probs)
    draws = c.term_draws(fit, factor, term)
    table = c.intervals(draws, outer_p)
    inner = c.intervals(draws, inner_p)
    table["inner_lower"], table["inner_upper"] = inner["lower"], inner["upper"]
    table = table.sort_values("mean")
    n_all = len(table)
    y = np.arange(n_all, dtype=float)
    if top is not None:
        if top < 1:
            raise ValueError(f"top must be a positive number of groups; got {top!r}.")
        if 2 * top < n_all:
            table = pd.concat([table.iloc[:top], table.iloc[-top:]])
            y = np.r_[np.arange(top), np.arange(top) + top + 1.5].astype(float)
    n = len(table)
    fig, ax = c.new_axes(ax, (8, c.clamp(1.8 + 0.17 * (n + (n < n_all) * 2), 4.5, 24)))
    pop = c.population(fit, term, outer_p)

    # Zero marks "no effect" for a slope; an intercept is a level, often far from zero, so by default it gets no line.
    if (kw := c.style(vis, "zero", color="0.35", lw=0.9, ls=":")) is not None and (term != c.INTERCEPT or "zero" in vis):
        ax.axvline(0, **kw)
    if pop is not None and (kw := c.style(vis, "population_band", color="C1", alpha=0.15, lw=0)) is not None:
        ax.axvspan(pop["lower"], pop["upper"], **kw)
    if pop is not None and (kw := c.style(vis, "population", color="C1", lw=1.5, ls="--",
                                          label=c.population_label(fit, factor, term, outer_p))) is not None:
        ax.axvline(pop["mean"], **kw)
    thin_lines = n > 150
    if (kw := c.style(vis, "outer", color="0.25", lw=0.5 if thin_lines else 1.0,
                      label=f"{c.pct(outer_p)} interval")) is not None:
        ax.hlines(y, table["lower"], table["upper"], gid="outer", **kw)
    if (kw := c.style(vis, "inner", color="0.1", lw=1.5 if thin_lines else 3.0,
                      label=f"{c.pct(inner_p)} interval")) is not None:
        ax.hlines(y, table["inner_lower"], table["inner_upper"], gid="inner", **kw)
    if (kw := c.style(vis, "points", color="#E64B35", s=6 if thin_lines else 22, zorder=3,
                      label=f"{factor}: posterior mean")) is not None:
        ax.scatter(table["mean"], y, gid="points", **kw)
    if n < n_all and (kw := c.style(vis, "gap", ha="center", va="center", fontsize=8, color="0.3",
                                    style="italic")) is not None:
        ax.text(0.5, (top - 1 + top + 1.5) / 2, f"... {n_all - n} {factor} groups with middling effects not shown ...",
                transform=ax.get_yaxis_transform(), **kw)

    shown = c.thin(n, max_labels)
    ax.set_yticks(y[shown], table.index[shown], fontsize=8 if n <= 70 else 7 if n <= 100 else 6)
    ax.set_ylim(y[0] - 0.8, y[-1] + 0.8)
    ax.set_xlabel(c.effect_label(fit, term))
    which = f"the {top} lowest and {top} highest of {n_all}" if n < n_all else f"all {n_all}"
    thinned = c.thinned_note(shown, n)
    ax.set_ylabel(f"{factor}, sorted by effect ({which}{'; ' + thinned if thinned else ''})")
    ax.set_title(f"{c.effect_label(fit, term)} by {factor}: each group's own {c.pct(inner_p)} and "
                 f"{c.pct(outer_p)} credible intervals", fontsize=10)
    ax.grid(axis="x", lw=0.4, alpha=0.5)
    if (kw := c.style(vis, "legend", fontsize=8, **c.legend_below(ax))) is not None:
        ax.legend(**kw)
    return fig


def _check_probs(probs) -> tuple[float, float]:
    try:
        inner, outer = (float(p) for p in probs)
    except (TypeError, ValueError):
        raise ValueError(f"probs must be two masses (inner, outer), e.g. (0.5, 0.95); got {probs!r}.") from None
    if not 0 < inner < outer < 1:
        raise ValueError(f"probs must satisfy 0 < inner < outer < 1, e.g. (0.5, 0.95); got {probs!r}.")
    return inner, outer

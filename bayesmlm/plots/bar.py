"""Bar plot: each group's total effect with its credible interval."""

from __future__ import annotations

import numpy as np

from . import common as c

__all__ = ["bar"]

VISUALS = ("bars", "errorbars", "zero", "population", "population_band", "legend")


def bar(fit, term: str | None = None, *, factor: str | None = None, prob: float = 0.95, max_labels: int = 100,
        ax=None, visuals: dict | None = None):
    """Each group's coefficient of ``term`` as a bar, sorted, with its credible interval.

    The bar is the posterior mean of the group-specific coefficient
    gamma + u_j (level-2 predictors folded in, as :meth:`Fit.coef` has it);
    the error bar is that group's own equal-tailed interval. A dashed line
    marks zero; the population (fixed) effect is a line with its interval
    as a band.

    Parameters
    ----------
    fit : Fit
    term : str, optional
        A group-specific coefficient (``"Intercept"`` is accepted for
        ``"(Intercept)"``). Default: the first random slope.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    prob : float
        Mass of the credible intervals.
    max_labels : int
        At most this many group names on the axis (every k-th is shown).
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``bars``, ``errorbars``, ``zero``,
        ``population``, ``population_band``, ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesmlm.plots.bar(fit, "smu", visuals={"zero": False})  # doctest: +SKIP
    >>> fig.savefig("bar.png")  # doctest: +SKIP
    """
    vis = c.check_visuals(visuals, VISUALS, "bar")
    factor = c.resolve_factor(fit, factor)
    term = c.resolve_term(fit, factor, term)
    table = c.intervals(c.term_draws(fit, factor, term), prob).sort_values("mean")
    n = len(table)
    fig, ax = c.new_axes(ax, (c.clamp(2.5 + 0.16 * n, 7, 20), 5.5))
    x = np.arange(n)
    mean = table["mean"].to_numpy()
    err = np.vstack([mean - table["lower"].to_numpy(), table["upper"].to_numpy() - mean])
    pop = c.population(fit, term, prob)

    if (kw := c.style(vis, "population_band", color="C1", alpha=0.2, lw=0, zorder=2.5)) is not None:
        if pop is not None:
            ax.axhspan(pop["lower"], pop["upper"], **kw)
    if (kw := c.style(vis, "zero", color="0.35", ls="--", lw=0.9)) is not None:
        ax.axhline(0, **kw)
    if (kw := c.style(vis, "bars", color="steelblue", width=0.75 if n <= 200 else 1.0,
                      label=f"{factor}: posterior mean")) is not None:
        ax.bar(x, mean, **kw)
    if (kw := c.style(vis, "errorbars", fmt="none", ecolor="0.15", elinewidth=0.8 if n <= 200 else 0.4,
                      capsize=2 if n <= 100 else 0, label=f"{factor}: {c.pct(prob)} interval")) is not None:
        ax.errorbar(x, mean, yerr=err, **kw)
    if (kw := c.style(vis, "population", color="C1", lw=1.8, zorder=3,
                      label=c.population_label(fit, factor, term, prob))) is not None:
        if pop is not None:
            ax.axhline(pop["mean"], **kw)

    shown = c.thin(n, max_labels)
    ax.set_xticks(x[shown], table.index[shown], rotation=90, fontsize=8 if n <= 40 else 7)
    ax.set_xlim(-0.8, n - 0.2)
    thinned = c.thinned_note(shown, n)
    ax.set_xlabel(f"{factor}, sorted by effect" + (f" ({thinned})" if thinned else ""))
    ax.set_ylabel(c.effect_label(fit, term))
    ax.set_title(f"{c.effect_label(fit, term)} in each {factor}: posterior mean and {c.pct(prob)} credible interval")
    ax.grid(axis="y", lw=0.4, alpha=0.5)
    if (kw := c.style(vis, "legend", loc="upper left", fontsize=8, frameon=True)) is not None:
        ax.legend(**kw)
    return fig

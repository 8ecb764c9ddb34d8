"""The picture of a Comparison: fixed effects interval beside interval, BLUPs against posterior means.

Private: reached through :meth:`bayesmlm.comparison.frequentist.Comparison.plot`.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from .visuals import check_visuals, style

__all__ = ["comparison_plot", "VISUALS"]

VISUALS = ("fixed", "groups", "intervals", "identity", "legend")
_BAYES, _FREQ = "C0", "C1"


def _fixed_panel(ax, row, label: str, pct: str, style: dict, legend: bool) -> None:
    """One term: the credible interval above the Wald interval, on the term's own scale."""
    for y, lo, mid, hi, colour, name in ((1, row.bayes_lower, row.bayes_mean, row.bayes_upper, _BAYES, f"posterior, {pct}"),
                                         (0, row.freq_lower, row.freq_estimate, row.freq_upper, _FREQ, f"{label}, {pct} Wald")):
        ax.plot([lo, hi], [y, y], color=colour, **style)
        ax.plot([mid], [y], "o", color=colour, markersize=5, label=name)
    ax.set_ylim(-0.7, 1.7)
    ax.set_yticks([])
    ax.set_ylabel(row.Index, rotation=0, ha="right", va="center")
    ax.tick_params(axis="x", labelsize=8)
    if legend:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncols=2, fontsize=8, frameon=False)


def _group_panel(ax, g, term: str, label: str, vis: dict, factor: str) -> None:
    """One random term: each group's BLUP against its posterior mean, on equal axes around the 1:1 line."""
    x, y = g["freq_estimate"].to_numpy(), g["bayes_mean"].to_numpy()
    # Intervals of many groups hide the points; draw them by default for up to 30 groups.
    err = style(vis, "intervals", color=_BAYES, alpha=0.3, linewidth=1) if len(g) <= 30 or "intervals" in vis else None
    span = [x, y]
    if err is not None:
        ax.vlines(x, g["bayes_lower"], g["bayes_upper"], **err)
        span += [g["bayes_lower"].to_numpy(), g["bayes_upper"].to_numpy()]
    ax.scatter(x, y, s=14, color=_BAYES, zorder=3)
    lo, hi = min(v.min() for v in span), max(v.max() for v in span)
    pad = 0.05 * (hi - lo or 1.0)
    lims = (lo - pad, hi + pad)
    identity = style(vis, "identity", color="0.3", linestyle="--", linewidth=1)
    if identity is not None:
        ax.plot(lims, lims, **identity, label="1:1")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_box_aspect(1)
    ax.set_title(f"u: {term} ({len(g)} groups of {factor})", fontsize=10)
    ax.set_xlabel(f"{label} conditional mode (BLUP)")
    ax.set_ylabel("posterior mean")


def comparison_plot(comparison, *, terms=None, visuals: dict | None = None) -> Figure:
    """Draw a Comparison: fixed effects interval beside interval, BLUPs against posterior means.

    Left, one row per fixed term on its own scale: the posterior mean and
    credible interval (blue) above the frequentist estimate and Wald interval
    (orange). Right, one panel per random term: each group's conditional
    mode (BLUP) against its posterior mean, the posterior interval as a
    vertical line, and the 1:1 line.

    Parameters
    ----------
    comparison : Comparison
    terms : sequence of str, optional
        The random terms to draw a scatter for (default: all).
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``fixed`` (the fixed-effects column),
        ``groups`` (the scatters), ``intervals`` (posterior intervals in the
        scatters; drawn by default for up to 30 groups), ``identity`` (the 1:1 line), ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = comparison_plot(fit.compare_frequentist(), visuals={"intervals": False})  # doctest: +SKIP
    """
    vis = check_visuals(visuals, VISUALS, "Comparison.plot")
    all_terms = list(dict.fromkeys(comparison.groups.index.get_level_values("term")))
    terms = all_terms if terms is None else list(terms)
    unknown = [t for t in terms if t not in all_terms]
    if unknown:
        raise ValueError(f"Unknown random term(s) {unknown} for Comparison.plot(). Random terms: {', '.join(all_terms)}.")
    fixed_style = style(vis, "fixed", linewidth=2.5, solid_capstyle="butt")
    show_groups = style(vis, "groups") is not None
    n_fixed = len(comparison.fixed) if fixed_style is not None else 0
    n_groups = len(terms) if show_groups else 0
    if n_fixed + n_groups == 0:
        raise ValueError("Comparison.plot(): both 'fixed' and 'groups' are switched off; nothing to draw.")
    width = (4.2 if n_fixed else 0) + 3.8 * n_groups
    height = max(3.6, 0.55 * n_fixed + 1.2)
    fig = Figure(figsize=(width, height), layout="constrained")
    grid = fig.add_gridspec(max(n_fixed, 1), (1 if n_fixed else 0) + n_groups,
                            width_ratios=([1.1] if n_fixed else []) + [1.0] * n_groups)
    pct = f"{100 * comparison.prob:g}%"
    legend = style(vis, "legend") is not None
    for i, row in enumerate(comparison.fixed.itertuples()):
        if n_fixed:
            _fixed_panel(fig.add_subplot(grid[i, 0]), row, comparison.label, pct, fixed_style, legend and i == 0)
    for k, term in enumerate(terms if show_groups else []):
        ax = fig.add_subplot(grid[:, (1 if n_fixed else 0) + k])
        _group_panel(ax, comparison.groups.xs(term, level="term"), term, comparison.label, vis, comparison.factor)
        if legend and k == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, frameon=False)
    flags = [w for w, on in (("NOT CONVERGED", not comparison.converged), ("singular", comparison.singular)) if on]
    fig.suptitle(f"Posterior against {comparison.label}" + (f" ({', '.join(flags)})" if flags else "")
                 + f": {comparison.formula}", fontsize=10)
    return fig

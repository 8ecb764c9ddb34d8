"""Scatter of two group-specific coefficients, with the population covariance ellipse."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.patches import Ellipse

from ..schema import cor_var, pair_dim, sd_var, term_dim
from . import common as c

__all__ = ["correlation"]

VISUALS = ("points", "whiskers", "labels", "ellipse", "center", "note", "legend")


def correlation(fit, x: str | None = None, y: str = "(Intercept)", *, factor: str | None = None, prob: float = 0.95,
                ellipse_probs: tuple[float, ...] = (0.5, 0.95), max_labels: int = 64, ax=None,
                visuals: dict | None = None):
    """One point per group at the posterior means of two group-specific coefficients.

    Whiskers are each group's credible intervals in both directions; group
    names are placed by adjustText so that they do not overlap (with many
    groups only the ``max_labels`` most outlying are named, and a name that
    would still overlap is left out; the corner says how many are named).
    The ellipses are the population distribution of the coefficients implied
    by the posterior mean of the random-effects covariance T, centred at the
    fixed effects; the correlation's posterior mean and interval (from
    :meth:`Fit.varcorr`) are in the title.

    Parameters
    ----------
    fit : Fit
    x : str, optional
        Coefficient on the horizontal axis. Default: the first random slope.
    y : str
        Coefficient on the vertical axis; ``"Intercept"`` is accepted for
        ``"(Intercept)"``.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    prob : float
        Mass of the whiskers and of the correlation's interval.
    ellipse_probs : tuple of float
        Population mass inside each ellipse.
    max_labels : int
        At most this many group names (the most outlying groups).
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``points``, ``whiskers``, ``labels``,
        ``ellipse``, ``center`` (the fixed effects), ``note`` (how many
        groups are named), ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesmlm.plots.correlation(fit, x="smu", y="Intercept")  # doctest: +SKIP
    """
    vis = c.check_visuals(visuals, VISUALS, "correlation")
    factor = c.resolve_factor(fit, factor)
    x = c.resolve_term(fit, factor, x, what="term x")
    y = c.resolve_term(fit, factor, y, what="term y")
    if x == y:
        raise ValueError(f"correlation() needs two different terms; got x = y = '{x}'. "
                         f"Terms of '{factor}': {', '.join(c.coef_terms(fit, factor))}.")
    draws = fit.coef_draws(factor)
    tx = c.intervals(draws.sel(term=x, drop=True), prob)
    ty = c.intervals(draws.sel(term=y, drop=True), prob)
    n = len(tx)
    fig, ax = c.new_axes(ax, (10, 8.5))
    centre = _centre(fit, x, y)
    cov = _population_cov(fit, factor, x, y)

    if cov is not None and (kw := c.style(vis, "ellipse", edgecolor="C1", facecolor=to_rgba("C1", 0.08), lw=1.2,
                                          ls="-")) is not None:
        label = (f"population: {', '.join(c.pct(q) for q in sorted(ellipse_probs))} ellipses of N(fixed effects, T), "
                 "T at its posterior mean")
        for i, p in enumerate(sorted(ellipse_probs)):
            ax.add_patch(_ellipse(centre, cov, p, **{**kw, "label": label if i == 0 else None}))
    if (kw := c.style(vis, "whiskers", fmt="none", ecolor="0.55", elinewidth=0.6 if n <= 200 else 0.3,
                      alpha=0.6 if n <= 200 else 0.25, label=f"{factor}: {c.pct(prob)} intervals")) is not None:
        ax.errorbar(tx["mean"], ty["mean"], xerr=_err(tx), yerr=_err(ty), **kw)
    if (kw := c.style(vis, "points", color="steelblue", s=22 if n <= 200 else 6, zorder=3,
                      label=f"{factor}: posterior means")) is not None:
        ax.scatter(tx["mean"], ty["mean"], gid="points", **kw)
    if (kw := c.style(vis, "center", marker="X", color="C1", s=90, zorder=4, edgecolor="k", lw=0.6,
                      label="fixed effects" + _level2_note(fit, factor, x, y))) is not None:
        ax.scatter([centre[0]], [centre[1]], **kw)
    ax.autoscale_view()
    note = None
    if vis.get("labels", True) is not False and (kw := c.style(vis, "note", fontsize=8, ha="left", va="top", bbox={
            "boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})) is not None:
        note = ax.text(0.01, 0.99, f"named: {min(n, max_labels)} of {n} {factor} groups", transform=ax.transAxes,
                       zorder=5, **kw)
    ax.set_xlabel(c.effect_label(fit, x))
    ax.set_ylabel(c.effect_label(fit, y))
    ax.set_title(f"{_name(y)} against {_name(x)} by {factor}: posterior means with {c.pct(prob)} intervals, "
                 f"population ellipse\n{_correlation_note(fit, factor, x, y, prob)}", fontsize=10)
    ax.grid(lw=0.4, alpha=0.5)
    if (kw := c.style(vis, "legend", fontsize=8, **c.legend_below(ax))) is not None:
        ax.legend(**kw)
    # Last, once the layout is final: labels are placed in display space.
    if (kw := c.style(vis, "labels", fontsize=7 if n > 30 else 8, color="0.15")) is not None:
        kept = c.place_labels(ax, tx["mean"], ty["mean"], max_labels, kw, avoid=[tuple(centre)])
        if note is not None:  # same width as before placement: the count can only fall
            note.set_text(note.get_text().replace(f"named: {min(n, max_labels)} of", f"named: {len(kept)} of"))
    return fig


def _name(term: str) -> str:
    return "Intercept" if term == c.INTERCEPT else f"effect of {term}"


def _err(t: pd.DataFrame) -> np.ndarray:
    return np.vstack([t["mean"] - t["lower"], t["upper"] - t["mean"]])


def _centre(fit, x: str, y: str) -> np.ndarray:
    """Posterior means of the fixed effects of x and y (0 for a term without one)."""
    fe = fit.fixef_draws().mean(("chain", "draw"))
    terms = list(fe["term"].values)
    return np.array([float(fe.sel(term=t)) if t in terms else 0.0 for t in (x, y)])


def _level2_note(fit, factor: str, x: str, y: str) -> str:
    parts = c.level2_parts(fit, factor, x) + c.level2_parts(fit, factor, y)
    return f" (level-2 predictors at 0; points include {', '.join(parts)})" if parts else ""


def _block_of(fit, factor: str, term: str):
    return next((b for b in fit.design.blocks if b.group == factor and term in b.terms), None)


def _population_cov(fit, factor: str, x: str, y: str) -> np.ndarray | None:
    """Posterior mean of the 2 x 2 covariance of (u_x, u_y); None if either has no random effect."""
    bx, by = _block_of(fit, factor, x), _block_of(fit, factor, y)
    if bx is None or by is None:
        return None
    post = fit.posterior
    sx = post[sd_var(bx.label)].sel({term_dim(bx.label): x}, drop=True)
    sy = post[sd_var(by.label)].sel({term_dim(by.label): y}, drop=True)
    rho = 0.0
    if bx is by and bx.correlated:
        cor = post[cor_var(bx.label)]
        pair = f"{x}:{y}" if f"{x}:{y}" in cor[pair_dim(bx.label)].values else f"{y}:{x}"
        rho = cor.sel({pair_dim(bx.label): pair}, drop=True)
    cxy = float((sx * sy * rho).mean()) if bx is by else 0.0
    return np.array([[float((sx**2).mean()), cxy], [cxy, float((sy**2).mean())]])


def _ellipse(centre: np.ndarray, cov: np.ndarray, p: float, **kw) -> Ellipse:
    vals, vecs = np.linalg.eigh(cov)
    r = np.sqrt(-2 * np.log(1 - p))  # radius of a bivariate normal's p contour
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    return Ellipse(tuple(centre), 2 * r * np.sqrt(vals[-1]), 2 * r * np.sqrt(max(vals[0], 0.0)), angle=angle, **kw)


def _correlation_note(fit, factor: str, x: str, y: str, prob: float) -> str:
    bx, by = _block_of(fit, factor, x), _block_of(fit, factor, y)
    if bx is None or by is None:
        missing = x if bx is None else y
        return f"'{missing}' has no random effect for {factor}: no correlation to show"
    if bx is not by or not bx.correlated:
        return f"u({_short(y)}) and u({_short(x)}) are uncorrelated by the model's specification"
    vc = fit.varcorr(prob)
    row = vc[(vc.group == bx.label) & (((vc.var1 == x) & (vc.var2 == y)) | ((vc.var1 == y) & (vc.var2 == x)))].iloc[0]
    return (f"correlation of u({_short(y)}) and u({_short(x)}): posterior mean {row['mean']:.2f}, "
            f"{c.pct(prob)} interval {row['lower']:.2f} to {row['upper']:.2f}")


def _short(term: str) -> str:
    return "Intercept" if term == c.INTERCEPT else term

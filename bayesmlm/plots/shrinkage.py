"""Shrinkage: each group's separate least-squares estimate, pulled to its posterior mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..comparison.pooling import complete_pooling, no_pooling
from . import common as c

__all__ = ["shrinkage"]

VISUALS = ("arrows", "no_pooling", "partial", "complete", "labels", "colorbar", "legend")
VIEWS = ("auto", "plane", "size")


def shrinkage(fit, term: str | None = None, *, factor: str | None = None, view: str = "auto", max_labels: int = 12,
              ax=None, visuals: dict | None = None):
    """Arrows from no pooling (a least-squares fit per group) to partial pooling (the posterior mean).

    The no-pooling estimates come from :func:`bayesmlm.comparison.pooling.no_pooling`
    (one regression of y on the factor's level-1 terms per group), the
    complete-pooling estimate from :func:`bayesmlm.comparison.pooling.complete_pooling`
    (one regression over all rows, groups ignored), and the partial-pooling
    estimate is the posterior mean of the group-specific coefficient. Small
    groups, whose own estimate is least precise, move most.

    Two views: ``"plane"`` draws the arrows in the plane of the intercept
    (vertical) and ``term`` (horizontal), coloured by group size;
    ``"size"`` draws ``term`` against group size. ``"auto"`` takes the plane
    when the factor has an intercept and ``term`` is a slope. No-pooling
    estimates far outside the rest (beyond 3 interquartile ranges) are left
    outside the view and counted in the legend; groups whose rows cannot
    determine a no-pooling estimate get no arrow. Gaussian models only: the
    no-pooling fits are least squares on the outcome's scale.

    Parameters
    ----------
    fit : Fit
    term : str, optional
        A group-specific coefficient. Default: the first random slope.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    view : {"auto", "plane", "size"}
    max_labels : int
        Name at most this many groups: those that move most.
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.
    visuals : dict, optional
        Per element, a dict of matplotlib keyword arguments, or ``False`` to
        leave it out. Elements: ``arrows``, ``no_pooling``, ``partial``,
        ``complete``, ``labels``, ``colorbar`` (plane view), ``legend``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = bayesmlm.plots.shrinkage(fit, "smu")  # doctest: +SKIP
    >>> fig = bayesmlm.plots.shrinkage(fit, "smu", view="size", visuals={"labels": False})  # doctest: +SKIP
    """
    vis = c.check_visuals(visuals, VISUALS, "shrinkage")
    factor = c.resolve_factor(fit, factor)
    term = c.resolve_term(fit, factor, term)
    fit.design.require_rows("shrinkage() (each group's rows for its own least-squares fit)", c.ROWS_INSTEAD)
    link = fit.design.spec.family.link
    if link != "identity":
        raise ValueError(f"shrinkage() compares per-group least-squares fits with the posterior; for the {link} link the "
                         "two are on different scales (outcome vs link), so the arrows would mislead. "
                         "Use forest() or correlation() for this model.")
    if view not in VIEWS:
        raise ValueError(f"Unknown view '{view}' for shrinkage(). Valid views: {', '.join(VIEWS)}.")
    has_intercept = c.INTERCEPT in c.coef_terms(fit, factor)
    if view == "auto":
        view = "plane" if has_intercept and term != c.INTERCEPT else "size"
    if view == "plane" and (not has_intercept or term == c.INTERCEPT):
        raise ValueError(f"view='plane' needs an intercept and a slope; '{term}' with terms "
                         f"{', '.join(c.coef_terms(fit, factor))} of '{factor}'. Use view='size'.")
    terms = [term, c.INTERCEPT] if view == "plane" else [term]
    table = _table(fit, factor, terms)
    complete = complete_pooling(fit.design, factor)["estimate"]
    fig, ax = c.new_axes(ax, (9.5, 7.5) if view == "plane" else (9.5, 6))
    if view == "plane":
        cols = [f"no_{term}", f"no_{c.INTERCEPT}", f"partial_{term}", f"partial_{c.INTERCEPT}"]
        start, end = table[cols[:2]].to_numpy(), table[cols[2:]].to_numpy()
        centre = (complete[term], complete[c.INTERCEPT])
    else:
        size = table["n"].to_numpy(dtype=float)
        start = np.column_stack([size, table[f"no_{term}"]])
        end = np.column_stack([size, table[f"partial_{term}"]])
        centre = None
    ok = table["estimable"].to_numpy()
    n_groups = len(table)
    many = n_groups > 200

    lims = _limits(start[ok], end, view)
    off = ~_inside(start, lims) & ok
    if view == "size" and (kw := c.style(vis, "complete", color="C1", lw=1.5, ls="--",
                                         label=f"complete pooling (one fit, groups ignored): {c.fmt(complete[term])}"
                                         )) is not None:
        ax.axhline(complete[term], **kw)
    sizes = table["n"].to_numpy(dtype=float)
    colour = np.log10(sizes) if view == "plane" and sizes.max() > sizes.min() else None
    if (kw := c.style(vis, "arrows", angles="xy", scale_units="xy", scale=1, width=0.0025 if many else 0.004,
                      headwidth=3.5, headlength=4, headaxislength=3.5, minlength=0.5, alpha=0.8,
                      cmap="viridis", color="0.3")) is not None and ok.any():
        d = end[ok] - start[ok]
        if colour is not None:
            kw.pop("color")
            arrows = ax.quiver(start[ok, 0], start[ok, 1], d[:, 0], d[:, 1], colour[ok], gid="arrows", **kw)
            if (ck := c.style(vis, "colorbar", shrink=0.8, pad=0.01)) is not None:
                bar = fig.colorbar(arrows, ax=ax, **ck)
                ticks = _log_ticks(sizes[ok])
                bar.set_ticks(np.log10(ticks), labels=[f"{t:g}" for t in ticks])
                bar.set_label(f"rows in the {factor} group")
        else:
            kw.pop("cmap")
            ax.quiver(start[ok, 0], start[ok, 1], d[:, 0], d[:, 1], gid="arrows", **kw)
    if (kw := c.style(vis, "no_pooling", facecolor="none", edgecolor="0.35", s=8 if many else 18, lw=0.6,
                      label=f"no pooling: least squares in each {factor}")) is not None:
        ax.scatter(start[ok, 0], start[ok, 1], gid="no_pooling", **kw)
    if (kw := c.style(vis, "partial", color="#E64B35", s=6 if many else 16, zorder=3,
                      label="partial pooling: posterior mean")) is not None:
        ax.scatter(end[:, 0], end[:, 1], gid="partial", **kw)
    if view == "plane" and (kw := c.style(vis, "complete", marker="*", s=260, color="C1", edgecolor="k", lw=0.6,
                                          zorder=4, label="complete pooling (one fit, groups ignored)")) is not None:
        ax.scatter([centre[0]], [centre[1]], **kw)
    if view == "plane" and colour is None:
        ax.plot([], [], " ", label=f"every {factor} group has {sizes[0]:g} rows")
    if (~ok).any() or off.any():
        ax.plot([], [], " ", label=_omitted_note(int((~ok).sum()), int(off.sum()), factor))
    ax.set_xlim(lims[0])
    ax.set_ylim(lims[1])
    if view == "size":
        if sizes.min() > 0 and sizes.max() > 20 * sizes.min():
            ax.set_xscale("log")
        ax.set_xlabel(f"Rows in the {factor} group" + (" (log scale)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(c.effect_label(fit, term))
    else:
        ax.set_xlabel(c.effect_label(fit, term))
        ax.set_ylabel(c.effect_label(fit, c.INTERCEPT))
    what = f"{'intercept and ' if view == 'plane' else ''}{'intercept' if term == c.INTERCEPT else 'effect of ' + term}"
    ax.set_title(f"Shrinkage of each {factor}'s {what}: own least-squares fit (no pooling) \u2192 "
                 "posterior mean (partial pooling)", fontsize=10)
    ax.grid(lw=0.4, alpha=0.5)
    if (kw := c.style(vis, "legend", fontsize=8, **c.legend_below(ax))) is not None:
        ax.legend(**kw)
    if (kw := c.style(vis, "labels", fontsize=7, color="0.15")) is not None:
        move = pd.Series(_moved(start, end, lims, ok), index=table.index)
        inside = pd.Series(_inside(start, lims) & ok, index=table.index)
        xs = pd.Series(start[:, 0], index=table.index)[inside]
        ys = pd.Series(start[:, 1], index=table.index)[inside]
        c.place_labels(ax, xs, ys, max_labels, kw, priority=move[inside], avoid=[tuple(p) for p in end])
    return fig


def _table(fit, factor: str, terms: list[str]) -> pd.DataFrame:
    """Per group: no-pooling estimates, posterior means, rows, and whether every term is estimable."""
    nop = no_pooling(fit.design, factor)
    means = fit.coef_draws(factor).mean(("chain", "draw"))
    groups = [str(g) for g in means["group"].values]
    out = pd.DataFrame(index=pd.Index(groups, name="group"))
    ok = np.ones(len(groups), dtype=bool)
    for t in terms:
        part = nop.xs(t, level="term").reindex(groups)
        out[f"no_{t}"] = part["estimate"].to_numpy()
        out[f"partial_{t}"] = means.sel(term=t).values
        ok &= part["estimable"].to_numpy(dtype=bool)
        out["n"] = part["n"].to_numpy()
    out["estimable"] = ok
    return out


def _limits(start: np.ndarray, end: np.ndarray, view: str) -> list[tuple[float, float]]:
    """View limits: all posterior means, and the no-pooling estimates within 3 IQR of their quartiles."""
    lims = []
    for k in range(2):
        s, e = start[:, k], end[:, k]
        if view == "size" and k == 0:
            lo, hi = e.min(), e.max()
            log = lo > 0 and hi > 20 * lo  # the size axis is logarithmic then
            lims.append((lo / 1.3, hi * 1.3) if log else (lo - 0.04 * (hi - lo) - 0.5, hi + 0.04 * (hi - lo) + 0.5))
            continue
        lo, hi = e.min(), e.max()
        if len(s):
            q1, q3 = np.quantile(s, [0.25, 0.75])
            fence = 3 * (q3 - q1)
            keep = s[(s >= q1 - fence) & (s <= q3 + fence)]
            lo, hi = min(lo, keep.min(initial=lo)), max(hi, keep.max(initial=hi))
        pad = 0.05 * (hi - lo or abs(hi) or 1.0)
        lims.append((lo - pad, hi + pad))
    return lims


def _inside(points: np.ndarray, lims) -> np.ndarray:
    (x0, x1), (y0, y1) = lims
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)


def _moved(start: np.ndarray, end: np.ndarray, lims, ok: np.ndarray) -> np.ndarray:
    """Length of each arrow as a share of the view (0 where there is no arrow)."""
    scale = np.array([lims[0][1] - lims[0][0], lims[1][1] - lims[1][0]])
    d = np.where(ok[:, None], (end - start) / scale, 0.0)
    return np.hypot(d[:, 0], d[:, 1])


def _log_ticks(n: np.ndarray) -> list[float]:
    """Round group sizes to mark on the colour bar: 1-2-5 steps, or evenly spaced when the range is narrow."""
    lo, hi = float(n.min()), float(n.max())
    ticks = [m * 10**e for e in range(0, 8) for m in (1, 2, 5) if lo <= m * 10**e <= hi]
    if len(ticks) < 3:
        ticks = [t for t in MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    return ticks or [lo, hi]


def _omitted_note(not_estimable: int, outside: int, factor: str) -> str:
    parts = []
    if not_estimable:
        parts.append(f"{not_estimable} {factor} groups without a no-pooling estimate (no arrow)")
    if outside:
        parts.append(f"{outside} no-pooling estimates beyond the view")
    return "; ".join(parts)

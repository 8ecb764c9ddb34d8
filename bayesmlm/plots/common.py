"""What every plot needs: term resolution, per-group summaries, visuals, labels.

Private to :mod:`bayesmlm.plots`. Everything here reads a Fit; nothing refits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
from adjustText import adjust_text, get_renderer
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from ..arguments import check_probability
from ..design.levels import level1_column, level_structure
from .visuals import check_visuals, style  # noqa: F401  (the plots' shared convention)

INTERCEPT = "(Intercept)"


# -- terms and factors ----------------------------------------------------------
def resolve_factor(fit, factor: str | None) -> str:
    """The grouping factor to plot: the one named, or the first (an unknown name lists the factors)."""
    return fit.design.spec.factor(factor)


def coef_terms(fit, factor: str) -> tuple[str, ...]:
    """The group-specific coefficients of a factor, ``(Intercept)`` first."""
    return level_structure(fit.design, factor).level1_terms


def resolve_term(fit, factor: str, term: str | None, *, what: str = "term") -> str:
    """A term name as coef() spells it; the first random slope when ``None``.

    ``"Intercept"`` is accepted for ``"(Intercept)"``. An unknown term is an
    error that lists the valid ones.
    """
    valid = coef_terms(fit, factor)
    if term is None:
        random = fit.design.random_terms(factor)
        slopes = [t for t in random if t != INTERCEPT]
        return slopes[0] if slopes else random[0]
    if term == "Intercept":
        term = INTERCEPT
    if term not in valid:
        raise ValueError(f"Unknown {what} '{term}' for the plot. Group-specific coefficients of '{factor}' "
                         f"in this model: {', '.join(valid)}.")
    return term


ROWS_INSTEAD = ("bar(), forest() and correlation() work on a fit from per-group sums; refit in memory "
                "(MLM(formula, data)) for this plot.")


# -- numbers read off the fit ---------------------------------------------------
def term_draws(fit, factor: str, term: str) -> xr.DataArray:
    """Draws of one group-specific coefficient, dims (chain, draw, group)."""
    return fit.coef_draws(factor).sel(term=term, drop=True)


def intervals(draws: xr.DataArray, prob: float) -> pd.DataFrame:
    """Posterior mean and equal-tailed interval per group (as :func:`summarise_draws` computes them)."""
    prob = check_probability(prob)
    alpha = (1 - prob) / 2
    q = draws.quantile([alpha, 1 - alpha], dim=("chain", "draw"))
    return pd.DataFrame({"mean": draws.mean(("chain", "draw")).values,
                         "lower": q.isel(quantile=0).values, "upper": q.isel(quantile=1).values},
                        index=pd.Index([str(g) for g in draws["group"].values], name="group"))


def population(fit, term: str, prob: float) -> pd.Series | None:
    """The fixed effect of ``term`` (mean, lower, upper), or None if it has none."""
    fe = fit.fixef(prob)
    if term not in fe.index:
        return None
    return fe.loc[term, ["mean", "lower", "upper"]]


def level2_parts(fit, factor: str, term: str) -> list[str]:
    """Fixed terms that move ``term``'s group coefficient with level-2 predictors."""
    ls = level_structure(fit.design, factor)
    return [name for name, l1, l2 in zip(fit.design.fixed_terms, ls.fixed_level1, ls.fixed_level2)
            if l1 == term and l2 != "1"]


def population_label(fit, factor: str, term: str, prob: float, *, also: tuple[str, ...] = ()) -> str:
    """Legend text for the population line: what it is, and what it leaves out.

    With level-2 predictors the group coefficients include their terms and
    the fixed effect alone is the coefficient at W = 0: the label says so.
    ``also`` names further coefficients the line uses (its intercept).
    """
    parts = [p for t in (term, *also) for p in level2_parts(fit, factor, t)]
    text = f"fixed effect of {term} (mean, {pct(prob)} interval)"
    if parts:
        text += f"; level-2 predictors at 0 (groups include {', '.join(parts)})"
    return text


def link_suffix(fit) -> str:
    """``" (link scale)"`` for generalized families, else empty."""
    family = fit.design.spec.family
    if family.name == "cumulative":
        return f" (latent {family.link} scale)"
    return "" if family.link == "identity" else f" ({family.link} link scale)"


def effect_label(fit, term: str) -> str:
    """Axis label of a coefficient: ``"Effect of smu"`` or ``"Intercept"``, with the scale."""
    name = "Intercept" if term == INTERCEPT else f"Effect of {term}"
    return name + link_suffix(fit)


def pct(prob: float) -> str:
    """``0.95`` -> ``"95%"``."""
    return f"{100 * prob:g}%"


def fmt(x: float) -> str:
    """A number for a title or a corner note, three significant digits."""
    return f"{x:.3g}"


def predictor(fit, term: str) -> np.ndarray:
    """The level-1 column of ``term``, one value per row used in the fit."""
    return level1_column(fit.design, term)


def group_sizes(fit, factor: str) -> pd.Series:
    """Rows per group, indexed by group label."""
    f = fit.design.factors[factor]
    return pd.Series(np.bincount(f.index, minlength=f.n_levels), index=pd.Index(f.levels, name="group"))


# -- visuals: each element nameable and switchable -------------------------------
# -- layout ---------------------------------------------------------------------
def new_axes(ax, size: tuple[float, float]):
    """The axes to draw on: the one given, or a fresh Figure's (not registered with pyplot)."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def legend_below(ax, ncol: int = 2) -> dict:
    """Legend placement under the axes and their x label, where it covers no data."""
    height = max(ax.get_position().height * ax.figure.get_figheight(), 1.0)
    return {"loc": "upper center", "bbox_to_anchor": (0.5, -0.6 / height), "ncol": ncol}


def thin(n: int, max_labels: int) -> np.ndarray:
    """Positions 0..n-1 to label so that at most ``max_labels`` are shown, evenly spaced."""
    if max_labels <= 0:
        return np.array([], dtype=int)
    step = max(1, math.ceil(n / max_labels))
    return np.arange(0, n, step)


def thinned_note(shown: np.ndarray, n: int) -> str:
    """``"1 name in 4 shown"`` when labels were thinned, else empty."""
    if len(shown) >= n:
        return ""
    step = shown[1] - shown[0] if len(shown) > 1 else n
    return f"1 name in {step} shown"


def spread(y: np.ndarray, gap: float) -> np.ndarray:
    """Positions near ``y`` at least ``gap`` apart, keeping their order (for end-of-line labels)."""
    y = np.asarray(y, dtype=float)
    order = np.argsort(y)
    out = y[order].copy()
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + gap)
    shift = (out - y[order]).mean()
    out -= shift
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + gap)
    result = np.empty_like(out)
    result[order] = out
    return result


def place_labels(ax, xs: pd.Series, ys: pd.Series, max_labels: int, kw: dict, *, priority: pd.Series | None = None,
                 avoid: tuple = ()) -> list:
    """Name points with adjustText, at most ``max_labels``; drop any label still overlapping.

    The points named first are those of highest ``priority`` (default: the
    most outlying). Placement is deterministic (a fixed number of
    iterations, not adjustText's time limit). A label that still overlaps a
    label of higher priority, covers another point, or hides under the
    legend or a corner note is removed, so what is drawn never overlaps.
    Points in ``avoid`` (x, y pairs) are kept clear too. Returns the labels
    kept.
    """
    if max_labels <= 0 or len(xs) == 0:
        return []
    if priority is None:
        priority = np.hypot((xs - xs.mean()) / (xs.std() or 1), (ys - ys.mean()) / (ys.std() or 1))
    chosen = priority.sort_values(ascending=False, kind="stable").index[:max_labels]
    texts = [ax.text(xs[g], ys[g], str(g), **kw) for g in chosen]
    x_all = np.r_[xs.to_numpy(), [a[0] for a in avoid]]
    y_all = np.r_[ys.to_numpy(), [a[1] for a in avoid]]
    panels = [a for a in [ax.get_legend(), *ax.texts] if a is not None and a not in texts and a.get_visible()]
    _, arrows = adjust_text(texts, x=x_all, y=y_all, objects=panels or None, ax=ax, expand=(1.3, 1.5), iter_lim=60,
                            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
    renderer = get_renderer(ax.figure)
    points = ax.transData.transform(np.column_stack([x_all, y_all]))
    own = {g: i for i, g in enumerate(xs.index)}
    margin = 4 * ax.figure.dpi / 72  # a marker's radius, about 4 points
    boxes = [p.get_window_extent(renderer) for p in panels]

    pad = 1.5 * ax.figure.dpi / 72  # keep names that far apart

    def clear(box, g) -> bool:
        box = Bbox.from_extents(box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad)
        inside = ((points[:, 0] > box.x0 - margin) & (points[:, 0] < box.x1 + margin)
                  & (points[:, 1] > box.y0 - margin) & (points[:, 1] < box.y1 + margin))
        inside[own[g]] = False
        return ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1) and not inside.any() \
            and not any(box.overlaps(b) for b in boxes)

    kept, dropped = [], []
    for g, t in zip(chosen, texts):
        box = t.get_window_extent(renderer)
        if clear(box, g):
            kept.append(t)
            boxes.append(box)
            continue
        for a in arrows:
            if getattr(a, "patchA", None) is t:
                a.remove()
        t.remove()
        dropped.append(g)
    for g in dropped:  # a second chance: the first free spot on rings around the point
        t = _first_free_spot(ax, g, xs[g], ys[g], kw, renderer, lambda box: clear(box, g))
        if t is not None:
            kept.append(t)
            boxes.append(t.get_window_extent(renderer))
    return kept


_ALIGN = {(1, 0): ("left", "center"), (-1, 0): ("right", "center"), (0, 1): ("center", "bottom"),
          (0, -1): ("center", "top"), (1, 1): ("left", "bottom"), (-1, 1): ("right", "bottom"),
          (1, -1): ("left", "top"), (-1, -1): ("right", "top")}


def _first_free_spot(ax, name, x: float, y: float, kw: dict, renderer, fits):
    """A label for (x, y) at the first offset (rings of 4 to 28 points, 8 directions) where ``fits`` holds."""
    for r in (4, 9, 15, 22, 28):
        for (dx, dy), (ha, va) in _ALIGN.items():
            t = ax.annotate(str(name), (x, y), xytext=(dx * r, dy * r), textcoords="offset points",
                            **{**kw, "ha": ha, "va": va},
                            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5, "shrinkA": 0, "shrinkB": 2}
                            if r > 9 else None)
            if fits(t.get_window_extent(renderer)):
                return t
            t.remove()
    return None


def clamp(x: float, lo: float, hi: float) -> float:
    """``x`` limited to ``[lo, hi]``."""
    return max(lo, min(hi, x))

"""Plots are tested on what they draw: the numbers behind each artist equal the fit's.

All tests use the session-cached ``sleep_fit`` (Reaction ~ Days + (Days | Subject),
18 subjects); nothing here fits a model.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.patches import Ellipse

import bayesmlm
import bayesmlm.plots as plots
from bayesmlm.plots import common as plot_common

TOL = 1e-9


def _gid(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist with gid {gid!r}, found {len(found)}"
    return found[0]


def _ticklabels(ax, axis="x"):
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


@pytest.fixture(scope="module")
def coef(sleep_fit):
    return sleep_fit.coef()


def _quantiles(sleep_fit, term, prob):
    """Each subject's equal-tailed interval of its coefficient, straight from the draws."""
    draws = sleep_fit.coef_draws().sel(term=term)
    flat = draws.stack(s=("chain", "draw")).transpose("group", "s").values
    alpha = (1 - prob) / 2
    lo, hi = np.quantile(flat, [alpha, 1 - alpha], axis=1)
    groups = [str(g) for g in draws["group"].values]
    return pd.DataFrame({"lower": lo, "upper": hi}, index=groups)


# -- terms -------------------------------------------------------------------------
def test_default_term_is_first_random_slope_and_intercept_spellings(sleep_fit):
    assert plot_common.resolve_term(sleep_fit, "Subject", None) == "Days"
    assert plot_common.resolve_term(sleep_fit, "Subject", "Intercept") == "(Intercept)"
    assert plot_common.resolve_term(sleep_fit, "Subject", "(Intercept)") == "(Intercept)"


def test_unknown_term_names_the_valid_ones(sleep_fit):
    with pytest.raises(ValueError, match=r"Unknown term 'Nights'.*\(Intercept\), Days"):
        plots.bar(sleep_fit, "Nights")


def test_unknown_visual_names_the_valid_ones(sleep_fit):
    with pytest.raises(ValueError, match=r"Unknown visual\(s\) 'bras'.*bars, errorbars"):
        plots.bar(sleep_fit, visuals={"bras": False})


# -- bar -----------------------------------------------------------------------------
def test_bar_heights_and_error_bars_are_coef_means_and_bounds(sleep_fit, coef):
    ax = plots.bar(sleep_fit, "Days").axes[0]
    bars = next(k for k in ax.containers if isinstance(k, BarContainer))
    errs = next(k for k in ax.containers if isinstance(k, ErrorbarContainer))
    groups = _ticklabels(ax)
    want = coef.xs("Days", level="term").loc[groups]
    assert len(groups) == 18
    np.testing.assert_allclose([p.get_height() for p in bars], want["mean"], atol=TOL)
    assert np.all(np.diff(want["mean"]) >= 0), "bars are sorted by effect"
    segments = errs.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][1] for s in segments], want["lower"], atol=TOL)
    np.testing.assert_allclose([s[1][1] for s in segments], want["upper"], atol=TOL)


def test_bar_population_line_and_band_are_the_fixed_effect(sleep_fit):
    ax = plots.bar(sleep_fit, "Days").axes[0]
    fe = sleep_fit.fixef().loc["Days"]
    line = next(ln for ln in ax.lines if ln.get_label().startswith("fixed effect of Days"))
    assert line.get_ydata()[0] == pytest.approx(fe["mean"], abs=TOL)
    band = ax.patches[0].get_extents()  # axhspan: the first patch, behind the bars
    lo, hi = ax.transData.inverted().transform([[0, band.y0], [0, band.y1]])[:, 1]
    assert (lo, hi) == pytest.approx((fe["lower"], fe["upper"]), rel=1e-6)


def test_bar_visuals_switch_elements_off(sleep_fit):
    ax = plots.bar(sleep_fit, visuals={"errorbars": False, "legend": False, "bars": {"color": "k"}}).axes[0]
    assert not any(isinstance(k, ErrorbarContainer) for k in ax.containers)
    assert ax.get_legend() is None
    bars = next(k for k in ax.containers if isinstance(k, BarContainer))
    assert bars[0].get_facecolor()[:3] == (0, 0, 0)


# -- forest ----------------------------------------------------------------------------
def test_forest_intervals_are_each_groups_own_quantiles(sleep_fit, coef):
    ax = plots.forest(sleep_fit, "Days", probs=(0.5, 0.95)).axes[0]
    groups = _ticklabels(ax, "y")
    assert sorted(groups) == sorted(coef.index.get_level_values("group").unique())
    for gid, prob in (("inner", 0.5), ("outer", 0.95)):
        seg = np.array(_gid(ax, gid).get_segments())
        want = _quantiles(sleep_fit, "Days", prob).loc[groups]
        np.testing.assert_allclose(seg[:, 0, 0], want["lower"], rtol=1e-9)
        np.testing.assert_allclose(seg[:, 1, 0], want["upper"], rtol=1e-9)
        widths = seg[:, 1, 0] - seg[:, 0, 0]
        assert widths.std() > 0.01 * widths.mean(), "intervals differ across groups"
    points = _gid(ax, "points").get_offsets()
    np.testing.assert_allclose(points[:, 0], coef.xs("Days", level="term").loc[groups, "mean"], atol=TOL)


def test_forest_top_k_shows_the_extremes(sleep_fit, coef):
    ax = plots.forest(sleep_fit, "Days", top=3).axes[0]
    order = coef.xs("Days", level="term")["mean"].sort_values().index
    assert _ticklabels(ax, "y") == list(order[:3]) + list(order[-3:])
    assert any("12 Subject groups" in t.get_text() for t in ax.texts)


def test_forest_rejects_bad_probs(sleep_fit):
    with pytest.raises(ValueError, match="0 < inner < outer < 1"):
        plots.forest(sleep_fit, probs=(0.95, 0.5))


# -- slopes ------------------------------------------------------------------------------
def test_slopes_lines_are_posterior_mean_lines_over_each_groups_range(sleep_fit, coef):
    ax = plots.slopes(sleep_fit, "Days", highlight=0).axes[0]
    seg = np.array(ax.collections[0].get_segments())
    data = sleep_fit.design.data
    days = data.groupby(data["Subject"].astype(str))["Days"]
    groups = list(sleep_fit.design.factors["Subject"].levels)
    b0 = coef.xs("(Intercept)", level="term").loc[groups, "mean"].to_numpy()
    b1 = coef.xs("Days", level="term").loc[groups, "mean"].to_numpy()
    lo, hi = days.min().loc[groups].to_numpy(), days.max().loc[groups].to_numpy()
    np.testing.assert_allclose(seg[:, 0, 0], lo)
    np.testing.assert_allclose(seg[:, 1, 0], hi)
    np.testing.assert_allclose(seg[:, 0, 1], b0 + b1 * lo, rtol=1e-9)
    np.testing.assert_allclose(seg[:, 1, 1], b0 + b1 * hi, rtol=1e-9)
    fe = sleep_fit.fixef()["mean"]
    pop = next(ln for ln in ax.lines if ln.get_label().startswith("population line"))
    x, y = pop.get_data()
    np.testing.assert_allclose(y, fe["(Intercept)"] + fe["Days"] * x, rtol=1e-9)


def test_slopes_highlights_named_groups_and_rejects_unknown(sleep_fit):
    ax = plots.slopes(sleep_fit, highlight=["308", "335"]).axes[0]
    assert {t.get_text().split()[0] for t in ax.texts} == {"308", "335"}
    with pytest.raises(ValueError, match="Unknown Subject '999'"):
        plots.slopes(sleep_fit, highlight=["999"])
    with pytest.raises(ValueError, match="intercept"):
        plots.slopes(sleep_fit, "Intercept")


# -- correlation ---------------------------------------------------------------------------
def test_correlation_points_ellipse_and_note(sleep_fit, coef):
    fig = plots.correlation(sleep_fit, x="Days", y="Intercept")
    ax = fig.axes[0]
    groups = list(sleep_fit.design.factors["Subject"].levels)
    pts = _gid(ax, "points").get_offsets()
    np.testing.assert_allclose(pts[:, 0], coef.xs("Days", level="term").loc[groups, "mean"], atol=TOL)
    np.testing.assert_allclose(pts[:, 1], coef.xs("(Intercept)", level="term").loc[groups, "mean"], atol=TOL)
    # Ellipse: centred at the fixed effects, its 95% contour from T at its posterior mean.
    post = sleep_fit.posterior
    sd = post["sd_Subject"]
    s0, s1 = sd.sel(Subject_term="(Intercept)"), sd.sel(Subject_term="Days")
    rho = post["cor_Subject"].isel(Subject_pair=0)
    T = np.array([[float((s1**2).mean()), float((s0 * s1 * rho).mean())],
                  [float((s0 * s1 * rho).mean()), float((s0**2).mean())]])
    ellipses = sorted((p for p in ax.patches if isinstance(p, Ellipse)), key=lambda e: e.width)
    assert len(ellipses) == 2
    fe = sleep_fit.fixef()["mean"]
    assert ellipses[1].center == pytest.approx((fe["Days"], fe["(Intercept)"]))
    r2 = -2 * np.log(0.05)
    axes = np.sort([ellipses[1].width, ellipses[1].height]) / 2
    np.testing.assert_allclose(axes**2 / r2, np.linalg.eigvalsh(T), rtol=1e-9)
    vc = sleep_fit.varcorr()
    cor = vc[vc.var2 != ""].iloc[0]
    title = ax.get_title()
    assert f"posterior mean {cor['mean']:.2f}, 95% interval {cor['lower']:.2f} to {cor['upper']:.2f}" in title
    assert any(t.get_text() == "named: 18 of 18 Subject groups" for t in ax.texts)


def test_correlation_labels_name_every_group_without_overlap(sleep_fit):
    fig = plots.correlation(sleep_fit)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(t.get_text() for t in labels) == sorted(sleep_fit.design.factors["Subject"].levels)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_correlation_needs_two_terms(sleep_fit):
    with pytest.raises(ValueError, match="two different terms"):
        plots.correlation(sleep_fit, x="Days", y="Days")


# -- shrinkage ---------------------------------------------------------------------------------
def test_shrinkage_arrows_run_from_least_squares_to_posterior_means(sleep_fit, coef):
    ax = plots.shrinkage(sleep_fit, "Days").axes[0]
    arrows = _gid(ax, "arrows")
    data = sleep_fit.design.data
    groups = list(sleep_fit.design.factors["Subject"].levels)
    # The separate least-squares fit of each subject, computed here independently.
    ols = {g: np.polyfit(d["Days"], d["Reaction"], 1) for g, d in data.groupby(data["Subject"].astype(str))}
    np.testing.assert_allclose(arrows.X, [ols[g][0] for g in groups], rtol=1e-8)
    np.testing.assert_allclose(arrows.Y, [ols[g][1] for g in groups], rtol=1e-8)
    np.testing.assert_allclose(arrows.X + arrows.U, coef.xs("Days", level="term").loc[groups, "mean"], rtol=1e-9)
    np.testing.assert_allclose(arrows.Y + arrows.V, coef.xs("(Intercept)", level="term").loc[groups, "mean"],
                               rtol=1e-9)
    star = next(c for c in ax.collections if c.get_label().startswith("complete pooling"))
    pooled = np.polyfit(data["Days"], data["Reaction"], 1)
    np.testing.assert_allclose(star.get_offsets()[0], pooled, rtol=1e-8)


def test_shrinkage_size_view_puts_group_size_on_x(sleep_fit, coef):
    ax = plots.shrinkage(sleep_fit, "Days", view="size", visuals={"labels": False}).axes[0]
    arrows = _gid(ax, "arrows")
    np.testing.assert_allclose(arrows.X, 10)  # every subject has 10 days
    np.testing.assert_allclose(arrows.U, 0)
    groups = list(sleep_fit.design.factors["Subject"].levels)
    np.testing.assert_allclose(arrows.Y + arrows.V, coef.xs("Days", level="term").loc[groups, "mean"], rtol=1e-9)
    with pytest.raises(ValueError, match="Valid views: auto, plane, size"):
        plots.shrinkage(sleep_fit, view="circle")


# -- scale, saving -------------------------------------------------------------------------------
def test_generalized_families_label_the_link_scale():
    def fit_of(name, link):
        return SimpleNamespace(design=SimpleNamespace(spec=SimpleNamespace(family=SimpleNamespace(name=name, link=link))))

    assert plot_common.effect_label(fit_of("bernoulli", "logit"), "x") == "Effect of x (logit link scale)"
    assert plot_common.effect_label(fit_of("gaussian", "identity"), "x") == "Effect of x"
    assert plot_common.effect_label(fit_of("cumulative", "probit"), "x") == "Effect of x (latent probit scale)"


def test_many_groups_thin_the_names_and_say_so(sleep_fit):
    ax = plots.bar(sleep_fit, max_labels=5).axes[0]
    assert len(ax.get_xticks()) == 5 and "1 name in 4 shown" in ax.get_xlabel()
    ax = plots.correlation(sleep_fit, max_labels=5).axes[0]
    names = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    assert 1 <= len(names) <= 5
    assert any(t.get_text() == f"named: {len(names)} of 18 Subject groups" for t in ax.texts)


def test_thin_keeps_at_most_max_labels():
    assert len(plot_common.thin(1000, 80)) <= 80
    assert list(plot_common.thin(10, 80)) == list(range(10))


def test_fits_from_per_group_sums_refuse_the_plots_that_need_rows(tmp_path):
    """A fit from MLM.from_files keeps no rows: slopes and shrinkage say so, save_all skips them."""
    bayesmlm.datasets.load("sleepstudy").to_csv(tmp_path / "sleep.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        fit = bayesmlm.MLM.from_files("Reaction ~ Days + (Days | Subject)", tmp_path / "sleep.csv").fit(
            draws=100, tune=100, chains=2, seed=3, progressbar=False)
    for plot in (plots.slopes, plots.shrinkage):
        with pytest.raises(ValueError, match="per-group sums"):
            plot(fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = plots.save_all(fit, tmp_path / "figs", formats=("png",), dpi=40)
    assert sorted(p.name for p in written) == ["bar.png", "correlation.png", "forest.png"]
    skipped = sorted(str(w.message).split(":")[0] for w in caught if "skipped" in str(w.message))
    assert skipped == ["save_all skipped the shrinkage plot", "save_all skipped the slopes plot"]


def test_save_all_writes_five_png_and_five_svg(sleep_fit, tmp_path):
    written = plots.save_all(sleep_fit, tmp_path / "figs", dpi=60)
    names = sorted(p.name for p in written)
    assert names == ["bar.png", "bar.svg", "correlation.png", "correlation.svg", "forest.png", "forest.svg",
                     "shrinkage.png", "shrinkage.svg", "slopes.png", "slopes.svg"]
    for p in written:
        head = p.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in p.read_bytes()[:2000]


def test_forest_draws_the_no_effect_line_for_a_slope_not_for_the_intercept(sleep_fit):
    def zero_lines(ax):
        return [ln for ln in ax.lines if np.allclose(ln.get_xdata(), 0) and ln.get_linestyle() == ":"]

    assert len(zero_lines(plots.forest(sleep_fit, "Days").axes[0])) == 1
    intercept = plots.forest(sleep_fit, "Intercept").axes[0]
    assert zero_lines(intercept) == [] and intercept.get_xlim()[0] > 0  # the groups spread over their own range
    assert len(zero_lines(plots.forest(sleep_fit, "Intercept", visuals={"zero": {}}).axes[0])) == 1

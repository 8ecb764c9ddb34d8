"""Several grouping factors: three-level equations, nesting read from the data, tables, partition, plots, report.

One small fit, made once per session: lme4's Pastes (strength ~ 1 + (1 | batch/cask), 60 rows, nested,
random intercepts) for the tables, the variance partition and the comparison with lme4, by today's full
model (method="full"), whose posterior names every route shares (bayesmlm.schema). The plots of a
non-first factor are checked on a simulated three-level model with a random slope on the inner factor
whose draws are the model's prior draws: what a plot draws must equal the fit's tables whatever the
draws are, and prior draws cost seconds where compiling a sampler costs half a minute.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import cached_fit, reference
from matplotlib.container import BarContainer

import bayesmlm
import bayesmlm.plots as plots
from bayesmlm.design.structure import classify_pair
from bayesmlm.report.sections import report_sections
from bayesmlm.results.fit import Fit
from bayesmlm.results.partition import residual_variance
from bayesmlm.results.record import FitRecord
from bayesmlm.sample.nuts import Diagnostics, SamplerSettings
from bayesmlm.spec.formula import parse_formula

DRAWS = dict(draws=200, tune=200, chains=2, method="full", progressbar=False)


def _schools(seed: int = 12, n_school: int = 12, n_class: int = 4, n_pupil: int = 8) -> pd.DataFrame:
    """Pupils in classes in schools; class labels 1..4 repeat in every school; school-level sector, class-level size."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_school), n_class * n_pupil)
    klass = np.tile(np.repeat(np.arange(1, n_class + 1), n_pupil), n_school)
    cid = school * n_class + klass - 1
    x = rng.normal(size=len(school))
    u = rng.normal(0, 1.0, n_school)[school]
    r0, r1 = rng.normal(0, 0.7, n_school * n_class)[cid], rng.normal(0, 0.5, n_school * n_class)[cid]
    sector = (np.arange(n_school) % 2)[school]
    size = rng.integers(15, 30, n_school * n_class)[cid]
    y = 1.0 + 0.5 * x + 0.4 * sector + u + r0 + r1 * x + rng.normal(0, 1.0, len(x))
    return pd.DataFrame({"school": [f"s{s:02d}" for s in school], "class": klass, "x": x, "sector": sector,
                         "size": size, "y": y})


@pytest.fixture(scope="module")
def pastes_fit(fit_cache):
    data = bayesmlm.datasets.load("pastes")
    return cached_fit(fit_cache, "pastes_nested_full", lambda: bayesmlm.MLM(
        "strength ~ 1 + (1 | batch/cask)", data).fit(seed=3, **DRAWS))


def _prior_fit(m: bayesmlm.MLM, seed: int) -> Fit:
    """A Fit of ``m`` whose 2 x 200 "posterior" draws are the model's prior draws (no sampler compiled)."""
    prior = m.prior_predictive(draws=400, seed=seed)["prior"].to_dataset().isel(chain=0, drop=True)
    posterior = prior.coarsen(draw=200).construct(draw=("chain", "draw")).assign_coords(chain=[0, 1],
                                                                                         draw=np.arange(200))
    settings = SamplerSettings(draws=200, tune=0, chains=2, seed=5).resolved()
    record = FitRecord(settings, "full", Diagnostics(1.0, 400.0, 400.0, 0, ()), 0.0, 0.0, m.design.n_obs, 0)
    return Fit(m.design, m.prior_dict, xr.DataTree.from_dict({"posterior": posterior}), record)


@pytest.fixture(scope="module")
def slopes_fit():
    """y ~ 1 + x + (1 | school) + (1 + x | school:class), with prior draws."""
    m = bayesmlm.MLM.from_levels("y ~ 1 + x", group=("school", "class"), fixed={"school": ["x"]}, data=_schools())
    return _prior_fit(m, seed=5)


# -- input: level equations -----------------------------------------------------------------------------
def test_three_level_equations_give_the_formula_and_the_textbook_equations():
    m = bayesmlm.MLM.from_levels("y ~ 1 + x", {"1": "~ 1 + size", "x": "~ 1 + size"}, group=("school", "class"),
                                 level3={"1": "~ 1 + sector", "x": "~ 1 + sector"},
                                 fixed={"school": ["size", "x:size"]}, data=_schools())
    assert m.formula == ("y ~ 1 + sector + size + x + x:sector + x:size + (1 + x | school) + (1 + x | school:class)")
    eq = m.equations()
    assert eq.level1_text == "y_ijk = π0_jk + π1_jk·x_ijk + e_ijk"
    assert eq.level2_text == ("π0_jk = β00_k + β01_k·size_jk + r0_jk", "π1_jk = β10_k + β11_k·size_jk + r1_jk")
    assert eq.level3_text == ("β00_k = γ000 + γ001·sector_k + u00_k", "β01_k = γ010",
                              "β10_k = γ100 + γ101·sector_k + u10_k", "β11_k = γ110")
    assert eq.combined_text == ("y_ijk = γ000 + γ001·sector_k + γ010·size_jk + γ100·x_ijk + γ101·sector_k·x_ijk + "
                                "γ110·size_jk·x_ijk + u00_k + u10_k·x_ijk + r0_jk + r1_jk·x_ijk + e_ijk")
    assert eq.random_text == ("(r0_jk, r1_jk) ~ N(0, [τπ(00) τπ(01); τπ(01) τπ(11)]); "
                              "(u00_k, u10_k) ~ N(0, [τβ(00,00) τβ(00,10); τβ(00,10) τβ(10,10)]); e_ijk ~ N(0, σ²)")
    assert eq.level1 == r"\text{y}_{ijk} = \pi_{0jk} + \pi_{1jk} \text{x}_{ijk} + e_{ijk}"
    assert eq.level3[0] == r"\beta_{00k} = \gamma_{000} + \gamma_{001} \text{sector}_{k} + u_{00k}"
    latex = eq._repr_latex_()
    assert latex.startswith(r"$\begin{aligned}") and r"\tau_{\beta\,00,10}" in latex and eq.level3[3] in latex
    assert str(eq).splitlines()[5] == "Level 3:"


def test_a_formula_with_nested_factors_reads_as_three_levels():
    eq = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes")).equations()
    assert (eq.level1_text, eq.level2_text, eq.level3_text) == (
        "strength_ijk = π0_jk + e_ijk", ("π0_jk = β00_k + r0_jk",), ("β00_k = γ000 + u00_k",))
    assert eq.combined_text == "strength_ijk = γ000 + u00_k + r0_jk + e_ijk"
    two = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy")).equations()
    assert two.level3 == () and "Level 3" not in str(two)


def test_the_parser_reads_nesting_and_slopes_at_any_level():
    a, b = parse_formula("y ~ 1 + (1 | a/b)"), parse_formula("y ~ 1 + (1 | a) + (1 | a:b)")
    assert a.random == b.random and a.groups == ("a", "a:b")
    s = parse_formula("y ~ x + (1 + x | school) + (1 | school:class)")
    assert [(r.group, r.expr, r.correlated) for r in s.random] == [("school", "1 + x", True),
                                                                    ("school:class", "1", False)]


def test_three_level_input_errors_name_what_to_write():
    data = _schools()
    with pytest.raises(bayesmlm.SpecError, match=r"fixed=\{'class': \[\.\.\.\], 'school': \[\.\.\.\]\}"):
        bayesmlm.MLM.from_levels("y ~ 1 + x", group=("school", "class"), fixed=["x"], data=data)
    with pytest.raises(bayesmlm.SpecError, match=r"not level-2 coefficients.*\['1', 'size', 'x'\]"):
        bayesmlm.MLM.from_levels("y ~ 1 + x", {"1": "~ 1 + size"}, group=("school", "class"),
                                 level3={"x:size": "~ 1"}, data=data)
    with pytest.raises(bayesmlm.SpecError, match="level3 needs three levels"):
        bayesmlm.MLM.from_levels("y ~ 1 + x", group="school", level3={"1": "~ 1 + sector"}, data=data)
    with pytest.raises(bayesmlm.DataError, match=r"level3\['1'\] uses 'size', which varies within groups of 'school'"):
        bayesmlm.MLM.from_levels("y ~ 1 + x", group=("school", "class"), level3={"1": "~ 1 + size"}, data=data)
    with pytest.raises(bayesmlm.DataError, match=r"level2\['1'\] uses 'x', which varies within groups of 'school:class'"):
        bayesmlm.MLM.from_levels("y ~ 1", {"1": "~ 1 + x"}, group=("school", "class"), data=data)


# -- input: nesting read from the data ---------------------------------------------------------------------
def test_pairs_are_classified_from_the_data():
    school, klass = np.repeat([0, 1], 4), np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert classify_pair(school, klass) == classify_pair(klass, school) == "nested"
    assert classify_pair(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == "crossed"
    assert classify_pair(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 2, 2])) == "partially crossed"
    assert classify_pair(school, school[::-1]) == "same groups"
    pen = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin")).structure
    assert pen.relation("sample", "plate") == "crossed" and pen.hierarchy is None
    nested = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes")).structure
    row = nested.pairs.iloc[0]
    assert (row.outer, row.inner, row.relation, row.cells) == ("batch", "batch:cask", "nested", 30)
    assert nested.hierarchy == ("batch", "batch:cask") and nested.parents["batch:cask"] == ("batch",)


def test_labels_repeated_across_parents_written_as_crossed_warn_and_change_nothing():
    data = bayesmlm.datasets.load("pastes")
    with pytest.warns(bayesmlm.NestingWarning, match=r"labels of 'cask' repeat across 'batch'.*\(1 \| batch/cask\)"):
        m = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | cask)", data)
    assert m.spec.groups == ("batch", "cask") and m.design.factors["cask"].n_levels == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayesmlm.NestingWarning)
        bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", data)
        bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
        # Students rate lecturers of a few departments each: crossed, with no common numbering; no warning.
        rng = np.random.default_rng(1)
        rows = pd.DataFrame({"s": np.repeat(np.arange(40), 6), "dept": rng.integers(0, 8, 240)})
        rows = pd.concat([rows, rows]).assign(y=rng.normal(size=480))
        bayesmlm.MLM("y ~ 1 + (1 | s) + (1 | dept)", rows)


# -- tables -------------------------------------------------------------------------------------------
def test_varcorr_and_ranef_of_every_factor_are_the_draws_summaries(pastes_fit):
    post = pastes_fit.posterior
    vc = pastes_fit.varcorr().set_index("group")
    for label, var in (("batch", "sd_batch"), ("batch:cask", "sd_batch_cask")):
        d = post[var].values.ravel()
        assert vc.loc[label, "mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert vc.loc[label, "lower"] == pytest.approx(np.quantile(d, 0.025), rel=1e-9)
    inner = pastes_fit.ranef(factor="batch:cask")
    u = post["u_batch_cask"].mean(("chain", "draw")).to_series()
    assert len(inner) == 30
    np.testing.assert_allclose(inner["mean"].to_numpy(), u.to_numpy(), rtol=1e-12)
    assert list(pastes_fit.ranef().index.get_level_values("group")) == list("ABCDEFGHIJ"), "default: the first factor"
    coef = pastes_fit.coef(factor="batch:cask")
    gamma = post["fixef"].values.ravel()
    np.testing.assert_allclose(coef["mean"].to_numpy(),
                               gamma.mean() + post["u_batch_cask"].mean(("chain", "draw")).values.ravel(), rtol=1e-9)
    with pytest.raises(bayesmlm.ArgumentError, match="Unknown grouping factor 'cask'.*batch, batch:cask"):
        pastes_fit.ranef(factor="cask")


def test_variance_partition_is_the_draws_shares_and_correlations(pastes_fit):
    post = pastes_fit.posterior
    s2b, s2c, s2e = (post[v].values.ravel() ** 2 for v in ("sd_batch", "sd_batch_cask", "sigma"))
    total = s2b + s2c + s2e
    want = {("share", "batch"): s2b / total, ("share", "batch:cask"): s2c / total, ("share", "Residual"): s2e / total,
            ("correlation", "same batch, different batch:cask"): s2b / total,
            ("correlation", "same batch:cask"): (s2b + s2c) / total}
    table = pastes_fit.variance_partition()
    assert list(table.index) == list(want)
    for key, draws in want.items():
        assert table.loc[key, "mean"] == pytest.approx(draws.mean(), rel=1e-10)
        assert table.loc[key, "upper"] == pytest.approx(np.quantile(draws, 0.975), rel=1e-9)
    icc = pastes_fit.icc()
    assert icc.loc["batch:cask", "mean"] == pytest.approx(table.loc[("share", "batch:cask"), "mean"], rel=1e-12)


def test_variance_partition_is_near_lme4s_reml_on_pastes(pastes_fit):
    # lmer(strength ~ 1 + (1 | batch/cask), data = Pastes), lme4 1.1-31 (tests/reference/pastes.json)
    sd = reference("pastes")["sd"]
    b, c, e = sd["batch:(Intercept)"] ** 2, sd["cask:batch:(Intercept)"] ** 2, sd["Residual"] ** 2
    lme4 = {("share", "batch"): b / (b + c + e), ("share", "batch:cask"): c / (b + c + e),
            ("correlation", "same batch:cask"): (b + c) / (b + c + e)}
    cmp = pastes_fit.compare_frequentist()
    for key, value in lme4.items():
        assert cmp.partition.loc[key, "freq_estimate"] == pytest.approx(value, rel=1e-3)
        row = cmp.partition.loc[key]
        assert abs(row["bayes_mean"] - value) < row["bayes_sd"], key
    # The BLUPs of both factors are lme4's conditional modes (lme4 labels the inner factor cask:batch).
    modes = {f"{k.split(':')[1]}:{k.split(':')[0]}": v["(Intercept)"] for k, v in reference("pastes")["ranef"]["cask:batch"].items()}
    blups = cmp.groups_by_factor["batch:cask"]["freq_estimate"].droplevel("term")
    np.testing.assert_allclose(blups.loc[list(modes)].to_numpy(), list(modes.values()), rtol=1e-3, atol=1e-3)
    assert set(cmp.groups_by_factor) == {"batch", "batch:cask"}


def test_crossed_partition_and_comparison_on_penicillin():
    # lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin), lme4 1.1-31 (tests/reference/penicillin.json)
    m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    fit = _prior_fit(m, seed=2)
    sd = reference("penicillin")["sd"]
    p, s, e = sd["plate:(Intercept)"] ** 2, sd["sample:(Intercept)"] ** 2, sd["Residual"] ** 2
    cmp = fit.compare_frequentist()
    want = {("share", "plate"): p / (p + s + e), ("share", "sample"): s / (p + s + e),
            ("correlation", "same plate, different sample"): p / (p + s + e),
            ("correlation", "same sample, different plate"): s / (p + s + e),
            ("correlation", "same plate and sample"): (p + s) / (p + s + e)}
    assert list(cmp.partition.drop(("share", "Residual")).index) == list(want)
    for key, value in want.items():
        assert cmp.partition.loc[key, "freq_estimate"] == pytest.approx(value, rel=1e-3), key
    post = fit.posterior
    v = {f: post[f"sd_{f}"].values.ravel() ** 2 for f in ("plate", "sample")}
    total = v["plate"] + v["sample"] + post["sigma"].values.ravel() ** 2
    assert cmp.partition.loc[("correlation", "same plate and sample"), "bayes_mean"] == pytest.approx(
        ((v["plate"] + v["sample"]) / total).mean(), rel=1e-10)
    assert set(cmp.groups_by_factor) == {"plate", "sample"} and len(cmp.groups_by_factor["sample"]) == 6
    assert cmp.variance.set_index("group").loc["sample", "freq_estimate"] == pytest.approx(sd["sample:(Intercept)"],
                                                                                          rel=1e-3)


def test_latent_scale_partition_of_a_logit_model(ucb_fit):
    s2 = ucb_fit.posterior["sd_Dept"].values.ravel() ** 2
    table = ucb_fit.variance_partition()
    assert table.loc[("share", "Dept"), "mean"] == pytest.approx((s2 / (s2 + np.pi**2 / 3)).mean(), rel=1e-10)
    assert "pi^2/3" in table.attrs["scale"]
    poisson = bayesmlm.MLM("TICKS ~ 1 + (1 | LOCATION/BROOD)", bayesmlm.datasets.load("grouseticks"), family="poisson")
    with pytest.raises(bayesmlm.UnsupportedModelError, match="log link"):
        residual_variance(poisson.design)


def test_partition_refuses_random_slopes(slopes_fit):
    with pytest.raises(ValueError, match=r"random slopes \(school:class: x\)"):
        slopes_fit.variance_partition()


# -- plots of a factor other than the first -------------------------------------------------------------
def test_bar_and_forest_of_the_inner_factor_draw_its_coefficients(slopes_fit):
    coef = slopes_fit.coef(factor="school:class").xs("x", level="term")
    ax = plots.bar(slopes_fit, "x", factor="school:class").axes[0]
    bars = next(k for k in ax.containers if isinstance(k, BarContainer))
    groups = [t.get_text() for t in ax.get_xticklabels()]
    assert len(groups) == 48 and groups[0].startswith("s")
    np.testing.assert_allclose([p.get_height() for p in bars], coef.loc[groups, "mean"], atol=1e-9)
    ax = plots.forest(slopes_fit, "x", factor="school:class").axes[0]
    pts = next(a for a in ax.get_children() if a.get_gid() == "points").get_offsets()
    np.testing.assert_allclose(pts[:, 0], coef.loc[[t.get_text() for t in ax.get_yticklabels()], "mean"], atol=1e-9)
    default = plots.bar(slopes_fit, "Intercept").axes[0]
    assert len(default.get_xticklabels()) == 12, "default: the first factor, school"
    with pytest.raises(bayesmlm.ArgumentError, match="Unknown grouping factor 'class'.*school, school:class"):
        plots.bar(slopes_fit, factor="class")


def test_slopes_correlation_and_shrinkage_of_the_inner_factor(slopes_fit):
    coef = slopes_fit.coef(factor="school:class")
    levels = list(slopes_fit.design.factors["school:class"].levels)
    b0 = coef.xs("(Intercept)", level="term").loc[levels, "mean"].to_numpy()
    b1 = coef.xs("x", level="term").loc[levels, "mean"].to_numpy()
    seg = np.array(plots.slopes(slopes_fit, "x", factor="school:class", highlight=0).axes[0].collections[0].get_segments())
    np.testing.assert_allclose(seg[:, 0, 1], b0 + b1 * seg[:, 0, 0], rtol=1e-9)
    ax = plots.correlation(slopes_fit, x="x", factor="school:class", visuals={"labels": False}).axes[0]
    pts = next(a for a in ax.get_children() if a.get_gid() == "points").get_offsets()
    np.testing.assert_allclose(pts, np.column_stack([b1, b0]), atol=1e-9)
    arrows = next(a for a in plots.shrinkage(slopes_fit, "x", factor="school:class").axes[0].get_children()
                  if a.get_gid() == "arrows")
    np.testing.assert_allclose(arrows.X + arrows.U, b1, rtol=1e-9)
    data = slopes_fit.design.data
    first = data[(data["school"] == "s00") & (data["class"] == 1)]
    assert arrows.X[0] == pytest.approx(np.polyfit(first["x"], first["y"], 1)[0], rel=1e-8)


# -- report ------------------------------------------------------------------------------------------------
def test_report_has_the_partition_and_a_section_per_factor(pastes_fit):
    sections = {s.key: s for s in report_sections(pastes_fit, which=(), compare=True)}
    assert [k for k in sections if k.startswith("factor:")] == ["factor:batch", "factor:batch:cask"]
    tables = {b.name: b for b in sections["variance"].blocks if getattr(b, "name", None)}
    part = pastes_fit.variance_partition()
    np.testing.assert_allclose(tables["variance_partition"].frame["mean"], part["mean"])
    text = sections["variance"].to_text()
    assert "Two observations in the same batch:cask: correlation" in text
    inner = sections["factor:batch:cask"]
    assert "30 groups of batch:cask, nested in batch." in inner.to_text()
    assert [im.filename for im in inner.images()] == ["plots/forest_batch_cask.png"]
    names = {getattr(b, "name", None) for b in sections["frequentist"].blocks}
    assert {"frequentist_partition", "frequentist_groups", "frequentist_groups_batch_cask"} <= names

"""The frequentist side of the comparison (the engine through the package's designs) against lme4, and the Comparison.

References (lme4 1.1-31; each R call is in its tests/reference/*.json, scripts/references/lme4_references.R makes them):
  sleepstudy.json  lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
  hsb82.json       lmer(mAch ~ meanses * cses + sector * cses + (1 + cses | school), data = Hsb82)
  radon.json       lmer(log_radon ~ floor + log_uranium + (1 + floor | county), data = radon)
"Three significant digits": the two numbers differ by less than half a unit
in the third significant digit of lme4's. Conditional modes are compared on
the scale of their term (half a unit in the third digit of the largest).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import reference
from matplotlib.figure import Figure

import bayesmlm
from bayesmlm import UnsupportedModelError
from bayesmlm.comparison.frequentist import Comparison, compare_frequentist, frequentist_tables

HSB = "mAch ~ meanses * cses + sector * cses + (1 + cses | school)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _unit3(x: float) -> float:
    """Half a unit in the third significant digit of x."""
    return 0.5 * 10.0 ** (np.floor(np.log10(abs(x))) - 2)


def _same3(ours: float, lme4: float, what: str) -> None:
    assert abs(ours - lme4) < _unit3(lme4), f"{what}: ours {ours:.6g}, lme4 {lme4:.6g}"


def _lme4_term(term: str, ours) -> str:
    """Our name of an lme4 term: interactions may list their parts in another order (cses:sectorPublic)."""
    matches = [t for t in ours if sorted(t.split(":")) == sorted(term.split(":"))]
    assert len(matches) == 1, f"lme4's term {term} has no single match among {list(ours)}"
    return matches[0]


def _check_against_lme4(fixed: pd.DataFrame, variance: pd.DataFrame, ranef: pd.DataFrame, ref: dict, est: str, se: str):
    for term, r in ref["fixef"].items():
        ours = fixed.loc[_lme4_term(term, fixed.index)]
        _same3(ours[est], r["estimate"], f"fixef {term}")
        _same3(ours[se], r["se"], f"se {term}")
    vc = variance.set_index(["group", "var1", "var2"])
    for key, value in ref["sd"].items():
        group, _, term = key.partition(":")
        _same3(vc.loc[("Residual", "", "") if key == "Residual" else (group, term, ""), est], value, f"sd {key}")
    for key, value in ref["cor"].items():
        group, a, b = key.split(":")
        _same3(vc.loc[(group, a, b), est], value, f"cor {key}")
    modes = pd.Series({(g, t): v for g, terms in ref["ranef"].items() for t, v in terms.items()})
    for term, m in modes.groupby(level=1):
        ours = ranef[est].loc[m.index]
        assert np.max(np.abs(ours - m)) < _unit3(m.abs().max()), f"conditional modes of {term}"


@pytest.mark.parametrize("name, formula", [("sleepstudy", SLEEP), ("hsb82", HSB),
                                           ("radon", "log_radon ~ floor + log_uranium + (1 + floor | county)")])
def test_reml_fit_equals_lme4(name, formula):
    ff = frequentist_tables(bayesmlm.MLM(formula, bayesmlm.datasets.load(name)).design)
    ref = reference(name)
    assert ff.method == "reml" and ff.converged and not ff.singular and ff.singular == ref["singular"]
    (factor,) = ff.ranef
    _check_against_lme4(ff.fixed, ff.variance, ff.ranef[factor], ref, "estimate", "se")
    assert not ff.variance["boundary"].any()


def test_ml_and_uncorrelated_fits_equal_lme4():
    data = bayesmlm.datasets.load("sleepstudy")
    # summary(lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE))
    ml = frequentist_tables(bayesmlm.MLM(SLEEP, data).design, method="ml")
    for term, est, se in [("(Intercept)", 251.405, 6.632), ("Days", 10.467, 1.502)]:
        _same3(ml.fixed.loc[term, "estimate"], est, term)
        _same3(ml.fixed.loc[term, "se"], se, term)
    _same3(ml.variance["estimate"].iloc[0], 23.78, "sd (Intercept)")
    _same3(ml.variance["estimate"].iloc[1], 5.717, "sd Days")
    assert ml.loglik == pytest.approx(-875.9697, abs=1e-3)  # logLik(): -875.9697 (df = 6)
    # summary(lmer(Reaction ~ Days + (Days || Subject), sleepstudy)): two blocks, no correlation
    for formula in ("Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"):
        ff = frequentist_tables(bayesmlm.MLM(formula, data).design)
        assert ff.variance[["group", "var1", "var2"]].values.tolist() == [["Subject", "(Intercept)", ""],
                                                                          ["Subject.1", "Days", ""], ["Residual", "", ""]]
        for value, lme4 in zip(ff.variance["estimate"], (25.05, 5.988, 25.57)):
            _same3(value, lme4, formula)
        _same3(ff.fixed.loc["Days", "se"], 1.560, "se Days")
        assert ff.loglik == pytest.approx(-871.8347, abs=1e-3)  # REML criterion 1743.7 = -2 logLik


def test_conditional_modes_are_statsmodels_blups():
    # statsmodels stays a test dependency for this one independent check of the engine's BLUPs.
    from statsmodels.regression.mixed_linear_model import MixedLM

    design = bayesmlm.MLM(SLEEP, bayesmlm.datasets.load("sleepstudy")).design
    ff = frequentist_tables(design)
    sm = MixedLM(design.y, design.X, design.factors["Subject"].index, exog_re=design.blocks[0].Z).fit(method=["lbfgs"])
    theirs = np.vstack([sm.random_effects[j] for j in range(18)])
    ours = ff.ranef["Subject"]["estimate"].to_numpy().reshape(18, 2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    cond_sd = np.sqrt(np.diag(sm.random_effects_cov[0]))
    np.testing.assert_allclose(ff.ranef["Subject"]["se"].iloc[:2], cond_sd, rtol=1e-3)


def test_a_variance_at_zero_is_flagged_singular():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(list("abcdefgh"), 5), "x": rng.normal(size=40)})
    df["y"] = df["x"] + rng.normal(size=40)  # no group effect at all: REML puts its SD at zero
    ff = frequentist_tables(bayesmlm.MLM("y ~ x + (1 | g)", df).design)
    assert ff.singular
    assert ff.variance["boundary"].tolist() == [True, False]
    assert ff.variance["estimate"].iloc[0] < 1e-4 * ff.variance["estimate"].iloc[1]


def test_sleepstudy_comparison(sleep_fit):
    cmp = sleep_fit.compare_frequentist()
    assert isinstance(cmp, Comparison) and cmp.method == "reml" and cmp.factor == "Subject"
    assert list(cmp.fixed.columns) == ["bayes_mean", "bayes_sd", "bayes_lower", "bayes_upper", "freq_estimate", "freq_se",
                                       "freq_lower", "freq_upper", "diff_in_sd"]
    assert list(cmp.variance.columns) == ["group", "var1", "var2", "bayes_mean", "bayes_sd", "bayes_lower", "bayes_upper",
                                          "freq_estimate", "boundary", "diff_in_sd"]
    assert cmp.groups.index.names == ["group", "term"] and len(cmp.groups) == 36
    _check_against_lme4(cmp.fixed, cmp.variance, cmp.groups, reference("sleepstudy"), "freq_estimate", "freq_se")
    # 95% Wald interval of lme4's confint(method = "Wald"): Days 7.437 to 13.497
    _same3(cmp.fixed.loc["Days", "freq_lower"], 7.437, "Wald lower")
    _same3(cmp.fixed.loc["Days", "freq_upper"], 13.497, "Wald upper")
    # The posterior columns are the fit's own tables, unchanged.
    fe = sleep_fit.fixef()
    assert cmp.fixed["bayes_mean"].tolist() == fe["mean"].tolist()
    np.testing.assert_allclose(cmp.fixed["diff_in_sd"], (fe["mean"] - cmp.fixed["freq_estimate"]) / fe["sd"])
    assert cmp.groups["bayes_upper"].tolist() == sleep_fit.ranef()["upper"].tolist()
    # Posterior means within half a posterior SD of REML's estimates.
    assert (cmp.fixed["diff_in_sd"].abs() < 0.5).all(), cmp.fixed["diff_in_sd"]
    assert (cmp.variance["diff_in_sd"].abs() < 0.5).all(), cmp.variance["diff_in_sd"]
    assert (cmp.groups["diff_in_sd"].abs() < 0.5).all()


def test_hsb82_comparison(hsb_fit):
    cmp = compare_frequentist(hsb_fit, prob=0.9)
    ref = reference("hsb82")
    _check_against_lme4(cmp.fixed, cmp.variance, cmp.groups, ref, "freq_estimate", "freq_se")
    z90 = 1.6448536269514722
    np.testing.assert_allclose(cmp.fixed["freq_upper"] - cmp.fixed["freq_estimate"], z90 * cmp.fixed["freq_se"])
    assert (cmp.fixed["diff_in_sd"].abs() < 0.5).all(), cmp.fixed["diff_in_sd"]
    vc = cmp.variance.set_index(["group", "var1", "var2"])["diff_in_sd"]
    # Includes the weakly identified intercept-cses correlation (posterior SD ~ 0.4), which an LKJ(2) prior
    # would pull about 0.6 posterior SD below REML's 0.391; the default LKJ(1) keeps it within half an SD.
    assert (vc.abs() < 0.5).all(), vc
    # Random intercepts are well determined: posterior means track the BLUPs closely.
    u0 = cmp.groups.xs("(Intercept)", level="term")
    assert np.corrcoef(u0["bayes_mean"], u0["freq_estimate"])[0, 1] > 0.99
    assert (u0["diff_in_sd"].abs() < 0.5).all()


def test_rendering_and_plot(sleep_fit):
    cmp = sleep_fit.compare_frequentist(method="ml")
    text = str(cmp)
    assert text.startswith("Posterior against ML") and "Fixed effects" in text and "Subject" in text
    assert "251.4" in text and repr(cmp) == text
    html = cmp._repr_html_()
    assert "<table" in html and "Posterior against ML" in html
    flat = dataclasses.replace(cmp, singular=True, variance=cmp.variance.assign(boundary=[False, True, False, False]),
                               notes=("The MLE may be on the boundary of the parameter space.",))
    text = str(flat)
    assert "[warning] The ML fit is singular (as lme4's isSingular): Subject: Days on the boundary" in text
    assert "[warning] ML fit: The MLE may be on the boundary" in text
    unconverged = str(dataclasses.replace(cmp, converged=False))
    assert "[problem] The ML fit did not converge: its numbers are not an optimum" in unconverged
    fig = cmp.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2 + 2
    scatter = fig.axes[2]
    xy = scatter.collections[-1].get_offsets()
    u0 = cmp.groups.xs("(Intercept)", level="term")
    np.testing.assert_allclose(xy[:, 0], u0["freq_estimate"])
    np.testing.assert_allclose(xy[:, 1], u0["bayes_mean"])
    assert any(line.get_label() == "1:1" for line in scatter.lines)
    assert fig._suptitle.get_text().startswith("Posterior against ML: ")
    flagged = dataclasses.replace(cmp, converged=False, singular=True).plot()
    assert flagged._suptitle.get_text().startswith("Posterior against ML (NOT CONVERGED, singular): ")
    fig = cmp.plot(terms=["Days"], visuals={"fixed": False, "identity": False})
    assert len(fig.axes) == 1 and not fig.axes[0].lines
    with pytest.raises(ValueError, match="Unknown visual.*'bands'.*fixed, groups"):
        cmp.plot(visuals={"bands": False})
    with pytest.raises(ValueError, match="Unknown random term.*'slope'.*Days"):
        cmp.plot(terms=["slope"])


# Every class of model the Bayesian side fits, through the package's own design (formula -> X, Z, factors).
# Tolerances are against lme4's default optimum (a tight refit is in each JSON; tests/test_frequentist_engine.py
# holds the engine to 1e-4 of it): fixed effects within 2e-3 of their SE, SDs and correlations within 1e-3.
DESIGNS = [("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "gaussian", {}),  # crossed
           ("pastes", "strength ~ 1 + (1 | batch/cask)", "gaussian", {}),  # nested
           ("dyestuff2", "Yield ~ 1 + (1 | Batch)", "gaussian", {}),  # singular
           ("nlschools", "lang ~ IQ + (IQ | class)", "gaussian", {}),  # statsmodels stopped unconverged here
           ("cbpp", "incidence ~ period + (1 | herd)", "binomial", {"trials": "size"}),
           ("contraception", "use ~ age + urban + livch + (1 + urban | district)", "bernoulli", {})]


def _ours(variance: pd.DataFrame, key: str) -> float:
    """Our estimate of lme4's ``as.data.frame(VarCorr())`` key ('cask:batch:(Intercept)', 'class:(Intercept):IQ')."""
    if key == "Residual":
        return float(variance.set_index("group").loc["Residual", "estimate"])
    parts = key.split(":")
    for _, row in variance.iterrows():
        group = sorted(row.group.split(":"))
        terms = [row.var1] + ([row.var2] if row.var2 else [])
        if sorted(parts) == sorted(group + terms) and parts[-len(terms):] == terms:
            return float(row.estimate)
    raise KeyError(key)


@pytest.mark.parametrize("name, formula, family, options", DESIGNS, ids=[d[0] for d in DESIGNS])
def test_every_model_class_equals_lme4(name, formula, family, options):
    ref = reference(name)
    ff = frequentist_tables(bayesmlm.MLM(formula, bayesmlm.datasets.load(name), family=family, **options).design)
    assert ff.method == ("reml" if family == "gaussian" else "laplace")
    assert ff.converged and ff.singular == ref["singular"]
    for term, r in ref["fixef"].items():
        assert abs(ff.fixed.loc[term, "estimate"] - r["estimate"]) < 2e-3 * r["se"], term
        assert ff.fixed.loc[term, "se"] == pytest.approx(r["se"], rel=2e-3), term
    for key, value in ref["sd"].items():
        assert _ours(ff.variance, key) == pytest.approx(value, rel=1e-3, abs=1e-6), key
    for key, value in ref["cor"].items():
        assert _ours(ff.variance, key) == pytest.approx(value, abs=1e-3), key
    assert ff.variance["boundary"].any() == ref["singular"]
    assert ff.loglik == pytest.approx(ref["logLik"], abs=1e-2)


def test_bayes_beside_laplace_for_a_binomial_and_a_poisson_fit(ucb_fit, poisson_fit):
    cmp = ucb_fit.compare_frequentist()
    assert cmp.method == "laplace" and cmp.label == "Laplace" and cmp.converged
    ref = reference("ucb_admissions")
    for term, r in ref["fixef"].items():
        assert cmp.fixed.loc[term, "freq_estimate"] == pytest.approx(r["estimate"], abs=2e-3 * r["se"])
    assert list(cmp.variance["group"]) == ["Dept"]  # no residual SD for a logit model
    assert cmp.variance["freq_estimate"].iloc[0] == pytest.approx(ref["sd"]["Dept:(Intercept)"], rel=1e-3)
    assert str(cmp).startswith("Posterior against Laplace")
    counts = poisson_fit.compare_frequentist()
    assert counts.method == "laplace" and counts.converged and len(counts.groups) > 0
    assert (counts.fixed["diff_in_sd"].abs() < 2).all(), counts.fixed


def test_methods_and_models_the_engine_lacks_are_refused_by_name():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"g": np.repeat(list("abcdef"), 10), "x": rng.normal(size=60)})
    df["y"] = df["x"] + rng.normal(size=60)
    with pytest.raises(ValueError, match="method 'mle' is not available for family 'gaussian'; use 'reml' or 'ml'"):
        frequentist_tables(bayesmlm.MLM("y ~ x + (1 | g)", df).design, method="mle")
    df["b"] = (df["y"] > 0).astype(int)
    with pytest.raises(ValueError, match="method 'reml' is not available for family 'bernoulli'.*laplace"):
        frequentist_tables(bayesmlm.MLM("b ~ x + (1 | g)", df, family="bernoulli").design, method="reml")
    with pytest.raises(UnsupportedModelError, match="at least one fixed-effect term.*add '1 \\+'"):
        frequentist_tables(bayesmlm.MLM("y ~ 0 + (1 | g)", df).design)


def test_offset_is_taken_off_the_outcome():
    design = bayesmlm.MLM(SLEEP, bayesmlm.datasets.load("sleepstudy")).design
    shifted = dataclasses.replace(design, y=design.y + 100.0, offset=np.full(design.n_obs, 100.0))
    np.testing.assert_allclose(frequentist_tables(shifted).fixed["estimate"], frequentist_tables(design).fixed["estimate"],
                               rtol=1e-6)

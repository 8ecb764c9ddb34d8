"""Bernoulli, binomial and poisson models: data checks, priors, lme4 references, recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import (
    SIM_BERNOULLI,
    SIM_POISSON,
    bernoulli_sim,
    cached_fit,
    poisson_sim,
    reference,
    ucb_wide,
)

import bayesmlm
from bayesmlm import DataError, SpecError


# -- data checks ------------------------------------------------------------------------------------------------
def _frame(**cols):
    base = {"x": [0.1, 0.5, 0.9, 1.3, 1.7, 2.1], "g": list("aabbcc")}
    return pd.DataFrame({**base, **cols})


def test_bernoulli_codes_two_labels_with_the_later_one_as_1():
    m = bayesmlm.MLM("y ~ x + (1 | g)", _frame(y=["no", "yes", "no", "no", "yes", "yes"]), family="bernoulli")
    assert m.design.success == "yes"
    assert m.design.y.tolist() == [0, 1, 0, 0, 1, 1]


def test_bernoulli_takes_bools_and_the_last_category():
    m = bayesmlm.MLM("y ~ x + (1 | g)", _frame(y=[True, False, True, True, False, False]), family="bernoulli")
    assert m.design.y.tolist() == [1, 0, 1, 1, 0, 0] and m.design.success is None
    cat = pd.Categorical(["pass", "fail"] * 3, categories=["pass", "fail"])
    assert bayesmlm.MLM("y ~ x + (1 | g)", _frame(y=cat), family="bernoulli").design.y.tolist() == [0, 1] * 3


@pytest.mark.parametrize("family, y, match", [
    ("bernoulli", ["a", "b", "c", "a", "b", "c"], r"outcome 'y' has 3 distinct label\(s\).*exactly two.*== 'a'"),
    ("bernoulli", [0, 1, 2, 0, 1, 0], r"outcome 'y' has 1 value\(s\) other than 0 and 1 \(first at row 2: 2\).*poisson"),
    ("poisson", [0, 1, 2.5, 0, 1, 0], r"outcome 'y' has 1 value\(s\) that are not non-negative integers \(first at row 2"),
    ("poisson", [0, 1, -1, 0, 1, 0], r"outcome 'y'.*not non-negative integers.*row 2: -1"),
    ("poisson", ["1", "2", "3", "1", "2", "3"], r"outcome 'y' is .*needs counts"),
])
def test_bad_outcomes_are_named(family, y, match):
    with pytest.raises(DataError, match=match):
        bayesmlm.MLM("y ~ x + (1 | g)", _frame(y=y), family=family)


def test_binomial_needs_trials_and_checks_them():
    data = _frame(s=[1, 2, 3, 0, 5, 2], n=[4, 4, 4, 4, 4, 4])
    with pytest.raises(SpecError, match=r"needs the number of trials.*cbind\(successes, failures\).*trials='<column>'"):
        bayesmlm.MLM("s ~ x + (1 | g)", data, family="binomial")
    with pytest.raises(DataError, match=r"outcome 's' exceeds the trials column 'n' in 1 row\(s\) \(first at row 4: 5 of 4\)"):
        bayesmlm.MLM("s ~ x + (1 | g)", data, family="binomial", trials="n")
    with pytest.raises(SpecError, match=r"already gives the trials.*drop trials='n'"):
        bayesmlm.MLM("cbind(s, n) ~ x + (1 | g)", data, family="binomial", trials="n")
    with pytest.raises(DataError, match=r"failures column 'n'.*not non-negative integers"):
        bayesmlm.MLM("cbind(s, n) ~ x + (1 | g)", data.assign(n=[4, 4, 4.5, 4, 4, 4]), family="binomial")
    with pytest.raises(SpecError, match=r"trials='n' is for family='binomial'; this model's family is 'poisson'"):
        bayesmlm.MLM("s ~ x + (1 | g)", data, family="poisson", trials="n")


def test_trials_column_and_cbind_give_the_same_design():
    wide = ucb_wide().assign(Applied=lambda d: d.Admitted + d.Rejected)
    a = bayesmlm.MLM("cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", wide, family="binomial").design
    b = bayesmlm.MLM("Admitted ~ Gender + (1 | Dept)", wide, family="binomial", trials="Applied").design
    assert np.array_equal(a.y, b.y) and np.array_equal(a.trials, b.trials)
    assert a.trials.sum() == 4526 and a.y.sum() == 1755


def test_offset_in_the_formula_and_as_a_column_add_up():
    data = poisson_sim().assign(log_exposure=lambda d: np.log(d.exposure), half=0.5)
    a = bayesmlm.MLM("y ~ x + offset(np.log(exposure)) + (1 | g)", data, family="poisson").design
    b = bayesmlm.MLM("y ~ x + (1 | g)", data, family="poisson", offset="log_exposure").design
    c = bayesmlm.MLM("y ~ x + offset(half) + (1 | g)", data, family="poisson", offset="log_exposure").design
    assert a.fixed_terms == ("(Intercept)", "x")
    np.testing.assert_allclose(a.offset, np.log(data.exposure))
    np.testing.assert_allclose(b.offset, a.offset)
    np.testing.assert_allclose(c.offset, a.offset + 0.5)
    with pytest.raises(DataError, match=r"offset column 'g' is .*not numeric"):
        bayesmlm.MLM("y ~ x + (1 | g)", data, family="poisson", offset="g")


def test_link_scale_default_priors():
    wide = ucb_wide()
    pri = bayesmlm.MLM("cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", wide, family="binomial").priors()
    p = 1755 / 4526
    assert pri.loc["(Intercept)", "prior"] == f"normal(mu={np.log(p / (1 - p)):.4g}, sigma=2.5)"
    assert pri.loc["sd(Dept:(Intercept))", "prior"] == "half_normal(sigma=1)"
    assert "sigma" not in pri.index
    assert pri.loc["GenderMale", "note"] == "logit scale"
    data = poisson_sim()
    pri = bayesmlm.MLM("y ~ x + offset(np.log(exposure)) + (1 + x | g)", data, family="poisson").priors()
    rate = data.y.sum() / data.exposure.sum()
    assert pri.loc["(Intercept)", "prior"] == f"normal(mu={np.log(rate):.4g}, sigma=2.5)"
    assert pri.loc["cor(g)", "prior"].startswith("lkj(eta=")


# -- Berkeley admissions against lme4 -----------------------------------------------------------------------------
def test_ucb_gender_effect_reverses_the_pooled_sign(ucb_fit):
    # glm(cbind(Admitted, Rejected) ~ Gender, family = binomial, data = ucb_wide): +0.610 for men, department-blind.
    ref = reference("ucb_admissions_pooled_glm")["coef"]["GenderMale"]
    wide = ucb_wide()
    X = sm.add_constant((wide.Gender == "Male").astype(float))
    pooled = sm.GLM(wide[["Admitted", "Rejected"]].to_numpy(), X, family=sm.families.Binomial()).fit().params.iloc[1]
    assert pooled == pytest.approx(ref, abs=1e-6) and pooled > 0.6
    fe = ucb_fit.fixef()
    male = ucb_fit.fixef_draws().sel(term="GenderMale")
    assert fe.loc["GenderMale", "mean"] < 0
    assert float((male < 0).mean()) > 0.8
    assert fe.loc["GenderMale", "upper"] < pooled - 0.4


def test_ucb_matches_glmer_within_half_a_posterior_sd(ucb_fit):
    # glmer(cbind(Admitted, Rejected) ~ Gender + (1 | Dept), family = binomial, data = ucb_wide), lme4 1.1.31.
    ref = reference("ucb_admissions")
    fe = ucb_fit.fixef()
    for term, r in ref["fixef"].items():
        assert abs(fe.loc[term, "mean"] - r["estimate"]) < 0.5 * fe.loc[term, "sd"], term
    sd = ucb_fit.varcorr().iloc[0]
    assert abs(sd["mean"] - ref["sd"]["Dept:(Intercept)"]) < 0.5 * sd["sd"]
    re = ucb_fit.ranef()
    for dept, r in ref["ranef"].items():
        row = re.loc[(dept, "(Intercept)")]
        assert abs(row["mean"] - r["(Intercept)"]) < 0.5 * row["sd"], dept


def test_ucb_tables_say_the_link_scale(ucb_fit):
    text = str(ucb_fit.summary())
    assert "generalized linear (binomial, logit link)" in text
    assert "Fixed effects, on the log odds (logit link) scale:" in text
    assert ucb_fit.fixef().attrs["scale"] == "log odds (logit link)"
    assert ucb_fit.varcorr().attrs["scale"] == "log odds (logit link)"
    assert "Residual" not in set(ucb_fit.varcorr()["group"])


def test_logit_icc_is_latent_scale(ucb_fit):
    icc = ucb_fit.icc()
    assert "latent scale" in icc.attrs["scale"] and "pi^2/3" in icc.attrs["scale"]
    # glmer's Dept SD is 1.10955 (tests/reference/ucb_admissions.json): a latent ICC of
    # 1.10955^2 / (1.10955^2 + pi^2/3) = 0.2723. Six departments leave the posterior wide and skewed up.
    row = icc.loc["Dept"]
    assert row["lower"] < 0.2723 < row["upper"]
    assert 0.2 < row["mean"] < 0.45


# -- recovery of known parameters ----------------------------------------------------------------------------------
def _assert_recovers(fit, truth: dict) -> None:
    fe, vc = fit.fixef(), fit.varcorr().set_index(["var1", "var2"])
    rows = [("(Intercept)", fe.loc["(Intercept)"]), ("x", fe.loc["x"]), ("sd_int", vc.loc[("(Intercept)", "")]),
            ("sd_x", vc.loc[("x", "")]), ("cor", vc.loc[("(Intercept)", "x")])]
    for name, row in rows:
        assert row["lower"] < truth[name] < row["upper"], (name, truth[name], row["lower"], row["upper"])


def test_poisson_random_slope_recovers_the_truth(poisson_fit):
    assert poisson_fit.design.spec.family.link == "log"
    # 40 rows a group at a rate near exp(0.3): the rule centres g, so this is recovery by the centred route
    assert poisson_fit.record.parameterization == {"g": "centred"}
    assert poisson_fit.record.n_cells is None  # continuous x: every row its own cell, nothing aggregated
    _assert_recovers(poisson_fit, SIM_POISSON)
    # 1,200 rows pin the slope down: its interval is narrower than 0.3 on the log scale.
    assert poisson_fit.fixef().loc["x", "upper"] - poisson_fit.fixef().loc["x", "lower"] < 0.3


def test_bernoulli_random_slope_recovers_the_truth(bernoulli_fit):
    assert bernoulli_fit.design.success == "yes"
    assert bernoulli_fit.record.parameterization == {"g": "centred"}  # 60 rows a group: the centred route
    assert bernoulli_fit.design.y.sum() == (bernoulli_sim()["y"] == "yes").sum()
    _assert_recovers(bernoulli_fit, SIM_BERNOULLI)
    assert "Outcome: y = 'yes' is 1" in str(bernoulli_fit.summary())


def test_aggregated_bernoulli_recovers_the_truth_non_centred(fit_cache):
    # A discrete predictor: 40 groups x 60 rows become at most 40 x 5 binomial cells; sampled non-centred.
    # x is simulated discrete: rounding a continuous x afterwards would attenuate the true slope.
    data = bernoulli_sim(discrete=True)
    fit = cached_fit(fit_cache, "bernoulli_sim_integer_x_noncentred", lambda: bayesmlm.MLM(
        "y ~ x + (1 + x | g)", data, family="bernoulli").fit(draws=300, tune=300, chains=2, seed=25, progressbar=False,
                                                              method="full", parameterization={"g": "non-centred"}))
    assert fit.record.n_cells <= 200 and fit.record.parameterization == {"g": "non-centred"}
    _assert_recovers(fit, SIM_BERNOULLI)

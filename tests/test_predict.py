"""Predictions, pointwise log-likelihood, posterior and prior predictive checks, and their plot."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import poisson_sim, record_artefact, ucb_wide
from scipy import stats
from scipy.special import expit

import bayesmlm
import bayesmlm.predict.linpred
import bayesmlm.predict.predictions
import bayesmlm.predict.predictive as checks
from bayesmlm import DataError
from bayesmlm.plots.predictive import plot_predictive


def _eta(fit, chain: int, draw: int) -> np.ndarray:
    """The linear predictor of the fitted rows at one draw, computed directly from the posterior."""
    post = fit.posterior.isel(chain=chain, draw=draw)
    d = fit.design
    eta = d.X @ post["fixef"].values + (0 if d.offset is None else d.offset)
    for b in d.blocks:
        u = post[f"u_{b.label}"].sel({b.group: list(d.factors[b.group].levels)}).values
        eta = eta + (b.Z * u[d.factors[b.group].index]).sum(axis=1)
    return eta


# -- pointwise log-likelihood -----------------------------------------------------------------------------------------
def test_log_likelihood_of_binomial_and_poisson_fits_matches_scipy(ucb_fit, poisson_fit):
    ll = ucb_fit.log_likelihood()
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (4, 1000, 12)
    d = ucb_fit.design
    direct = stats.binom.logpmf(d.y, d.trials, expit(_eta(ucb_fit, 2, 17))).sum()
    assert float(ll.isel(chain=2, draw=17).sum()) == pytest.approx(direct, rel=1e-12)
    ll = poisson_fit.log_likelihood()
    d = poisson_fit.design
    direct = stats.poisson.logpmf(d.y, np.exp(_eta(poisson_fit, 1, 250))).sum()
    assert float(ll.isel(chain=1, draw=250).sum()) == pytest.approx(direct, rel=1e-12)


def test_log_likelihood_reads_any_posterior_with_fixef_u_and_sigma():
    # A gaussian fit as the collapsed fast path leaves it: fixef, u_<label> and sigma, nothing sampled here.
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    rng = np.random.default_rng(5)
    subjects = list(m.design.factors["Subject"].levels)
    post = xr.Dataset({
        "fixef": (("chain", "draw", "fixed_term"), rng.normal([251.4, 10.5], [7, 1.5], (2, 30, 2))),
        "u_Subject": (("chain", "draw", "Subject", "Subject_term"), rng.normal(0, [24, 6], (2, 30, 18, 2))),
        "sigma": (("chain", "draw"), rng.uniform(24, 28, (2, 30)))},
        coords={"fixed_term": ["(Intercept)", "Days"], "Subject": subjects[::-1], "Subject_term": ["(Intercept)", "Days"]})
    fake = SimpleNamespace(design=m.design, posterior=post)
    ll = checks.pointwise_log_likelihood(fake)
    assert ll.shape == (2, 30, 180)
    direct = stats.norm.logpdf(m.design.y, _eta(fake, 1, 4), float(post["sigma"][1, 4])).sum()
    assert float(ll.isel(chain=1, draw=4).sum()) == pytest.approx(direct, rel=1e-12)


def test_large_data_is_thinned_with_a_warning(ucb_fit, monkeypatch):
    assert ucb_fit.log_likelihood(draws=100).shape == (4, 25, 12)
    monkeypatch.setattr(bayesmlm.predict.linpred, "MAX_VALUES", 1000)
    with pytest.warns(UserWarning, match=r"12 rows x 4000 draws is more than 1,000 values; using 83 draws"):
        ll = ucb_fit.log_likelihood()
    assert ll.shape == (4, 21, 12)


# -- posterior predictive -------------------------------------------------------------------------------------------
def test_ppc_is_arviz_data_with_counts_within_trials(ucb_fit):
    tree = ucb_fit.ppc(seed=3)
    rep = tree["posterior_predictive"]["y"]
    assert rep.dims == ("chain", "draw", "obs") and rep.shape == (4, 1000, 12) and rep.dtype == np.int32
    trials = tree["constant_data"]["trials"].values
    assert (rep.values >= 0).all() and (rep.values <= trials).all()
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, ucb_fit.design.y)
    assert list(tree["constant_data"]["group:Dept"].values[:2]) == ["A", "A"]
    xr.testing.assert_equal(rep, ucb_fit.ppc(seed=3)["posterior_predictive"]["y"])
    # The replicates' mean per row is the trials times the predicted probability, up to Monte Carlo error.
    expected = trials * ucb_fit.predict(kind="mean")["mean"].to_numpy()
    mc_se = rep.std(("chain", "draw")).values / np.sqrt(4000)
    assert (np.abs(rep.mean(("chain", "draw")).values - expected) < 4 * mc_se).all()


def test_ppc_thins_to_the_draws_asked_for(poisson_fit):
    tree = poisson_fit.ppc(draws=100, seed=1)
    assert tree["posterior_predictive"]["y"].shape == (2, 50, 1200)
    assert tree["observed_data"].attrs == {"outcome": "y", "family": "poisson"}


# -- predict -------------------------------------------------------------------------------------------------------------
def test_population_and_group_predictions_on_the_link_scale(ucb_fit):
    pop = ucb_fit.predict(kind="link", groups="exclude")
    fixef = ucb_fit.fixef_draws().transpose("chain", "draw", "term").values
    expected = np.einsum("cdp,np->n", fixef, ucb_fit.design.X) / 4000
    np.testing.assert_allclose(pop["mean"], expected, rtol=1e-10)
    assert pop.attrs["scale"] == "log odds (logit link)" and pop.attrs["groups"] == "exclude"
    grp = ucb_fit.predict(kind="link")
    rows = ucb_wide()
    female_a = int(np.flatnonzero((rows.Dept == "A") & (rows.Gender == "Female"))[0])
    assert grp["mean"].iloc[female_a] == pytest.approx(ucb_fit.coef().loc[("A", "(Intercept)"), "mean"], rel=1e-10)
    assert (grp["lower"] < grp["mean"]).all() and (grp["mean"] < grp["upper"]).all()


def test_mean_is_the_inverse_link_per_draw(ucb_fit):
    mean = ucb_fit.predict(kind="mean")
    draws = ucb_fit.predict(kind="draws")
    assert draws.dims == ("chain", "draw", "obs") and draws.shape == (4, 1000, 12)
    np.testing.assert_allclose(mean["mean"], draws.mean(("chain", "draw")).values, rtol=1e-12)
    assert mean.attrs["scale"] == "probability of a success per trial"
    assert ((mean["lower"] > 0) & (mean["upper"] < 1)).all()
    # Department A admits about 64% of its applicants; the model agrees within its interval.
    a = ucb_wide().Dept == "A"
    assert (mean["lower"][a] < 0.7).all() and (mean["upper"][a] > 0.55).all()
    assert draws.attrs["groups"] == "include" and draws.attrs["note"] == ""


def test_new_groups_draw_their_effect_from_the_fitted_distribution(ucb_fit):
    new = pd.DataFrame({"Gender": ["Female", "Female", "Male"], "Dept": ["A", "Z", "Z"]}, index=[10, 11, 12])
    with pytest.warns(UserWarning, match=r"1 level\(s\) of 'Dept' \(Z\) not in the fitted data"):
        inc = ucb_fit.predict(new, kind="link", seed=4)
    assert list(inc.index) == [10, 11, 12]
    assert inc.loc[10, "mean"] == pytest.approx(ucb_fit.coef().loc[("A", "(Intercept)"), "mean"], rel=1e-10)
    pop = ucb_fit.predict(new.drop(columns="Dept"), kind="link", groups="exclude")
    fresh = ucb_fit.predict(new, kind="draws", groups="new", seed=4)
    link = np.log(fresh / (1 - fresh))
    assert link.attrs["note"].startswith("2 level(s) of 'Dept' treated as new groups")
    # var(new group) = var(population prediction) + E[tau^2], up to Monte Carlo error.
    tau2 = float((ucb_fit.posterior["sd_Dept"] ** 2).mean())
    assert float(link.sel(obs=10).var()) - pop.loc[10, "sd"] ** 2 == pytest.approx(tau2, rel=0.1)
    assert inc.loc[11, "sd"] > 2 * inc.loc[10, "sd"]
    # A new group's draw is shared by its rows: the gender gap in Z is the fixed effect, draw by draw.
    gap = link.sel(obs=12) - link.sel(obs=11)
    np.testing.assert_allclose(gap.values, ucb_fit.fixef_draws().sel(term="GenderMale").values, atol=1e-9)


def test_poisson_predictions_scale_with_exposure(poisson_fit):
    new = pd.DataFrame({"x": [0.5, 0.5], "g": ["g03", "g03"], "exposure": [1.0, 2.0]})
    mean = poisson_fit.predict(new)
    assert mean.loc[1, "mean"] / mean.loc[0, "mean"] == pytest.approx(2.0, rel=1e-12)
    assert mean.attrs["scale"] == "expected count (offset included)"
    with pytest.raises(DataError, match=r"newdata lacks the column\(s\) 'exposure'"):
        poisson_fit.predict(new.drop(columns="exposure"))


def test_predict_errors_name_what_to_do(ucb_fit):
    with pytest.raises(ValueError, match="Unknown kind 'prob'. Valid kinds: mean, link, draws, probs"):
        ucb_fit.predict(kind="prob")
    with pytest.raises(ValueError, match="kind='probs' is the probability of each category of a cumulative"):
        ucb_fit.predict(kind="probs")
    with pytest.raises(ValueError, match="Unknown groups 'all'. Valid options: include, exclude, new"):
        ucb_fit.predict(groups="all")
    with pytest.raises(DataError, match=r"newdata lacks the column\(s\) 'Dept'"):
        ucb_fit.predict(pd.DataFrame({"Gender": ["Male"]}))
    with pytest.raises(DataError, match=r"Cannot evaluate the fixed part on newdata.*levels that the fitted data has"):
        ucb_fit.predict(pd.DataFrame({"Gender": ["Other"], "Dept": ["A"]}))


# -- prior predictive and the plot -------------------------------------------------------------------------------------
def test_prior_predictive_simulates_from_the_priors():
    m = bayesmlm.MLM("cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", ucb_wide(), family="binomial")
    tree = m.prior_predictive(draws=50, seed=1)
    assert set(tree.children) == {"prior", "prior_predictive", "observed_data", "constant_data"}
    rep = tree["prior_predictive"]["y"]
    assert rep.shape == (1, 50, 12)
    assert (rep.values <= m.design.trials).all()
    assert tree["prior"]["sd_Dept"].shape == (1, 50, 1)
    # Half-normal(1) on the department SD: its prior median is 0.674.
    assert float(tree["prior"]["sd_Dept"].median()) == pytest.approx(0.674, abs=0.25)
    xr.testing.assert_equal(rep, m.prior_predictive(draws=50, seed=1)["prior_predictive"]["y"])


def test_plot_of_the_checks_draws_the_data(ucb_fit, poisson_fit, artefact_dir):
    fig = plot_predictive(ucb_fit.ppc(draws=400, seed=1))
    groups = fig.plotted["groups"]
    wide = ucb_wide().groupby("Dept")[["Admitted", "Rejected"]].sum()
    share = (wide.Admitted / (wide.Admitted + wide.Rejected)).sort_values()
    assert groups["groups"] == list(share.index)
    np.testing.assert_allclose(groups["observed"], share.to_numpy())
    assert len(fig.axes) == 2
    fig.savefig(artefact_dir / "ppc_ucb.png", dpi=80)
    record_artefact(artefact_dir, "posterior predictive check, Berkeley admissions", artefact_dir / "ppc_ucb.png")
    fig = plot_predictive(poisson_fit.ppc(draws=200, seed=1), visuals={"groups": False})
    dist = fig.plotted["dist"]
    y = poisson_sim()["y"].to_numpy()
    np.testing.assert_allclose(dist["observed"], [(y == v).mean() for v in dist["values"]])
    assert len(fig.axes) == 1
    # Default priors on the log scale reach huge rates: the simulation caps them (checks.MAX_RATE) instead of failing.
    prior = bayesmlm.MLM("y ~ x + offset(np.log(exposure)) + (1 + x | g)", poisson_sim(),
                         family="poisson").prior_predictive(draws=300, seed=1)
    rep = prior["prior_predictive"]["y"]
    assert rep.dtype == np.int64 and int(rep.min()) >= 0 and int(rep.max()) <= 2 * checks.MAX_RATE
    fig = plot_predictive(prior)
    assert fig.axes[1].get_yscale() == "symlog"
    assert fig.axes[0].get_title() == "prior predictive check: distribution"
    with pytest.raises(ValueError, match="Unknown visual.*'dots'.*replicates, observed, intervals, groups, legend"):
        plot_predictive(prior, visuals={"dots": False})


def test_fits_from_per_group_sums_are_refused_where_rows_are_needed(ucb_fit):
    # A fit made by MLM.from_files / from_dask keeps no rows (Design.has_rows is False; bayesmlm.fastpath.readers).
    reduced = SimpleNamespace(design=dataclasses.replace(ucb_fit.design, has_rows=False), posterior=ucb_fit.posterior)
    with pytest.raises(ValueError, match=r"pointwise_log_likelihood \(and so LOO\) needs the fitted rows.*MLM.from_files"):
        checks.pointwise_log_likelihood(reduced)
    with pytest.raises(ValueError, match=r"posterior_predictive needs the fitted rows"):
        checks.posterior_predictive(reduced)
    with pytest.raises(ValueError, match=r"predict\(\) without newdata needs the fitted rows.*Pass newdata="):
        bayesmlm.predict.predictions.predict(reduced)


def test_draws_of_many_rows_are_thinned_with_a_warning(ucb_fit, monkeypatch):
    monkeypatch.setattr(bayesmlm.predict.linpred, "MAX_VALUES", 1200)
    with pytest.warns(UserWarning, match=r"predict\(kind='draws'\): 12 rows x 4000 draws .*using 100 draws"):
        draws = ucb_fit.predict(kind="draws")
    assert draws.shape == (4, 25, 12)
    assert ucb_fit.predict(kind="mean").shape == (12, 4)  # tables keep every draw


# -- issue 15: new data that cannot be predicted, and group labels whose dtype changed since the fit ----------------
def test_predict_refuses_infinite_inputs_and_outputs(sleep_fit, poisson_fit):
    # Before: inf passed through as a prediction.
    with pytest.raises(DataError, match=r"Column 'Days' has 1 infinite value\(s\) in newdata \(first at row 1\)"):
        sleep_fit.predict(pd.DataFrame({"Days": [1.0, np.inf], "Subject": [308, 308]}))
    with pytest.raises(DataError, match=r"term 'offset' -inf in 1 row\(s\) \(first at row 0\).*np.log of 0"):
        poisson_fit.predict(pd.DataFrame({"x": [0.0], "exposure": [0.0], "g": ["g00"]}))
    with pytest.raises(DataError, match=r"predictions of 1 row\(s\) are not finite \(first at row 1\).*kind='link'"):
        poisson_fit.predict(pd.DataFrame({"x": [0.0, 1e4], "exposure": [1.0, 1.0], "g": ["g00", "g00"]}))


@pytest.mark.parametrize("labels", [["308", "309"], [308.0, 309.0], pd.array([308, 309], dtype="Int64")])
def test_group_labels_match_whatever_their_dtype_in_newdata(sleep_fit, labels, recwarn):
    # Subject is int at fit; as text, float (a column with a missing value) or Int64 the groups must still be found.
    want = sleep_fit.predict(pd.DataFrame({"Days": [3, 3], "Subject": [308, 309]}))
    got = sleep_fit.predict(pd.DataFrame({"Days": [3, 3], "Subject": labels}))
    np.testing.assert_allclose(got["mean"].to_numpy(), want["mean"].to_numpy())
    assert not [w for w in recwarn if "not in the fitted data" in str(w.message)]


def test_newdata_with_text_where_the_fit_had_numbers_is_refused(sleep_fit):
    # Before: "0.5" was silently read as a number, and a date gave numpy's promotion error.
    with pytest.raises(DataError, match=r"newdata's column 'Days' is .*, but the model was fitted with numbers in 'Days'.*"
                                        r"pd.to_numeric"):
        sleep_fit.predict(pd.DataFrame({"Days": ["3"], "Subject": [308]}))

"""Student, negbinomial and cumulative fits: lme4 / ordinal references, recovery of known parameters, and
the predictions, checks and LOO that read them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import cached_fit, reference

import bayesmlm
from bayesmlm.comparison.loo import loo


@pytest.fixture(scope="module")
def nb_fit(fit_cache):
    """TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), negbinomial, grouseticks, 2 x 500 draws."""
    data = bayesmlm.datasets.load("grouseticks")
    return cached_fit(fit_cache, "grouse_nb", lambda: bayesmlm.MLM(
        "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", data, family="negbinomial").fit(
        draws=500, tune=500, chains=2, seed=31, progressbar=False))


def _student_data() -> pd.DataFrame:
    """y = 1 + 0.5 x + u_g + 0.5 t_3 noise, 20 groups x 25 rows (seed 32), then 12 outliers y + 15 at the largest x."""
    rng = np.random.default_rng(32)
    g = np.repeat(np.arange(20), 25)
    x = rng.normal(size=500)
    y = 1.0 + 0.5 * x + 0.7 * rng.normal(size=20)[g] + 0.5 * rng.standard_t(3, size=500)
    y[np.argsort(x)[-12:]] += 15.0
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="module")
def student_fit(fit_cache):
    return cached_fit(fit_cache, "student_outliers", lambda: bayesmlm.MLM("y ~ x + (1 | g)", _student_data(),
                                                                         family="student").fit(
        draws=500, tune=500, chains=2, seed=33, progressbar=False))


@pytest.fixture(scope="module")
def wine_fit(fit_cache):
    """rating ~ temp + contact + (1 | judge), cumulative logit, wine, 2 x 500 draws."""
    data = bayesmlm.datasets.load("wine")
    return cached_fit(fit_cache, "wine_cumulative", lambda: bayesmlm.MLM(
        "rating ~ temp + contact + (1 | judge)", data, family="cumulative").fit(
        draws=500, tune=500, chains=2, seed=34, progressbar=False))


def _ordinal_data() -> pd.DataFrame:
    """4 categories, latent eta = 0.8 x + u0 + u1 x (SDs 0.8, 0.4), thresholds (-1, 0.3, 1.5); x in -2..2;
    40 groups x 100 rows (seed 35), so rows collapse into group x value cells."""
    rng = np.random.default_rng(35)
    g = np.repeat(np.arange(40), 100)
    x = rng.integers(-2, 3, size=4000).astype(float)
    u0, u1 = 0.8 * rng.normal(size=40), 0.4 * rng.normal(size=40)
    latent = 0.8 * x + u0[g] + u1[g] * x + rng.logistic(size=4000)
    y = np.searchsorted(np.array([-1.0, 0.3, 1.5]), latent) + 1
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


@pytest.fixture(scope="module")
def ordinal_fit(fit_cache):
    return cached_fit(fit_cache, "ordinal_slopes", lambda: bayesmlm.MLM("y ~ x + (1 + x | g)", _ordinal_data(),
                                                                       family="cumulative").fit(
        draws=400, tune=400, chains=2, seed=36, progressbar=False))


def _within(post: pd.Series, estimate: float, k: float = 0.5) -> bool:
    return abs(post["mean"] - estimate) <= k * post["sd"]


def test_negbinomial_within_half_a_posterior_sd_of_glmer_nb(nb_fit):
    """glmer.nb(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), data = grouseticks): tests/reference/grouseticks_nb.json."""
    ref = reference("grouseticks_nb")
    fe = nb_fit.fixef()
    for term, v in ref["fixef"].items():
        assert _within(fe.loc[term], v["estimate"]), (term, fe.loc[term, "mean"], v["estimate"])
    fam = nb_fit.family_parameters()
    assert list(fam.index) == ["phi"]
    draws = nb_fit.posterior["phi"].values.ravel()
    assert abs(np.median(draws) - ref["phi"]) <= 0.5 * draws.std()  # the MLE is the mode: compare the median
    sd = nb_fit.posterior["sd_LOCATION"].values.ravel()
    assert abs(np.median(sd) - ref["sd"]["LOCATION:(Intercept)"]) <= 0.5 * sd.std()
    assert "Family parameters (negbinomial)" in str(nb_fit.summary())


def test_negbinomial_predictions_checks_and_loo(nb_fit):
    pred = nb_fit.predict()
    assert pred.attrs["scale"].startswith("expected count")
    y = nb_fit.design.y
    assert abs(pred["mean"].mean() - y.mean()) < 0.1 * y.mean()
    rep = nb_fit.ppc(draws=200, seed=1)["posterior_predictive"]["y"].values
    assert rep.dtype == np.int64 and abs(rep.var(axis=-1).mean() / y.var() - 1) < 0.35  # the overdispersion reproduced
    res = loo(nb_fit)
    assert np.isfinite(res.elpd) and res.n_data_points == 403


def test_student_recovers_nu_and_ignores_the_outliers(student_fit):
    fe = student_fit.fixef()
    assert abs(fe.loc["x", "mean"] - 0.5) < 0.1 and abs(fe.loc["(Intercept)", "mean"] - 1.0) < 0.4
    fam = student_fit.family_parameters()
    assert fam.loc["nu", "upper"] < 6  # t_3 noise plus outliers: heavy tails, far from gaussian
    assert 0.3 < fam.loc["sigma", "mean"] < 0.7
    gauss = bayesmlm.MLM("y ~ x + (1 | g)", _student_data()).fit_frequentist()
    slope = gauss.fixed.set_index("term").loc["x", "estimate"]
    assert slope - 0.5 > 5 * abs(fe.loc["x", "mean"] - 0.5)  # the gaussian slope is pulled by the outliers
    assert student_fit.predict().attrs["scale"].startswith("mean of the outcome")
    assert student_fit.log_likelihood().shape[-1] == 500


def test_cumulative_within_half_a_posterior_sd_of_clmm(wine_fit):
    """clmm(rating ~ temp + contact + (1 | judge), data = wine): tests/reference/wine_clmm.json."""
    assert wine_fit.record.density == "kernel"  # the cumulative full model's Numba kernel (fastpath.cumulative_kernel)
    ref = reference("wine_clmm")
    fe, th = wine_fit.fixef(), wine_fit.thresholds()
    for term, v in ref["fixef"].items():
        assert _within(fe.loc[term], v["estimate"]), (term, fe.loc[term, "mean"], v["estimate"])
    assert list(th.index) == list(ref["thresholds"])
    for name, v in ref["thresholds"].items():
        assert _within(th.loc[name], v["estimate"]), (name, th.loc[name, "mean"], v["estimate"])
    assert th.attrs["scale"] == "latent scale (logit link)" == fe.attrs["scale"]
    assert "Thresholds" in str(wine_fit.summary())


def test_cumulative_posterior_beside_its_clmm_column(wine_fit):
    """compare_frequentist: the engine's clmm fit (tests/reference/wine_clmm.json) beside the posterior."""
    ref = reference("wine_clmm")
    cmp = wine_fit.compare_frequentist()
    assert cmp.label == "Laplace" and cmp.converged and not cmp.singular
    np.testing.assert_allclose(cmp.fixed["freq_estimate"], [v["estimate"] for v in ref["fixef"].values()], rtol=1e-4)
    assert list(cmp.thresholds.index) == list(ref["thresholds"])
    np.testing.assert_allclose(cmp.thresholds["freq_estimate"], [v["estimate"] for v in ref["thresholds"].values()],
                               rtol=1e-4)
    np.testing.assert_allclose(cmp.thresholds["bayes_mean"], wine_fit.thresholds()["mean"])
    assert (cmp.thresholds["diff_in_sd"].abs() < 0.5).all() and (cmp.fixed["diff_in_sd"].abs() < 0.5).all()
    assert cmp.variance["freq_estimate"].iloc[0] == pytest.approx(ref["sd"]["judge:(Intercept)"], rel=1e-4)
    assert cmp.partition.loc[("share", "judge"), "freq_estimate"] == pytest.approx(
        1.13113257810693 ** 2 / (1.13113257810693 ** 2 + np.pi ** 2 / 3), rel=2e-4)
    text = str(cmp)
    assert "Thresholds (latent scale)" in text and "ordinal::clmm's method" in text


def test_cumulative_recovers_slopes_with_aggregated_cells(ordinal_fit):
    assert ordinal_fit.record.n_cells == 200  # 40 groups x 5 values of x
    fe, th, vc = ordinal_fit.fixef(), ordinal_fit.thresholds(), ordinal_fit.varcorr()
    assert abs(fe.loc["x", "mean"] - 0.8) < 2.5 * fe.loc["x", "sd"]
    np.testing.assert_allclose(th["mean"], [-1.0, 0.3, 1.5], atol=0.35)
    sds = vc.query("var2 == ''").set_index("var1")["mean"]
    assert abs(sds["(Intercept)"] - 0.8) < 0.25 and abs(sds["x"] - 0.4) < 0.15


def test_cumulative_category_predictions_ppc_and_loo(ordinal_fit):
    probs = ordinal_fit.predict(kind="probs", draws=200)
    assert probs.index.names == ["obs", "category"] and list(probs.index.levels[1]) == ["1", "2", "3", "4"]
    per_row = probs["mean"].unstack()
    np.testing.assert_allclose(per_row.sum(axis=1), 1.0, atol=1e-9)
    mean = ordinal_fit.predict(draws=200)
    np.testing.assert_allclose(mean["mean"], per_row.to_numpy() @ np.arange(1, 5), rtol=1e-9)
    observed = np.bincount(ordinal_fit.design.y.astype(int), minlength=4) / ordinal_fit.design.n_obs
    np.testing.assert_allclose(per_row.mean(axis=0), observed, atol=0.02)
    rep = ordinal_fit.ppc(draws=100, seed=2)["posterior_predictive"]["y"].values
    np.testing.assert_allclose(np.bincount(rep.ravel(), minlength=4) / rep.size, observed, atol=0.02)
    res = loo(ordinal_fit, draws=200)
    assert np.isfinite(res.elpd) and res.n_data_points == 4000


def test_cumulative_predictive_plot_draws_the_categories(wine_fit):
    from bayesmlm.plots.predictive import plot_predictive

    fig = plot_predictive(wine_fit.ppc(draws=100, seed=3))
    dist = fig.plotted["dist"]
    observed = np.bincount(wine_fit.design.y.astype(int), minlength=5) / 72
    np.testing.assert_allclose(dist["observed"], observed)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3", "4", "5"]
    assert fig.axes[0].get_xlabel() == "rating (category)"

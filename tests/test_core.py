"""The whole path on real data, checked against lme4's REML fits.

References: tests/reference/sleepstudy.json
  lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
and tests/reference/radon.json
  lmer(log_radon ~ floor + log_uranium + (1 + floor | county), data = radon)
(lme4 1.1-31, REML).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import reference

import bayesmlm
from bayesmlm.results.fit import COLUMNS
from bayesmlm.sample.nuts import SamplerSettings


def check_fixed_within_half_sd(fit, ref):
    fe = fit.fixef()
    for term, r in ref["fixef"].items():
        gap = abs(fe.loc[term, "mean"] - r["estimate"]) / fe.loc[term, "sd"]
        assert gap < 0.5, f"{term}: posterior mean {fe.loc[term, 'mean']:.4g} vs lme4 {r['estimate']:.4g} ({gap:.2f} SD)"
        # The posterior SD of a fixed effect is close to lme4's standard error with this much data.
        assert fe.loc[term, "sd"] == pytest.approx(r["se"], rel=0.35)


def test_sleepstudy_fixed_effects_match_lme4(sleep_fit):
    check_fixed_within_half_sd(sleep_fit, reference("sleepstudy"))


def test_sleepstudy_variance_components_near_lme4(sleep_fit):
    ref = reference("sleepstudy")
    vc = sleep_fit.varcorr()
    sd = vc[vc.var2 == ""].set_index(["group", "var1"])
    for key, value in ref["sd"].items():
        group, _, term = key.partition(":")
        row = sd.loc[("Residual", "")] if key == "Residual" else sd.loc[(group, term)]
        assert abs(row["mean"] - value) < 1.0 * row["sd"], key
        assert row["lower"] < value < row["upper"]
    cor = vc[vc.var2 != ""].iloc[0]
    assert (cor.group, cor.var1, cor.var2) == ("Subject", "(Intercept)", "Days")
    assert cor["lower"] < ref["cor"]["Subject:(Intercept):Days"] < cor["upper"]


def test_sleepstudy_random_effects_track_lme4_modes(sleep_fit):
    ref = reference("sleepstudy")["ranef"]
    re = sleep_fit.ranef()
    modes = pd.Series({(g, t): v for g, terms in ref.items() for t, v in terms.items()})
    means = re["mean"].loc[modes.index]
    assert np.corrcoef(means, modes)[0, 1] > 0.98
    assert np.all(np.abs(means - modes) < re["sd"].loc[modes.index])


def test_coef_is_fixef_plus_ranef_per_draw(sleep_fit):
    coef = sleep_fit.coef_draws()
    direct = sleep_fit.fixef_draws() + sleep_fit.ranef_draws()
    np.testing.assert_allclose(coef.values, direct.transpose(*coef.dims).values, rtol=1e-10)
    table = sleep_fit.coef()
    assert list(table.columns) == COLUMNS
    assert table.index.names == ["group", "term"]
    assert table.loc[("308", "Days"), "mean"] == pytest.approx(float(coef.sel(group="308", term="Days").mean()))


def test_radon_with_a_level2_predictor_matches_lme4(radon_fit):
    ref = reference("radon")
    check_fixed_within_half_sd(radon_fit, ref)
    vc = radon_fit.varcorr()
    resid = vc[vc.group == "Residual"].iloc[0]
    assert abs(resid["mean"] - ref["sd"]["Residual"]) < resid["sd"]
    slope_sd = vc[(vc.group == "county") & (vc.var1 == "floor") & (vc.var2 == "")].iloc[0]
    assert slope_sd["lower"] < ref["sd"]["county:floor"] < slope_sd["upper"]


def test_radon_coef_folds_in_the_level2_predictor(radon_fit):
    # coef(intercept)_j = gamma_0 + gamma_uranium * log_uranium_j + u_0j; coef(floor)_j = gamma_floor + u_1j.
    data = radon_fit.design.data
    uranium = data.groupby("county")["log_uranium"].first()
    gamma = radon_fit.fixef_draws()
    u = radon_fit.ranef_draws()
    coef = radon_fit.coef_draws()
    county = "AITKIN"
    expect = gamma.sel(term="(Intercept)") + gamma.sel(term="log_uranium") * uranium[county] + \
        u.sel(group=county, term="(Intercept)")
    np.testing.assert_allclose(coef.sel(group=county, term="(Intercept)").values, expect.values, rtol=1e-10)
    assert list(coef.term.values) == ["(Intercept)", "floor"]


def test_summary_reads_like_lme4(sleep_fit):
    summary = sleep_fit.summary()
    text = str(summary)
    assert "Formula: Reaction ~ 1 + Days + (1 + Days | Subject)" in text
    assert "Number of obs: 180, groups:  Subject, 18" in text
    assert "Diagnostics:" in text and "divergences" in text
    assert isinstance(summary, pd.DataFrame)
    assert summary.loc[("fixed", "Days"), "mean"] == pytest.approx(sleep_fit.fixef().loc["Days", "mean"])
    assert summary.loc[("random", "Residual"), "mean"] == pytest.approx(
        sleep_fit.varcorr().query("group == 'Residual'")["mean"].iloc[0])


def test_icc_refuses_random_slopes(sleep_fit):
    with pytest.raises(ValueError, match="random slopes"):
        sleep_fit.icc()


def test_save_and_load_round_trip(sleep_fit, tmp_path):
    path = tmp_path / "fit.nc"
    sleep_fit.save(path)
    back = bayesmlm.load(path)
    pd.testing.assert_frame_equal(back.coef(), sleep_fit.coef())
    pd.testing.assert_frame_equal(back.varcorr(), sleep_fit.varcorr())
    assert back.record == sleep_fit.record
    assert back.prior_dict == sleep_fit.prior_dict
    assert back.formula == sleep_fit.formula
    np.testing.assert_array_equal(back.design.X, sleep_fit.design.X)


def test_load_rejects_a_foreign_file(tmp_path):
    import xarray as xr

    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(path)
    with pytest.raises(ValueError, match="not a bayesmlm fit"):
        bayesmlm.load(path)


def test_seed_reproduces_draws_and_icc_is_a_posterior():
    # A tiny random-intercept model: two fits with one seed give identical draws.
    data = bayesmlm.datasets.load("sleepstudy")
    model = bayesmlm.MLM("Reaction ~ 1 + (1 | Subject)", data)
    kw = dict(draws=200, tune=200, chains=2, seed=5, progressbar=False, method="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        a, b = model.fit(**kw), model.fit(**kw)
    np.testing.assert_array_equal(a.posterior["sigma"].values, b.posterior["sigma"].values)
    icc = a.icc()
    assert icc.index.tolist() == ["Subject"]
    # lme4: as.data.frame(VarCorr(lmer(Reaction ~ 1 + (1 | Subject), sleepstudy)))$vcov = 1278.338, 1958.865,
    # an ICC of 0.39489 (lme4 1.1.31). With 18 subjects the posterior is wide (sd about 0.1) and centred near it.
    row = icc.loc["Subject"]
    assert row["lower"] < 0.39489 < row["upper"]
    assert abs(row["mean"] - 0.39489) < 0.1
    assert 0.05 < row["sd"] < 0.2
    assert a.icc_draws().dims == ("chain", "draw")


def test_convergence_warning_names_parameters():
    data = bayesmlm.datasets.load("sleepstudy")
    model = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data)
    with pytest.warns(bayesmlm.ConvergenceWarning, match=r"Parameters: .*\[.*Try to .*draw more"):
        fit = model.fit(draws=30, tune=30, chains=2, seed=3, progressbar=False, method="full")
    assert fit.converged is False
    assert fit.record.settings.seed == 3
    assert fit.record.method == "full"


# -- issue 15: lossless round trips, and files that cannot be written or read ----------------------------------------
@pytest.fixture(scope="module")
def typed_fit():
    """y ~ o + u + n + b + (1 | g) with an ordered and an unordered Categorical, Int64 and boolean columns; 2 x 100 draws."""
    rng = np.random.default_rng(7)
    n = 120
    o = pd.Categorical(rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"], ordered=True)
    u = pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["c", "a", "b"])
    effect = pd.Series({"lo": 0.0, "mid": 50.0, "hi": 10.0})
    data = pd.DataFrame({"g": np.repeat([f"s{j}" for j in range(12)], 10), "o": o, "u": u,
                         "n": pd.array(rng.integers(0, 5, n), dtype="Int64"), "b": pd.array(rng.random(n) > 0.5, dtype="boolean")})
    data["y"] = 300 + effect[np.asarray(o)].to_numpy() + 2.0 * data["n"].to_numpy(float) + rng.normal(0, 5, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return bayesmlm.MLM("y ~ o + u + n + b + (1 | g)", data).fit(draws=100, tune=100, chains=2, seed=3, progressbar=False)


def test_save_and_load_keep_categorical_levels_and_dtypes(typed_fit, tmp_path):
    # Before: categories were stored as text and re-sorted on load, so an ordered predictor was re-coded and the
    # reloaded fit predicted 365.3 where the original predicted 311.6; nullable dtypes could not be saved at all.
    typed_fit.save(tmp_path / "typed.nc")
    back = bayesmlm.load(tmp_path / "typed.nc")
    assert back.design.fixed_terms == typed_fit.design.fixed_terms == ("(Intercept)", "omid", "ohi", "ua", "ub", "n", "b")
    np.testing.assert_array_equal(back.design.X, typed_fit.design.X)
    pd.testing.assert_series_equal(back.design.data.dtypes, typed_fit.design.data.dtypes)
    new = pd.DataFrame({"o": ["hi", "lo", "mid"], "u": ["c", "a", "b"], "n": [0, 1, 2], "b": [True, False, True],
                        "g": ["s0", "s1", "s2"]})
    pd.testing.assert_frame_equal(back.predict(new), typed_fit.predict(new))


def test_save_into_a_missing_folder_names_it(typed_fit, tmp_path):
    # Before: PermissionError "Permission denied" from the NetCDF library.
    with pytest.raises(bayesmlm.FitFileError, match=r"folder '.*nowhere' does not exist. Create it first"):
        typed_fit.save(tmp_path / "nowhere" / "fit.nc")
    with pytest.raises(bayesmlm.FitFileError, match="it is a folder. Give a file name"):
        typed_fit.save(tmp_path)


def test_load_names_a_missing_truncated_or_corrupt_file(typed_fit, tmp_path):
    with pytest.raises(bayesmlm.FitFileError, match=r"No saved fit at '.*absent.nc'"):
        bayesmlm.load(tmp_path / "absent.nc")
    typed_fit.save(tmp_path / "whole.nc")
    raw = (tmp_path / "whole.nc").read_bytes()
    (tmp_path / "half.nc").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.nc").write_text("not a fit")
    for name in ("half.nc", "text.nc"):
        with pytest.raises(bayesmlm.FitFileError, match=rf"Cannot read '.*{name}' as a saved fit.*truncated or corrupt"):
            bayesmlm.load(tmp_path / name)
    typed_fit.idata.to_netcdf(tmp_path / "arviz.nc")  # the draws alone, as ArviZ writes them
    with pytest.raises(bayesmlm.FitFileError, match="not a bayesmlm fit.*from another tool"):
        bayesmlm.load(tmp_path / "arviz.nc")


# -- issue 15: every argument of fit() checked before anything is built or sampled -----------------------------------
@pytest.mark.parametrize("kwargs, words", [
    ({"seed": -1}, r"seed must be None or a whole number from 0 to 4294967295; got -1"),  # was OverflowError in nutpie
    ({"seed": "abc"}, r"seed must be None or a whole number.*got 'abc' \(str\)"),  # was int()'s ValueError
    ({"seed": 2.5}, r"seed must be None or a whole number.*got 2.5"),
    ({"draws": 0}, r"draws must be a whole number of at least 1; got 0"),
    ({"draws": 10.5}, r"draws must be a whole number of at least 1; got 10.5 \(float\)"),  # was silently 10
    ({"draws": "100"}, r"draws must be a whole number.*got '100' \(str\)"),
    ({"tune": -5}, r"tune must be a whole number of at least 0"),
    ({"chains": None}, r"chains must be a whole number of at least 1; got None"),
    ({"target_accept": 1.0}, r"target_accept must be a number between 0 and 1 \(not included\); got 1.0"),
    ({"target_accept": "0.9"}, r"target_accept must be a number between 0 and 1.*'0.9' \(str\)"),
    ({"progressbar": "no"}, r"progressbar must be True or False; got 'no'"),
    ({"sampler": "stan"}, r"Unknown sampler 'stan'. Valid samplers: nutpie, pymc, numpyro, blackjax"),
    ({"method": None}, r"Unknown method None. Valid methods: auto, full, collapsed, laplace"),
])  # fmt: skip
def test_fit_arguments_are_checked_first(kwargs, words):
    m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    with pytest.raises(bayesmlm.ArgumentError, match=words):
        m.fit(**kwargs)


def test_default_warm_up_is_the_samplers_and_is_recorded():
    # tune=None: 400 steps with nutpie (benchmarks/tune_results.md), 1000 where nutpie samples a PyMC graph and with
    # PyMC's own sampler; an explicit tune is kept as given, 0 included
    m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    fit = m.fit(draws=50, chains=1, seed=1, progressbar=False)
    assert fit.record.settings.tune == 400
    graph = m.fit(draws=20, chains=1, seed=1, progressbar=False, method="full")  # a PyMC graph keeps 1000
    assert (graph.record.density, graph.record.settings.tune) == ("pytensor", 1000)
    assert m.fit(draws=20, tune=30, chains=1, seed=1, progressbar=False, method="full").record.settings.tune == 30
    assert SamplerSettings(sampler="pymc").resolved().tune == 1000
    assert SamplerSettings(tune=0).resolved().tune == 0
    assert SamplerSettings(tune=250, sampler="pymc").resolved().tune == 250


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_jax_samplers_without_jax_say_what_to_install(sampler):
    import importlib.util

    if importlib.util.find_spec("jax") is not None:
        pytest.skip("JAX is installed here")
    m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    # Before: ModuleNotFoundError "No module named 'jax'" from deep inside PyMC, after the model was built.
    with pytest.raises(bayesmlm.ArgumentError, match=rf"sampler='{sampler}' needs jax and {sampler}.*pip install jax "
                                                     rf"{sampler}, or use sampler='nutpie'"):
        m.fit(sampler=sampler, method="full")


def test_table_and_prediction_arguments_are_checked(typed_fit):
    with pytest.raises(bayesmlm.ArgumentError, match=r"prob must be a number between 0 and 1.*got 95"):
        typed_fit.fixef(prob=95)
    with pytest.raises(bayesmlm.ArgumentError, match="seed must be None or a whole number"):
        typed_fit.predict(seed=-3)
    with pytest.raises(bayesmlm.ArgumentError, match=r"draws \(None for all\) must be a whole number of at least 1; got 0.5"):
        typed_fit.predict(draws=0.5)

"""Exact aggregation of generalized rows into cells (bayesmlm.design.aggregate): the cells, the log-density, the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import cached_fit
from scipy import stats
from scipy.special import expit

import bayesmlm
from bayesmlm.build.full import build_full_model
from bayesmlm.comparison.loo import loo
from bayesmlm.design.aggregate import AGGREGATE_MAX_RATIO, aggregate_rows


def _discrete(n_groups: int = 12, n_per: int = 50, seed: int = 71) -> pd.DataFrame:
    """Rows with a 4-level predictor x, a 3-level factor f, 0/1 y, binomial successes s of t trials,
    poisson counts c with exposure e (two values) -- so rows repeat within each group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.integers(0, 4, g.size).astype(float)
    f = rng.choice(["a", "b", "c"], g.size)
    u = rng.normal(0, 0.7, n_groups)
    eta = -0.3 + 0.4 * x + u[g] + np.where(f == "b", 0.5, 0.0)
    t = rng.integers(1, 6, g.size)
    e = rng.choice([0.5, 2.0], g.size)
    return pd.DataFrame({"g": [f"g{j:02d}" for j in g], "x": x, "f": f, "t": t, "log_e": np.log(e),
                         "y": (rng.random(g.size) < expit(eta)).astype(int), "s": rng.binomial(t, expit(eta)),
                         "c": rng.poisson(e * np.exp(eta))})


MODELS = {
    "bernoulli": dict(formula="y ~ x + f + (1 + x | g)", family="bernoulli"),
    "binomial": dict(formula="s ~ x + f + (1 + x | g)", family="binomial", trials="t"),
    "poisson": dict(formula="c ~ x + f + (1 + x | g)", family="poisson", offset="log_e"),
}


def _model(kind: str, data=None) -> bayesmlm.MLM:
    spec = dict(MODELS[kind])
    return bayesmlm.MLM(spec.pop("formula"), _discrete() if data is None else data, **spec)


# -- the cells --------------------------------------------------------------------------------------------------------
def test_cells_are_the_group_by_of_groups_and_model_matrix_rows():
    data = _discrete()
    m = _model("binomial", data)
    cells = aggregate_rows(m.design)
    by = data.groupby(["g", "x", "f"])
    assert cells.n_rows == 600 and cells.n_cells == by.ngroups
    assert cells.y.sum() == data.s.sum() and cells.trials.sum() == data.t.sum()
    # every row's cell has its group, X row and Z row
    np.testing.assert_array_equal(m.design.X[cells.first][cells.row_cell], m.design.X)
    np.testing.assert_array_equal(m.design.factors["g"].index[cells.first][cells.row_cell], m.design.factors["g"].index)
    np.testing.assert_array_equal(np.sort(cells.trials), np.sort(by["t"].sum().to_numpy()))


def test_poisson_cells_sum_counts_and_exposure_across_offsets():
    data = _discrete()
    cells = aggregate_rows(_model("poisson", data).design)
    by = data.assign(exposure=np.exp(data.log_e)).groupby(["g", "x", "f"])
    # rows of different exposure share a cell: the offset is not part of a poisson cell's key
    assert cells.n_cells == by.ngroups
    np.testing.assert_allclose(np.sort(cells.offset), np.sort(np.log(by["exposure"].sum().to_numpy())), rtol=1e-12)
    assert cells.trials is None and cells.y.sum() == data.c.sum()


def test_offset_separates_bernoulli_cells():
    data = _discrete().assign(off=lambda d: np.where(d.index % 2 == 0, 0.0, 0.25))
    plain = aggregate_rows(bayesmlm.MLM("y ~ x + (1 | g)", data, family="bernoulli").design)
    split = aggregate_rows(bayesmlm.MLM("y ~ x + (1 | g)", data, family="bernoulli", offset="off").design)
    assert split.n_cells == data.groupby(["g", "x", "off"]).ngroups > plain.n_cells == data.groupby(["g", "x"]).ngroups
    assert set(split.offset) == {0.0, 0.25}


def test_continuous_predictors_are_not_aggregated():
    data = _discrete().assign(z=lambda d: np.random.default_rng(1).normal(size=len(d)))
    m = bayesmlm.MLM("y ~ z + (1 | g)", data, family="bernoulli")
    assert aggregate_rows(m.design) is None                      # 600 different rows
    assert aggregate_rows(m.design, max_ratio=1.0).n_cells == 600
    assert AGGREGATE_MAX_RATIO == 0.5
    assert aggregate_rows(bayesmlm.MLM("tech ~ smu + (1 | country)", bayesmlm.datasets.load("wvs7_sim")).design) is None


def test_wvs7_binary_becomes_320_cells_quickly():
    import time

    wvs = bayesmlm.datasets.load("wvs7_sim").assign(hi=lambda d: d.tech >= 8)
    m = bayesmlm.MLM("hi ~ smu + (1 + smu | country)", wvs, family="bernoulli")
    start = time.perf_counter()
    cells = aggregate_rows(m.design)
    assert time.perf_counter() - start < 1.0
    assert (cells.n_rows, cells.n_cells) == (91175, 64 * 5)
    assert cells.y.sum() == (wvs.tech >= 8).sum() and cells.trials.sum() == 91175


# -- the log-density ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("parameterization", ["centred", "non-centred"])
def test_aggregated_log_density_equals_the_row_wise_one(kind, parameterization):
    m = _model(kind)
    cells = aggregate_rows(m.design)
    assert cells is not None and cells.n_cells < 0.5 * cells.n_rows
    choice = {"g": parameterization}
    rows = build_full_model(m.design, m.prior_dict, parameterization=choice)
    agg = build_full_model(m.design, m.prior_dict, cells=cells, parameterization=choice)
    assert [v.name for v in rows.value_vars] == [v.name for v in agg.value_vars]
    logp_rows, logp_agg = rows.compile_logp(mode="FAST_COMPILE"), agg.compile_logp(mode="FAST_COMPILE")
    rng = np.random.default_rng(3)
    start = rows.initial_point()
    for _ in range(5):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        a, b = float(logp_rows(point)), float(logp_agg(point))
        assert np.isfinite(a) and abs(a - b) < 1e-10, (a, b, a - b)


# -- the fit ------------------------------------------------------------------------------------------------------------
def _fit(aggregate: bool):
    return _model("bernoulli").fit(draws=300, tune=300, chains=2, seed=5, progressbar=False, method="full",
                                   aggregate=aggregate)


@pytest.fixture(scope="module")
def fits(fit_cache):
    return {a: cached_fit(fit_cache, f"aggregate_bernoulli_{a}", lambda a=a: _fit(a)) for a in (True, False)}


def test_the_record_says_how_many_cells(fits):
    agg, rows = fits[True], fits[False]
    assert agg.record.n_cells == aggregate_rows(agg.design).n_cells < 300
    assert rows.record.n_cells is None
    assert agg.record.n_obs == rows.record.n_obs == 600
    assert agg.design.n_obs == 600 and agg.design.has_rows      # the fit keeps its rows


def test_posterior_means_agree_within_monte_carlo_error(fits):
    a, b = fits[True], fits[False]
    for table in ("fixef", "varcorr"):
        ta, tb = getattr(a, table)(), getattr(b, table)()
        mcse = np.sqrt(ta["sd"] ** 2 / ta["ess_bulk"] + tb["sd"] ** 2 / tb["ess_bulk"])
        z = (ta["mean"] - tb["mean"]).abs() / mcse
        assert (z < 4).all(), (table, z)


def test_pointwise_log_likelihood_is_per_row_and_sums_to_the_cells(fits):
    fit = fits[True]
    d, cells = fit.design, aggregate_rows(fit.design)
    ll = fit.log_likelihood()
    assert ll.dims == ("chain", "draw", "obs") and ll.sizes["obs"] == 600
    post = fit.posterior.isel(chain=1, draw=123)
    eta = d.X @ post["fixef"].values
    for b in d.blocks:
        u = post[f"u_{b.label}"].sel({b.group: list(d.factors[b.group].levels)}).values
        eta = eta + (b.Z * u[d.factors[b.group].index]).sum(axis=1)
    # the cells' binomial log-likelihood, plus the aggregation constant, is the rows' total
    cell_ll = stats.binom.logpmf(cells.y, cells.trials, expit(eta[cells.first])).sum() + cells.constant
    assert float(ll.isel(chain=1, draw=123).sum()) == pytest.approx(cell_ll, abs=1e-8)
    # each row is its own Bernoulli term: leave one row out, not one cell
    np.testing.assert_allclose(ll.isel(chain=1, draw=123).values, stats.bernoulli.logpmf(d.y, expit(eta)), rtol=1e-10)


def test_ppc_and_loo_stay_per_row(fits):
    fit = fits[True]
    tree = fit.ppc(draws=100, seed=1)
    assert tree["posterior_predictive"]["y"].sizes["obs"] == 600
    res = loo(fit)
    assert res.elpd_i.sizes["obs"] == 600


def test_record_survives_save_and_load(fits, tmp_path):
    fit = fits[True]
    fit.save(tmp_path / "f.nc")
    back = bayesmlm.load(tmp_path / "f.nc")
    assert back.record == fit.record
    assert back.record.parameterization == fit.record.parameterization != {}

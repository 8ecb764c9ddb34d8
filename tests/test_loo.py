"""PSIS-LOO and compare(): same numbers as ArviZ, m2 first on wvs7_sim, Pareto-k warnings."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from arviz_stats.base import array_stats

import bayesmlm
from bayesmlm.comparison.loo import loo, relative_efficiency
from bayesmlm.comparison.psis import psis


def test_vectorized_psis_gives_arviz_weights_and_k():
    rng = np.random.default_rng(8)
    # Rows from well-behaved to heavy-tailed, so that k spans good and bad values.
    ll = rng.normal(-2, 0.3, (200, 800)) + rng.standard_t(3, (200, 800)) * rng.uniform(0, 1.5, (200, 1))
    ours_w, ours_k = psis(ll.copy(), r_eff=0.8)
    ref_w, ref_k = array_stats.psislw(ll, r_eff=0.8, axis=-1)
    np.testing.assert_allclose(ours_k, ref_k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours_w, ref_w, rtol=0, atol=1e-10)
    assert ours_k.min() < 0.3 and ours_k.max() > 1


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_loo_of_a_fit_equals_arviz_loo(poisson_fit):
    ours = loo(poisson_fit)
    tree = xr.DataTree.from_dict({"posterior": poisson_fit.posterior,
                                  "log_likelihood": poisson_fit.log_likelihood().to_dataset()})
    ref = az.loo(tree, pointwise=True, var_name="y", reff=relative_efficiency(poisson_fit.posterior))
    assert ours.elpd == pytest.approx(ref.elpd, rel=1e-12)
    assert ours.se == pytest.approx(ref.se, rel=1e-10)
    assert ours.p == pytest.approx(ref.p, rel=1e-9)
    np.testing.assert_allclose(ours.pareto_k.values, ref.pareto_k.values, atol=1e-12)
    assert ours.n_data_points == 1200 and ours.n_samples == 800


def test_compare_ranks_m2_first_on_wvs7_sim(wvs_fits):
    # 300 respondents from each of the 64 countries; the tutorial's m2 (random smu slope) is the data's truth.
    # Collapsed fits: the log-likelihood reads the random effects the fast path recovers per draw.
    assert {f.record.method for f in wvs_fits.values()} == {"collapsed"}
    table = bayesmlm.compare(wvs_fits)
    assert list(table.index) == ["m2", "m1", "m0"]
    assert list(table["rank"]) == [0, 1, 2]
    for col in ("elpd", "se", "p", "elpd_diff", "dse", "weight", "pareto_k_max", "n_high_k"):
        assert col in table.columns
    assert table.loc["m2", "elpd_diff"] == 0
    # Decisive: m1 and m0 are more than two standard errors of the difference behind.
    assert table.loc["m1", "elpd_diff"] < -2 * table.loc["m1", "dse"]
    assert table.loc["m0", "elpd_diff"] < -2 * table.loc["m0", "dse"]
    assert table["weight"].sum() == pytest.approx(1.0)
    assert table.loc["m2", "weight"] > 0.5
    assert (table["n_high_k"] == 0).all()
    # The elpd is close to the log-likelihood at the posterior mean minus the effective parameters (about 64 + 2
    # for m0 and m1, more for m2 with its slopes); here just the order of magnitude: 19,200 rows, residual SD ~2.4.
    assert -2.35 < table.loc["m2", "elpd"] / 19_200 < -2.25
    assert 55 < table.loc["m0", "p"] < 75 and table.loc["m2", "p"] > table.loc["m1", "p"]


def test_compare_warns_about_high_pareto_k(ucb_fit):
    # Twelve cells of thousands of applicants each: every row is influential.
    with pytest.warns(UserWarning, match=r"Pareto k is high, in 'a': \d+ of 12 rows \(max k \d\.\d\d > 0\.70\)"):
        table = bayesmlm.compare({"a": ucb_fit, "b": ucb_fit})
    assert table.loc["a", "n_high_k"] >= 3
    assert table.loc["a", "pareto_k_max"] > 1


def test_compare_refuses_different_data(ucb_fit, poisson_fit):
    with pytest.raises(ValueError, match=r"Models 'u' and 'p' were not fitted to the same outcome rows \(12 and 1200 rows\)"):
        bayesmlm.compare({"u": ucb_fit, "p": poisson_fit})
    with pytest.raises(ValueError, match="dict of two or more fits"):
        bayesmlm.compare({"u": ucb_fit})
    with pytest.raises(ValueError, match=r"fits\['x'\] is a str, not a bayesmlm Fit"):
        bayesmlm.compare({"u": ucb_fit, "x": "m1.nc"})

"""Complete, no and partial pooling, and Simpson's paradox.

No-pooling and complete-pooling numbers are checked against numpy's lstsq
(the same regressions done by hand); partial pooling is the fit's coef().
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm.comparison.pooling import (
    complete_pooling,
    no_pooling,
    simpson_report,
)

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _lstsq(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coef, *_ = np.linalg.lstsq(Z, y, rcond=None)
    resid = y - Z @ coef
    s2 = resid @ resid / (len(y) - Z.shape[1])
    return coef, np.sqrt(np.diag(s2 * np.linalg.inv(Z.T @ Z)))


def _simpson_data(seed: int = 4) -> pd.DataFrame:
    """Five groups: within each, y falls with x (slope -1); across groups, x and y rise together."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(5):
        x = 2.0 * k + rng.normal(0, 0.6, 12)
        y = 5.0 * k - (x - 2.0 * k) + rng.normal(0, 0.3, 12)
        rows.append(pd.DataFrame({"g": f"g{k}", "x": x, "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_no_pooling_is_one_lstsq_per_group():
    data = bayesmlm.datasets.load("sleepstudy")
    table = no_pooling(bayesmlm.MLM(SLEEP, data).design)
    assert table.index.names == ["group", "term"] and list(table.columns) == ["estimate", "se", "n", "estimable"]
    assert len(table) == 36 and table["estimable"].all() and (table["n"] == 10).all()
    for subject, rows in data.groupby("Subject"):
        Z = np.column_stack([np.ones(len(rows)), rows["Days"]])
        coef, se = _lstsq(Z, rows["Reaction"].to_numpy())
        got = table.xs(str(subject), level="group")
        np.testing.assert_allclose(got["estimate"], coef, rtol=1e-10)
        np.testing.assert_allclose(got["se"], se, rtol=1e-10)
    # Subject 308: lm(Reaction ~ Days, subset = Subject == "308") gives 244.193 and 21.765.
    assert table.loc[("308", "(Intercept)"), "estimate"] == pytest.approx(244.1927, abs=1e-3)
    assert table.loc[("308", "Days"), "estimate"] == pytest.approx(21.7647, abs=1e-3)


def test_complete_pooling_is_one_lstsq_over_all_rows():
    data = bayesmlm.datasets.load("sleepstudy")
    table = complete_pooling(bayesmlm.MLM(SLEEP, data).design)
    coef, se = _lstsq(np.column_stack([np.ones(len(data)), data["Days"]]), data["Reaction"].to_numpy())
    np.testing.assert_allclose(table["estimate"], coef, rtol=1e-10)
    np.testing.assert_allclose(table["se"], se, rtol=1e-10)
    assert table.index.tolist() == ["(Intercept)", "Days"] and (table["n"] == 180).all()


def test_small_and_uniform_groups_are_marked_not_dropped():
    data = bayesmlm.datasets.load("radon")
    design = bayesmlm.MLM("log_radon ~ floor + log_uranium + (1 + floor | county)", data).design
    table = no_pooling(design)
    assert len(table) == 2 * data["county"].nunique()  # every county, both terms
    sizes = data.groupby("county")["floor"].agg(["size", "nunique", "first"])
    # One house: the intercept is that house's log radon (no SE); the floor slope cannot be estimated.
    one = sizes.index[sizes["size"] == 1][0]
    row = table.loc[(one, "(Intercept)")]
    assert row["estimable"] and np.isnan(row["se"])
    assert row["estimate"] == pytest.approx(data.loc[data.county == one, "log_radon"].iloc[0])
    assert not table.loc[(one, "floor"), "estimable"] and np.isnan(table.loc[(one, "floor"), "estimate"])
    # Several houses, all measured in the basement (floor 0): the intercept is their mean, floor is not estimable.
    basement = sizes.index[(sizes["size"] > 2) & (sizes["nunique"] == 1) & (sizes["first"] == 0)][0]
    y = data.loc[data.county == basement, "log_radon"]
    assert table.loc[(basement, "(Intercept)"), "estimate"] == pytest.approx(y.mean())
    assert table.loc[(basement, "(Intercept)"), "se"] == pytest.approx(y.std(ddof=1) / np.sqrt(len(y)))
    assert not table.loc[(basement, "floor"), "estimable"]
    # Estimable rows agree with lstsq on the county's own rows.
    full = sizes.index[(sizes["size"] > 5) & (sizes["nunique"] == 2)][0]
    rows = data[data.county == full]
    coef, se = _lstsq(np.column_stack([np.ones(len(rows)), rows["floor"]]), rows["log_radon"].to_numpy())
    np.testing.assert_allclose(table.xs(full, level="group")["estimate"], coef, rtol=1e-10)
    assert table["estimable"].xs("floor", level="term").sum() == 60


def test_simpsons_paradox_is_reported():
    data = _simpson_data()
    model = bayesmlm.MLM("y ~ x + (1 + x | g)", data)
    report = simpson_report(model)
    row = report.loc["x"]
    assert row["pooled"] > 0 and row["groups"] == 5 and row["negative"] == 5 and row["opposite"] == 5
    assert bool(row["paradox"])
    assert "Simpson's paradox for 'x'" in row["message"] and "5 of 5 groups" in row["message"]
    within = no_pooling(model.design).xs("x", level="term")["estimate"]
    assert (within < 0).all() and within.mean() == pytest.approx(-1.0, abs=0.3)
    table = bayesmlm.pooling(model)
    assert list(table.columns) == ["n", "complete", "no_pooling", "no_pooling_se", "estimable"]
    found = [r for r in table.attrs["simpson"] if r["paradox"]]
    assert [r["term"] for r in found] == ["x"] and found[0]["pooled"] == pytest.approx(row["pooled"])
    # A random-intercept model has the same per-group regressions: x is a level-1 term of g.
    assert simpson_report(bayesmlm.MLM("y ~ x + (1 | g)", data)).loc["x", "paradox"]


def test_no_paradox_when_signs_agree():
    report = simpson_report(bayesmlm.MLM(SLEEP, bayesmlm.datasets.load("sleepstudy")))
    assert report.loc["Days", ["positive", "negative", "paradox"]].tolist() == [17, 1, False]
    assert report.loc["Days", "message"].startswith("No Simpson's paradox for 'Days'")


def test_pooling_table_of_a_fit(sleep_fit):
    table = sleep_fit.pooling()
    assert list(table.columns) == ["n", "complete", "no_pooling", "no_pooling_se", "estimable", "partial_mean",
                                   "partial_lower", "partial_upper"]
    coef = sleep_fit.coef()
    np.testing.assert_allclose(table["partial_mean"], coef["mean"].loc[table.index])
    np.testing.assert_allclose(table["partial_upper"], coef["upper"].loc[table.index])
    np.testing.assert_allclose(table["no_pooling"], no_pooling(sleep_fit.design)["estimate"])
    assert table.xs("Days", level="term")["complete"].unique().tolist() == [pytest.approx(10.467286, abs=1e-5)]
    # Partial pooling shrinks: the spread of the slopes is smaller than with no pooling, larger than with complete.
    days = table.xs("Days", level="term")
    assert 0 < days["partial_mean"].std() < days["no_pooling"].std()
    assert bayesmlm.pooling(sleep_fit, prob=0.5)["partial_upper"].lt(table["partial_upper"]).all()
    assert bayesmlm.pooling(sleep_fit).equals(table)


def test_pooling_input_errors():
    data = _simpson_data()
    data["h"] = np.tile(["a", "b", "c"], len(data) // 3)
    model = bayesmlm.MLM("y ~ x + (1 | g) + (1 | h)", data)
    with pytest.raises(ValueError, match=r"several grouping factors \(g, h\); pass factor="):
        no_pooling(model.design)
    assert no_pooling(model.design, factor="h").index.get_level_values("group").unique().tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="Unknown grouping factor 'school'. This model's factors: g, h"):
        complete_pooling(model.design, factor="school")
    with pytest.raises(TypeError, match="Expected a bayesmlm MLM, Fit or Design; got DataFrame"):
        bayesmlm.pooling(data)

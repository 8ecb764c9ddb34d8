"""Tests of bayesmlm.datasets: shapes, label types, the wvs7_sim targets, references."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmlm import datasets
from bayesmlm.datasets import describe, load

REFERENCE = Path(__file__).parent / "reference"

# name -> (rows, grouping column, number of groups)
EXPECTED = {
    "wvs7_sim": (91_175, "country", 64),
    "sleepstudy": (180, "Subject", 18),
    "radon": (919, "county", 85),
    "hsb82": (7_185, "school", 160),
    "ucb_admissions": (24, "Dept", 6),
    "nlschools": (2_287, "class", 133),
    "dyestuff2": (30, "Batch", 6),
    "penicillin": (144, "plate", 24),
    "pastes": (60, "sample", 30),
    "cbpp": (56, "herd", 15),
    "verbagg": (7_584, "id", 316),
    "contraception": (1_934, "district", 60),
    "grouseticks": (403, "BROOD", 118),
    "wine": (72, "judge", 9),
    "mmmec": (354, "region", 78),
    "insteval": (73_421, "s", 2_972),
    "ucb_admissions_wide": (12, "Dept", 6),
}

# The 20 countries the tutorial prints, with their sizes.
TUTORIAL_TOP20 = {
    "CHN": 2976, "KGZ": 1169, "BGD": 1119, "VNM": 1200, "UZB": 1201,
    "TJK": 1200, "LBY": 1098, "IDN": 2973, "MDV": 1032, "RUS": 1741,
    "UKR": 1207, "ETH": 1070, "DEU": 1509, "NZL": 958, "GBR": 2572,
    "KAZ": 1202, "USA": 2540, "ZWE": 1170, "MAR": 1200, "PAK": 1882,
}  # fmt: skip


@pytest.fixture(scope="module")
def wvs() -> pd.DataFrame:
    return load("wvs7_sim")


def _is_label(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col) and all(isinstance(v, str) for v in col.unique())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_rows_and_groups(name):
    rows, grouping, n_groups = EXPECTED[name]
    df = load(name)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == rows
    assert df[grouping].nunique() == n_groups
    assert _is_label(df[grouping]), f"{name}.{grouping} should be string labels"
    assert not df.isna().any().any()


def test_describe_matches_data():
    table = describe()
    assert list(table["name"]) == list(EXPECTED)
    assert {"name", "rows", "groups", "grouping", "description", "source"} <= set(table.columns)
    for row in table.itertuples():
        rows, grouping, n_groups = EXPECTED[row.name]
        assert (row.rows, row.grouping, row.groups) == (rows, grouping, n_groups)
        assert row.source and row.description
    wvs_row = table.set_index("name").loc["wvs7_sim"]
    assert bool(wvs_row["simulated"]) and "SIMULATED" in wvs_row["description"]
    assert "0.086" in wvs_row["description"]  # the ICC target is listed
    assert not table.set_index("name").drop(index="wvs7_sim")["simulated"].any()


def test_load_returns_fresh_copy():
    a = load("sleepstudy")
    a.loc[0, "Reaction"] = -1.0
    assert load("sleepstudy").loc[0, "Reaction"] > 0


def test_unknown_name():
    with pytest.raises(ValueError) as err:
        load("sleep_study")
    msg = str(err.value)
    assert "sleep_study" in msg
    for name in EXPECTED:
        assert name in msg
    with pytest.raises(ValueError):
        load(None)  # type: ignore[arg-type]


def test_wvs7_sim_values(wvs):
    assert list(wvs.columns) == ["country", "smu", "tech", "weight"]
    by = wvs.groupby("country")["weight"]  # WVS-like design weights: mean 1 per country, trimmed at 5
    assert np.allclose(by.mean(), 1.0, atol=5e-4) and wvs["weight"].between(0.01, 5.0).all()
    assert (by.std() == 0).sum() == 8 and 10 < (wvs["weight"] == 5.0).sum() < 200
    assert wvs["smu"].dtype == np.int64 and wvs["tech"].dtype == np.int64
    assert set(wvs["smu"].unique()) == {1, 2, 3, 4, 5}
    assert set(wvs["tech"].unique()) == set(range(1, 11))
    assert wvs["country"].str.fullmatch(r"[A-Z]{3}").all()
    sizes = wvs["country"].value_counts()
    for code, n in TUTORIAL_TOP20.items():
        assert sizes[code] == n
    # Many 1s and 5s, as in the tutorial's glimpse().
    share = wvs["smu"].value_counts(normalize=True)
    assert share[1] > 0.3 and share[5] > 0.2 and max(share[2], share[3], share[4]) < 0.2
    # The tutorial's top-20 table: CHN first, the 20 listed countries on top.
    means = wvs.groupby("country")["tech"].mean().sort_values(ascending=False)
    assert means.index[0] == "CHN"
    assert set(means.index[:20]) == set(TUTORIAL_TOP20)


def test_wvs7_sim_empty_model_icc(wvs):
    smf = pytest.importorskip("statsmodels.formula.api")
    fit = smf.mixedlm("tech ~ 1", wvs, groups=wvs["country"]).fit(reml=True)
    tau = float(fit.cov_re.iloc[0, 0])
    icc = tau / (tau + float(fit.scale))
    assert abs(icc - 0.086) < 0.01
    assert abs(float(fit.fe_params["Intercept"]) - 7.04) < 0.1
    stored = json.loads((REFERENCE / "wvs7_sim_statsmodels.json").read_text())
    assert icc == pytest.approx(stored["estimates"]["m0"]["icc"], abs=1e-3)


def test_wvs7_sim_stored_estimates_near_targets():
    ref = json.loads((REFERENCE / "wvs7_sim_statsmodels.json").read_text())
    assert ref["dataset"] == "wvs7_sim" and ref["n_obs"] == 91_175
    assert set(ref["calls"]) == {"m0", "m1", "m2"}
    est, tgt = ref["estimates"], ref["targets_lme4_tutorial"]
    assert abs(est["m0"]["icc"] - tgt["m0"]["icc"]) < 0.01
    assert abs(est["m2"]["cor_intercept_smu"] - tgt["m2"]["cor_intercept_smu"]) < 0.1
    for model, key in [
        ("m0", "intercept"), ("m0", "var_intercept"), ("m0", "var_residual"),
        ("m2", "intercept"), ("m2", "smu"), ("m2", "var_intercept"),
        ("m2", "var_smu"), ("m2", "var_residual"),
    ]:  # fmt: skip
        assert est[model][key] == pytest.approx(tgt[model][key], rel=0.10), (model, key)
        assert est[model]["converged"]


def test_wvs7_sim_description_quotes_stored_estimates():
    est = json.loads((REFERENCE / "wvs7_sim_statsmodels.json").read_text())["estimates"]
    text = describe().set_index("name").loc["wvs7_sim", "description"]
    for quoted in [
        f"({est['m0']['var_intercept']:.3f})",
        f"({est['m0']['icc']:.3f})",
        f"({est['m2']['smu']:.3f})",
        f"({est['m2']['var_intercept']:.3f})",
        f"({est['m2']['var_smu']:.4f})",
        f"({est['m2']['var_residual']:.2f})",
    ]:
        assert quoted in text


LME4_REFERENCES = {
    "sleepstudy.json": ("sleepstudy", "Subject"),
    "radon.json": ("radon", "county"),
    "hsb82.json": ("hsb82", "school"),
    "ucb_admissions.json": ("ucb_admissions", "Dept"),
}


@pytest.mark.parametrize("fname", sorted(LME4_REFERENCES))
def test_lme4_reference_loads(fname):
    ref = json.loads((REFERENCE / fname).read_text())
    name, grouping = LME4_REFERENCES[fname]
    assert ref["dataset"] == name
    assert ref["call"].startswith(("lmer(", "glmer("))
    for key in ("fixef", "sd", "cor", "ranef", "singular", "n_groups"):
        assert key in ref
    assert all({"estimate", "se"} <= set(v) for v in ref["fixef"].values())
    df = load(name)
    if name != "ucb_admissions":  # the glmer fit uses the 12-row wide table
        assert ref["n_obs"] == len(df)
    assert ref["n_groups"][grouping] == df[grouping].nunique()
    # Conditional modes are keyed by the same string labels the loader returns.
    assert set(ref["ranef"]) == set(df[grouping].unique())


def test_pooled_glm_reference_loads():
    ref = json.loads((REFERENCE / "ucb_admissions_pooled_glm.json").read_text())
    assert ref["call"].startswith("glm(")
    assert set(ref["coef"]) == {"(Intercept)", "GenderMale"}


def test_ucb_applicants():
    ucb = load("ucb_admissions")
    assert ucb["Freq"].sum() == 4526
    wide = ucb.pivot_table(index=["Gender", "Dept"], columns="Admit", values="Freq", aggfunc="sum")
    assert wide.shape == (12, 2)


def test_docstring_examples():
    result = doctest.testmod(datasets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_public_names():
    assert set(datasets.__all__) == {"load", "describe"}

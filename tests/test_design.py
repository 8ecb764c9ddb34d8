"""Design matrices and the checks on the data: each bad input gets its own clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm import DataError, RowsDroppedWarning, SpecError
from bayesmlm.design.levels import level_structure


@pytest.fixture()
def small() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(list("abcdef"), 10)
    x = rng.normal(size=60)
    return pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(size=60), "x": x, "g": g, "w": np.repeat(np.arange(6.0), 10)})


def test_lme4_term_names_and_treatment_contrasts():
    m = bayesmlm.MLM("mAch ~ meanses * cses + sector * cses + (1 + cses | school)", bayesmlm.datasets.load("hsb82"))
    # lme4: colnames(model.matrix(~ meanses * cses + sector * cses, Hsb82))
    assert m.design.fixed_terms == ("(Intercept)", "meanses", "cses", "meanses:cses", "sectorPublic", "cses:sectorPublic")
    assert m.design.blocks[0].terms == ("(Intercept)", "cses")
    assert m.design.factors["school"].n_levels == 160
    public = (m.design.data["sector"] == "Public").to_numpy()
    np.testing.assert_array_equal(m.design.X[:, 4], public.astype(float))


def test_level_structure_reads_cross_level_interactions():
    data = bayesmlm.datasets.load("hsb82")
    m = bayesmlm.MLM("mAch ~ meanses * cses + sector * cses + (1 + cses | school)", data)
    ls = level_structure(m.design)
    assert ls.level1_terms == ("(Intercept)", "cses")
    assert ls.fixed_level1 == ("(Intercept)", "(Intercept)", "cses", "cses", "(Intercept)", "cses")
    assert ls.fixed_level2 == ("1", "meanses", "1", "meanses", "sectorPublic", "sectorPublic")
    # W holds each school's meanses and sector dummy.
    first = data.groupby("school", sort=True).first()
    levels = list(m.design.factors["school"].levels)
    np.testing.assert_allclose(ls.W[:, 1], first.loc[levels, "meanses"].to_numpy())
    np.testing.assert_allclose(ls.W[:, 5], (first.loc[levels, "sector"] == "Public").to_numpy(float))


def test_unknown_column_lists_the_columns(small):
    with pytest.raises(DataError, match=r"'z'.*not in the data. Columns that exist: y, x, g, w"):
        bayesmlm.MLM("y ~ z + (1 | g)", small)


def test_non_numeric_outcome(small):
    with pytest.raises(DataError, match="outcome 'g' is .*not numeric.*family='bernoulli'"):
        bayesmlm.MLM("g ~ x + (1 | w)", small)


def test_grouping_factor_with_one_level(small):
    with pytest.raises(DataError, match="grouping factor 'one' has only one level"):
        bayesmlm.MLM("y ~ x + (1 | one)", small.assign(one="A"))


def test_constant_predictor(small):
    with pytest.raises(DataError, match="term 'c' is constant"):
        bayesmlm.MLM("y ~ x + c + (1 | g)", small.assign(c=3.0))


def test_constant_random_slope(small):
    with pytest.raises(DataError, match=r"random \(g\) term 'c' is constant"):
        bayesmlm.MLM("y ~ x + (1 + c | g)", small.assign(c=3.0))


def test_collinear_predictors(small):
    with pytest.raises(DataError, match=r"term 'x2' is a linear combination of \['\(Intercept\)', 'x'\]"):
        bayesmlm.MLM("y ~ x + x2 + (1 | g)", small.assign(x2=2 * small.x + 1))


def test_empty_data(small):
    with pytest.raises(DataError, match="no rows"):
        bayesmlm.MLM("y ~ x + (1 | g)", small.iloc[:0])


def test_infinite_values(small):
    bad = small.copy()
    bad.loc[7, "x"] = np.inf
    with pytest.raises(DataError, match=r"Column 'x' has 1 infinite value\(s\) \(first at row 7\)"):
        bayesmlm.MLM("y ~ x + (1 | g)", bad)


def test_unknown_prior_lists_the_valid_names(small):
    with pytest.raises(SpecError, match=r"Unknown prior 'sd_x'. Valid names for this model: \(Intercept\), x, sd\(g:\(Intercept\)\), sigma"):
        bayesmlm.MLM("y ~ x + (1 | g)", small, priors={"sd_x": "normal(0, 1)"})


def test_prior_on_an_sd_must_be_positive(small):
    with pytest.raises(SpecError, match="standard deviation"):
        bayesmlm.MLM("y ~ x + (1 | g)", small, priors={"sd(g:(Intercept))": "normal(0, 1)"})


def test_missing_values_are_dropped_and_counted(small):
    holes = small.copy()
    holes.loc[[1, 2], "x"] = np.nan
    holes.loc[5, "y"] = np.nan
    holes.loc[9, "unused"] = np.nan  # a column outside the model does not drop rows
    with pytest.warns(RowsDroppedWarning, match=r"Dropped 3 of 60 rows with missing values \(y: 1, x: 2\)"):
        m = bayesmlm.MLM("y ~ x + (1 | g)", holes)
    assert m.design.rows_dropped == 3
    assert m.design.n_obs == 57


def test_default_priors_scale_with_the_data(small):
    a = bayesmlm.MLM("y ~ x + (1 + x | g)", small).prior_dict
    b = bayesmlm.MLM("y ~ x + (1 + x | g)", small.assign(y=small.y * 100, x=small.x / 10)).prior_dict
    assert b["x"].kwargs["sigma"] == pytest.approx(1000 * a["x"].kwargs["sigma"], rel=1e-3)
    assert b["sd(g:x)"].kwargs["sigma"] == pytest.approx(1000 * a["sd(g:x)"].kwargs["sigma"], rel=1e-3)
    assert b["sigma"].kwargs["lam"] == pytest.approx(a["sigma"].kwargs["lam"] / 100, rel=1e-3)
    assert a["cor(g)"].dist == "lkj"


# -- issue 15: priors at any scale, and priors given the wrong way ---------------------------------------------------
@pytest.mark.parametrize("scale", [1e-7, 5e-5, 1e9])
def test_default_priors_scale_at_any_magnitude(small, scale):
    # Before: rounded to 4 decimals, so at 1e-7 the intercept's sigma was 0 (an error) and near 5e-5 it was 30% off.
    y = small.y * scale
    pri = bayesmlm.MLM("y ~ x + (1 | g)", small.assign(y=y)).prior_dict
    s_y = float(np.std(y, ddof=1))
    assert pri["(Intercept)"].kwargs["mu"] == pytest.approx(float(np.mean(y)), rel=1e-9)
    assert pri["(Intercept)"].kwargs["sigma"] == pytest.approx(2.5 * s_y, rel=1e-3)
    assert pri["sd(g:(Intercept))"].kwargs["sigma"] == pytest.approx(s_y, rel=1e-3)
    assert pri["sigma"].kwargs["lam"] == pytest.approx(1 / s_y, rel=1e-3)


def test_intercept_prior_is_not_rounded_off_a_large_mean(small):
    y = 1e6 + 1e-3 * small.y
    pri = bayesmlm.MLM("y ~ x + (1 | g)", small.assign(y=y)).prior_dict["(Intercept)"].kwargs
    assert abs(pri["mu"] - y.mean()) < 1e-3 * pri["sigma"]


def test_priors_must_be_a_dict(small):
    # Before: AttributeError: 'list' object has no attribute 'items'.
    with pytest.raises(SpecError, match=r"priors must be a dict.*got a list. Valid names for this model: \(Intercept\), x"):
        bayesmlm.MLM("y ~ x + (1 | g)", small, priors=["normal(0, 1)"])


def test_prior_parameters_must_be_numbers():
    with pytest.raises(SpecError, match="Prior normal: parameter mu must be a number; got 'a'"):
        bayesmlm.Prior("normal", mu="a", sigma=1)


# -- issue 15: every column role with every dtype; values a transform makes; outcomes with nothing to model ----------
def test_transform_that_makes_minus_inf_names_the_term(small):
    # Before: -inf in X, then PyMC's "Masked arrays" NotImplementedError at fit time.
    with pytest.raises(DataError, match=r"fixed term 'np.log\(z\)' is -inf in 1 row\(s\) \(first at row 0\).*np.log1p"):
        bayesmlm.MLM("y ~ np.log(z) + (1 | g)", small.assign(z=np.r_[0.0, np.abs(small.x[1:])]))


@pytest.mark.parametrize("values, words", [
    (pd.date_range("2020-01-01", periods=60), r"'d' is datetime64.*date or time.*\.dt\.days"),
    (pd.to_timedelta(np.arange(60), "D"), r"'d' is timedelta64.*total_seconds"),
    (np.arange(60) + 1j, r"'d' is complex128.*must be real"),
    (pd.Series([1, "a"] * 30, dtype=object), r"'d' is object, of mixed types \(int, str\).*one type"),
    (pd.Series(list(np.arange(60.0)), dtype=object), r"'d' is object, numbers stored as objects.*pd.to_numeric"),
])  # fmt: skip
def test_predictor_dtypes_the_model_cannot_read(small, values, words):
    # Before: SpecError "Variable is of an unrecognized type (<class 'pandas.Series'>)", or (complex) silently the real part.
    with pytest.raises(DataError, match="The predictor " + words):
        bayesmlm.MLM("y ~ d + (1 | g)", small.assign(d=values))


@pytest.mark.parametrize("dtype", ["string", "category", "object", "string[pyarrow]"])
def test_text_predictors_of_every_text_dtype_read_alike(small, dtype):
    c = pd.Series(np.tile(list("abc"), 20)).astype(dtype)
    assert bayesmlm.MLM("y ~ c + (1 | g)", small.assign(c=c)).design.fixed_terms == ("(Intercept)", "cb", "cc")


def test_nullable_numbers_and_bools_are_numbers(small):
    xi = pd.array(np.round(small.x * 3).astype(int), dtype="Int64")
    xi[3] = pd.NA
    with pytest.warns(RowsDroppedWarning, match="Dropped 1 of 60"):
        m = bayesmlm.MLM("y ~ xi + xf + b + (1 | g)", small.assign(xi=xi, xf=pd.array(small.x, dtype="Float64"),
                                                                   b=pd.array(small.x > 0, dtype="boolean")))
    assert m.design.fixed_terms == ("(Intercept)", "xi", "xf", "b")
    assert m.design.X.dtype == float


def test_grouping_column_of_mixed_types_is_refused(small):
    # Before: 1 and "1" silently became one group.
    with pytest.raises(DataError, match=r"grouping column 'g' is object, of mixed types \(int, str\)"):
        bayesmlm.MLM("y ~ x + (1 | g)", small.assign(g=pd.Series([1, "1", 2, "2", 3, "3"] * 10, dtype=object)))


def test_whole_number_group_labels_read_alike_in_any_dtype(small):
    ints = np.repeat(np.arange(6), 10)
    a = bayesmlm.MLM("y ~ x + (1 | g)", small.assign(g=ints)).design.factors["g"].levels
    b = bayesmlm.MLM("y ~ x + (1 | g)", small.assign(g=ints.astype(float))).design.factors["g"].levels
    c = bayesmlm.MLM("y ~ x + (1 | g)", small.assign(g=pd.array(ints, dtype="Int64"))).design.factors["g"].levels
    assert a == b == c == ("0", "1", "2", "3", "4", "5")


def test_duplicate_column_names_are_refused(small):
    # Before: AttributeError: 'DataFrame' object has no attribute 'dtype'.
    with pytest.raises(DataError, match=r"Column name\(s\) 'x' appear more than once.*duplicated"):
        bayesmlm.MLM("y ~ x + (1 | g)", pd.concat([small, small[["x"]]], axis=1))
    twice_unused = pd.concat([small, small[["w"]]], axis=1)  # a copy the model does not read is left alone
    assert bayesmlm.MLM("y ~ x + (1 | g)", twice_unused).design.n_obs == 60


def test_column_arguments_must_be_names(small):
    with pytest.raises(bayesmlm.ArgumentError, match=r"offset= names a column of the data \(a str\); got \['x'\]"):
        bayesmlm.MLM("y ~ x + (1 | g)", small, offset=["x"])


@pytest.mark.parametrize("family, y, words", [
    ("gaussian", 3.0, "every row is 3: there is no variation"),
    ("bernoulli", 0, "every row is 0: a logit model needs both outcomes"),
    ("poisson", 0, "every count is 0"),
])  # fmt: skip
def test_outcome_without_variation_is_refused(small, family, y, words):
    with pytest.raises(DataError, match=f"outcome 'y' has no variation: {words}"):
        bayesmlm.MLM("y ~ x + (1 | g)", small.assign(y=y), family=family)


def test_complete_separation_warns_naming_the_predictor(small):
    with pytest.warns(bayesmlm.SeparationWarning, match=r"'x' separates the outcome \(y = 1 exactly where x is above"):
        bayesmlm.MLM("y ~ x + (1 | g)", small.assign(y=(small.x > 0).astype(int)), family="bernoulli")
    quasi = small.assign(y=(small.y > 1).astype(int), b=np.r_[np.ones(5), np.zeros(55)])
    quasi.loc[quasi.b == 1, "y"] = 1
    with pytest.warns(bayesmlm.SeparationWarning, match="'b' separates the outcome \\(every row with b = 1 has y = 1\\)"):
        bayesmlm.MLM("y ~ b + x + (1 | g)", quasi, family="bernoulli")


# -- issue 15: the reference level of a categorical predictor ---------------------------------------------------------
def test_first_category_of_a_categorical_is_the_reference_level(small):
    # Before: an unordered Categorical's levels were sorted, so 'a' was the reference whatever the categories said.
    c = pd.Categorical(np.tile(list("abc"), 20), categories=["c", "a", "b"])
    assert bayesmlm.MLM("y ~ c + (1 | g)", small.assign(c=c)).design.fixed_terms == ("(Intercept)", "ca", "cb")
    ordered = pd.Categorical(np.tile(list("abc"), 20), categories=["b", "c", "a"], ordered=True)
    assert bayesmlm.MLM("y ~ c + (1 | g)", small.assign(c=ordered)).design.fixed_terms == ("(Intercept)", "cc", "ca")
    unused = pd.Categorical(np.tile(list("ab"), 30), categories=["z", "b", "a"])  # a category no row has is not a level
    assert bayesmlm.MLM("y ~ c + (1 | g)", small.assign(c=unused)).design.fixed_terms == ("(Intercept)", "ca")


def test_reference_level_set_in_the_formula(small):
    # Before: DataError "Column(s) '' not in the data" (the string "b" read as a column named '').
    m = bayesmlm.MLM('y ~ C(c, Treatment("b")) + (1 | g)', small.assign(c=np.tile(list("abc"), 20)))
    assert m.design.fixed_terms == ("(Intercept)", 'C(c, Treatment("b"))a', 'C(c, Treatment("b"))c')


# -- issue 15: random effects the data cannot identify are refused before sampling (as lme4 does) --------------------
def test_one_row_per_group_is_refused(small):
    with pytest.raises(DataError, match=r"'row' has one row per group \(60 groups, 60 rows\).*residual error.*drop \(1 \| row\)"):
        bayesmlm.MLM("y ~ x + (1 | row)", small.assign(row=np.arange(60)))
    with pytest.raises(DataError, match="one row per group.*0/1 row"):
        bayesmlm.MLM("y ~ x + (1 | row)", small.assign(row=np.arange(60), y=(small.y > 1).astype(int)), family="bernoulli")
    counts = small.assign(row=np.arange(60), y=np.random.default_rng(1).poisson(3, 60))  # overdispersion: identified
    assert bayesmlm.MLM("y ~ x + (1 | row)", counts, family="poisson").design.factors["row"].n_levels == 60


def test_as_many_random_effects_as_rows_is_refused(small):
    with pytest.raises(DataError, match=r"\(1 \+ x \| pair\) has 2 x 30 = 60 random effects for 60 rows"):
        bayesmlm.MLM("y ~ x + (1 + x | pair)", small.assign(pair=np.arange(60) // 2))


@pytest.mark.parametrize("random", ["(1 + w | g)", "(1 + w || g)", "(1 | g) + (0 + w | g)"])
def test_random_slope_of_a_group_level_variable_is_refused(small, random):
    with pytest.raises(DataError, match=r"random slope of 'w' by 'g' is not identified: 'w' is constant within each group.*"
                                        r"\+ w \+ \(1 \| g\)"):
        bayesmlm.MLM(f"y ~ w + {random}", small)
    assert bayesmlm.MLM("y ~ w + (0 + w | g)", small.assign(w=small.w + 1)).design.blocks[0].terms == ("w",)


def test_correlated_block_needs_more_groups_than_terms(small):
    three = small.assign(z=np.random.default_rng(2).normal(size=60), h=np.repeat(list("abc"), 20))
    with pytest.raises(DataError, match=r"\(1 \+ x \+ z \| h\) has 3 random terms but 'h' has only 3 groups.*'\|\|'"):
        bayesmlm.MLM("y ~ x + z + (1 + x + z | h)", three)
    assert bayesmlm.MLM("y ~ x + z + (1 + x + z || h)", three).design.factors["h"].n_levels == 3


def test_from_levels_refuses_a_level2_predictor_that_varies_within_groups(small):
    # Before: accepted, and equations() then read 'v' as a level-1 variable, silently rewriting the level-2 equation.
    with pytest.raises(DataError, match=r"level2\['x'\] uses 'v', which varies within groups of 'g' \(group 'a' has 10 "
                                        r"different values\).*transform\('mean'\).*into level1"):
        bayesmlm.MLM.from_levels("y ~ 1 + x", {"x": "~ 1 + v"}, group="g", data=small.assign(v=small.x * 2 + 1))
    m = bayesmlm.MLM.from_levels("y ~ 1 + x", {"1": "~ 1 + w", "x": "~ 1 + w"}, group="g", data=small)
    level2 = m.equations().level2_text
    assert any("w" in eq for eq in level2) and "w" not in m.equations().level1_text

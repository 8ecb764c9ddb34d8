"""Parsing formulas and level equations into one ModelSpec."""

from __future__ import annotations

import re

import numpy as np
import pytest

import bayesmlm
from bayesmlm import SpecError
from bayesmlm.spec.formula import RandomBlock, parse_formula, spec_from_levels


@pytest.mark.parametrize("formula, fixed, blocks", [
    ("tech ~ 1 + smu + (1 + smu | country)", "1 + smu", [("1 + smu", "country", True)]),
    ("tech ~ 1 + (1 | country)", "1", [("1", "country", False)]),
    ("y ~ x * w + (1 + x | g)", "1 + x * w", [("1 + x", "g", True)]),
    ("y ~ x + (0 + x | g)", "1 + x", [("0 + x", "g", False)]),
    ("y ~ x + (1 | g) + (0 + x | g)", "1 + x", [("1", "g", False), ("0 + x", "g", False)]),
    ("y ~ x + (x | g)", "1 + x", [("1 + x", "g", True)]),
    ("y ~ x + (1 + x || g)", "1 + x", [("1", "g", False), ("0 + x", "g", False)]),
    ("y ~ 0 + x + (1 | a/b)", "0 + x", [("1", "a", False), ("1", "a:b", False)]),
])  # fmt: skip
def test_formula_variants(formula, fixed, blocks):
    spec = parse_formula(formula)
    assert spec.fixed == fixed
    assert [(b.expr, b.group, b.correlated) for b in spec.random] == blocks


@pytest.mark.parametrize("formula, fragment, caret_col", [
    ("y ~ x + (1 + x | g", "unclosed '('", 8),
    ("y ~ x + 1 + x | g)", "unmatched ')'", 17),
    ("y ~ x + | g", "'|' outside parentheses", 8),
    ("y ~ x + (1 + x | )", "no grouping factor", None),
    ("y ~ x ++ z", "empty term", None),
    ("y x + (1 | g)", "needs '~'", None),
    (" ~ x + (1 | g)", "no outcome", None),
])  # fmt: skip
def test_syntax_errors_point_at_the_place(formula, fragment, caret_col):
    with pytest.raises(SpecError, match=re.escape(fragment)) as err:
        parse_formula(formula)
    if caret_col is not None:
        lines = str(err.value).splitlines()
        assert lines[-1].index("^") - 2 == caret_col  # the caret sits under the offending character
        assert lines[-2].strip() == formula.strip()


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(SpecError, match="gaussian, student, bernoulli, binomial, poisson, negbinomial, cumulative"):
        parse_formula("y ~ x + (1 | g)", family="gamma")


def test_levels_and_formula_give_the_same_spec():
    spec = spec_from_levels("y ~ 1 + x", {"1": "~ 1 + w", "x": "~ 1 + w"}, "g")
    assert spec.formula == "y ~ 1 + w + x + x:w + (1 + x | g)"
    assert spec == parse_formula(spec.formula)
    assert spec.random == (RandomBlock("1 + x", "g", True),)


def test_levels_with_a_fixed_slope():
    spec = spec_from_levels("y ~ 1 + x + z", {"x": "~ 1 + w"}, "g", fixed=["z"])
    assert spec.formula == "y ~ 1 + x + x:w + z + (1 + x | g)"


def test_levels_reject_unknown_terms():
    with pytest.raises(SpecError, match=r"not level-1 terms. Level-1 terms: \['1', 'x'\]"):
        spec_from_levels("y ~ 1 + x", {"z": "~ 1 + w"}, "g")
    with pytest.raises(SpecError, match="at least one random term"):
        spec_from_levels("y ~ 1 + x", {}, "g", fixed=["1", "x"])


def test_from_levels_and_formula_build_identical_models():
    data = bayesmlm.datasets.load("hsb82")
    a = bayesmlm.MLM.from_levels("mAch ~ 1 + cses", {"1": "~ 1 + meanses + sector", "cses": "~ 1 + meanses + sector"},
                                 group="school", data=data)
    b = bayesmlm.MLM("mAch ~ meanses + sector + cses + cses:meanses + cses:sector + (1 + cses | school)", data)
    assert a.formula == b.formula
    assert a.design.fixed_terms == b.design.fixed_terms
    np.testing.assert_array_equal(a.design.X, b.design.X)
    np.testing.assert_array_equal(a.design.blocks[0].Z, b.design.blocks[0].Z)
    assert a.priors().equals(b.priors())
    assert str(a.equations()) == str(b.equations())


# -- issue 15: models that cannot be identified are refused before any data is read --------------------------------
def test_formula_without_random_term_points_to_a_regression_tool():
    # Before: MLM("y ~ x", data) fitted, then ranef() raised IndexError.
    with pytest.raises(SpecError, match=r"'y ~ x' has no random term.*\(1 \| group\).*bambi.*statsmodels"):
        parse_formula("y ~ x")


@pytest.mark.parametrize("formula, where", [
    ("y ~ y + (1 | g)", "fixed part"),
    ("y ~ x + np.log(y) + (1 | g)", "fixed part"),
    ("y ~ x + (1 + y | g)", r"random term \(1 \+ y \| g\)"),
    ("y ~ x + (1 | y)", "grouping factor"),
])  # fmt: skip
def test_outcome_on_both_sides_is_refused(formula, where):
    with pytest.raises(SpecError, match=rf"outcome 'y' is also in the {where}.*not identified. Remove 'y'"):
        parse_formula(formula)


def test_outcome_check_reads_names_not_substrings():
    assert parse_formula("y ~ yy + y.1 + np.log(x) + (1 | g)").fixed == "1 + yy + y.1 + np.log(x)"
    with pytest.raises(SpecError, match="outcome 'a' is also in the fixed part"):
        parse_formula("cbind(a, b) ~ a + (1 | g)", "binomial")


@pytest.mark.parametrize("kwargs, words", [
    ({"fixed": "x"}, r"fixed is a list of level-1 terms, e.g. fixed=\['x'\]; got 'x'"),  # a str was read as its letters ('cses': c, s, e)
    ({"level2": [("x", "~ 1 + w")]}, r"level2 maps level-1 terms to level-2 equations.*got a list"),
    ({"group": ["g"]}, r"group names the level-2 grouping column \(a str\); got \['g'\]"),
    ({"family": ["gaussian"]}, r"Unknown family \['gaussian'\]. Valid families"),  # was TypeError: unhashable type
])  # fmt: skip
def test_level_equation_arguments_of_the_wrong_type(kwargs, words):
    args = {"level2": {"x": "~ 1 + w"}, "group": "g", **kwargs}
    with pytest.raises(SpecError, match=words):
        spec_from_levels("y ~ 1 + x", args.pop("level2"), args.pop("group"), **args)

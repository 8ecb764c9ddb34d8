"""The engine's cumulative (ordinal) Laplace fit against ordinal::clmm 2022.11.16.

References (each with its R call, written by scripts/references/families_references.R):
tests/reference/wine_clmm.json (logit, random intercept), wine_clmm_probit.json (probit) and
soup_clmm_slope.json (logit, correlated random slope, 1,847 ratings of 185 respondents; the
data are tests/reference/soup.csv). X, Z and the codes are built here with plain pandas, with
R's treatment contrasts, independently of bayesmlm.design. Tolerances: estimates, thresholds,
SDs and the correlation to 1e-4 relative, standard errors to 1e-3, logLik to 1e-5 absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmlm.datasets import load
from bayesmlm.frequentist_engine import MixedProblem, RandomBlock, fit_frequentist
from bayesmlm.frequentist_engine.blocked import random_structure
from bayesmlm.frequentist_engine.cumulative import cumulative_data, ordinal_cells
from bayesmlm.frequentist_engine.cumulative_link import cumulative_terms
from bayesmlm.frequentist_engine.laplace import pirls

REFERENCE = Path(__file__).parent / "reference"


def _reference(name: str) -> dict:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def _wine_problem(link: str) -> MixedProblem:
    w = load("wine")
    X = np.column_stack([(w["temp"] == "warm"), (w["contact"] == "yes")]).astype(float)
    judges = sorted(w["judge"].astype(str).unique())
    codes = pd.Categorical(w["judge"].astype(str), categories=judges).codes.astype(np.intp)
    g = RandomBlock("judge", codes, tuple(judges), np.ones((len(w), 1)), ("(Intercept)",))
    return MixedProblem(X, w["rating"].to_numpy(float) - 1, ("tempwarm", "contactyes"), (g,), family="cumulative",
                        link=link, categories=("1", "2", "3", "4", "5"))


def _soup_problem() -> MixedProblem:
    s = pd.read_csv(REFERENCE / "soup.csv", dtype={"RESP": str})
    test = (s["PROD"] == "Test").to_numpy(float)
    resp = sorted(s["RESP"].unique())
    codes = pd.Categorical(s["RESP"], categories=resp).codes.astype(np.intp)
    g = RandomBlock("RESP", codes, tuple(resp), np.column_stack([np.ones(len(s)), test]), ("(Intercept)", "PRODTest"))
    return MixedProblem(test[:, None], s["SURENESS"].to_numpy(float) - 1, ("PRODTest",), (g,), family="cumulative")


@pytest.fixture(scope="module")
def fits():
    return {"wine_clmm": fit_frequentist(_wine_problem("logit")),
            "wine_clmm_probit": fit_frequentist(_wine_problem("probit")),
            "soup_clmm_slope": fit_frequentist(_soup_problem())}


@pytest.mark.parametrize("name", ["wine_clmm", "wine_clmm_probit", "soup_clmm_slope"])
def test_cumulative_laplace_equals_clmm(fits, name):
    ref, ff = _reference(name), fits[name]
    assert ff.method == "Laplace" and ff.family == "cumulative" and ff.converged and not ff.singular
    assert ff.n_obs == ref["n_obs"]
    for table, key in ((ff.fixed, "fixef"), (ff.thresholds, "thresholds")):
        got = table.set_index("term")
        assert list(got.index) == list(ref[key])
        want = pd.DataFrame(ref[key]).T
        np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-4)
        np.testing.assert_allclose(got["se"], want["se"], rtol=1e-3)
    sds = ff.varcorr[ff.varcorr["var2"].isna()]
    np.testing.assert_allclose(sds["sdcor"], list(ref["sd"].values()), rtol=1e-4)
    if "cor" in ref:
        assert ff.varcorr["sdcor"].iloc[-1] == pytest.approx(ref["cor"], rel=1e-4)
    assert ff.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert ff.n_parameters == len(ref["fixef"]) + len(ref["thresholds"]) + len(ff.theta)
    assert ff.aic == pytest.approx(-2 * ref["logLik"] + 2 * ff.n_parameters, abs=2e-5)


def test_conditional_modes_rank_the_judges(fits):
    """A judge who rates higher has the larger mode (judge 1 rates high, judge 9 low in wine)."""
    modes = fits["wine_clmm"].ranef["judge"]["condval"].droplevel("term")
    w = load("wine")
    mean_rating = w.groupby(w["judge"].astype(str))["rating"].mean()
    assert np.corrcoef(modes.loc[mean_rating.index], mean_rating)[0, 1] > 0.9
    assert (fits["wine_clmm"].ranef["judge"]["condsd"] > 0).all()


def test_cells_hold_the_rows_likelihood():
    """The collapsed cells' -2 log p and PIRLS mode equal those of the rows themselves."""
    problem = _soup_problem()
    first, counts = ordinal_cells(problem)
    assert counts.shape == (370, 6) and counts.sum() == problem.n  # 185 respondents x 2 products
    structure = random_structure(problem.blocks)
    cells = cumulative_data(problem, structure)
    a, theta, beta = np.array([-1.5, -0.5, -0.1, 0.15, 0.9]), np.array([0.5, -0.2, 0.8]), np.array([1.3])
    state = pirls(__import__("dataclasses").replace(cells, thresholds=a), theta, beta)
    eta_rows = problem.X @ beta + np.einsum("iq,iq->i", problem.blocks[0].Z,
                                            (state.u.reshape(-1, 2) @ structure.factor_of(theta, 0).T)[problem.blocks[0].codes])
    one_hot = np.eye(6)[problem.y.astype(int)]
    assert cumulative_terms(one_hot, eta_rows, a, "logit")[0] == pytest.approx(state.minus_twice_loglik, rel=1e-12)


def test_integer_weights_are_repeated_rows():
    problem = _wine_problem("logit")
    twice = MixedProblem(np.vstack([problem.X, problem.X]), np.concatenate([problem.y, problem.y]),
                         problem.fixed_terms, (RandomBlock("judge", np.tile(problem.blocks[0].codes, 2),
                                                           problem.blocks[0].levels, np.ones((144, 1)),
                                                           ("(Intercept)",)),), family="cumulative")
    weighted = MixedProblem(problem.X, problem.y, problem.fixed_terms, problem.blocks, family="cumulative",
                            weights=np.full(72, 2.0))
    a, b = fit_frequentist(twice), fit_frequentist(weighted)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-9)
    np.testing.assert_allclose(a.thresholds["estimate"], b.thresholds["estimate"], rtol=1e-5)


def test_bad_cumulative_problems_are_refused_by_name():
    problem = _wine_problem("logit")
    with pytest.raises(ValueError, match="no intercept.*'ones'"):
        MixedProblem(np.column_stack([np.ones(72), problem.X]), problem.y, ("ones", "a", "b"), problem.blocks,
                     family="cumulative")
    with pytest.raises(ValueError, match=r"codes \[2\] have none"):
        MixedProblem(problem.X, np.where(problem.y == 2, 1, problem.y), problem.fixed_terms, problem.blocks,
                     family="cumulative")
    with pytest.raises(ValueError, match="unknown link 'cauchit'"):
        MixedProblem(problem.X, problem.y, problem.fixed_terms, problem.blocks, family="cumulative", link="cauchit")
    with pytest.raises(ValueError, match="for family 'cumulative', not 'poisson'"):
        MixedProblem(problem.X, problem.y, problem.fixed_terms, problem.blocks, family="poisson", link="probit")

"""Student, negbinomial and cumulative (ordinal) models without sampling: data checks, priors, aggregation,
the pointwise log-likelihood against scipy, and the negbinomial Laplace engine against glmer.nb."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import reference
from scipy import stats
from scipy.special import expit

import bayesmlm
from bayesmlm import DataError, SpecError, UnsupportedModelError
from bayesmlm.design.aggregate import aggregate_rows
from bayesmlm.predict.ordinal import category_log_probs
from bayesmlm.predict.predictive import pointwise_log_likelihood


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "k": rng.integers(0, 3, n).astype(float),
                         "g": np.repeat(list("abcdef"), n // 6), "y": rng.poisson(2.0, n)})


# -- data checks and specs ----------------------------------------------------------------------------------------
def test_negbinomial_refuses_non_counts_naming_the_column():
    d = _frame().assign(y=lambda f: f.y + 0.5)
    with pytest.raises(DataError, match=r"outcome 'y'.*not non-negative integers.*negbinomial"):
        bayesmlm.MLM("y ~ x + (1 | g)", d, family="negbinomial")
    with pytest.raises(DataError, match="'y'"):
        bayesmlm.MLM("y ~ x + (1 | g)", _frame().assign(y=lambda f: -f.y - 1), family="negbinomial")


def test_student_refuses_a_non_numeric_outcome():
    with pytest.raises(DataError, match="'y' is bool"):
        bayesmlm.MLM("y ~ x + (1 | g)", _frame().assign(y=lambda f: f.y > 1), family="student")


def test_links_are_checked_per_family():
    assert bayesmlm.MLM("y ~ x + (1 | g)", _frame(), family="cumulative", link="probit").spec.family.link == "probit"
    with pytest.raises(SpecError, match="family='poisson' takes the link.*'log'.*link='probit'"):
        bayesmlm.MLM("y ~ x + (1 | g)", _frame(), family="poisson", link="probit")


def test_ordinal_outcome_orders_and_refusals():
    d = _frame()
    m = bayesmlm.MLM("y ~ x + (1 | g)", d, family="cumulative")
    seen = sorted(d.y.unique())
    assert m.design.categories == tuple(str(v) for v in seen)
    assert m.design.y.tolist() == [seen.index(v) for v in d.y]
    assert m.design.fixed_terms == ("x",)  # no intercept: the thresholds take its place
    cat = pd.Categorical(np.where(d.y > 2, "high", np.where(d.y > 1, "mid", "low")), categories=["low", "mid", "high"],
                         ordered=True)
    m = bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=cat), family="cumulative")
    assert m.design.categories == ("low", "mid", "high") and m.design.y.max() == 2
    with pytest.raises(DataError, match="'y' is an unordered Categorical"):
        bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=pd.Categorical(cat, ordered=False)), family="cumulative")
    with pytest.raises(DataError, match=r"'y' has categories with no rows \(top\)"):
        bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=cat.add_categories("top")), family="cumulative")
    with pytest.raises(DataError, match="'y' is (str|object): a cumulative"):
        bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=cat.astype(str).astype(object)), family="cumulative")
    with pytest.raises(DataError, match="'y' has .* not integers"):
        bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=d.y + 0.5), family="cumulative")


def test_default_priors_of_the_family_parameters():
    d = _frame()
    table = bayesmlm.MLM("y ~ x + (1 | g)", d, family="negbinomial").priors()
    assert table.loc["phi", "prior"] == "inv_gamma(alpha=0.4, beta=0.3)"
    table = bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=d.x * 2.0), family="student").priors()
    assert table.loc["nu", "prior"] == "gamma(alpha=2, beta=0.1)" and table.loc["nu", "class"] == "degrees of freedom"
    table = bayesmlm.MLM("y ~ x + (1 | g)", d, family="cumulative").priors()
    assert table.loc["thresholds", "prior"] == "student_t(nu=3, mu=0, sigma=2.5)"
    assert "(Intercept)" not in table.index and "absorb" in table.loc["thresholds", "note"]
    with pytest.raises(SpecError, match="thresholds.*normal or student_t"):
        bayesmlm.MLM("y ~ x + (1 | g)", d, family="cumulative", priors={"thresholds": "half_normal(1)"})
    with pytest.raises(SpecError, match="positive parameter"):
        bayesmlm.MLM("y ~ x + (1 | g)", d, family="negbinomial", priors={"phi": "normal(0, 1)"})


def test_frequentist_column_refusals_say_why():
    d = _frame()
    with pytest.raises(UnsupportedModelError, match="lme4 has no Student-t"):
        bayesmlm.MLM("y ~ x + (1 | g)", d.assign(y=d.x), family="student").fit_frequentist()


# -- aggregation ----------------------------------------------------------------------------------------------------
def test_negbinomial_and_student_rows_are_never_aggregated():
    d = _frame()
    assert aggregate_rows(bayesmlm.MLM("y ~ k + (1 | g)", d, family="negbinomial").design, max_ratio=1.0) is None
    assert aggregate_rows(bayesmlm.MLM("x ~ k + (1 | g)", d, family="student").design, max_ratio=1.0) is None


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_cells_have_the_rows_log_density(link):
    """The aggregated model's log-density equals the row-wise one (PyMC's OrderedLogistic / OrderedProbit)."""
    import pytensor

    m = bayesmlm.MLM("y ~ k + (1 + k | g)", _frame(240, seed=3), family="cumulative", link=link)
    cells = aggregate_rows(m.design)
    assert cells.n_cells == 18 and cells.y.sum() == 240
    assert np.array_equal(cells.y.sum(axis=1), np.bincount(cells.row_cell))
    values = []
    for aggregate in (False, True):
        pmodel = m.build(aggregate=aggregate, parameterization="centred")
        point = pmodel.initial_point()
        rng = np.random.default_rng(5)
        point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in point.items()}
        f = pytensor.function(pmodel.value_vars, pmodel.logp(), mode="FAST_COMPILE")
        values.append(float(f(*[point[v.name] for v in pmodel.value_vars])))
    assert values[1] == pytest.approx(values[0], rel=1e-9)


# -- pointwise log-likelihood against scipy -------------------------------------------------------------------------
def _fake_fit(model, S: int = 3, **extra):
    """A fit-like object whose posterior has S draws of fixef = 0.2 per term, zero random effects, and ``extra``."""
    d = model.design
    post = {"fixef": (("chain", "draw", "fixed_term"), np.full((1, S, len(d.fixed_terms)), 0.2))}
    for b in d.blocks:
        post[f"u_{b.label}"] = (("chain", "draw", b.group, f"{b.label}_term"), np.zeros((1, S, d.factors[b.group].n_levels, b.q)))
    for k, v in extra.items():
        post[k] = (("chain", "draw", *(["threshold"] if k == "thresholds" else [])), np.asarray(v, float)[None])
    coords = {"fixed_term": list(d.fixed_terms), **{b.group: list(d.factors[b.group].levels) for b in d.blocks},
              **{f"{b.label}_term": list(b.terms) for b in d.blocks}}
    return SimpleNamespace(design=d, posterior=xr.Dataset(post, coords=coords))


def test_negbinomial_and_student_log_likelihood_match_scipy():
    d = _frame()
    m = bayesmlm.MLM("y ~ x + (1 | g)", d, family="negbinomial")
    phi = np.array([0.5, 2.0, 30.0])
    ll = pointwise_log_likelihood(_fake_fit(m, phi=phi)).values[0]
    mu = np.exp(0.2 + 0.2 * d.x.to_numpy())
    expected = stats.nbinom.logpmf(d.y.to_numpy()[None], phi[:, None], phi[:, None] / (phi[:, None] + mu[None]))
    np.testing.assert_allclose(ll, expected, rtol=1e-10)
    m = bayesmlm.MLM("x ~ k + (1 | g)", d, family="student")
    nu, sigma = np.array([1.5, 4.0, 50.0]), np.array([0.7, 1.0, 2.0])
    ll = pointwise_log_likelihood(_fake_fit(m, nu=nu, sigma=sigma)).values[0]
    expected = stats.t.logpdf(d.x.to_numpy()[None], nu[:, None], 0.2 + 0.2 * d.k.to_numpy()[None], sigma[:, None])
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_log_likelihood_is_the_probability_of_each_rows_category(link):
    d = _frame()
    m = bayesmlm.MLM("y ~ x + (1 | g)", d, family="cumulative", link=link)
    K = len(m.design.categories)
    cuts = np.sort(np.random.default_rng(1).normal(size=(3, K - 1)), axis=1)
    ll = pointwise_log_likelihood(_fake_fit(m, thresholds=cuts)).values[0]
    F = expit if link == "logit" else stats.norm.cdf
    eta = 0.2 * d.x.to_numpy()
    full = np.concatenate([np.full((3, 1), -np.inf), cuts, np.full((3, 1), np.inf)], axis=1)
    k = m.design.y.astype(int)
    expected = np.log(F(full[:, k + 1] - eta) - F(full[:, k] - eta))
    np.testing.assert_allclose(ll, expected, rtol=1e-7)
    p = np.exp(category_log_probs(np.array([[-30.0, 0.0, 30.0]]), cuts[:1], link))
    np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-12)
    assert p[0, 0, 0] > 0.999 and p[0, 2, -1] > 0.999  # the lowest and highest category at the extremes


# -- the negbinomial Laplace engine against glmer.nb ----------------------------------------------------------------
def test_negbinomial_laplace_at_glmer_nb_phi_matches_and_phi_is_the_optimum():
    """glmer.nb(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), data = grouseticks) (tests/reference/grouseticks_nb.json)."""
    from bayesmlm.frequentist_engine.blocked import random_structure
    from bayesmlm.frequentist_engine.design_fit import problem_of
    from bayesmlm.frequentist_engine.laplace import fit_laplace
    from bayesmlm.frequentist_engine.fit import theta_names

    ref = reference("grouseticks_nb")
    m = bayesmlm.MLM("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", bayesmlm.datasets.load("grouseticks"),
                     family="negbinomial")
    problem = problem_of(m.design)
    s = random_structure(problem.blocks)
    fits = [fit_laplace(problem, s, theta_names(s), {}, ref["phi"] * f) for f in (1.0, 1.05, 1 / 1.05)]
    best = fits[0]
    for term, v in ref["fixef"].items():
        row = best.fixed.set_index("term").loc[term]
        assert row.estimate == pytest.approx(v["estimate"], abs=2e-4 * max(1, abs(v["estimate"])) + 1e-5)
        assert row.se == pytest.approx(v["se"], rel=2e-3)
    assert best.varcorr["sdcor"].iloc[0] == pytest.approx(ref["sd"]["LOCATION:(Intercept)"], rel=1e-3)
    assert best.loglik == pytest.approx(ref["logLik"], abs=1e-3)
    assert fits[1].loglik < best.loglik and fits[2].loglik < best.loglik  # glmer.nb's phi maximises it here too


def test_config_takes_the_new_families_and_checks_the_link():
    from bayesmlm.app.config import build_model, parse_config
    from bayesmlm.errors import ConfigError

    cfg = parse_config({"data": "wine", "formula": "rating ~ temp + contact + (1 | judge)", "family": "cumulative",
                        "link": "probit"})
    assert cfg.to_dict()["link"] == "probit"
    assert build_model(cfg).spec.family.link == "probit"
    assert parse_config({"data": "grouseticks", "formula": "TICKS ~ YEAR + (1 | BROOD)",
                         "family": "negbinomial"}).family == "negbinomial"
    with pytest.raises(ConfigError, match="Key 'link' is 'probit'. Allowed values for family 'poisson': log"):
        parse_config({"data": "wine", "formula": "rating ~ temp + (1 | judge)", "family": "poisson", "link": "probit"})


def test_a_cumulative_model_is_written_with_its_thresholds():
    # link(P(y <= k)) = theta_k - eta, no intercept of its own (the thresholds are), as clmm and brms write it
    eq = bayesmlm.MLM("rating ~ temp + contact + (1 | judge)", bayesmlm.datasets.load("wine"), family="cumulative",
                      link="probit").equations()
    assert eq.combined_text == "probit(P(rating_ij ≤ k)) = θ_k − (γ10·tempwarm_ij + γ20·contactyes_ij + u0_j)"
    assert eq.level1.startswith(r"\operatorname{probit}(P(\text{rating}_{ij} \le k)) = \theta_k - \left(\beta_{0j}")

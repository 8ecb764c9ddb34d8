"""The generalized full model's Numba kernel (bayesmlm.fastpath.glmm_kernel, glmm_fit).

- its log density is the PyMC full model's (build(), compiled), constants
  included, to 1e-8, at mapped points: bernoulli, binomial and poisson, with
  offsets and likelihood weights, over cells and over rows, crossed factors, centred and non-centred,
  one-term and correlated (LKJ) blocks; its gradient equals finite differences;
- MLM.fit takes it for these families with nutpie (record.density), and
  kernel_problem names what it cannot write (those keep the PyMC model);
- on VerbAgg-sized data its fixed effects are within half a posterior SD of
  glmer's (tests/reference/cbpp.json);
- it recovers the parameters of a simulated crossed bernoulli model with a
  correlated block.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytest
from conftest import reference

import bayesmlm
from bayesmlm.fastpath import glmm_kernel as k
from bayesmlm.fastpath.glmm_fit import glmm_plan, kernel_problem
from bayesmlm.schema import FIXED, cor_var, safe_name, sd_var


def _crossed(seed: int, family: str, n: int = 400) -> pd.DataFrame:
    """a (12 levels) crossed with b (6); x and w discrete, so rows share cells; za constant within a; an offset of
    two values."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 12, n), rng.integers(0, 6, n)
    x, w = rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)
    off = rng.choice([0.0, 0.3], n)
    eta = -0.3 + 0.4 * x + 0.2 * w + rng.normal(size=12)[a] + 0.5 * rng.normal(size=12)[a] * x + 0.5 * rng.normal(size=6)[b] + off
    za = rng.integers(0, 3, 12).astype(float)[a]  # constant within a: a centred a absorbs it
    eta = eta + 0.3 * za
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = rng.binomial(5 if family == "binomial" else 1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "f": 5 - y, "x": x, "w": w, "za": za, "off": off, "wt": 0.5 + w,
                         "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


def _point(pmodel, plan, x: np.ndarray) -> dict:
    """The PyMC model's value variables at the kernel's unconstrained vector x."""
    design, names = plan.design, [v.name for v in pmodel.value_vars]
    p = len(design.fixed_terms)
    out = {"b_centred": x[:p]} if "b_centred" in names else {f"b_centred[{k}]": x[k] for k in range(p)}
    i = p
    for blk, b in zip(plan.blocks, design.blocks):
        n = blk.n_levels * blk.q
        out[("v_" if plan.parameterization.get(b.group) == "centred" else "z_") + safe_name(b.label)] = \
            x[i:i + n].reshape(blk.n_levels, blk.q)
        i += n
    for blk, b in zip(plan.blocks, design.blocks):
        if blk.correlated:
            out[f"chol_{safe_name(b.label)}_cholesky-cov-packed__"] = x[i:i + blk.n_sd]
        elif f"sd_{safe_name(b.label)}_log__" in names:
            out[f"sd_{safe_name(b.label)}_log__"] = x[i:i + blk.q]
        else:
            out |= {f"sd_{safe_name(b.label)}[{k}]_log__": x[i + k] for k in range(blk.q)}
        i += blk.n_sd
    if design.categories is not None:  # the thresholds come last, as the kernel orders them
        out["thresholds_centred_ordered__"] = x[i:]
    assert set(out) == set(names)
    return out


CASES = [  # family, formula, options, parameterization, aggregate
    ("bernoulli", "y ~ x + za + w + (1 + x | a) + (1 | b)", {"offset": "off"}, "centred", False),
    ("bernoulli", "y ~ x + w + (1 + x | a) + (1 | b)", {"offset": "off"}, "centred", True),
    ("bernoulli", "y ~ x + w + (1 + x | a) + (1 | b)", {"offset": "off"}, "non-centred", False),
    ("binomial", "cbind(y, f) ~ x + (1 | a) + (1 | b)", {}, {"a": "centred", "b": "non-centred"}, True),
    ("poisson", "y ~ x + w + (1 + x | a) + (1 | b)", {"offset": "off"}, "non-centred", True),
    ("poisson", "y ~ x + (1 | a) + (1 + x || b)", {"offset": "off"}, "centred", False),
    ("bernoulli", "y ~ x + (1 | a) + (1 | b)", {"weights": "wt"}, "non-centred", False),
    ("poisson", "y ~ x + (1 + x | a)", {"weights": "wt", "offset": "off"}, "centred", True),
    # rows of one trial, no weights, no offset, random intercepts: every unit-loop shortcut (test_unit_flags)
    ("bernoulli", "y ~ x + w + (1 | a) + (1 | b)", {}, {"a": "centred", "b": "non-centred"}, False),
]


def _ordinal(seed: int, n: int) -> pd.DataFrame:
    """_crossed's design with a 4-category ordinal outcome (cumulative logit of its eta, minus the intercept)."""
    df = _crossed(seed, "bernoulli", n)
    rng = np.random.default_rng(seed + 1)
    eta = 0.4 * df["x"].to_numpy() + rng.normal(size=12)[df["a"].str[1:].astype(int)] + rng.logistic(size=n)
    df["r"] = np.digitize(eta, [-1.0, 0.2, 1.5])
    return df


CUMULATIVE_CASES = [  # link, formula, options, parameterization, aggregate
    ("logit", "r ~ x + w + (1 + x | a) + (1 | b)", {"offset": "off"}, "centred", True),
    ("logit", "r ~ x + w + (1 + x | a) + (1 | b)", {}, "non-centred", False),
    ("probit", "r ~ x + (1 + x | a) + (1 | b)", {}, {"a": "centred", "b": "centred"}, True),
    ("probit", "r ~ x + (1 | a) + (1 + x || b)", {"weights": "wt"}, "non-centred", True),
    ("logit", "r ~ x + (1 | a)", {"weights": "wt"}, "centred", False),
]


def _nested(seed: int, family: str, n: int = 400) -> pd.DataFrame:
    """c (30 levels) nested in s (8), x by row; s_c labels c with its parent."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 30, n)
    s = c % 8
    x = rng.integers(0, 3, n).astype(float)
    eta = -0.2 + 0.3 * x + 0.6 * rng.normal(size=8)[s] + 0.4 * rng.normal(size=8)[s] * x + 0.5 * rng.normal(size=30)[c]
    y = rng.poisson(np.exp(eta)) if family == "poisson" else rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "s": [f"s{i}" for i in s], "c": [f"c{i}" for i in c]})


NESTED_CASES = [  # family, formula, parameterization, aggregate, {child: parent} (design.nested_centring)
    ("poisson", "y ~ x + (1 | c) + (1 | s)", {"c": "centred", "s": "centred"}, True, {"c": "s"}),
    ("bernoulli", "y ~ x + (1 | c) + (1 | s)", {"c": "centred", "s": "non-centred"}, False, {"c": "s"}),
    ("bernoulli", "y ~ x + (1 | s) + (1 + x | c)", {"c": "centred", "s": "centred"}, True, {"c": "s"}),
    ("poisson", "y ~ x + (1 + x | s) + (1 | c)", {"c": "centred", "s": "non-centred"}, False, {"c": "s"}),
    ("poisson", "y ~ x + (1 + x | s) + (1 + x | c)", {"c": "centred", "s": "centred"}, True, {"c": "s"}),
    ("bernoulli", "y ~ x + (1 | c) + (1 | s)", {"c": "non-centred", "s": "centred"}, True, {}),
]


@pytest.mark.parametrize("family, formula, par, aggregate, parents", NESTED_CASES)
def test_centred_on_the_parent_is_the_pymc_models_density(family, formula, par, aggregate, parents):
    """A centred child nested in another factor is centred on it: the kernel's density and gradient are still PyMC's,
    and the reported u_child are the deviations from the parent (the model's u, whatever the parameterisation)."""
    m = bayesmlm.MLM(formula, _nested(2, family, 2000 if aggregate else 400), family=family)
    pmodel = m.build(aggregate=aggregate, parameterization=par)
    cells, choice = m._full_options(aggregate, par)
    plan = glmm_plan(m.design, m.prior_dict, cells, choice)
    assert {k: v.parent for k, v in plan.parents.items()} == parents
    logp = pmodel.compile_logp()
    reported = pytensor.function(pmodel.value_vars, pmodel.replace_rvs_by_values(
        [pmodel[f"u_{b.label}"] for b in m.design.blocks]), on_unused_input="ignore")
    from bayesmlm.fastpath.glmm_kernel import expand

    rng = np.random.default_rng(4)
    for s in range(3):
        x = plan.initial_point(s) + 0.3 * rng.normal(size=plan.n_dim)
        value, grad = plan.logp(x)
        point = _point(pmodel, plan, x)
        assert value == pytest.approx(float(logp(point)), abs=1e-8)
        out = np.empty(int(plan.buffer[6]))
        expand(x, plan.buffer, out)
        at = len(m.design.fixed_terms)  # expand's layout: fixef, then per block its SDs, correlations, u
        for blk, u in zip(plan.blocks, reported(*[point[v.name] for v in pmodel.value_vars])):
            at += blk.q + (blk.q * (blk.q - 1) // 2 if blk.correlated else 0)
            np.testing.assert_allclose(out[at:at + u.size], u.ravel(), atol=1e-10)
            at += u.size
    eps = 1e-6
    fd = np.array([(plan.logp(x + eps * e)[0] - plan.logp(x - eps * e)[0]) / (2 * eps) for e in np.eye(plan.n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(grad).max()))


@pytest.mark.parametrize("family, formula, options, par, aggregate",
                         CASES + [(("cumulative", link), *rest) for link, *rest in CUMULATIVE_CASES])
def test_log_density_is_the_pymc_models(family, formula, options, par, aggregate):
    n = 2000 if aggregate else 400
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.NestingWarning)
        if isinstance(family, tuple):
            # 2.7, not float32-exact: PyTensor computes log(sigma) of a float32-exact Python float in float32 (5e-9 off)
            m = bayesmlm.MLM(formula, _ordinal(1, n), family=family[0], link=family[1],
                             priors={"thresholds": "normal(0.0, 2.7)"}, **options)
        else:
            m = bayesmlm.MLM(formula, _crossed(1, family, n), family=family, **options)
    pmodel = m.build(aggregate=aggregate, parameterization=par)
    cells, choice = m._full_options(aggregate, par)
    assert (cells is not None) == aggregate  # the cells case is exercised
    plan = glmm_plan(m.design, m.prior_dict, cells, choice)
    if "za" in formula:  # the block means absorb the intercept, x and za: the likelihood reads only w
        assert int(plan.buffer[14]) == 1
    logp = pmodel.compile_logp()
    # PyTensor's log_diff_normal_cdf (the probit PyMC model's) is off by up to ~1e-8 relatively (the kernel's is
    # held to scipy in test_probit_log_difference_is_exact); the logit likelihood is held to 1e-8 absolutely
    tol = 2e-8 if family == ("cumulative", "probit") else 0.0
    rng = np.random.default_rng(3)
    for s in range(3):
        x = plan.initial_point(s) + 0.3 * rng.normal(size=plan.n_dim)
        value, grad = plan.logp(x)
        # the cumulative likelihood is a sum of K log-differences per unit: 1e-8 of a few thousand, relatively
        assert value == pytest.approx(float(logp(_point(pmodel, plan, x))), abs=1e-8, rel=tol)
    eps = 1e-6
    fd = np.array([(plan.logp(x + eps * e)[0] - plan.logp(x - eps * e)[0]) / (2 * eps) for e in np.eye(plan.n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(grad).max()))


@pytest.mark.parametrize("family, options, aggregate, flags", [
    ("bernoulli", {}, False, k.NO_OFFSET | k.UNIT_WEIGHTS | k.ONE_TRIAL),  # rows: one trial each
    ("bernoulli", {}, True, k.NO_OFFSET | k.UNIT_WEIGHTS),  # cells: several trials
    ("bernoulli", {"offset": "off", "weights": "wt"}, False, k.ONE_TRIAL),
    ("poisson", {"offset": "off"}, False, k.UNIT_WEIGHTS | k.ONE_TRIAL),  # its trials are ones, and unread
])
def test_unit_flags_say_which_unit_columns_the_loops_may_skip(family, options, aggregate, flags):
    m = bayesmlm.MLM("y ~ x + (1 | a) + (1 + x | b)", _crossed(1, family, 400), family=family, **options)
    cells, choice = m._full_options(aggregate, "centred")
    d = glmm_plan(m.design, m.prior_dict, cells, choice).buffer
    assert int(d[k.FLAGS_SLOT]) == flags
    ones = [d[k.HEAD + k.BLOCK_FIELDS * b + k.BLOCK_FIELDS - 1] for b in range(int(d[3]))]
    assert ones == [1.0, 0.0]  # (1 | a)'s Z is all ones; (1 + x | b) has two terms


def test_kernel_problem_names_what_it_cannot_write():
    m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
                     family="binomial", priors={"sd(herd:(Intercept))": "inv_gamma(2, 1)"})
    assert "sd(herd:(Intercept))" in kernel_problem(m.design, m.prior_dict)


@pytest.fixture(scope="module")
def cbpp_fit():
    m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
                     family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return m.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False, method="full")


def test_fit_takes_the_kernel_and_matches_glmer(cbpp_fit):
    assert cbpp_fit.record.density == "kernel" and cbpp_fit.record.route == "full"
    ref = reference("cbpp")
    post = cbpp_fit.posterior[FIXED]
    for term, r in ref["fixef"].items():
        draws = post.sel(fixed_term=term).values.ravel()
        assert abs(draws.mean() - r["estimate"]) < 0.5 * draws.std(), term
    sd = cbpp_fit.posterior[sd_var("herd")].values.ravel()
    assert abs(np.median(sd) - ref["sd"]["herd:(Intercept)"]) < sd.std()


def test_recovers_a_crossed_model_with_a_correlated_block():
    rng = np.random.default_rng(11)
    J, K, n = 40, 15, 6000
    g, h = rng.integers(0, J, n), rng.integers(0, K, n)
    x = rng.integers(0, 2, n).astype(float)
    sd_g, sd_x, rho, sd_h = 0.8, 0.5, 0.5, 0.6
    cov = np.array([[sd_g ** 2, rho * sd_g * sd_x], [rho * sd_g * sd_x, sd_x ** 2]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=J)
    eta = -0.4 + 0.7 * x + u[g, 0] + u[g, 1] * x + sd_h * rng.normal(size=K)[h]
    df = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g.astype(str), "h": h.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.NestingWarning)
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        fit = bayesmlm.MLM("y ~ x + (1 + x | g) + (1 | h)", df, family="bernoulli").fit(
            draws=400, tune=400, chains=2, seed=2, progressbar=False)
    assert fit.record.density == "kernel" and fit.record.n_cells is not None
    post = fit.posterior
    truth = {(FIXED, "(Intercept)"): -0.4, (FIXED, "x"): 0.7, (sd_var("g"), "(Intercept)"): sd_g,
             (sd_var("g"), "x"): sd_x, (sd_var("h"), "(Intercept)"): sd_h}
    for (name, term), value in truth.items():
        lo, hi = np.quantile(post[name].sel({post[name].dims[-1]: term}).values, [0.025, 0.975])
        assert lo < value < hi, (name, term, lo, hi)
    lo, hi = np.quantile(post[cor_var("g")].values, [0.025, 0.975])
    assert lo < rho < hi


def test_probit_and_logit_log_differences_are_exact():
    from scipy.special import expit, ndtr

    from bayesmlm.fastpath.cumulative_kernel import LOGIT, PROBIT, log_diff_cdf

    for b, a in [(1.0, -1.0), (-3.0, -4.0), (9.0, 8.5), (-8.5, -9.0), (0.3, 0.2999)]:
        upper = a > 0  # the tail where each difference has no cancellation in float64
        exact = ndtr(-a) - ndtr(-b) if upper else ndtr(b) - ndtr(a)
        assert log_diff_cdf(PROBIT, b, a) == pytest.approx(np.log(exact), rel=1e-12)
        exact = expit(-a) - expit(-b) if upper else expit(b) - expit(a)
        assert log_diff_cdf(LOGIT, b, a) == pytest.approx(np.log(exact), rel=1e-12)
    assert log_diff_cdf(PROBIT, -40.0, -41.0) == pytest.approx(-0.5 * 40.0 ** 2 - np.log(40.0) - 0.5 * np.log(2 * np.pi),
                                                               abs=1e-3)


def _three_levels(seed: int, schools: int = 30, classes: int = 4, pupils: int = 25) -> tuple[pd.DataFrame, dict]:
    """Pupils in classes in schools, a bernoulli outcome; returns the data and the truth."""
    rng = np.random.default_rng(seed)
    truth = {"(Intercept)": -0.3, "x": 0.8, "school": 0.7, "school:class": 0.5}
    school = np.repeat(np.arange(schools), classes * pupils)
    klass = np.repeat(np.arange(schools * classes), pupils)
    x = rng.normal(size=school.size)
    eta = (truth["(Intercept)"] + truth["x"] * x + truth["school"] * rng.normal(size=schools)[school]
           + truth["school:class"] * rng.normal(size=schools * classes)[klass])
    df = pd.DataFrame({"y": rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))), "x": x, "school": [f"s{i}" for i in school],
                       "class": [f"c{i % classes}" for i in klass]})
    return df, truth


def test_recovers_a_three_level_bernoulli_model_its_parent_integrated_out():
    df, truth = _three_levels(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        fit = bayesmlm.MLM("y ~ x + (1 | school/class)", df, family="bernoulli").fit(
            draws=400, tune=400, chains=2, seed=3, progressbar=False)
    assert fit.record.density == "kernel"
    assert fit.record.parameterization == {"school": "collapsed", "school:class": "centred on school"}
    post = fit.posterior
    for name, term, value in [(FIXED, "(Intercept)", truth["(Intercept)"]), (FIXED, "x", truth["x"]),
                              (sd_var("school"), "(Intercept)", truth["school"]),
                              (sd_var("school:class"), "(Intercept)", truth["school:class"])]:
        lo, hi = np.quantile(post[name].sel({post[name].dims[-1]: term}).values, [0.025, 0.975])
        assert lo < value < hi, (name, term, lo, hi)
    # u_class is the deviation from the school (lme4's ranef): about independent of it, mean zero within schools
    u_c = post[f"u_{safe_name('school:class')}"].mean(("chain", "draw")).values.ravel()
    assert abs(u_c.mean()) < 0.1 and 0.2 < u_c.std() < 0.6

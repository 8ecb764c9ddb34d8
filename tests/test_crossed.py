"""The crossed route: the largest factor integrated out exactly, the rest sampled.

- its log density (priors, Jacobians, every parameterisation of the sampled
  blocks, nesting among them) equals priors plus the dense multivariate normal
  marginal of y, to 1e-8, and its gradient equals finite differences;
- it recovers known parameters from simulated crossed data;
- on penicillin its posterior means are within half a posterior SD of lme4;
- MLM.fit(method="auto") takes it for crossed gaussian designs only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import reference
from scipy import stats

import bayesmlm
from bayesmlm.fastpath import crossed_kernel as kernel
from bayesmlm.fastpath.crossed_fit import crossed_plan
from bayesmlm.fastpath.crossed_stats import crossed_problem
from bayesmlm.schema import sd_var, u_var


def _small(seed: int) -> pd.DataFrame:
    """a (9 levels) crossed with b (4 levels); c (8 levels) nested in b; an uneven number of rows per cell."""
    rng = np.random.default_rng(seed)
    rows = [(a, b) for a in range(9) for b in range(4) for _ in range(1 + (a + b) % 2)]
    a, b = np.array(rows).T
    c = 2 * b + rng.integers(0, 2, size=a.size)
    x = rng.normal(size=a.size) + 3.0
    y = 10.0 + 0.5 * x + rng.normal(size=9)[a] + rng.normal(size=4)[b] + 0.5 * rng.normal(size=8)[c] + rng.normal(size=a.size)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "c": [f"c{i}" for i in c]})


def _log_prior(prior, v: float) -> float:
    p = prior.kwargs
    return {
        "normal": lambda: stats.norm.logpdf(v, p.get("mu"), p.get("sigma")),
        "student_t": lambda: stats.t.logpdf(v, p.get("nu"), p.get("mu"), p.get("sigma")),
        "half_normal": lambda: stats.halfnorm.logpdf(v, scale=p.get("sigma")),
        "half_student_t": lambda: np.log(2.0) + stats.t.logpdf(v, p.get("nu"), scale=p.get("sigma")),
        "exponential": lambda: stats.expon.logpdf(v, scale=1.0 / p.get("lam", 1.0)),
    }[prior.dist]()


def _dense_log_density(m, plan, x: np.ndarray) -> float:
    """Priors plus log N(y | X beta + Z_s u_s, sigma^2 I + tau_c^2 Z_c Z_c'), from the unconstrained x, row by row."""
    design, priors = m.design, m.prior_dict
    p = len(design.fixed_terms)
    b_c = x[:p]
    lp = sum(_log_prior(priors[t], b_c[i]) for i, t in enumerate(design.fixed_terms))
    sizes = [design.factors[b.group].n_levels for b in plan.sampled]
    starts = np.cumsum([p, *sizes])[:-1]
    K = len(plan.blocks)
    log_sd = x[p + sum(sizes): p + sum(sizes) + K]
    sd = np.exp(log_sd)
    sigma = np.exp(x[-1])
    lp += _log_prior(priors["sigma"], sigma) + x[-1]
    for k, b in enumerate(plan.blocks):
        lp += _log_prior(priors[_sd_key(m, b)], sd[k]) + log_sd[k]
    eta = (design.X - design.x_centre) @ b_c
    for k, b in enumerate(plan.sampled):
        v = x[starts[k]: starts[k] + sizes[k]]
        parent = plan.parents[k]
        if plan.kinds[k] == kernel.NON_CENTRED:
            lp += stats.norm.logpdf(v).sum()
            u = sd[k] * v
        elif parent is not None and plan.kinds[parent[0]] == kernel.MARGINAL:
            # the parent's effects integrated out by hand: e = v - mu = u + P u_parent ~ N(0, tau^2 I + tau_p^2 P P')
            pk, levels = parent
            P = np.eye(levels.max() + 1)[levels]
            u = v - (b_c[plan.mu_index[k]] if plan.mu_index[k] >= 0 else 0.0)
            lp += stats.multivariate_normal.logpdf(u, np.zeros(len(u)), sd[k] ** 2 * np.eye(len(u)) + sd[pk] ** 2 * P @ P.T)
        else:
            if parent is not None:
                pk, levels = parent
                mu = x[starts[pk]: starts[pk] + sizes[pk]][levels]
            else:
                mu = b_c[plan.mu_index[k]] if plan.mu_index[k] >= 0 else 0.0
            lp += stats.norm.logpdf(v, mu, sd[k]).sum()
            u = v - mu
        eta = eta + b.Z[:, 0] * u[design.factors[b.group].index]
    cb = plan.blocks[-1]
    Zc = np.zeros((design.n_obs, design.factors[cb.group].n_levels))
    Zc[np.arange(design.n_obs), design.factors[cb.group].index] = cb.Z[:, 0]
    cov = sigma ** 2 * np.eye(design.n_obs) + sd[-1] ** 2 * Zc @ Zc.T
    return lp + stats.multivariate_normal.logpdf(design.y, eta, cov)


def _sd_key(m, block) -> str:
    from bayesmlm.design.priors import sd_name

    return sd_name(block.label, block.terms[0])


@pytest.mark.parametrize("parameterization", ["centred", "non-centred", {"b": "centred", "c": "non-centred"}])
def test_log_density_equals_the_dense_marginal(parameterization):
    m = bayesmlm.MLM("y ~ 1 + x + (1 | a) + (1 | b) + (0 + x | b) + (1 | c)", _small(1))
    plan = crossed_plan(m.design, m.prior_dict, parameterization)
    assert plan.parameterization["a"] == "collapsed"
    if parameterization == "centred":  # c is nested in b: b's intercepts integrated out of c's prior
        assert [b.label for b in plan.blocks] == ["b.1", "c", "b", "a"]
        assert plan.kinds == (kernel.CENTRED, kernel.CENTRED, kernel.MARGINAL, kernel.COLLAPSED)
        assert plan.parents[1][0] == 2 and plan.parameterization == {"a": "collapsed", "b": "centred", "c": "centred"}
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = plan.initial_point(int(rng.integers(1000))) + rng.normal(scale=0.3, size=plan.n_dim)
        value, grad = plan.logp(x)
        assert value == pytest.approx(_dense_log_density(m, plan, x), rel=1e-10, abs=1e-8)
        h = 1e-6
        numeric = np.array([(plan.logp(x + h * e)[0] - plan.logp(x - h * e)[0]) / (2 * h) for e in np.eye(plan.n_dim)])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_routing_picks_the_crossed_route_for_crossed_gaussian_designs_only():
    pen = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    assert crossed_problem(pen.design) is None
    nested = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | batch:cask)", bayesmlm.datasets.load("pastes"))
    assert "nested" in crossed_problem(nested.design)
    one = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    assert "1 grouping factor" in crossed_problem(one.design)
    slopes = bayesmlm.MLM("y ~ 1 + x + (1 + x | a) + (1 | b)", _small(1))
    assert "more than one term" in crossed_problem(slopes.design)
    binary = bayesmlm.MLM("r2 ~ 1 + (1 | id) + (1 | item)", bayesmlm.datasets.load("verbagg").head(600), family="bernoulli")
    assert "family" in crossed_problem(binary.design)


@pytest.fixture(scope="module")
def penicillin_fit():
    m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    return m.fit(draws=500, tune=500, chains=2, seed=11, progressbar=False)


def test_penicillin_takes_the_route_and_keeps_the_full_models_names(penicillin_fit):
    rec = penicillin_fit.record
    assert (rec.method, rec.route) == ("collapsed", "crossed")
    assert rec.parameterization == {"plate": "collapsed", "sample": "centred"}
    post = penicillin_fit.posterior
    assert post[u_var("plate")].dims == ("chain", "draw", "plate", "plate_term")
    assert post[u_var("sample")].sizes["sample"] == 6


def test_penicillin_posterior_means_within_half_a_posterior_sd_of_lme4(penicillin_fit):
    ref = reference("penicillin")  # lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin)
    post = penicillin_fit.posterior
    pairs = {"fixef": ref["fixef"]["(Intercept)"]["estimate"], sd_var("plate"): ref["sd"]["plate:(Intercept)"],
             sd_var("sample"): ref["sd"]["sample:(Intercept)"], "sigma": ref["sigma"]}
    for name, lme4 in pairs.items():
        draws = post[name].values.ravel()
        assert abs(draws.mean() - lme4) < 0.5 * draws.std(), (name, draws.mean(), lme4, draws.std())
    modes = ref["ranef"]["plate"]  # the collapsed factor's effects, drawn afterwards: near lme4's conditional modes
    u = post[u_var("plate")].mean(("chain", "draw")).sel(plate_term="(Intercept)").to_series()
    sd = post[u_var("plate")].std(("chain", "draw")).sel(plate_term="(Intercept)").to_series()
    for level, row in modes.items():
        assert abs(u[level] - row["(Intercept)"]) < 0.5 * sd[level], level


def test_recovers_known_parameters_from_simulated_crossed_data():
    rng = np.random.default_rng(7)
    n_a, n_b, reps = 80, 30, 1
    a, b = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
    a, b = np.repeat(a.ravel(), reps), np.repeat(b.ravel(), reps)
    truth = {"(Intercept)": 2.0, "x": 0.7, "sd_a": 0.8, "sd_b": 0.4, "sigma": 1.0}
    x = rng.normal(size=a.size)
    u_a, u_b = rng.normal(size=n_a) * truth["sd_a"], rng.normal(size=n_b) * truth["sd_b"]
    y = truth["(Intercept)"] + truth["x"] * x + u_a[a] + u_b[b] + rng.normal(size=a.size) * truth["sigma"]
    data = pd.DataFrame({"y": y, "x": x, "a": [f"a{i:02d}" for i in a], "b": [f"b{i:02d}" for i in b]})
    fit = bayesmlm.MLM("y ~ 1 + x + (1 | a) + (1 | b)", data).fit(draws=400, tune=400, chains=2, seed=3, progressbar=False)
    assert fit.record.route == "crossed"
    post = fit.posterior
    values = {"(Intercept)": post["fixef"].sel(fixed_term="(Intercept)"), "x": post["fixef"].sel(fixed_term="x"),
              "sd_a": post["sd_a"], "sd_b": post["sd_b"], "sigma": post["sigma"]}
    for name, da in values.items():
        lo, hi = np.quantile(da.values.ravel(), [0.025, 0.975])
        assert lo < truth[name] < hi, (name, lo, hi)
    assert abs(float(post["fixef"].sel(fixed_term="x").mean()) - truth["x"]) < 0.05
    for name, u in (("a", u_a), ("b", u_b)):
        est = post[u_var(name)].mean(("chain", "draw")).values.ravel()
        assert np.corrcoef(est, u)[0, 1] > 0.9, name


def test_integrated_parent_effects_are_drawn_from_their_exact_conditional():
    """b's intercepts, integrated out of c's prior, drawn afterwards: their mean and covariance given c's e = v - mu
    equal the dense Gaussian conditional of (u_b, e) with e = u_c + P u_b, and u_c + P u_b gives e back."""
    import xarray as xr

    from bayesmlm.fastpath.crossed_fit import recover_integrated

    m = bayesmlm.MLM("y ~ 1 + x + (1 | a) + (1 | b) + (0 + x | b) + (1 | c)", _small(1))
    plan = crossed_plan(m.design, m.prior_dict, "centred")
    child, parent = plan.blocks[1], plan.blocks[2]
    levels = plan.parents[1][1]
    e = np.random.default_rng(4).normal(size=len(levels))
    tau, tau_p, S = 0.7, 1.3, 40_000
    post = xr.Dataset({u_var(child.label): (("chain", "draw", "c", "c_term"), np.broadcast_to(e[None, None, :, None], (2, S // 2, len(e), 1))),
                       sd_var(child.label): (("chain", "draw", "c_term"), np.full((2, S // 2, 1), tau)),
                       sd_var(parent.label): (("chain", "draw", "b_term"), np.full((2, S // 2, 1), tau_p))})
    out = recover_integrated(post, plan, seed=5)
    u_b = out[u_var(parent.label)].values.reshape(S, -1)
    np.testing.assert_allclose(out[u_var(child.label)].values.reshape(S, -1) + u_b[:, levels], np.broadcast_to(e, (S, len(e))),
                               atol=1e-12)
    P = np.eye(u_b.shape[1])[levels]
    cov_e = tau ** 2 * np.eye(len(e)) + tau_p ** 2 * P @ P.T
    gain = tau_p ** 2 * P.T @ np.linalg.inv(cov_e)
    mean, cov = gain @ e, tau_p ** 2 * np.eye(P.shape[1]) - gain @ P * tau_p ** 2
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(u_b.mean(axis=0) - mean) < 4 * se), (u_b.mean(axis=0), mean)
    np.testing.assert_allclose(np.cov(u_b.T), cov, atol=0.03)

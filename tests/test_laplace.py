"""The Laplace route (bayesmlm.fastpath.laplace_kernel, laplace_fit; MLM.fit(method="laplace")).

- its log density is the Laplace marginal computed independently (scipy's
  optimizer for each group's mode, numpy's log det of H_j = Z'WZ + Sigma^-1,
  the priors from the full model's kernel at z = 0) on a tiny correlated
  bernoulli problem; its gradient equals finite differences for bernoulli
  cells, binomial rows with weights and poisson with an offset, correlated
  (LKJ) and one-term blocks;
- on a data-dominated simulated poisson problem its posterior means and SDs
  of the fixed effects and SDs are those of the exact route (every u_j
  sampled) within a fraction of a posterior SD; its u_<b> have the full
  model's dims and agree with the exact route's;
- it recovers the parameters of a simulated correlated bernoulli model;
- MLM.fit refuses two grouping factors and the gaussian family, naming why.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, gammaln

import bayesmlm
from bayesmlm.design.aggregate import aggregate_rows
from bayesmlm.errors import UnsupportedModelError
from bayesmlm.fastpath.glmm_fit import glmm_plan
from bayesmlm.fastpath.laplace_fit import LaplacePlan, laplace_problem


def _data(seed, family, groups=8, n=30, q2=True, sd=(0.6, 0.3), cor=-0.4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n)
    x = rng.integers(0, 4, groups * n).astype(float)
    w = rng.integers(0, 2, groups * n).astype(float)
    cov = np.array([[sd[0] ** 2, cor * sd[0] * sd[1]], [cor * sd[0] * sd[1], sd[1] ** 2]])
    u = rng.multivariate_normal([0, 0], cov, size=groups)
    off = rng.choice([0.0, 0.4], groups * n)
    eta = -0.5 + 0.3 * x - 0.4 * w + u[g, 0] + (u[g, 1] * x if q2 else 0.0)
    if family == "poisson":
        y = rng.poisson(np.exp(eta + off))
    else:
        y = rng.binomial(4 if family == "binomial" else 1, expit(eta))
    return pd.DataFrame({"y": y, "f": 4 - y, "x": x, "w": w, "off": off, "wt": 0.5 + w, "g": [f"g{i}" for i in g]})


def _fd(plan, x, h=1e-5):
    return np.array([(plan.logp(x + h * e)[0] - plan.logp(x - h * e)[0]) / (2 * h) for e in np.eye(len(x))])


@pytest.mark.parametrize("case", ["bernoulli-cells", "binomial-weights", "poisson-offset", "one-term"])
def test_gradient_equals_finite_differences(case):
    family = case.split("-")[0] if case != "one-term" else "bernoulli"
    df = _data(3, family)
    kw = {"family": family}
    formula = "y ~ x + w + (1 + x | g)"
    if family == "binomial":
        kw |= {"trials": "size", "weights": "wt"}
        df["size"] = 4
    if family == "poisson":
        kw |= {"offset": "off"}
    if case == "one-term":
        formula = "y ~ x + w + (1 | g)"
    m = bayesmlm.MLM(formula, df, **kw)
    cells = aggregate_rows(m.design) if case == "bernoulli-cells" else None
    plan = LaplacePlan(m.design, m.prior_dict, cells)
    x = plan.initial_point(2) * 0.5
    value, grad = plan.logp(x)
    assert np.isfinite(value)
    np.testing.assert_allclose(grad, _fd(plan, x), rtol=1e-5, atol=1e-4)


def test_value_equals_an_independent_laplace():
    """scipy's mode and numpy's log det per group; the priors (and the LKJ density, Jacobians) from the full
    model's kernel at z = 0, which is priors + loglik(X b) - J q/2 log 2 pi."""
    df = _data(5, "bernoulli", groups=5, n=25)
    m = bayesmlm.MLM("y ~ x + w + (1 + x | g)", df, family="bernoulli")
    plan = LaplacePlan(m.design, m.prior_dict, None)
    full = glmm_plan(m.design, m.prior_dict, None, {"g": "non-centred"})
    d = m.design
    J, q, p = 5, 2, 3
    x = np.array([0.2, 0.25, -0.3, np.log(0.7), -0.1, np.log(0.4)])
    Xc = d.X - d.x_centre
    eta0 = Xc @ x[:p]
    y = d.y.astype(float)
    L = np.array([[0.7, 0.0], [-0.1, 0.4]])
    Sigma = L @ L.T
    Si = np.linalg.inv(Sigma)
    full_x = np.concatenate([x[:p], np.zeros(J * q), x[p:]])
    loglik = lambda e: float(np.sum(y * e - np.logaddexp(0.0, e)))  # noqa: E731
    priors = full.logp(full_x)[0] - loglik(eta0) + J * q / 2 * np.log(2 * np.pi)
    g = d.factors["g"].index
    Z = d.blocks[0].Z
    total = priors
    for j in range(J):
        rows = g == j
        Zj, e0, yj = Z[rows], eta0[rows], y[rows]

        def neg(u):
            e = e0 + Zj @ u
            return -(np.sum(yj * e - np.logaddexp(0.0, e)) - 0.5 * u @ Si @ u)

        u = minimize(neg, np.zeros(q), method="BFGS", options={"gtol": 1e-10}).x
        pj = expit(e0 + Zj @ u)
        H = Zj.T @ (Zj * (pj * (1 - pj))[:, None]) + Si
        total += (-neg(u) - 0.5 * np.linalg.slogdet(Sigma)[1] - q / 2 * np.log(2 * np.pi)
                  - 0.5 * np.linalg.slogdet(H)[1] + q / 2 * np.log(2 * np.pi))
    assert plan.logp(x)[0] == pytest.approx(total, abs=1e-7)



def _independent_conditionals(m, x):
    """Each group's mode u*_j and H_j^-1 from scipy's optimizer and numpy (x: b_centred, log sd0, cor-chol, log sd1
    of a correlated bernoulli block)."""
    d = m.design
    p, q = len(d.fixed_terms), 2
    eta0 = (d.X - d.x_centre) @ x[:p]
    y = d.y.astype(float)
    L = np.array([[np.exp(x[p]), 0.0], [x[p + 1], np.exp(x[p + 2])]])
    Si = np.linalg.inv(L @ L.T)
    g, Z = d.factors["g"].index, d.blocks[0].Z
    modes, covs = [], []
    for j in range(d.factors["g"].n_levels):
        rows = g == j
        Zj, e0, yj = Z[rows], eta0[rows], y[rows]

        def neg(u):
            e = e0 + Zj @ u
            return -(np.sum(yj * e - np.logaddexp(0.0, e)) - 0.5 * u @ Si @ u)

        u = minimize(neg, np.zeros(q), method="BFGS", options={"gtol": 1e-10}).x
        pj = expit(e0 + Zj @ u)
        modes.append(u)
        covs.append(np.linalg.inv(Zj.T @ (Zj * (pj * (1 - pj))[:, None]) + Si))
    return np.array(modes), np.array(covs)


@pytest.mark.parametrize("predicted", [False, True])
def test_effect_draws_are_the_laplace_conditionals(predicted):
    """group_modes' u*_j and S_j S_j' against scipy's mode and numpy's H_j^-1 (from zero: Newton to convergence, H^-1 one step (< 1e-6) before it;
    from the predicted starts: one Newton step, B_j at the start, so H^-1 to O(step)); effect_draws' mean and
    covariance over 6,000 draws at one x against N(u*_j, H_j^-1), the same on one thread as on two."""
    from bayesmlm.fastpath.laplace_kernel import group_modes

    m = bayesmlm.MLM("y ~ x + w + (1 + x | g)", _data(5, "bernoulli", groups=6, n=40), family="bernoulli")
    plan = LaplacePlan(m.design, m.prior_dict, aggregate_rows(m.design))
    x = np.array([0.2, 0.25, -0.3, np.log(0.7), -0.1, np.log(0.4)])
    if predicted:
        plan.set_reference(x + 0.003 * np.random.default_rng(1).standard_normal(len(x)))
    modes, covs = _independent_conditionals(m, x)
    got, chol = np.empty((6, 2)), np.empty((6, 2, 2))
    assert group_modes(x, plan.buffer, got, chol) == 0
    np.testing.assert_allclose(got, modes, atol=1e-7)
    np.testing.assert_allclose(chol @ np.swapaxes(chol, 1, 2), covs, rtol=1e-3 if predicted else 1e-6, atol=1e-12)
    S = 6000
    u = plan.effect_draws(np.tile(x, (S, 1)), 7)
    np.testing.assert_array_equal(u, plan.effect_draws(np.tile(x, (S, 1)), 7, threads=1))
    for j in range(6):
        se = np.sqrt(np.diag(covs[j]) / S)
        assert np.all(np.abs(u[:, j].mean(0) - modes[j]) < 4 * se)
        np.testing.assert_allclose(np.cov(u[:, j].T), covs[j], atol=0.1 * np.sqrt(np.outer(np.diag(covs[j]),
                                                                                           np.diag(covs[j]))).max())
    assert np.abs(u[:, 0].mean(0) - u[:, 1].mean(0)).max() > 1e-3  # the groups' draws differ

def test_the_predicted_starts_change_the_value_by_rounding_only():
    """With the Newton starts' predictor set at the mode (as fits do), the value and gradient near it are those of
    Newton from zero: within ~1e-8 per group and 1e-4 of the gradient's scale."""
    m = bayesmlm.MLM("y ~ x + w + (1 + x | g)", _data(4, "bernoulli", groups=20, n=200), family="bernoulli")
    cells = aggregate_rows(m.design)
    plain, predicted = LaplacePlan(m.design, m.prior_dict, cells), LaplacePlan(m.design, m.prior_dict, cells)
    mode = plain.mode()
    predicted.set_reference(mode)
    rng = np.random.default_rng(0)
    for scale in (0.003, 0.03, 0.3):
        x = mode + scale * rng.standard_normal(len(mode))
        (v0, g0), (v1, g1) = plain.logp(x), predicted.logp(x)
        assert v1 == pytest.approx(v0, abs=20 * 1e-8)
        np.testing.assert_allclose(g1, g0, atol=1e-4 * max(1.0, np.abs(g0).max()))


def _poisson_fits():
    """A data-dominated problem: 12 groups of 150 rows, counts around e^1, a correlated block."""
    rng = np.random.default_rng(11)
    G, n = 12, 150
    g = np.repeat(np.arange(G), n)
    x = rng.integers(0, 3, G * n).astype(float)
    u = rng.multivariate_normal([0, 0], [[0.16, -0.02], [-0.02, 0.04]], size=G)
    y = rng.poisson(np.exp(1.0 + 0.2 * x + u[g, 0] + u[g, 1] * x))
    m = bayesmlm.MLM("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}), family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        lap = m.fit(method="laplace", draws=1000, tune=500, chains=2, seed=3, progressbar=False)
        full = m.fit(method="full", draws=1000, tune=500, chains=2, seed=3, progressbar=False)
    return lap, full


@pytest.fixture(scope="module")
def poisson_fits():
    return _poisson_fits()


def test_laplace_matches_the_exact_route(poisson_fits):
    lap, full = poisson_fits
    assert lap.record.method == "laplace" and lap.record.route == "laplace" and "APPROXIMATE" in str(lap.summary())
    for a, b in ((lap.fixef(), full.fixef()), (lap.varcorr(), full.varcorr())):
        sd = np.asarray(b["sd"])
        # half a posterior SD on the means: the Monte Carlo error of two fits of ~1000 effective draws is ~0.05 SD
        assert np.all(np.abs(np.asarray(a["mean"]) - np.asarray(b["mean"])) < 0.5 * sd)
        np.testing.assert_allclose(np.asarray(a["sd"]), sd, rtol=0.2)
    ul, uf = lap.posterior["u_g"], full.posterior["u_g"]
    assert ul.dims == uf.dims and ul.shape[2:] == uf.shape[2:]
    np.testing.assert_allclose(ul.mean(("chain", "draw")), uf.mean(("chain", "draw")), atol=0.05)
    np.testing.assert_allclose(ul.std(("chain", "draw")), uf.std(("chain", "draw")), rtol=0.2)


def test_recovers_a_simulated_bernoulli_model():
    rng = np.random.default_rng(7)
    G, n = 60, 300
    g = rng.integers(0, G, G * n)
    x = rng.integers(1, 6, G * n).astype(float)
    sd0, sd1, r = 0.5, 0.15, -0.3
    u = rng.multivariate_normal([0, 0], [[sd0 ** 2, r * sd0 * sd1], [r * sd0 * sd1, sd1 ** 2]], size=G)
    y = rng.random(G * n) < expit(-1.0 + 0.25 * x + u[g, 0] + u[g, 1] * x)
    m = bayesmlm.MLM("y ~ x + (1 + x | g)", pd.DataFrame({"y": y.astype(int), "x": x, "g": g}), family="bernoulli")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        fit = m.fit(method="laplace", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    assert fit.record.n_cells is not None and fit.record.n_cells < G * n  # over cells
    fe, vc = fit.fixef(), fit.varcorr()
    for est, truth in ((fe.loc["(Intercept)"], -1.0), (fe.loc["x"], 0.25), (vc.iloc[0], sd0), (vc.iloc[1], sd1),
                       (vc.iloc[2], r)):
        assert abs(est["mean"] - truth) < 3 * est["sd"]


def test_refuses_what_it_cannot_fit():
    df = _data(1, "bernoulli").assign(h=lambda d: [f"h{i % 3}" for i in range(len(d))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.NestingWarning)
        m = bayesmlm.MLM("y ~ x + (1 | g) + (1 | h)", df, family="bernoulli")
    with pytest.raises(UnsupportedModelError, match="2 random blocks.*method='full'"):
        m.fit(method="laplace")
    assert "family 'gaussian'" in laplace_problem(bayesmlm.MLM("x ~ w + (1 | g)", df).design, {})
    with pytest.raises(bayesmlm.ArgumentError, match="sampler='nutpie'"):
        bayesmlm.MLM("y ~ x + (1 | g)", df, family="bernoulli").fit(method="laplace", sampler="pymc")


def test_same_seed_same_draws():
    """The Newton starts are read-only and the effects' draws seeded: a seed repeats every draw, u included."""
    m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
                     family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        a, b = (m.fit(method="laplace", draws=100, tune=100, chains=2, seed=4, progressbar=False) for _ in range(2))
    assert sorted(a.posterior.data_vars) == ["fixef", "sd_herd", "u_herd"]
    for v in a.posterior.data_vars:
        np.testing.assert_array_equal(a.posterior[v].values, b.posterior[v].values)

"""A parent factor integrated out of its centred child's prior (design.nested_centring.integrable_parents,
fastpath.glmm_kernel's CENTRED_MARGINAL, fastpath.parent_draws).

- the kernel's log density is the full model's (parent non-centred) integrated over the parent's effects,
  to 1e-8: the full density is Gaussian in them, so its Laplace identity is exact; its gradient equals
  finite differences;
- the parent's effects drawn after sampling have the Gaussian conditional's mean and covariance, computed
  here densely, independently of the module's per-level formula;
- grouseticks (broods within locations, poisson) converges at the default settings, which it did not with
  the parent sampled, and its fixed effects, SDs and effects sit on glmer's (tests/reference/grouseticks.json).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import cached_fit, reference

import bayesmlm
from bayesmlm.design.nested_centring import integrable_parents
from bayesmlm.fastpath.glmm_fit import glmm_plan
from bayesmlm.fastpath.parent_draws import draw_parents


def _nested(seed: int, family: str, n: int) -> pd.DataFrame:
    """c (30 levels) nested in s (8), x by row; one level of s without rows of its own is impossible, so s8 has one c."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 30, n)
    s = c % 8
    x = rng.integers(0, 3, n).astype(float)
    eta = -0.2 + 0.3 * x + 0.6 * rng.normal(size=8)[s] + 0.5 * rng.normal(size=30)[c]
    y = rng.poisson(np.exp(eta)) if family == "poisson" else rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "s": [f"s{i}" for i in s], "c": [f"c{i}" for i in c]})


def test_integrable_parents_names_only_parents_read_by_one_child():
    df = _nested(1, "poisson", 400)
    m = bayesmlm.MLM("y ~ x + (1 | c) + (1 | s)", df, family="poisson")
    assert integrable_parents(m.design, {"c": "centred", "s": "non-centred"}) == {"s": "c"}
    assert integrable_parents(m.design, {"c": "non-centred", "s": "non-centred"}) == {}  # no centred child
    slopes = bayesmlm.MLM("y ~ x + (1 + x | s) + (1 | c)", df, family="poisson")  # s's slope stays in eta
    assert integrable_parents(slopes.design, {"c": "centred", "s": "centred"}) == {}


@pytest.mark.parametrize("family, aggregate", [("poisson", True), ("bernoulli", False)])
def test_density_is_the_full_models_integrated_over_the_parent(family, aggregate):
    m = bayesmlm.MLM("y ~ x + (1 | c) + (1 | s)", _nested(2, family, 2000 if aggregate else 400), family=family)
    cells, _ = m._full_options(aggregate, "auto")
    full = glmm_plan(m.design, m.prior_dict, cells, {"c": "centred", "s": "non-centred"})
    marginal = glmm_plan(m.design, m.prior_dict, cells, {"c": "centred", "s": "collapsed"})
    p, J, Jp = len(m.design.fixed_terms), 30, 8
    assert [b.kind for b in marginal.blocks] == [3] and marginal.n_dim == full.n_dim - Jp
    levels = marginal.integrated["s"].levels
    n = np.bincount(levels, minlength=Jp)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = marginal.initial_point(int(rng.integers(100))) + 0.3 * rng.normal(size=marginal.n_dim)
        b, v, log_sd = x[:p], x[p:p + J], x[p + J:]
        z = rng.normal(size=Jp)
        value_full, grad_full = full.logp(np.concatenate([b, v, z, log_sd]))
        # Gaussian in z: -d2/dz_l2 = 1 + n_l sd_s^2 / sd_c^2 (diagonal), so the integral is exact from any z
        h = 1.0 + n * np.exp(2 * log_sd[1] - 2 * log_sd[0])
        g = grad_full[p + J:p + J + Jp]
        integral = value_full + 0.5 * np.sum(g * g / h) + 0.5 * Jp * np.log(2 * np.pi) - 0.5 * np.sum(np.log(h))
        value, grad = marginal.logp(x)
        assert value == pytest.approx(integral, abs=1e-8)
    eps = 1e-6
    fd = np.array([(marginal.logp(x + eps * e)[0] - marginal.logp(x - eps * e)[0]) / (2 * eps)
                   for e in np.eye(marginal.n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(grad).max()))


def test_parent_draws_have_the_gaussian_conditional_moments():
    m = bayesmlm.MLM("y ~ x + (1 | c) + (1 | s)", _nested(4, "poisson", 400), family="poisson")
    plan = glmm_plan(m.design, m.prior_dict, None, {"c": "centred", "s": "collapsed"})
    link = plan.integrated["s"]
    J, Jp, D = 30, 8, 20000
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.8, J)
    sd_c, sd_s = 0.5, 0.7
    coords = {"s": list(m.design.factors["s"].levels), "c": list(m.design.factors["c"].levels),
              "s_term": ["(Intercept)"], "c_term": ["(Intercept)"]}
    post = xr.Dataset({
        "fixef": (("chain", "draw", "term"), np.zeros((1, D, 2))),
        "sd_c": (("chain", "draw", "c_term"), np.full((1, D, 1), sd_c)),
        "u_c": (("chain", "draw", "c", "c_term"), np.broadcast_to(r[None, None, :, None], (1, D, J, 1)).copy()),
        "sd_s": (("chain", "draw", "s_term"), np.full((1, D, 1), sd_s))}, coords=coords)
    out = draw_parents(post, m.design, plan.integrated, coords, seed=5)
    assert list(out.data_vars) == ["fixef", "sd_c", "u_c", "sd_s", "u_s"]
    w = out["u_s"].values[0, :, :, 0]
    G = np.zeros((J, Jp))
    G[np.arange(J), link.levels] = 1.0
    K = sd_s ** 2 * G.T @ np.linalg.inv(sd_s ** 2 * G @ G.T + sd_c ** 2 * np.eye(J))  # E[w | r] = K r
    cov = sd_s ** 2 * np.eye(Jp) - K @ G * sd_s ** 2
    se = np.sqrt(np.diag(cov) / D)
    assert np.all(np.abs(w.mean(axis=0) - K @ r) < 4.5 * se)
    np.testing.assert_allclose(np.cov(w.T), cov, atol=0.03)
    np.testing.assert_allclose(out["u_c"].values[0, :, :, 0], r[None, :] - w[:, link.levels], atol=1e-12)


@pytest.fixture(scope="module")
def grouse_fit(fit_cache):
    data = bayesmlm.datasets.load("grouseticks")
    data = data.assign(cHEIGHT=data["HEIGHT"] - data["HEIGHT"].mean())
    return cached_fit(fit_cache, "grouse_integrated", lambda: bayesmlm.MLM(
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", data, family="poisson").fit(seed=1, progressbar=False))


def test_grouseticks_converges_at_defaults_and_matches_glmer(grouse_fit):
    fit, ref = grouse_fit, reference("grouseticks")
    assert fit.record.parameterization == {"BROOD": "centred on LOCATION", "LOCATION": "collapsed"}
    diag = fit.record.diagnostics
    assert diag.max_rhat < 1.01 and diag.min_ess_bulk > 400 and diag.divergences == 0
    fe = fit.fixef()
    for term, r in ref["fixef"].items():
        assert abs(fe.loc[term, "mean"] - r["estimate"]) < 0.5 * fe.loc[term, "sd"], term
    vc = fit.varcorr()
    for group in ("BROOD", "LOCATION"):
        row = vc[(vc["group"] == group) & (vc["var1"] == "(Intercept)")].iloc[0]
        assert abs(row["mean"] - ref["sd"][f"{group}:(Intercept)"]) < row["sd"], group
    for group in ("BROOD", "LOCATION"):  # the effects drawn after sampling follow glmer's conditional modes
        mine = fit.ranef(factor=group)["mean"].xs("(Intercept)", level="term")
        theirs = pd.Series({k: v["(Intercept)"] for k, v in ref["ranef"][group].items()})
        assert np.corrcoef(mine.loc[theirs.index].values, theirs.values)[0, 1] > 0.97, group

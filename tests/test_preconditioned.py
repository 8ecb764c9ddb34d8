"""The Laplace map of the kernel's group effects (bayesmlm.fastpath.preconditioned): the same posterior, exactly."""

import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm.design.aggregate import aggregate_rows
from bayesmlm.fastpath import glmm_kernel as kernel
from bayesmlm.fastpath import preconditioned as pc
from bayesmlm.fastpath.glmm_fit import glmm_plan
from bayesmlm.design.parameterization import precondition_choice

FORMULAS = {
    "bernoulli, correlated": ("hi ~ smu + female + (1 + smu | country)", "bernoulli"),
    "bernoulli, uncorrelated": ("hi ~ smu + female + (1 + smu || country)", "bernoulli"),
    "poisson, intercept": ("n ~ smu + (1 | country)", "poisson"),
}


def _data(seed=1, n=500, J=25):
    rng = np.random.default_rng(seed)
    g, smu, fem = rng.integers(0, J, n), rng.integers(1, 6, n), rng.integers(0, 2, n)
    u = rng.normal(0.0, [0.5, 0.15], (J, 2))
    eta = -1 + 0.25 * smu - 0.3 * fem + u[g, 0] + u[g, 1] * smu
    return pd.DataFrame({"hi": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "n": rng.poisson(np.exp(eta)),
                         "smu": smu, "female": fem, "country": g.astype(str)})


@pytest.fixture(scope="module", params=list(FORMULAS))
def plans(request):
    formula, family = FORMULAS[request.param]
    m = bayesmlm.MLM(formula, _data(), family=family)
    base = glmm_plan(m.design, m.prior_dict, aggregate_rows(m.design), {"country": "centred"})
    x_hat, approx = pc.laplace_point(base)
    return base, pc.PreconditionedPlan(base, x_hat, approx), approx


def _cholesky(plan, x, k):
    blk = plan.blocks[k]
    sd_at = int(plan.buffer[kernel.HEAD + kernel.BLOCK_FIELDS * k + 5])
    sd = x[sd_at:sd_at + blk.n_sd]
    if not blk.correlated:
        return np.diag(np.exp(sd))
    L = np.zeros((blk.q, blk.q))
    L[np.tril_indices(blk.q)] = sd
    L[np.diag_indices(blk.q)] = np.exp(np.diag(L))
    return L


def test_density_is_the_kernels_at_the_mapped_point_plus_the_log_jacobian(plans):
    base, plan, approx = plans
    rng = np.random.default_rng(3)
    p = int(base.buffer[2])
    for _ in range(3):
        z = plan.z_hat + rng.normal(0.0, 0.7, plan.n_dim)
        x = plan.to_x(z)
        # the map written out in numpy: v_j = mu_j + R_j^-T z_j, P_j = Lam_j + A' (L L')^-1 A = R_j R_j'
        effects, log_jacobian = np.zeros(plan.n_dim, dtype=bool), 0.0
        for k, blk in enumerate(base.blocks):
            J, q = blk.n_levels, blk.q
            e_at = int(base.buffer[kernel.HEAD + kernel.BLOCK_FIELDS * k + 4])
            K = np.linalg.solve(_cholesky(base, z, k), blk.A)
            omega = K.T @ K
            lam, lv = approx[k]
            hb = np.zeros((J, q)) if blk.H is None else blk.H @ z[:p]
            P = lam + omega
            R = np.linalg.cholesky(P)
            mu = np.linalg.solve(P, (lv + hb @ omega)[..., None])[..., 0]
            v = mu + np.linalg.solve(np.transpose(R, (0, 2, 1)), z[e_at:e_at + J * q].reshape(J, q, 1))[..., 0]
            np.testing.assert_allclose(x[e_at:e_at + J * q], v.ravel(), rtol=1e-10, atol=1e-10)
            effects[e_at:e_at + J * q] = True
            log_jacobian -= np.sum(np.log(np.diagonal(R, axis1=1, axis2=2)))
        np.testing.assert_array_equal(x[~effects], z[~effects])  # b and the SD parameters are the sampler's
        assert plan.logp(z)[0] == pytest.approx(base.logp(x)[0] + log_jacobian, rel=1e-12, abs=1e-9)


def test_gradient_matches_finite_differences(plans):
    _, plan, _ = plans
    z = plan.z_hat + np.random.default_rng(4).normal(0.0, 0.5, plan.n_dim)
    _, grad = plan.logp(z)
    h = 1e-6
    E = np.eye(plan.n_dim)
    fd = np.array([(plan.logp(z + h * E[i])[0] - plan.logp(z - h * E[i])[0]) / (2 * h) for i in range(plan.n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


def test_to_z_inverts_the_map_and_expand_is_the_kernels(plans):
    base, plan, _ = plans
    z = plan.z_hat + np.random.default_rng(5).normal(0.0, 0.5, plan.n_dim)
    x = plan.to_x(z)
    back = np.empty(plan.n_dim)
    pc.to_z(x, plan.buffer, back)
    np.testing.assert_allclose(back, z, atol=1e-12)
    n = int(base.buffer[6])
    out, ref = np.empty(n), np.empty(n)
    pc.expand(z, plan.buffer, out)
    kernel.expand(x, base.buffer, ref)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_laplace_point_finds_the_conditional_modes(plans):
    # at the optimum the effects' gradient vanishes (b and the SDs are at their EM / Newton values, not a joint mode)
    base, plan, _ = plans
    p = int(base.buffer[2])
    n_effects = sum(blk.n_levels * blk.q for blk in base.blocks)
    # two blocks of one factor (||) meet in every group's likelihood: Newton block by block gets near the mode, not onto
    # it
    tol = 1e-5 if len(base.blocks) == 1 else 1e-2
    assert np.abs(base.logp(plan.x_hat)[1][p:p + n_effects]).max() < tol
    # and z = 0 there: the optimum is mu_j at its own theta
    assert np.abs(plan.z_hat[p:p + n_effects]).max() < tol


def test_rule():
    m = bayesmlm.MLM("hi ~ smu + female + (1 + smu | country)", _data(), family="bernoulli")
    d, pri = m.design, m.prior_dict
    assert precondition_choice(d, pri, "auto", {"country": "non-centred"}) == ({"country": "centred"}, None)
    assert precondition_choice(d, pri, {"country": "non-centred"}, {"country": "non-centred"})[1] == \
        "the parameterisation of every factor was fixed by the call"
    assert precondition_choice(d, pri, "auto", {"country": "centred"}, "none") == ({"country": "centred"},
                                                                                      "not asked for")
    big = bayesmlm.MLM("hi ~ smu + (1 | country)", _data(n=4000, J=4), family="bernoulli")  # 1000 rows a group
    _, why = precondition_choice(big.design, big.prior_dict, "auto", {"country": "centred"})
    assert "data-dominated" in why
    assert precondition_choice(big.design, big.prior_dict, "auto", {"country": "centred"}, "laplace")[1] is None
    g = bayesmlm.MLM("y ~ x + (1 | g)", pd.DataFrame({"y": np.arange(20.0), "x": np.arange(20) % 3,
                                                      "g": np.arange(20) % 4}))
    assert "family 'gaussian'" in precondition_choice(g.design, g.prior_dict, "auto", {"g": "centred"})[1]


def test_fit_records_the_map():
    m = bayesmlm.MLM("hi ~ smu + female + (1 + smu | country)", _data(), family="bernoulli")
    fit = m.fit(draws=100, tune=100, chains=1, seed=1, progressbar=False, precondition="auto")
    assert (fit.record.precondition, fit.record.precondition_note, fit.record.density) == ("laplace", "", "kernel")
    assert fit.record.parameterization == {"country": "centred"}
    assert fit.posterior["u_country"].shape == (1, 100, 25, 2)
    off = m.fit(draws=20, tune=20, chains=1, seed=1, progressbar=False)  # "none" is the default
    assert (off.record.precondition, off.record.precondition_note) == ("none", "not asked for")
    with pytest.raises(bayesmlm.errors.ArgumentError, match="Unknown precondition 'yes'"):
        m.fit(precondition="yes")

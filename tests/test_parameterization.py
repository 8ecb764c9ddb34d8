"""Centred or non-centred random effects, chosen per grouping factor (bayesmlm.design.parameterization)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm.design.parameterization import (
    CENTRED_MIN_KAPPA,
    CENTRED_SHARE,
    choose_parameterization,
    group_information,
    prior_median,
)
from bayesmlm.design.priors import Prior


def _two_factors(n_big: int = 8, per_big: int = 400, n_small: int = 300, seed: int = 81) -> pd.DataFrame:
    """0/1 rows in 8 regions of 400 rows (many rows per group) crossed with 300 interviewers of about 11 (few)."""
    rng = np.random.default_rng(seed)
    n = n_big * per_big
    region = np.repeat(np.arange(n_big), per_big)
    interviewer = rng.integers(0, n_small, n)
    x = rng.normal(size=n)
    eta = -0.2 + 0.5 * x + rng.normal(0, 0.6, n_big)[region] + rng.normal(0, 0.3, n_small)[interviewer]
    return pd.DataFrame({"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "x": x,
                         "region": [f"r{j}" for j in region], "interviewer": [f"i{j:03d}" for j in interviewer]})


def _model(**kw) -> bayesmlm.MLM:
    return bayesmlm.MLM("y ~ x + (1 + x | region) + (1 | interviewer)", _two_factors(), family="bernoulli", **kw)


def test_prior_medians():
    assert prior_median(Prior("half_normal", sigma=2.0)) == pytest.approx(2 * 0.674490, rel=1e-5)
    assert prior_median(Prior("exponential", lam=0.5)) == pytest.approx(2 * np.log(2))
    # R: qt(0.75, 3) = 0.7648923
    assert prior_median(Prior("half_student_t", nu=3.0, sigma=1.0)) == pytest.approx(0.7648923, rel=1e-6)


def test_kappa_of_a_gaussian_random_intercept_is_n_tau2_over_sigma2():
    data = bayesmlm.datasets.load("sleepstudy")
    m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", data)
    tau = prior_median(m.prior_dict["sd(Subject:(Intercept))"])
    sigma = prior_median(m.prior_dict["sigma"])
    np.testing.assert_allclose(group_information(m.design, m.prior_dict)["Subject"], 10 * tau**2 / sigma**2)


def test_kappa_of_a_logit_intercept_is_n_p_q_tau2():
    data = _two_factors()
    m = bayesmlm.MLM("y ~ x + (1 | region)", data, family="bernoulli")
    p = data.y.mean()
    tau = prior_median(m.prior_dict["sd(region:(Intercept))"])
    np.testing.assert_allclose(group_information(m.design, m.prior_dict)["region"], 400 * p * (1 - p) * tau**2)


def test_many_rows_per_group_centred_few_non_centred():
    m = _model()
    kappa = group_information(m.design, m.prior_dict)
    assert np.mean(kappa["region"] >= CENTRED_MIN_KAPPA) >= CENTRED_SHARE          # 400 rows a region
    assert np.mean(kappa["interviewer"] >= CENTRED_MIN_KAPPA) < CENTRED_SHARE      # about 11 rows an interviewer
    assert choose_parameterization(m.design, m.prior_dict) == {"region": "centred", "interviewer": "non-centred"}


def test_a_tight_prior_on_the_sd_moves_a_factor_to_non_centred():
    tight = _model(priors={"sd(region:(Intercept))": "half_normal(0.01)", "sd(region:x)": "half_normal(0.01)"})
    assert choose_parameterization(tight.design, tight.prior_dict)["region"] == "non-centred"


def test_the_user_overrides_the_rule():
    m = _model()
    assert choose_parameterization(m.design, m.prior_dict, "non-centred") == {"region": "non-centred",
                                                                              "interviewer": "non-centred"}
    assert choose_parameterization(m.design, m.prior_dict, {"interviewer": "centred"}) == {
        "region": "centred", "interviewer": "centred"}
    with pytest.raises(ValueError, match=r"names \['school'\], which are not grouping factors.*region, interviewer"):
        choose_parameterization(m.design, m.prior_dict, {"school": "centred"})
    with pytest.raises(ValueError, match=r"Unknown parameterization 'centered' for 'region'.*'auto', 'centred', 'non-centred'"):
        choose_parameterization(m.design, m.prior_dict, {"region": "centered"})


def test_the_built_model_samples_what_was_chosen():
    m = _model()
    names = {v.name for v in m.build().free_RVs}
    assert {"v_region", "z_interviewer"} <= names and not {"z_region", "v_interviewer"} & names
    names = {v.name for v in m.build(parameterization="non-centred").free_RVs}
    assert {"z_region", "z_interviewer"} <= names


def _evaluate(model, names: list[str], point: dict) -> list:
    outs = model.replace_rvs_by_values([model[n] for n in names])
    return model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE", on_unused_input="ignore")(point)


def test_centred_and_non_centred_are_the_same_model_at_the_same_u():
    # The centred block samples v = A^-1 (beta_Z + u); at the v of a given u, its log-density equals the
    # non-centred one's at z = L^-1 u, up to the Jacobian log|det L| of z -> u, and u is the same.
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    cen = m.build(parameterization="centred")
    non = m.build(parameterization="non-centred")
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in non.initial_point().items()}
    beta, u, sd, cor = _evaluate(non, ["fixef", "u_Subject", "sd_Subject", "cor_Subject"], point)
    zbar = m.design.blocks[0].Z.mean(axis=0)
    a_inv = np.array([[1.0, zbar[1]], [0.0, 1.0]])
    v = (u + beta) @ a_inv.T
    cpoint = {k: val for k, val in point.items() if not k.startswith("z_")} | {"v_Subject": v}
    got = _evaluate(cen, ["u_Subject"], cpoint)[0]
    np.testing.assert_allclose(got, u, atol=1e-10)
    log_det = u.shape[0] * (np.sum(np.log(sd)) + 0.5 * np.log(1 - cor[0] ** 2))  # J log|det L|
    lp_c = float(cen.compile_logp(mode="FAST_COMPILE")(cpoint))
    lp_n = float(non.compile_logp(mode="FAST_COMPILE")(point))
    assert lp_c == pytest.approx(lp_n - log_det, abs=1e-8)


def test_parameterization_is_refused_for_the_collapsed_route():
    m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    with pytest.raises(ValueError, match=r"parameterization='centred' is for method='full'.*Pass method='full'"):
        m.fit(method="collapsed", parameterization="centred")

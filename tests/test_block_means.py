"""Centred blocks centred on their fixed effects, level-2 covariates included (bayesmlm.design.block_means).

The data are VerbAgg-shaped: persons crossed with items, a person-level
numeric and binary covariate (Anger, Gender there), an item-level
three-level factor and binary factor (btype, situ) and a row-level x.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmlm
from bayesmlm.design.block_means import block_means

FORMULA = "y ~ anger + gender + btype + situ + x + (1 | person) + (1 | item)"
BOTH = {"person": "centred", "item": "centred"}


def _crossed(n_person: int = 40, n_item: int = 12, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    person = np.repeat(np.arange(n_person), n_item)
    item = np.tile(np.arange(n_item), n_person)
    anger = rng.integers(11, 40, n_person).astype(float)
    gender = rng.choice(["F", "M"], n_person)
    btype = np.array(["curse", "scold", "shout"])[np.arange(n_item) % 3]
    situ = np.array(["other", "self"])[(np.arange(n_item) // 3) % 2]
    x = rng.normal(size=person.size)
    eta = (-1.0 + 0.06 * (anger[person] - 20) + 0.3 * (gender[person] == "M") - 1.0 * (btype[item] == "scold")
           - 2.0 * (btype[item] == "shout") - 1.0 * (situ[item] == "self") + 0.4 * x
           + rng.normal(0, 1.3, n_person)[person] + rng.normal(0, 0.6, n_item)[item])
    return pd.DataFrame({"y": (rng.random(person.size) < 1 / (1 + np.exp(-eta))).astype(int), "x": x,
                         "anger": anger[person], "gender": gender[person], "btype": btype[item], "situ": situ[item],
                         "person": [f"p{j:02d}" for j in person], "item": [f"i{j:02d}" for j in item]})


@pytest.fixture(scope="module")
def model() -> bayesmlm.MLM:
    return bayesmlm.MLM(FORMULA, _crossed(), family="bernoulli")


def test_each_block_is_centred_on_the_fixed_effects_constant_within_its_groups(model):
    means = block_means(model.design, BOTH)
    # The intercept goes to the factor with fewer groups (12 items < 40 persons), with the item-level covariates;
    # the person-level ones go to the persons; x varies within both and stays a plain fixed effect.
    assert means["item"].terms == {"(Intercept)": ("(Intercept)", "btypescold", "btypeshout", "situself")}
    assert means["person"].terms == {"(Intercept)": ("anger", "genderM")}


def test_a_non_centred_factor_takes_nothing_and_the_intercept_moves_to_the_other(model):
    means = block_means(model.design, {"person": "centred", "item": "non-centred"})
    assert list(means) == ["person"]
    assert means["person"].terms == {"(Intercept)": ("(Intercept)", "anger", "genderM")}


def test_a_slope_is_centred_on_its_own_fixed_effect_and_its_cross_level_interaction():
    data = _crossed().assign(xg=lambda d: d.x * (d.gender == "M"))
    m = bayesmlm.MLM("y ~ x + gender + x:gender + (1 + x | person)", data, family="bernoulli")
    means = block_means(m.design, {"person": "centred"})["person"]
    assert means.terms == {"(Intercept)": ("(Intercept)", "genderM"), "x": ("x", "x:genderM")}
    # x:genderM = x * 1[M]: on the slope, h_j = 1[M]; its constant part zbar_x h_j - c goes to the intercept
    i = m.design.fixed_terms.index("x:genderM")
    male = np.array([lvl in set(data.person[data.gender == "M"]) for lvl in m.design.factors["person"].levels])
    np.testing.assert_allclose(means.H[:, 1, i], male.astype(float))
    zbar, c = m.design.blocks[0].Z[:, 1].mean(), m.design.x_centre[i]
    np.testing.assert_allclose(means.H[:, 0, i], zbar * male - c, atol=1e-12)


def _compile(model, outs):
    outs = model.replace_rvs_by_values(outs)
    return model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE", on_unused_input="ignore")


def _centred_point(m, point: dict) -> dict:
    """The centred model's free variables at the non-centred model's point (the same beta, SDs and u), by hand.

    v_item_j = b0 + sum over item covariates (X_jt - c_t) b_t + u_item_j and
    v_person_j = sum over person covariates (X_jt - c_t) b_t + u_person_j, with b the centred fixed effects.
    """
    d = m.design
    b = point["b_centred"]
    out = {k: v for k, v in point.items() if not k.startswith("z_")}
    for factor, terms in (("item", ("(Intercept)", "btypescold", "btypeshout", "situself")), ("person", ("anger", "genderM"))):
        f = d.factors[factor]
        first = np.array([np.flatnonzero(f.index == j)[0] for j in range(f.n_levels)])
        cols = [d.fixed_terms.index(t) for t in terms]
        mean = (d.X[first][:, cols] - d.x_centre[cols]) @ b[cols]
        sd = np.exp(point[f"sd_{factor}_log__"])
        out[f"v_{factor}"] = (mean + sd * point[f"z_{factor}"][:, 0])[:, None]
    return out


def test_the_centred_model_is_the_plain_model_at_the_same_u(model):
    non = model.build(parameterization="non-centred", aggregate=False)
    cen = model.build(parameterization=BOTH, aggregate=False)
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in non.initial_point().items()}
    cpoint = _centred_point(model, point)
    u_non = _compile(non, [non["u_person"], non["u_item"]])(point)
    u_cen = _compile(cen, [cen["u_person"], cen["u_item"]])(cpoint)
    for a, b in zip(u_cen, u_non):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # z -> u = sd z has Jacobian J log sd per factor
    log_det = sum(model.design.factors[f].n_levels * float(point[f"sd_{f}_log__"][0]) for f in ("person", "item"))
    lp_c = float(cen.compile_logp(mode="FAST_COMPILE")(cpoint))
    lp_n = float(non.compile_logp(mode="FAST_COMPILE")(point))
    assert lp_c == pytest.approx(lp_n - log_det, abs=1e-8)


def test_the_likelihood_of_a_centred_model_reads_the_absorbed_fixed_effects_only_through_v(model):
    # the point of centring on them: at fixed v, moving an absorbed coefficient changes the prior of v, not the data's term
    cen = model.build(parameterization=BOTH, aggregate=False)
    lik = cen.compile_logp(vars=cen.observed_RVs, mode="FAST_COMPILE")
    point = cen.initial_point()
    base = float(lik(point))
    d = model.design
    for term in ("(Intercept)", "anger", "btypeshout", "situself"):
        moved = dict(point, b_centred=point["b_centred"] + 0.7 * (np.array(d.fixed_terms) == term))
        assert float(lik(moved)) == pytest.approx(base, abs=1e-9), term
    moved = dict(point, b_centred=point["b_centred"] + 0.7 * (np.array(d.fixed_terms) == "x"))
    assert abs(float(lik(moved)) - base) > 1.0  # x is no block's mean: it moves the data's term


def test_a_cumulative_models_slope_block_absorbs_its_fixed_effect_out_of_the_likelihood():
    # cumulative X is centred at its plain means (the thresholds absorb the shift); block means must use the same
    # centre, or the absorbed column leaves a constant -mean(x) b in eta that ties b to the thresholds (a ridge NUTS
    # mixed badly: bulk ESS 382 for smu on wvs7_sim)
    from bayesmlm.fastpath.glmm_fit import glmm_plan

    m = bayesmlm.MLM("rating ~ temp + contact + (1 + temp | judge)", bayesmlm.datasets.load("wine"), family="cumulative")
    cen = m.build(parameterization="centred", aggregate=False)
    lik = cen.compile_logp(vars=cen.observed_RVs, mode="FAST_COMPILE")
    point = cen.initial_point()
    terms = np.array(m.design.fixed_terms)
    moved = dict(point, b_centred=point["b_centred"] + 0.7 * (terms == "tempwarm"))
    assert float(lik(moved)) == pytest.approx(float(lik(point)), abs=1e-9)
    moved = dict(point, b_centred=point["b_centred"] + 0.7 * (terms == "contactyes"))
    assert abs(float(lik(moved)) - float(lik(point))) > 1.0
    plan = glmm_plan(m.design, m.prior_dict, parameterization={"judge": "centred"})
    pr, o_cols = int(plan.buffer[14]), int(plan.buffer[15])
    assert plan.buffer[o_cols:o_cols + pr].view(np.int64).tolist() == [m.design.fixed_terms.index("contactyes")]

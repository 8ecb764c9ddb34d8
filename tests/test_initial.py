"""NUTS started at the frequentist optimum (bayesmlm.sample.initial): the mapping, the noise, the fallback, the record."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymc.initial_point import make_initial_point_fn

import bayesmlm
from bayesmlm.errors import ArgumentError
from bayesmlm.sample.initial import frequentist_start, initial_values
from bayesmlm.schema import cor_var, sd_var, u_var


def _deterministics_at(pmodel, values: dict, names: list[str]) -> list[np.ndarray]:
    """The model's deterministics at a point given on the constrained scale (through PyMC's own transforms)."""
    point = make_initial_point_fn(model=pmodel, overrides=values, jitter_rvs=set(), return_transformed=True)(0)
    outs = pmodel.replace_rvs_by_values([pmodel[n] for n in names])
    return pmodel.compile_fn(outs, inputs=pmodel.value_vars, on_unused_input="ignore", point_fn=True)(point)


def _varcorr(ff, grp: str, terms: tuple[str, ...]):
    vc = ff.varcorr[ff.varcorr["grp"] == grp]
    sd = [float(vc[(vc.var1 == t) & vc.var2.isna()].sdcor.iloc[0]) for t in terms]
    cor = [float(vc[(vc.var1 == a) & (vc.var2 == b)].sdcor.iloc[0]) for i, a in enumerate(terms) for b in terms[i + 1:]]
    return np.array(sd), np.array(cor)


CASES = [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian", "centred"),
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian", "non-centred"),
    ("Reaction ~ Days + (Days || Subject)", "sleepstudy", "gaussian", "centred"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "gaussian", "non-centred"),
    # centred on level-2 covariates (meanses, sector) and a cross-level interaction (cses:sector)
    ("mAch ~ meanses + sector + cses + cses:sector + (1 + cses | school)", "hsb82", "gaussian", "centred"),
    ("use ~ age + urban + livch + (1 + urban | district)", "contraception", "bernoulli", "non-centred"),
    ("use ~ age + urban + livch + (1 + urban | district)", "contraception", "bernoulli", "centred"),
]


@pytest.mark.parametrize("formula, data, family, par", CASES)
def test_the_start_is_the_engines_optimum(formula, data, family, par):
    m = bayesmlm.MLM(formula, bayesmlm.datasets.load(data), family=family)
    pmodel = m.build(parameterization=par)
    ff = m.fit_frequentist()
    choice = {b.group: par for b in m.design.blocks}
    start, why = frequentist_start(m.design, ff, choice)
    assert why == ""
    names = ["fixef"] + [n for b in m.design.blocks for n in (sd_var(b.label), u_var(b.label))
                         + ((cor_var(b.label),) if b.correlated else ())]
    got = dict(zip(names, _deterministics_at(pmodel, initial_values(pmodel, start, jitter=False), names)))
    np.testing.assert_allclose(got["fixef"], ff.fixed.set_index("term").loc[list(m.design.fixed_terms), "estimate"],
                               rtol=1e-6, atol=1e-8)
    for b in m.design.blocks:
        sd, cor = _varcorr(ff, b.label, b.terms)  # VarCorr names a second block on a factor g.1, as the label does
        np.testing.assert_allclose(got[sd_var(b.label)], sd, rtol=1e-6)
        if b.correlated:
            np.testing.assert_allclose(got[cor_var(b.label)], cor, rtol=1e-6)
        table = ff.ranef[b.group]
        levels = list(m.design.factors[b.group].levels)
        u = np.column_stack([table.xs(t, level="term").loc[levels, "condval"] for t in b.terms])
        np.testing.assert_allclose(got[u_var(b.label)], u, rtol=1e-6, atol=1e-8)
    if family == "gaussian":
        point = make_initial_point_fn(model=pmodel, overrides=initial_values(pmodel, start, jitter=False),
                                      jitter_rvs=set(), return_transformed=False)(0)
        assert float(point["sigma"]) == pytest.approx(ff.sigma, rel=1e-10)


def test_each_chain_starts_at_its_own_point_near_the_optimum():
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    pmodel = m.build(parameterization="centred")
    start, _ = frequentist_start(m.design, m.fit_frequentist(), {"Subject": "centred"})
    fn = make_initial_point_fn(model=pmodel, overrides=initial_values(pmodel, start), jitter_rvs=set(),
                               return_transformed=False)
    a, b, a_again = fn(1), fn(2), fn(1)
    assert not np.allclose(a["b_centred"], b["b_centred"])
    np.testing.assert_array_equal(a["b_centred"], a_again["b_centred"])  # seeded
    # one standard error of noise: the intercept at the mean day moves by a few SE at most (SE about 7)
    draws = np.array([fn(s)["b_centred"] for s in range(200)])
    np.testing.assert_allclose(draws.std(axis=0), start.scales["b_centred"], rtol=0.2)
    assert np.all(np.abs(np.log([fn(s)["sigma"] / start.values["sigma"] for s in range(50)])) < 0.5)


def test_a_singular_optimum_is_not_a_start():
    # Dyestuff2's REML fit is singular (lme4: the batch SD is 0)
    m = bayesmlm.MLM("Yield ~ 1 + (1 | Batch)", bayesmlm.datasets.load("dyestuff2"))
    ff = m.fit_frequentist()
    assert ff.singular
    start, why = frequentist_start(m.design, ff, {"Batch": "non-centred"})
    assert start is None and "singular" in why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=30, tune=30, chains=1, seed=3, progressbar=False, method="full", init="frequentist")
    assert fit.record.init == "sampler" and "singular" in fit.record.init_note


def test_a_fit_started_at_the_optimum_runs_and_records_it():
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=100, tune=100, chains=2, seed=5, progressbar=False, method="full", init="frequentist")
    assert fit.record.init == "frequentist" and fit.record.init_note == "" and fit.record.seconds_init > 0
    days = float(fit.fixef().loc["Days", "mean"])
    assert days == pytest.approx(10.467, abs=2.0)  # lme4: fixef(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = m.fit(draws=30, tune=30, chains=1, seed=5, progressbar=False, method="full")  # the default
    assert plain.record.init == "sampler" and plain.record.seconds_init == 0.0


def test_init_arguments_are_checked():
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    with pytest.raises(ArgumentError, match="Valid values: sampler, frequentist"):
        m.fit(init="lme4")
    with pytest.raises(ArgumentError, match="method='full'"):
        m.fit(method="collapsed", init="frequentist")
    with pytest.raises(ArgumentError, match="nutpie, pymc"):
        m.fit(sampler="numpyro", init="frequentist")

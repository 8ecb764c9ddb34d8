"""weights=: precision weights for gaussian models, likelihood weights for the other families, in every route.

- the weighted fast-path statistics give the dense multivariate normal density
  with covariance Z T Z' + sigma^2 W^-1, and the compiled kernel is the PyMC
  collapsed model's density with them;
- integer weights are the expanded rows exactly for bernoulli, binomial and
  poisson models (the full model's log density at the same point, rows and
  cells), and for gaussian models differ from them by the one known term in
  sigma (precision weights are not frequency weights);
- weighted cells equal the weighted rows;
- the engine equals lmer(weights=) to 1e-4 and glmer(weights=) as closely as it
  equals glmer unweighted; the weighted collapsed posterior sits at it;
- bad weights are errors naming the column; a sum far from n warns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import reference
from scipy.special import expit
from scipy.stats import norm

import bayesmlm
from bayesmlm.build.full import build_full_model
from bayesmlm.design.aggregate import aggregate_rows
from bayesmlm.fastpath.fit import x_centre
from bayesmlm.fastpath.kernels import density_kernels, pack_data
from bayesmlm.fastpath.model import build_collapsed_model, collapsed_data, collapsed_structure, loglik_at
from bayesmlm.fastpath.nutpie_driver import compile_collapsed, density_plan
from bayesmlm.fastpath.readers import reduce_frames
from bayesmlm.fastpath.stats import STATISTICS, group_stats
from bayesmlm.spec.formula import parse_formula


def row_weights(n: int) -> np.ndarray:
    """The weights of scripts/references/weights_references.R: w_i = 0.5 + ((7 i) mod 11) / 10, i = 1..n."""
    i = np.arange(1, n + 1)
    return 0.5 + ((7 * i) % 11) / 10


def _gaussian(seed: int = 1) -> pd.DataFrame:
    """Seven groups of 1 to 13 rows, predictors x and z, weights w (one 0) and integer weights k."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 13, 4]
    g = np.repeat([f"g{j}" for j in range(len(sizes))], sizes)
    x = rng.normal(size=g.size)
    z = rng.uniform(-1, 2, size=g.size)
    y = 2.0 + 0.5 * x - z + rng.normal(size=g.size) * 1.5
    w = rng.uniform(0.2, 3.0, size=g.size)
    w[4] = 0.0
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "w": w, "k": rng.integers(1, 4, g.size).astype(float)})


def _expanded(data: pd.DataFrame, column: str) -> pd.DataFrame:
    return data.loc[data.index.repeat(data[column].astype(int))].reset_index(drop=True)


def _dense_weighted_loglik(design, gamma, cov, sigma) -> float:
    """sum_j log N(y_j | X_j gamma, Z_j T Z_j' + sigma^2 W_j^-1) over the rows of positive weight, row by row."""
    Z = np.column_stack([b.Z for b in design.blocks])
    r = design.y - design.X @ np.asarray(gamma)
    w, index = design.weights, next(iter(design.factors.values())).index
    total = 0.0
    for j in np.unique(index):
        rows = (index == j) & (w > 0)
        if not rows.any():
            continue
        V = Z[rows] @ cov @ Z[rows].T + sigma**2 * np.diag(1.0 / w[rows])
        total += -0.5 * (rows.sum() * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r[rows] @ np.linalg.solve(V, r[rows]))
    return total


# -- the fast path --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + z + (1 + x + z | g)", "y ~ 0 + x + (0 + x + z | g)"])
def test_weighted_statistics_give_the_dense_weighted_density(formula):
    design = bayesmlm.MLM(formula, _gaussian(), weights="w").design
    stats = group_stats(design)
    assert stats.n.sum() == len(design.y) - 1                     # the row of weight 0 is not in the likelihood
    q, rng = len(stats.random_terms), np.random.default_rng(2)
    for _ in range(3):
        gamma = rng.normal(size=len(design.fixed_terms))
        A = rng.normal(size=(q, q))
        cov, sigma = A @ A.T + 0.1 * np.eye(q), rng.uniform(0.5, 2.0)
        expected = _dense_weighted_loglik(design, gamma, cov, sigma)
        assert loglik_at(stats, gamma, cov, sigma) == pytest.approx(expected, rel=1e-10, abs=1e-8)
        unweighted = bayesmlm.MLM(formula, _gaussian()).design
        assert abs(loglik_at(group_stats(unweighted), gamma, cov, sigma) - expected) > 0.05


def test_the_compiled_kernel_is_the_collapsed_models_weighted_density():
    m = bayesmlm.MLM("y ~ x + z + (1 + x | g)", _gaussian(), weights="w")
    stats = group_stats(m.design)
    structure = collapsed_structure(m.design, m.prior_dict)
    data = collapsed_data(structure, stats, m.prior_dict, x_centre(stats))
    model = build_collapsed_model(structure, m.prior_dict, data)
    compiled, _ = compile_collapsed(structure, m.prior_dict, data)
    kernels = density_kernels(density_plan(structure, m.prior_dict))
    buffer = pack_data(data["constants"], data["group_stats"])
    logp, point = model.compile_logp(mode="FAST_COMPILE"), model.initial_point()
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.normal(size=compiled.n_dim) * 0.5
        values, k = {}, 0
        for name in compiled.value_names:
            size = int(np.prod(point[name].shape))
            values[name] = x[k:k + size].reshape(point[name].shape)
            k += size
        assert kernels.logp_grad(x, buffer, np.empty(compiled.n_dim)) == pytest.approx(float(logp(values)), rel=1e-10)


@pytest.mark.filterwarnings("ignore::bayesmlm.WeightsWarning")  # frequency weights sum to more than n, on purpose
def test_gaussian_integer_weights_are_precision_not_frequency_weights():
    """Both have the same quadratic form in gamma and u; they differ by -1/2 [(sum k - n) log(2 pi sigma^2) + sum log k]."""
    data = _gaussian()
    weighted = group_stats(bayesmlm.MLM("y ~ x + (1 + x | g)", data, weights="k").design)
    expanded = group_stats(bayesmlm.MLM("y ~ x + (1 + x | g)", _expanded(data, "k")).design)
    k, n = data["k"].to_numpy(), len(data)
    for gamma, cov, sigma in (([1.0, 0.3], np.array([[1.0, 0.2], [0.2, 0.5]]), 1.3), ([2.0, -1.0], np.eye(2), 0.7)):
        gap = -0.5 * ((k.sum() - n) * np.log(2 * np.pi * sigma**2) + np.log(k).sum())
        assert loglik_at(expanded, gamma, cov, sigma) == pytest.approx(loglik_at(weighted, gamma, cov, sigma) + gap,
                                                                       rel=1e-10)


def test_chunked_weighted_statistics_equal_the_in_memory_ones():
    data = _gaussian()
    spec = parse_formula("y ~ x + (1 + x | g)")
    whole = group_stats(bayesmlm.MLM("y ~ x + (1 + x | g)", data, weights="w").design)
    chunked = reduce_frames(spec, [data[:20], data[20:]], weights="w").stats.shifted(whole.x_shift, whole.y_shift)
    for key in STATISTICS:
        np.testing.assert_allclose(getattr(chunked, key), getattr(whole, key), rtol=1e-12, atol=1e-12)
    assert chunked.log_w.sum() == pytest.approx(np.log(data.w[data.w > 0]).sum(), rel=1e-12)


def test_files_take_weights(tmp_path):
    data = _gaussian()
    data.to_csv(tmp_path / "d.csv", index=False)
    m = bayesmlm.MLM.from_files("y ~ x + (1 + x | g)", tmp_path / "d.csv", weights="w", chunksize=15)
    whole = group_stats(bayesmlm.MLM("y ~ x + (1 + x | g)", data, weights="w").design)
    stats = m._stats.shifted(whole.x_shift, whole.y_shift)
    np.testing.assert_allclose(stats.ZtZ, whole.ZtZ, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.log_w, whole.log_w, rtol=1e-12, atol=1e-12)
    assert m._options["weights"] == "w"


def test_the_full_gaussian_model_has_sd_sigma_over_sqrt_w():
    m = bayesmlm.MLM("y ~ x + (1 | g)", _gaussian(), weights="w")
    pmodel = build_full_model(m.design, m.prior_dict, parameterization={"g": "non-centred"})
    point = pmodel.initial_point()
    point["sigma_log__"] = np.log(1.7)
    point["z_g"] = np.linspace(-1, 1, 7)[:, None]
    outputs = pmodel.replace_rvs_by_values([pmodel["weighted_loglik"], pmodel["fixef"], pmodel["u_g"]])
    term, beta, u = pmodel.compile_fn(outputs, inputs=pmodel.value_vars, on_unused_input="ignore",
                                      mode="FAST_COMPILE")(point)
    d = m.design
    eta = d.X @ beta + u[d.factors["g"].index, 0]
    keep = d.weights > 0
    expected = norm.logpdf(d.y[keep], eta[keep], 1.7 / np.sqrt(d.weights[keep])).sum()
    assert float(term) == pytest.approx(expected, rel=1e-10)


# -- the other families: likelihood weights, rows and cells -------------------------------------------------------------------
def _discrete(seed: int = 71) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(8), 30)
    x = rng.integers(0, 3, g.size).astype(float)
    eta = -0.3 + 0.4 * x + rng.normal(0, 0.7, 8)[g]
    t = rng.integers(1, 5, g.size)
    e = rng.choice([0.5, 2.0], g.size)
    return pd.DataFrame({"g": [f"g{j}" for j in g], "x": x, "t": t, "log_e": np.log(e),
                         "y": (rng.random(g.size) < expit(eta)).astype(int), "s": rng.binomial(t, expit(eta)),
                         "c": rng.poisson(e * np.exp(eta)), "k": rng.integers(0, 4, g.size).astype(float),
                         "w": np.round(rng.uniform(0, 2.5, g.size), 2)})


KINDS = {
    "bernoulli": dict(formula="y ~ x + (1 + x | g)", family="bernoulli"),
    "binomial": dict(formula="s ~ x + (1 + x | g)", family="binomial", trials="t"),
    "poisson": dict(formula="c ~ x + (1 + x | g)", family="poisson", offset="log_e"),
}


def _model(kind: str, data: pd.DataFrame, **kw) -> bayesmlm.MLM:
    spec = dict(KINDS[kind])
    return bayesmlm.MLM(spec.pop("formula"), data, **spec, **kw)


def _logp_points(pmodel, n: int = 4, seed: int = 3) -> list[dict]:
    rng, start = np.random.default_rng(seed), pmodel.initial_point()
    return [{k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in start.items()} for _ in range(n)]


@pytest.mark.filterwarnings("ignore::bayesmlm.WeightsWarning")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_integer_weights_are_the_expanded_rows_exactly(kind):
    data = _discrete()
    data = data[data.k > 0].reset_index(drop=True)  # the expanded rows have no row of weight 0
    weighted, expanded = _model(kind, data, weights="k"), _model(kind, _expanded(data, "k"))
    choice = {"g": "non-centred"}
    a = build_full_model(expanded.design, weighted.prior_dict, parameterization=choice)
    b = build_full_model(weighted.design, weighted.prior_dict, parameterization=choice)
    cells = aggregate_rows(weighted.design)
    c = build_full_model(weighted.design, weighted.prior_dict, parameterization=choice, cells=cells)
    assert cells.weighted and cells.n_cells < 0.5 * cells.n_rows
    np.testing.assert_allclose(weighted.design.x_centre, expanded.design.x_centre, rtol=1e-12)
    logps = [m.compile_logp(mode="FAST_COMPILE") for m in (a, b, c)]
    for point in _logp_points(a):
        values = [float(f(point)) for f in logps]
        assert np.isfinite(values[0]) and values[1] == pytest.approx(values[0], rel=1e-10, abs=1e-9)
        assert values[2] == pytest.approx(values[0], rel=1e-10, abs=1e-9)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_weighted_cells_equal_the_weighted_rows(kind):
    """Non-integer weights, some 0: cells of summed weighted counts (poisson: weighted exposure) are the rows."""
    m = _model(kind, _discrete(), weights="w")
    assert (m.design.weights == 0).any()
    cells = aggregate_rows(m.design)
    rows = build_full_model(m.design, m.prior_dict)
    agg = build_full_model(m.design, m.prior_dict, cells=cells)
    logp_rows, logp_agg = rows.compile_logp(mode="FAST_COMPILE"), agg.compile_logp(mode="FAST_COMPILE")
    unweighted = build_full_model(_model(kind, _discrete()).design, m.prior_dict).compile_logp(mode="FAST_COMPILE")
    for point in _logp_points(rows):
        a, b = float(logp_rows(point)), float(logp_agg(point))
        assert np.isfinite(a) and abs(a - b) < 1e-9 * max(1.0, abs(a)), (a, b)
        assert abs(a - float(unweighted(point))) > 1.0
    w = m.design.weights
    assert cells.y.sum() == pytest.approx((w * m.design.y).sum(), rel=1e-12)
    if kind != "poisson":
        trials = m.design.trials if m.design.trials is not None else 1.0
        assert cells.trials.sum() == pytest.approx((w * trials).sum(), rel=1e-12)


def test_bernoulli_cells_hold_weighted_successes_and_trials():
    data = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 4, "y": [1, 0, 1, 1, 0, 0, 1, 0], "w": [0.5, 2.0, 1.5, 0.0, 1, 1, 3, 1]})
    cells = aggregate_rows(bayesmlm.MLM("y ~ 1 + (1 | g)", data, family="bernoulli", weights="w").design)
    assert cells.n_cells == 2 and cells.y.tolist() == [2.0, 3.0] and cells.trials.tolist() == [4.0, 6.0]


# -- the frequentist engine ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sleep_weighted() -> pd.DataFrame:
    data = bayesmlm.datasets.load("sleepstudy")
    return data.assign(w=row_weights(len(data)))


@pytest.mark.parametrize("name, method", [("sleepstudy_weighted", "reml"), ("sleepstudy_weighted_ml", "ml")])
def test_weighted_reml_and_ml_equal_lmer(sleep_weighted, name, method):
    ref = reference(name)  # lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, weights = w, control = tight)
    ff = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", sleep_weighted, weights="w").fit_frequentist(method)
    fixed = ff.fixed.set_index("term")
    for term, want in ref["fixef"].items():
        assert fixed.loc[term, "estimate"] == pytest.approx(want["estimate"], rel=1e-4)
        assert fixed.loc[term, "se"] == pytest.approx(want["se"], rel=1e-4)
    vc = ff.varcorr
    sds = vc[vc.var2.isna() & (vc.grp != "Residual")].set_index("var1")["sdcor"]
    assert sds["(Intercept)"] == pytest.approx(ref["sd"]["Subject:(Intercept)"], rel=1e-4)
    assert sds["Days"] == pytest.approx(ref["sd"]["Subject:Days"], rel=1e-4)
    assert ff.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    assert ff.loglik == pytest.approx(ref["logLik"], rel=1e-8)


def test_weighted_poisson_laplace_is_as_close_to_glmer_as_unweighted():
    ref = reference("grouseticks_weighted")  # glmer(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), poisson, weights = w)
    data = bayesmlm.datasets.load("grouseticks")
    data["w"] = row_weights(len(data))
    ff = bayesmlm.MLM("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", data, family="poisson", weights="w").fit_frequentist()
    fixed = ff.fixed.set_index("term")
    # The engine's unweighted fit of this model is as far from glmer's: 0.0012 on the intercept, its logLik 0.0022 higher.
    for term, want in ref["fixef"].items():
        assert abs(fixed.loc[term, "estimate"] - want["estimate"]) < 0.01 * want["se"]
    assert ff.varcorr["sdcor"].iloc[0] == pytest.approx(ref["sd"]["LOCATION:(Intercept)"], rel=2e-3)
    assert ff.loglik == pytest.approx(ref["logLik"], abs=0.01)


def test_weighted_bernoulli_laplace_equals_glmer_with_integer_weights():
    ref = reference("contraception_weighted")  # glmer(y ~ age + urban + (1 | district), binomial, weights = k)
    data = bayesmlm.datasets.load("contraception")
    data = data.assign(k=1 + np.arange(1, len(data) + 1) % 3, y=(data.use == "Y").astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.WeightsWarning)
        ff = bayesmlm.MLM("y ~ age + urban + (1 | district)", data, family="bernoulli", weights="k").fit_frequentist()
    fixed = ff.fixed.set_index("term")
    for term, want in ref["fixef"].items():
        assert fixed.loc[term, "estimate"] == pytest.approx(want["estimate"], rel=1e-3)
        assert fixed.loc[term, "se"] == pytest.approx(want["se"], rel=1e-3)
    assert ff.varcorr["sdcor"].iloc[0] == pytest.approx(ref["sd"]["district:(Intercept)"], rel=1e-3)
    assert ff.loglik == pytest.approx(ref["logLik"], abs=1e-3)


def test_zero_weights_are_rows_left_out_of_the_frequentist_fit(sleep_weighted):
    data = sleep_weighted.assign(w=lambda d: np.where(np.arange(len(d)) % 9 == 0, 0.0, d.w))
    a = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data, weights="w").fit_frequentist()
    b = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data[data.w > 0], weights="w").fit_frequentist()
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10) and a.n_obs == b.n_obs == 160


# -- the weighted posterior --------------------------------------------------------------------------------------------------
def _heteroscedastic(seed: int = 8) -> pd.DataFrame:
    """Rows whose residual SD is 2 / sqrt(w), w 0.25 or 4: unweighted, sigma would be about 2.9; weighted it is 2."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 12)
    x = rng.normal(size=g.size)
    w = rng.choice([0.25, 4.0], g.size)
    y = 1.0 + 0.8 * x + rng.normal(0, 1.0, 20)[g] + rng.normal(size=g.size) * 2.0 / np.sqrt(w)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j:02d}" for j in g], "w": w / w.mean()})


@pytest.fixture(scope="module")
def weighted_fit():
    m = bayesmlm.MLM("y ~ x + (1 | g)", _heteroscedastic(), weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return m, m.fit(draws=400, tune=400, chains=2, seed=3, progressbar=False)


def test_weighted_collapsed_posterior_sits_at_the_weighted_reml_fit(weighted_fit):
    m, fit = weighted_fit
    assert fit.record.method == "collapsed"
    ff = m.fit_frequentist()
    fixef, freq = fit.fixef(), ff.fixed.set_index("term")
    for term in ("(Intercept)", "x"):
        assert abs(fixef.loc[term, "mean"] - freq.loc[term, "estimate"]) < 0.3 * fixef.loc[term, "sd"]
    sigma = fit.posterior["sigma"].values.ravel()
    unweighted = bayesmlm.MLM("y ~ x + (1 | g)", _heteroscedastic()).fit_frequentist().sigma
    assert abs(sigma.mean() - ff.sigma) < 0.3 * sigma.std() and unweighted - ff.sigma > 6 * sigma.std()


def test_a_saved_weighted_fit_keeps_its_weights(weighted_fit, tmp_path):
    m, fit = weighted_fit
    fit.save(tmp_path / "fit.nc")
    back = bayesmlm.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(back.design.weights, m.design.weights)
    np.testing.assert_allclose(back.log_likelihood(draws=4).values, fit.log_likelihood(draws=4).values, rtol=1e-12)


def test_pointwise_log_likelihood_is_the_weighted_one(weighted_fit):
    m, fit = weighted_fit
    ll = fit.log_likelihood(draws=10)
    post = fit.posterior.sel(chain=ll["chain"], draw=ll["draw"])
    c, d = 0, 3
    beta = post["fixef"].values[c, d]
    u = post["u_g"].values[c, d][:, 0]
    sigma = float(post["sigma"].values[c, d])
    design = m.design
    eta = design.X @ beta + u[design.factors["g"].index]
    want = norm.logpdf(design.y, eta, sigma / np.sqrt(design.weights))
    np.testing.assert_allclose(ll.values[c, d], want, rtol=1e-10)


# -- inputs -------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, what", [
    ([1.0, -0.5], "negative"),
    ([1.0, np.inf], "infinite"),
])
def test_bad_weights_are_errors_naming_the_column(values, what):
    data = _gaussian().assign(wt=lambda d: np.resize(values, len(d)))
    with pytest.raises(bayesmlm.DataError, match=f"weights column 'wt' has .* {what} value"):
        bayesmlm.MLM("y ~ x + (1 | g)", data, weights="wt")


def test_zero_sum_text_and_missing_weights():
    data = _gaussian()
    with pytest.raises(bayesmlm.DataError, match="weights column 'w' sums to 0"):
        bayesmlm.MLM("y ~ x + (1 | g)", data.assign(w=0.0), weights="w")
    with pytest.raises(bayesmlm.DataError, match="weights column 'w' is .*, not numeric"):
        bayesmlm.MLM("y ~ x + (1 | g)", data.assign(w="1"), weights="w")
    with pytest.raises(bayesmlm.DataError, match=r"'nope \(given as weights=\)' not in the data"):
        bayesmlm.MLM("y ~ x + (1 | g)", data, weights="nope")
    with pytest.warns(bayesmlm.RowsDroppedWarning, match="w: 1"):
        m = bayesmlm.MLM("y ~ x + (1 | g)", data.assign(w=lambda d: d.w.where(d.index != 3)), weights="w")
    assert m.design.n_obs == len(data) - 1 and m.design.weights.shape == (len(data) - 1,)


def test_chunks_check_their_weights():
    data = _gaussian().assign(w=lambda d: np.where(d.index == 30, -1.0, 1.0))
    with pytest.raises(bayesmlm.DataError, match="weights column 'w' has 1 negative value.* in chunk 1"):
        reduce_frames(parse_formula("y ~ x + (1 | g)"), [data[:20], data[20:]], weights="w")


def test_weights_far_from_n_warn_and_normalised_ones_do_not():
    data = _gaussian().assign(big=lambda d: d.k * 1000.0)
    with pytest.warns(bayesmlm.WeightsWarning, match=r"'big' sums to .*bayesmlm.normalize_weights"):
        bayesmlm.MLM("y ~ x + (1 | g)", data, weights="big")
    data["big"] = bayesmlm.normalize_weights(data, "big", by="g")
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayesmlm.WeightsWarning)
        bayesmlm.MLM("y ~ x + (1 | g)", data, weights="big")
    np.testing.assert_allclose(data.groupby("g")["big"].sum(), data.groupby("g").size(), rtol=1e-12)


def test_normalize_weights_keeps_missing_and_refuses_a_zero_group():
    d = pd.DataFrame({"c": ["a", "a", "b", "b"], "w": [2.0, None, 0.0, 0.0]})
    with pytest.raises(bayesmlm.DataError, match="sums to 0 within c = 'b'"):
        bayesmlm.normalize_weights(d, "w", by="c")
    out = bayesmlm.normalize_weights(d.iloc[:2], "w")
    assert out.iloc[0] == 1.0 and np.isnan(out.iloc[1])


def test_configs_pass_weights(sleep_weighted):
    from bayesmlm.app.config import build_model, parse_config

    cfg = parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)", "weights": "w"})
    assert cfg.to_dict()["weights"] == "w"
    m = build_model(cfg, sleep_weighted)
    np.testing.assert_array_equal(m.design.weights, sleep_weighted.w.to_numpy())
    with pytest.raises(bayesmlm.ConfigError, match="Key 'weights'"):
        build_model(cfg, sleep_weighted.assign(w=-1.0))


def test_the_report_says_the_fit_is_weighted(weighted_fit):
    from bayesmlm.report.sections import overview_section

    text = overview_section(weighted_fit[1]).to_text()
    assert "weighted by 'w' (precision weights: residual variance sigma^2 / w)" in text


def test_weights_on_nested_factors_take_the_full_route_not_the_unweighted_tree():
    """The nested route sums no weights: a weighted nested design must not reach it."""
    from bayesmlm.fastpath.stats import collapse_problem, collapsed_route

    d = bayesmlm.datasets.load("pastes").assign(w=lambda f: 1.0 + (np.arange(len(f)) % 3))
    plain = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", d)
    weighted = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", d, weights="w")
    assert collapsed_route(plain.design) == "nested"
    assert collapsed_route(weighted.design) is None
    assert "weights" in collapse_problem(weighted.design)


def test_weights_on_crossed_factors_keep_to_the_full_model():
    """The crossed route's statistics are unweighted: a weighted crossed design must not reach it."""
    from bayesmlm.fastpath.crossed_stats import crossed_problem

    d = bayesmlm.datasets.load("penicillin").assign(w=lambda f: 1.0 + (np.arange(len(f)) % 3))
    assert crossed_problem(bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", d).design) is None
    assert "weights" in crossed_problem(bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", d, weights="w").design)

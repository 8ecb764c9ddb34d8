"""The fast path: the collapsed model is the full model with u integrated out.

- the collapsed log-likelihood equals the dense multivariate normal density of
  every group's data (q = 1, 2, 3; with and without an intercept; with means
  far from zero);
- u drawn afterwards is exactly its Gaussian conditional (at lme4's estimates,
  its mean is lme4's conditional mode);
- on sleepstudy, collapsed and full posteriors agree within Monte Carlo error;
- pandas, chunked CSV, chunked Parquet and Dask give the same statistics.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import reference

import bayesmlm
from bayesmlm.design.levels import level_structure
from bayesmlm.fastpath.model import loglik_at
from bayesmlm.fastpath.recover import conditional_draws, recover_random_effects
from bayesmlm.fastpath.stats import collapse_problem, group_stats

FIELDS = ("n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty", "x_sum", "z_sum", "y_sum")


def _simulated(seed: int, shift_y: float = 0.0, shift_x: float = 0.0) -> pd.DataFrame:
    """Seven groups of 1 to 13 rows (a one-row group makes Z'Z singular), predictors x and z."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 13, 4]
    g = np.repeat([f"g{j}" for j in range(len(sizes))], sizes)
    x = rng.normal(size=g.size) + shift_x
    z = rng.uniform(-1, 2, size=g.size)
    y = 2.0 + 0.5 * x - z + rng.normal(size=g.size) * 1.5 + shift_y
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g})


def _dense_loglik(design, gamma, cov, sigma) -> float:
    """sum_j log N(y_j | X_j gamma, Z_j T Z_j' + sigma^2 I), row by row, no statistics."""
    Z = np.column_stack([b.Z for b in design.blocks])
    r = design.y - design.X @ np.asarray(gamma) - (design.offset if design.offset is not None else 0.0)
    index = next(iter(design.factors.values())).index
    total = 0.0
    for j in np.unique(index):
        rows = index == j
        V = Z[rows] @ cov @ Z[rows].T + sigma**2 * np.eye(rows.sum())
        _, logdet = np.linalg.slogdet(V)
        total += -0.5 * (rows.sum() * np.log(2 * np.pi) + logdet + r[rows] @ np.linalg.solve(V, r[rows]))
    return total


@pytest.mark.parametrize("formula, shift", [
    ("y ~ x + (1 | g)", 0.0),
    ("y ~ x + (1 + x | g)", 0.0),
    ("y ~ x + z + (1 + x + z | g)", 0.0),
    ("y ~ x + z + (1 + x | g) + (0 + z | g)", 0.0),
    ("y ~ 0 + x + (0 + x + z | g)", 0.0),
    ("y ~ x + z + (1 + x + z | g)", 1e4),
    ("y ~ x + offset(z) + (1 + x | g)", 0.0),
])
def test_collapsed_loglik_equals_dense_mvn(formula, shift):
    data = _simulated(1, shift_y=shift, shift_x=shift / 10)
    design = bayesmlm.MLM(formula, data).design
    stats = group_stats(design)
    q = len(stats.random_terms)
    rng = np.random.default_rng(2)
    for _ in range(3):
        gamma = rng.normal(size=len(design.fixed_terms)) + np.where(np.array(design.fixed_terms) == "(Intercept)", shift, 0)
        A = rng.normal(size=(q, q))
        cov = A @ A.T + 0.1 * np.eye(q)
        sigma = rng.uniform(0.5, 2.0)
        expected = _dense_loglik(design, gamma, cov, sigma)
        assert loglik_at(stats, gamma, cov, sigma) == pytest.approx(expected, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_group_terms_gradient_matches_finite_differences(q):
    import pytensor
    import pytensor.tensor as pt

    from bayesmlm.fastpath.op import group_terms

    rng = np.random.default_rng(q)
    J = 5
    Z = rng.normal(size=(J, 4, q))
    S = np.einsum("jna,jnb->jab", Z, Z)
    iu = np.triu_indices(q)
    ztz = S[:, iu[0], iu[1]].T.copy()
    zr_v, L_v, s2_v = rng.normal(size=(q, J)), np.tril(rng.normal(size=(q, q))) + 2 * np.eye(q), 1.7
    zr, L, s2 = pt.dmatrix("zr"), pt.dmatrix("L"), pt.dscalar("s2")
    T = group_terms(q, ztz, zr, L, s2)
    fn = pytensor.function([zr, L, s2], [T, *pytensor.grad(T, [zr, L, s2])])
    value, g_zr, g_L, g_s2 = fn(zr_v, L_v, s2_v)
    h = 1e-6
    for arr, grad in ((zr_v, g_zr), (L_v, g_L)):
        for idx in np.ndindex(arr.shape):
            if arr is L_v and idx[1] > idx[0]:
                continue
            up, down = arr.copy(), arr.copy()
            up[idx] += h
            down[idx] -= h
            args_up = (up, L_v, s2_v) if arr is zr_v else (zr_v, up, s2_v)
            args_down = (down, L_v, s2_v) if arr is zr_v else (zr_v, down, s2_v)
            assert grad[idx] == pytest.approx((fn(*args_up)[0] - fn(*args_down)[0]) / (2 * h), rel=1e-5, abs=1e-6)
    assert g_s2 == pytest.approx((fn(zr_v, L_v, s2_v + h)[0] - fn(zr_v, L_v, s2_v - h)[0]) / (2 * h), rel=1e-5)


def test_shifted_statistics_are_the_same_statistics():
    design = bayesmlm.MLM("y ~ x + z + (1 + x | g)", _simulated(3)).design
    stats = group_stats(design)
    back = stats.shifted([0.0, 3.0, -1.0], 7.0).shifted(stats.x_shift, stats.y_shift)
    for key in FIELDS:
        np.testing.assert_allclose(getattr(back, key), getattr(stats, key), rtol=1e-12, atol=1e-9)
    raw = stats.shifted(np.zeros(3), 0.0)
    np.testing.assert_allclose(raw.XtX.sum(axis=0), design.X.T @ design.X, rtol=1e-12)


def test_recovered_u_is_the_exact_conditional_lme4_modes_at_lme4_estimates():
    # lme4's ranef() are the conditional modes (= means, the model is Gaussian) of u given its
    # REML estimates: lmer(Reaction ~ Days + (Days | Subject), sleepstudy) in tests/reference.
    ref = reference("sleepstudy")
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    stats = group_stats(m.design)
    gamma = np.array([ref["fixef"][t]["estimate"] for t in ("(Intercept)", "Days")])
    sd = np.array([ref["sd"]["Subject:(Intercept)"], ref["sd"]["Subject:Days"]])
    r = ref["cor"]["Subject:(Intercept):Days"]
    sigma = ref["sd"]["Residual"]
    L = np.linalg.cholesky(np.diag(sd) @ np.array([[1, r], [r, 1]]) @ np.diag(sd))[None]
    gamma_t = gamma.copy()
    gamma_t[0] += gamma @ stats.x_shift - stats.y_shift
    draw = lambda eps: conditional_draws(L, np.array([sigma]), stats, gamma_t[None], eps)[0]  # noqa: E731
    mean = draw(np.zeros((1, stats.n_groups, 2)))
    expected = np.array([[ref["ranef"][lev]["(Intercept)"], ref["ranef"][lev]["Days"]] for lev in stats.levels])
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-4)
    # The draw is linear in the noise, u = mean + A e with A A' = V_j = (Z'Z / sigma^2 + T^-1)^-1.
    A = np.stack([draw(np.broadcast_to(np.eye(2)[k], (1, stats.n_groups, 2)).copy()) - mean for k in range(2)], axis=-1)
    T_inv = np.linalg.inv(L[0] @ L[0].T)
    V = np.linalg.inv(stats.ZtZ / sigma**2 + T_inv)
    np.testing.assert_allclose(A @ np.swapaxes(A, -1, -2), V, rtol=1e-9)


@pytest.fixture(scope="module")
def sleep_collapsed():
    data = bayesmlm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data).fit(draws=500, tune=500, chains=4, seed=5,
                                                                            progressbar=False)


def check_agree(a: pd.DataFrame, b: pd.DataFrame, z: float = 4.5) -> None:
    """Means differ by less than z Monte Carlo standard errors (sd / sqrt(ess), both fits)."""
    mcse = np.sqrt((a["sd"] ** 2 / a["ess_bulk"]) + (b["sd"] ** 2 / b["ess_bulk"]))
    gap = (a["mean"] - b["mean"]).abs() / mcse
    assert (gap < z).all(), gap.sort_values().tail()
    ratio = a["sd"] / b["sd"]
    assert ratio.between(0.8, 1.25).all(), ratio.sort_values()


def test_auto_is_collapsed_and_posterior_has_the_full_models_variables(sleep_collapsed, sleep_fit):
    assert sleep_collapsed.record.method == "collapsed"
    assert sleep_fit.record.method == "full"
    post, full = sleep_collapsed.posterior, sleep_fit.posterior
    for name in ("fixef", "sd_Subject", "cor_Subject", "u_Subject", "sigma"):
        assert post[name].dims == full[name].dims
        for d in post[name].dims[2:]:
            assert list(post[d].values) == list(full[d].values)
    assert sleep_collapsed.converged


def test_collapsed_and_full_posteriors_agree_on_sleepstudy(sleep_collapsed, sleep_fit):
    check_agree(sleep_collapsed.fixef(), sleep_fit.fixef())
    check_agree(sleep_collapsed.varcorr().set_index(["group", "var1", "var2"]), sleep_fit.varcorr().set_index(["group", "var1", "var2"]))
    check_agree(sleep_collapsed.ranef(), sleep_fit.ranef())
    check_agree(sleep_collapsed.coef(), sleep_fit.coef())


def test_recovery_is_seeded_and_vectorised(sleep_collapsed):
    m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    stats, post = group_stats(m.design), sleep_collapsed.posterior
    a = recover_random_effects(post, stats, m.design.blocks, seed=5)["u_Subject"]
    b = recover_random_effects(post, stats, m.design.blocks, seed=5)["u_Subject"]
    c = recover_random_effects(post, stats, m.design.blocks, seed=6)["u_Subject"]
    xr.testing.assert_identical(a, b)
    np.testing.assert_array_equal(a.values, post["u_Subject"].values)  # the fit used its own seed
    assert not np.allclose(a.values, c.values)


def test_warm_fit_reuses_the_compiled_model_with_new_data(sleep_collapsed):
    data = bayesmlm.datasets.load("sleepstudy")
    subset = data[data["Subject"].isin(sorted(data["Subject"].unique())[:12])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)  # few draws: only the shapes and reuse matter
        fit = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", subset).fit(draws=100, tune=150, chains=2, seed=1,
                                                                             progressbar=False)
    assert fit.posterior.attrs["compiled_model_reused"] == 1
    assert fit.posterior.attrs["compile_seconds"] == 0.0
    assert fit.posterior["u_Subject"].shape == (2, 100, 12, 2)
    assert fit.fixef().loc["Days", "mean"] == pytest.approx(10.5, abs=4)


def test_method_choice_and_its_errors(tmp_path):
    # crossed, with weights: neither the nested nor the crossed route takes it
    two = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin").assign(w=1.0),
                       weights="w")
    assert "are crossed, not nested" in collapse_problem(two.design)
    with pytest.raises(bayesmlm.SpecError, match="method='full'"):
        two.fit(method="collapsed", draws=10, tune=10)
    with pytest.raises(ValueError, match="Valid methods: auto, full, collapsed, laplace"):
        two.fit(method="fast")
    sleep = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    with pytest.raises(ValueError, match="sampler='nutpie'"):
        sleep.fit(method="collapsed", sampler="numpyro", draws=10, tune=10)
    path = tmp_path / "sleep.csv"
    bayesmlm.datasets.load("sleepstudy").to_csv(path, index=False)
    m = bayesmlm.MLM.from_files("Reaction ~ Days + (Days | Subject)", path, chunksize=60)
    with pytest.raises(ValueError, match="needs the fitted rows"):
        m.fit(method="full")
    with pytest.raises(ValueError, match="needs the fitted rows"):
        m.build()


HSB = "mAch ~ meanses * cses + sector + (1 + cses | school)"


@pytest.fixture(scope="module")
def hsb_routes(tmp_path_factory):
    """hsb82 (7,185 rows, 160 schools) in memory, as CSV chunks, Parquet chunks and a Dask DataFrame."""
    import dask.dataframe as dd

    data = bayesmlm.datasets.load("hsb82").sample(frac=1.0, random_state=3).reset_index(drop=True)
    folder = tmp_path_factory.mktemp("hsb")
    data.to_csv(folder / "hsb.csv", index=False)
    data.to_parquet(folder / "hsb.parquet", row_group_size=1000)
    return {
        "pandas": bayesmlm.MLM(HSB, data),
        "csv": bayesmlm.MLM.from_files(HSB, folder / "hsb.csv", chunksize=1500),
        "parquet": bayesmlm.MLM.from_files(HSB, folder / "hsb.parquet", chunksize=700),
        "dask": bayesmlm.MLM.from_dask(HSB, dd.from_pandas(data, npartitions=5)),
    }


@pytest.mark.parametrize("route", ["csv", "parquet", "dask"])
def test_pandas_chunked_and_dask_statistics_are_identical(hsb_routes, route):
    base, other = hsb_routes["pandas"], hsb_routes[route]
    s = group_stats(base.design)
    t = other._stats.shifted(s.x_shift, s.y_shift)
    assert t.levels == s.levels and t.fixed_terms == s.fixed_terms and t.random_terms == s.random_terms
    for key in FIELDS:
        scale = np.abs(getattr(s, key)).max()
        np.testing.assert_allclose(getattr(t, key), getattr(s, key), rtol=0, atol=1e-12 * scale, err_msg=key)
    assert other.prior_dict == base.prior_dict
    assert other.design.level2 == base.design.level2
    a, b = level_structure(base.design), level_structure(other.design)
    assert a.level1_terms == b.level1_terms and a.fixed_level2 == b.fixed_level2
    np.testing.assert_allclose(b.W, a.W, rtol=1e-12)
    assert repr(other) == repr(base)


def test_file_errors_name_the_column_and_the_format(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"]}).to_csv(path, index=False)
    with pytest.raises(bayesmlm.DataError, match="'x'"):
        bayesmlm.MLM.from_files("y ~ x + (1 | g)", path)
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(bayesmlm.DataError, match="format"):
        bayesmlm.MLM.from_files("y ~ x + (1 | g)", tmp_path / "d.json")


@pytest.mark.parametrize("name, content", [
    ("empty.csv", b""),
    ("broken.csv.gz", b"not gzip at all"),
    ("broken.parquet", b"PAR1 truncated"),
])  # fmt: skip
def test_files_that_cannot_be_read_are_named(tmp_path, name, content):
    # Before: pandas' EmptyDataError, gzip's BadGzipFile, pyarrow's ArrowInvalid.
    (tmp_path / name).write_bytes(content)
    with pytest.raises(bayesmlm.DataError, match=rf"Cannot read '.*{re.escape(name)}' as (CSV|Parquet).*Is the file complete"):
        bayesmlm.MLM.from_files("y ~ x + (1 | g)", tmp_path / name)
    with pytest.raises(bayesmlm.ArgumentError, match="chunksize must be a whole number of at least 1; got 0"):
        bayesmlm.MLM.from_files("y ~ x + (1 | g)", tmp_path / name, chunksize=0)

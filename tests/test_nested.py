"""The nested route: grouping factors nested in each other, their random effects integrated out along the tree.

- the collapsed log-likelihood of the tree equals the dense multivariate normal
  density of all rows (two and three levels, slopes at several levels, means
  far from zero), and its gradient equals finite differences;
- the generated nutpie density is the PyMC model's (priors and Jacobians included);
- u drawn afterwards is exactly the joint Gaussian conditional (mean and covariance);
- routing: nested designs take the nested route, crossed ones do not;
- on lme4's Pastes the posterior agrees with lmer (tests/reference/pastes.json),
  random effects included; simulated three-level data recover their parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import reference
from scipy.linalg import block_diag
from scipy.stats import multivariate_normal

import bayesmlm
from bayesmlm.fastpath.kernels import density_kernels, pack_data, tree_kernels
from bayesmlm.fastpath.model import build_collapsed_model
from bayesmlm.fastpath.nested_model import nested_data, nested_structure, tree_loglik, tree_loglik_at
from bayesmlm.fastpath.nested_stats import nested_stats
from bayesmlm.fastpath.nesting import level_blocks, nesting_problem
from bayesmlm.fastpath.nutpie_driver import density_plan
from bayesmlm.fastpath.stats import collapse_problem, collapsed_route
from bayesmlm.fastpath.tree_kernel import tree_draws, tree_terms

THREE = "y ~ 1 + x + (1 + x | s) + (1 | s:c) + (1 + x | s:c:k)"


def _three_levels(seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Three schools, one to three classes each, one or two sub-groups per class, two to five rows each."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(3):
        for c in range(rng.integers(1, 4)):
            for k in range(rng.integers(1, 3)):
                for _ in range(rng.integers(2, 6)):
                    rows.append((f"s{s}", f"c{c}", f"k{k}", rng.normal() + shift))
    df = pd.DataFrame(rows, columns=["s", "c", "k", "x"])
    df["y"] = 0.5 * df.x + rng.normal(size=len(df)) + 10 * shift
    return df


def _random_chol(rng, q: int) -> np.ndarray:
    A = np.tril(rng.normal(size=(q, q)) * 0.5)
    A[np.diag_indices(q)] = np.abs(A.diagonal()) + 0.3
    return A


def _dense(design, stats, gamma, chols, sigma):
    """log N(y | X gamma, Z T Z' + sigma^2 I) over all rows at once, T block diagonal by level and group; and Z, T."""
    Zs, Ts = [], []
    for f, blocks, chol in zip(stats.factors, level_blocks(design, stats.factors), chols):
        fac = design.factors[f]
        Zl = np.column_stack([b.Z for b in blocks])
        q = Zl.shape[1]
        Z = np.zeros((design.n_obs, fac.n_levels * q))
        for j in range(fac.n_levels):
            Z[fac.index == j, j * q:(j + 1) * q] = Zl[fac.index == j]
        Zs.append(Z)
        Ts.append(np.kron(np.eye(fac.n_levels), chol @ chol.T))
    Z, T = np.hstack(Zs), block_diag(*Ts)
    V = Z @ T @ Z.T + sigma**2 * np.eye(design.n_obs)
    return multivariate_normal(design.X @ gamma, V).logpdf(design.y), Z, T


@pytest.mark.parametrize("formula, shift", [
    ("y ~ 1 + x + (1 | s/c)", 0.0),
    ("y ~ 1 + x + (1 + x | s) + (1 | s:c)", 3.0),
    (THREE, 0.0),
    (THREE, 3.0),
])
def test_tree_loglik_is_the_dense_mvn(formula, shift):
    m = bayesmlm.MLM(formula, _three_levels(3, shift))
    stats = nested_stats(m.design)
    rng = np.random.default_rng(1)
    chols = [_random_chol(rng, int(q)) for q in stats.qs]
    gamma, sigma = np.array([0.3, -0.2]), 0.7
    dense, _, _ = _dense(m.design, stats, gamma, chols, sigma)
    assert tree_loglik_at(stats, gamma, [c @ c.T for c in chols], sigma) == pytest.approx(dense, abs=1e-8, rel=1e-12)


def test_tree_gradient_is_finite_differences():
    m = bayesmlm.MLM(THREE, _three_levels(4))
    stats = nested_stats(m.design)
    tail, qs, qoff = stats.tail(), stats.qs, stats.qoff
    rng = np.random.default_rng(2)
    Q = int(qs.sum())
    L = block_diag(*[_random_chol(rng, int(q)) for q in qs])
    gt, s2, h = np.array([0.4, -0.3]), 0.6, 1e-6
    value, dgt, dL, ds2, n_effects = tree_terms(gt, L, s2, tail, qs, qoff)
    assert n_effects == sum(q * len(lv) for q, lv in zip(qs, stats.levels))

    def T(gt_, L_, s2_):
        return tree_terms(gt_, L_, s2_, tail, qs, qoff)[0]

    for k, e in enumerate(np.eye(2)):
        assert dgt[k] == pytest.approx((T(gt + h * e, L, s2) - T(gt - h * e, L, s2)) / (2 * h), rel=1e-6)
    checked = 0
    for a in range(Q):
        for b in range(a + 1):
            if L[a, b] == 0.0:
                continue  # across blocks: not a parameter
            E = np.zeros((Q, Q))
            E[a, b] = h
            assert dL[a, b] == pytest.approx((T(gt, L + E, s2) - T(gt, L - E, s2)) / (2 * h), rel=1e-6, abs=1e-6)
            checked += 1
    assert checked == 7  # 3 + 1 + 3 lower-triangle entries
    assert ds2 == pytest.approx((T(gt, L, s2 + h) - T(gt, L, s2 - h)) / (2 * h), rel=1e-6)


@pytest.mark.parametrize("formula", [THREE, "y ~ 1 + x + (1 + x || s) + (1 | s:c)"])
def test_generated_tree_kernels_are_the_generic_ones(formula):
    """The per-structure kernels (unrolled, L's zeros skipped) give the generic kernels' T, gradient and draws."""
    m = bayesmlm.MLM(formula, _three_levels(4, 2.0))
    stats = nested_stats(m.design)
    tail, qs, qoff = stats.tail(), stats.qs, stats.qoff
    rng = np.random.default_rng(2)
    L = block_diag(*[_random_chol(rng, int(q)) for q in qs])
    if "||" in formula:
        L[1, 0] = 0.0  # (1 + x || s): two uncorrelated blocks at the top level
    nz = tuple((a, b) for a in range(len(L)) for b in range(a + 1) if L[a, b] != 0.0)
    assert len(nz) == (7 if formula == THREE else 3)
    kernels = tree_kernels(tuple(qs), 2, nz)
    gt, s2 = np.array([0.4, -0.3]), 0.6
    generic, generated = tree_terms(gt, L, s2, tail, qs, qoff), kernels.tree_terms(gt, L, s2, tail)
    assert generated[0] == pytest.approx(generic[0], rel=1e-12)
    np.testing.assert_allclose(generated[1], generic[1], rtol=1e-10)
    rows, cols = zip(*nz)
    np.testing.assert_allclose(generated[2][rows, cols], generic[2][rows, cols], rtol=1e-10, atol=1e-12)
    assert generated[3] == pytest.approx(generic[3], rel=1e-12) and generated[4] == generic[4]
    eps = rng.normal(size=(3, int(tail[0]), int(qs.max())))
    draws = [np.tile(gt, (3, 1)), np.tile(L, (3, 1, 1)), np.array([0.6, 0.7, 0.8])]
    np.testing.assert_allclose(kernels.tree_draws(*draws, tail, eps), tree_draws(*draws, tail, qs, qoff, eps),
                               rtol=1e-10, atol=1e-12)
    bad = L.copy()
    bad[0, 0] = np.nan
    assert np.isnan(kernels.tree_terms(gt, bad, s2, tail)[0])


def test_draws_are_the_exact_joint_conditional():
    """Noise zero gives the conditional mean; unit noise vectors give columns of a square root of its covariance."""
    m = bayesmlm.MLM(THREE, _three_levels(5))
    stats = nested_stats(m.design)
    rng = np.random.default_rng(3)
    chols = [_random_chol(rng, int(q)) for q in stats.qs]
    gamma, sigma = np.array([0.3, -0.2]), 0.8
    _, Z, T = _dense(m.design, stats, gamma, chols, sigma)
    V = np.linalg.inv(Z.T @ Z / sigma**2 + np.linalg.inv(T))
    mean = V @ Z.T @ (m.design.y - m.design.X @ gamma) / sigma**2
    tail = stats.tail()
    n, qmax = int(tail[0]), int(stats.qs.max())
    gt = gamma.copy()
    gt[0] += gamma @ stats.leaf.x_shift - stats.leaf.y_shift
    # one draw per noise vector: 0, then each unit vector of the (node, term) slots that exist
    slots = [(i, a) for lv, size in enumerate(map(len, stats.levels)) for i in range(size) for a in range(stats.qs[lv])]
    start = np.concatenate([[0], np.cumsum([len(lv) for lv in stats.levels])])
    node_of = [(start[lv] + i, a) for lv, size in enumerate(map(len, stats.levels)) for i in range(size)
               for a in range(stats.qs[lv])]
    eps = np.zeros((len(slots) + 1, n, qmax))
    for k, (i, a) in enumerate(node_of):
        eps[k + 1, i, a] = 1.0
    S = len(eps)
    u = tree_draws(np.tile(gt, (S, 1)), np.tile(block_diag(*chols), (S, 1, 1)), np.full(S, sigma), tail, stats.qs,
                   stats.qoff, eps)
    flat = np.array([[u[s, i, a] for i, a in node_of] for s in range(S)])  # the dense order: level, group, term
    np.testing.assert_allclose(flat[0], mean, atol=1e-10)
    root = (flat[1:] - flat[0]).T  # u = mean + A e
    np.testing.assert_allclose(root @ root.T, V, atol=1e-10)


def test_generated_density_is_the_pymc_models():
    m = bayesmlm.MLM("y ~ 1 + x + (1 + x | s) + (1 | s:c)", _three_levels(6, 2.0))
    stats = nested_stats(m.design)
    structure = nested_structure(m.design, m.prior_dict, stats.factors)
    data = nested_data(structure, stats, m.prior_dict, [0.0, float(m.design.X[:, 1].mean())])
    pmodel = build_collapsed_model(structure, m.prior_dict, data, loglik=tree_loglik(structure))
    kernels = density_kernels(density_plan(structure, m.prior_dict), structure.tree)
    names = [v.name for v in pmodel.value_vars]
    assert names == ["b_centred", "chol_s_cholesky-cov-packed__", "sd_s_c_log__", "sigma_log__"]
    x = np.array([0.4, 0.2, -0.3, 0.1, -0.5, -0.2, 0.1])
    point = {"b_centred": x[:2], names[1]: x[2:5], names[2]: x[5:6], names[3]: x[6]}
    grad = np.empty(7)
    value = kernels.logp_grad(x, pack_data(**data), grad)
    assert value == pytest.approx(float(pmodel.compile_logp(mode="FAST_COMPILE")(point)), rel=1e-12)
    np.testing.assert_allclose(grad, pmodel.compile_dlogp(mode="FAST_COMPILE")(point), rtol=1e-9)


def test_routing():
    pastes = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    assert collapsed_route(pastes.design) == "nested"
    written = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | batch:cask)", bayesmlm.datasets.load("pastes"))
    assert collapsed_route(written.design) == "nested"
    crossed = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    assert collapsed_route(crossed.design) is None
    assert "level 'a' of 'plate' occurs with 6 levels of 'sample'" in collapse_problem(crossed.design)
    # crossed, and not for the crossed route either (it takes no weights): method="collapsed" is refused
    weighted = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)",
                            bayesmlm.datasets.load("penicillin").assign(w=1.0), weights="w")
    with pytest.raises(bayesmlm.SpecError, match="crossed, not nested"):
        weighted.fit(method="collapsed", draws=10, tune=10)
    # cask labels repeat across batches: as written, (1 | cask) is crossed with batch, not nested
    as_labels = bayesmlm.MLM("strength ~ 1 + (1 | batch) + (1 | cask)", bayesmlm.datasets.load("pastes"))
    assert "(1 | batch/cask)" in nesting_problem(as_labels.design)


@pytest.fixture(scope="module")
def pastes_fit():
    m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)  # small draws for a fast test
        return m.fit(draws=500, tune=500, chains=2, seed=11, progressbar=False)


def test_pastes_agrees_with_lmer(pastes_fit):
    ref = reference("pastes")
    fit = pastes_fit
    assert (fit.record.method, fit.record.route) == ("collapsed", "nested")
    post = fit.posterior
    for value, draws in [(ref["fixef"]["(Intercept)"]["estimate"], post["fixef"].sel(fixed_term="(Intercept)")),
                         (ref["sd"]["cask:batch:(Intercept)"], post["sd_batch_cask"]),
                         (ref["sigma"], post["sigma"])]:
        assert abs(float(draws.mean()) - value) < 0.5 * float(draws.std())
    # the batch SD: 10 batches, a right-skewed posterior whose mode is near REML's estimate
    sd_batch = post["sd_batch"].values.ravel()
    assert abs(np.median(sd_batch) - ref["sd"]["batch:(Intercept)"]) < 0.5 * sd_batch.std()
    for factor, r_factor in [("batch", "batch"), ("batch:cask", "cask:batch")]:
        table = fit.ranef(factor=factor)
        modes = ref["ranef"][r_factor]
        for label, row in modes.items():
            ours = label if factor == "batch" else ":".join(reversed(label.split(":")))
            got = table.loc[(ours, "(Intercept)")]
            assert abs(got["mean"] - row["(Intercept)"]) < got["sd"], (factor, label)
    vc = fit.varcorr()
    assert set(vc["group"]) == {"batch", "batch:cask", "Residual"}


@pytest.fixture(scope="module")
def three_level_fit():
    """120 schools x 6 classes x 8 pupils: random intercept and slope by school, intercept by class."""
    rng = np.random.default_rng(2026)
    S, C, P = 120, 6, 8
    school = np.repeat(np.arange(S), C * P)
    klass = np.repeat(np.arange(S * C), P)
    x = rng.normal(size=S * C * P)
    tau0, tau1, rho, tau_c, sigma = 1.0, 0.4, 0.3, 0.6, 0.8
    cov = np.array([[tau0**2, rho * tau0 * tau1], [rho * tau0 * tau1, tau1**2]])
    us = rng.multivariate_normal([0, 0], cov, size=S)
    uc = rng.normal(0, tau_c, size=S * C)
    y = 2.0 + 0.5 * x + us[school, 0] + us[school, 1] * x + uc[klass] + rng.normal(0, sigma, size=x.size)
    df = pd.DataFrame({"y": y, "x": x, "school": [f"s{v}" for v in school], "class": [f"c{v % C}" for v in klass]})
    m = bayesmlm.MLM("y ~ 1 + x + (1 + x | school) + (1 | school:class)", df)
    truth = {"fixef": [2.0, 0.5], "sd_school": [tau0, tau1], "cor_school": [rho], "sd_school_class": [tau_c],
             "sigma": [sigma]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)  # small draws for a fast test
        fit = m.fit(draws=300, tune=300, chains=2, seed=5, progressbar=False)
    return fit, truth, us


def test_three_level_recovery(three_level_fit):
    fit, truth, us = three_level_fit
    assert fit.record.route == "nested"
    for name, values in truth.items():
        draws = fit.posterior[name].values.reshape(-1, len(values))
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        assert np.all((lo < values) & (values < hi)), (name, lo, hi, values)
    # the school effects drawn afterwards track the true ones
    u = fit.posterior["u_school"].mean(("chain", "draw")).values
    order = [int(s[1:]) for s in fit.posterior["u_school"].coords["school"].values]
    assert np.corrcoef(u[:, 0], us[order, 0])[0, 1] > 0.9


@pytest.mark.parametrize("fmt", ["parquet", "csv", "dask"])
def test_files_reduce_per_leaf_group_as_in_memory(tmp_path, fmt):
    """Chunked files and Dask give the in-memory statistics of every level (blocks written leaf first, slopes at the top)."""
    formula = "y ~ 1 + x + (1 | s:c) + (1 + x | s)"
    data = _three_levels(7).sample(frac=1.0, random_state=1).reset_index(drop=True)
    if fmt == "dask":
        import dask.dataframe as dd

        m = bayesmlm.MLM.from_dask(formula, dd.from_pandas(data, npartitions=4))
    else:
        path = tmp_path / f"d.{fmt}"
        data.to_parquet(path, row_group_size=9) if fmt == "parquet" else data.to_csv(path, index=False)
        m = bayesmlm.MLM.from_files(formula, path, chunksize=9)
    memory = nested_stats(bayesmlm.MLM(formula, data).design)
    read = m._stats
    assert read.factors == memory.factors == ("s", "s:c")
    assert read.levels == memory.levels and read.level_terms == memory.level_terms
    assert all(np.array_equal(a, b) for a, b in zip(read.parents, memory.parents))
    same_shift = replace(read, leaf=read.leaf.shifted(memory.leaf.x_shift, memory.leaf.y_shift))
    np.testing.assert_allclose(same_shift.tail(), memory.tail(), rtol=1e-10, atol=1e-9)


def test_files_with_a_child_in_two_parents_fail_clearly(tmp_path):
    """Class labels unique overall, nested in the first chunks; the last chunk puts one class in another school."""
    data = _three_levels(8)
    data["cid"] = data["s"] + "_" + data["c"]
    stray = data.iloc[[0]].assign(s="s2" if data["s"].iloc[0] != "s2" else "s1")
    path = tmp_path / "d.parquet"
    pd.concat([data, stray], ignore_index=True).to_parquet(path)
    with pytest.raises(bayesmlm.DataError, match=f"Group '{data['cid'].iloc[0]}' of 'cid' occurs with two levels of 's'"):
        bayesmlm.MLM.from_files("y ~ 1 + x + (1 | s) + (1 | cid)", path, chunksize=len(data))

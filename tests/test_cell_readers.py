"""Cells of generalized models read from files in chunks (bayesmlm.fastpath.cell_readers): the same cells, the same
log-density as the in-memory aggregation, the refusal of rows that do not collapse, and a fit from Parquet."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmlm
from bayesmlm.comparison.loo import loo
from bayesmlm.design.aggregate import aggregate_rows
from bayesmlm.errors import DataError
from bayesmlm.fastpath.cell_readers import reduce_cell_files
from bayesmlm.spec.formula import parse_formula

TRUTH = {"(Intercept)": -0.4, "x": 0.3, "fb": 0.5, "fc": -0.2, "sd0": 0.6, "sd1": 0.15}
FORMULA = "y ~ x + f + (1 + x | g)"


def _rows(n: int = 20_000, n_groups: int = 40, seed: int = 5) -> pd.DataFrame:
    """A 5-level ordinal x (coded 1..5), a 3-level factor f, 0/1 y, binomial s of t, poisson c with exposure e:
    rows repeat within every group, so 20,000 rows are at most 40 x 5 x 3 = 600 cells (x 5 trials, x 2 exposures)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    x = rng.integers(1, 6, n).astype(float)
    f = rng.choice(["a", "b", "c"], n)
    u0, u1 = rng.normal(0, TRUTH["sd0"], n_groups), rng.normal(0, TRUTH["sd1"], n_groups)
    eta = (TRUTH["(Intercept)"] + TRUTH["x"] * x + np.select([f == "b", f == "c"], [TRUTH["fb"], TRUTH["fc"]], 0.0)
           + u0[g] + u1[g] * x)
    t = rng.integers(1, 6, n)
    e = rng.choice([0.5, 2.0], n)
    return pd.DataFrame({"g": [f"g{j:02d}" for j in g], "x": x, "f": f, "y": (rng.random(n) < expit(eta)).astype(int),
                         "s": rng.binomial(t, expit(eta)), "t": t, "log_e": np.log(e),
                         "c": rng.poisson(e * np.exp(eta - 1.0))})


MODELS = {
    "bernoulli": dict(formula=FORMULA, family="bernoulli"),
    "binomial": dict(formula="s ~ x + f + (1 + x | g)", family="binomial", trials="t"),
    "poisson": dict(formula="c ~ x + f + (1 + x | g)", family="poisson", offset="log_e"),
}


@pytest.fixture(scope="module")
def data():
    return _rows()


@pytest.fixture(scope="module")
def parquet(data, tmp_path_factory):
    """The rows in three Parquet files of unequal sizes."""
    folder = tmp_path_factory.mktemp("cells")
    paths = []
    for i, (a, b) in enumerate([(0, 6_000), (6_000, 13_500), (13_500, len(data))]):
        paths.append(folder / f"part{i}.parquet")
        data.iloc[a:b].to_parquet(paths[-1], row_group_size=2_500)
    return paths


def _pair(kind, data, parquet, chunksize=2_500):
    spec = dict(MODELS[kind])
    formula = spec.pop("formula")
    memory = bayesmlm.MLM(formula, data, **spec)
    files = bayesmlm.MLM.from_files(formula, parquet, chunksize=chunksize, **spec)
    return memory, files


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_file_cells_are_the_in_memory_cells(kind, data, parquet):
    memory, files = _pair(kind, data, parquet)
    mem = aggregate_rows(memory.design)
    cells, d = files._cells, files.design
    assert cells.n_rows == mem.n_rows == len(data) and cells.n_cells == mem.n_cells
    assert cells.n_cells == (600 if kind != "poisson" else data.groupby(["g", "x", "f"]).ngroups)
    np.testing.assert_array_equal(cells.y, mem.y)
    np.testing.assert_array_equal(d.X, memory.design.X[mem.first])
    np.testing.assert_array_equal(d.blocks[0].Z, memory.design.blocks[0].Z[mem.first])
    np.testing.assert_array_equal(d.factors["g"].index, memory.design.factors["g"].index[mem.first])
    assert d.factors["g"].levels == memory.design.factors["g"].levels
    if kind == "poisson":
        assert cells.trials is None
        np.testing.assert_allclose(cells.offset, mem.offset, rtol=0, atol=1e-12)
    else:
        np.testing.assert_array_equal(cells.trials, mem.trials)
    np.testing.assert_allclose(cells.constant, mem.constant, rtol=1e-13)
    np.testing.assert_allclose(d.x_centre, memory.design.x_centre, rtol=1e-13)
    assert {k: str(v) for k, v in files.prior_dict.items()} == {k: str(v) for k, v in memory.prior_dict.items()}


def test_the_cells_do_not_depend_on_the_chunks_or_the_format(data, parquet, tmp_path):
    csv = tmp_path / "all.csv"
    data.to_csv(csv, index=False)
    a = bayesmlm.MLM.from_files(FORMULA, parquet, family="bernoulli", chunksize=700)._cells
    b = bayesmlm.MLM.from_files(FORMULA, csv, family="bernoulli", chunksize=9_000)._cells
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.trials, b.trials)


def test_dask_partitions_give_the_same_cells(data, parquet):
    dd = pytest.importorskip("dask.dataframe")
    files = bayesmlm.MLM.from_files(FORMULA, parquet, family="bernoulli")
    dask = bayesmlm.MLM.from_dask(FORMULA, dd.from_pandas(data, npartitions=5), family="bernoulli")
    np.testing.assert_array_equal(dask._cells.y, files._cells.y)
    np.testing.assert_array_equal(dask.design.X, files.design.X)
    np.testing.assert_array_equal(dask.design.factors["g"].index, files.design.factors["g"].index)


def test_file_model_log_density_is_the_in_memory_aggregated_models(data, parquet):
    # centred: the group coefficients in a basis at Z's means over the rows (CellBlock.z_means), the fixed effects
    # at X's (CellDesign.x_centre); both models at the same point of their (same) value variables
    memory, files = _pair("bernoulli", data, parquet)
    a, b = memory.build(parameterization="centred"), files.build(parameterization="centred")
    assert a.observed_RVs[0].name == b.observed_RVs[0].name == "y_cell"
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in a.initial_point().items()}
    la, lb = float(a.compile_logp()(point)), float(b.compile_logp()(point))
    assert abs(la - lb) <= 1e-10 * abs(la), (la, lb)


def test_rows_that_do_not_collapse_are_refused_naming_the_term(data, tmp_path):
    path = tmp_path / "continuous.parquet"
    data.assign(z=np.random.default_rng(0).normal(size=len(data))).to_parquet(path)
    with pytest.raises(DataError, match=r"do not collapse.*more than max_ratio=0.5 x the 20,000 rows.*'z' \(20,000 "
                                        r"values\).*discretise"):
        bayesmlm.MLM.from_files("y ~ x + z + (1 | g)", path, family="bernoulli")
    with pytest.raises(DataError, match=r"more than max_cells=1,000.*'z'"):
        reduce_cell_files(parse_formula("y ~ x + z + (1 | g)", "bernoulli"), path, chunksize=5_000, max_cells=1_000)


def test_a_gaussian_model_is_sent_to_the_statistics(data, parquet):
    with pytest.raises(bayesmlm.errors.SpecError, match="families bernoulli, binomial, poisson.*family='gaussian'"):
        reduce_cell_files(parse_formula("x ~ f + (1 | g)"), parquet)


@pytest.fixture(scope="module")
def file_fit(parquet):
    model = bayesmlm.MLM.from_files(FORMULA, parquet, family="bernoulli", chunksize=5_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return model, model.fit(draws=200, tune=300, chains=2, seed=11, progressbar=False)


def test_a_fit_from_parquet_recovers_the_truth(file_fit):
    model, fit = file_fit
    assert fit.record.n_cells == 600 and fit.record.n_obs == 20_000 and fit.record.method == "full"
    fe = fit.fixef()
    for term in ["(Intercept)", "x", "fb", "fc"]:
        assert abs(fe.loc[term, "mean"] - TRUTH[term]) < 3 * fe.loc[term, "sd"] + 0.05, (term, fe.loc[term])
    vc = fit.varcorr().set_index(["group", "var1", "var2"])["mean"]
    assert abs(vc[("g", "(Intercept)", "")] - TRUTH["sd0"]) < 0.25
    assert abs(vc[("g", "x", "")] - TRUTH["sd1"]) < 0.08
    ranef, coef = fit.ranef(), fit.coef()
    assert ranef.shape[0] == 40 * 2
    np.testing.assert_allclose(coef.loc[("g07", "x"), "mean"], fe.loc["x", "mean"] + ranef.loc[("g07", "x"), "mean"],
                               rtol=1e-9)
    assert "Number of obs: 20000, groups:  g, 40" in str(fit.summary())


def test_a_file_fit_refuses_what_needs_the_rows(file_fit):
    model, fit = file_fit
    with pytest.raises(ValueError, match=r"pointwise_log_likelihood \(and so LOO\) needs the fitted rows"):
        loo(fit)
    with pytest.raises(ValueError, match="posterior_predictive needs the fitted rows"):
        fit.ppc()
    with pytest.raises(bayesmlm.errors.ArgumentError, match="aggregate=False needs the rows.*read from files as cells"):
        model.build(aggregate=False)
    with pytest.raises(bayesmlm.errors.ArgumentError, match="init='frequentist' needs the rows.*init='sampler'"):
        model.fit(init="frequentist")


def _same_cells(memory, files):
    """The file model's cells and design rows are the in-memory aggregation's, exactly."""
    mem = aggregate_rows(memory.design)
    cells, d = files._cells, files.design
    assert cells.n_rows == mem.n_rows and cells.n_cells == mem.n_cells
    np.testing.assert_array_equal(cells.y, mem.y)
    np.testing.assert_array_equal(cells.trials, mem.trials)
    np.testing.assert_array_equal(d.X, memory.design.X[mem.first])
    for name, f in d.factors.items():
        np.testing.assert_array_equal(f.index, memory.design.factors[name].index[mem.first])
        assert f.levels == memory.design.factors[name].levels
    if mem.offset is None:
        assert cells.offset is None
    else:
        np.testing.assert_array_equal(cells.offset, mem.offset)
    np.testing.assert_allclose(cells.constant, mem.constant, rtol=1e-13, atol=1e-9)
    return mem


def test_integer_and_boolean_columns_of_any_range_give_the_in_memory_cells(tmp_path):
    # integers are coded without hashing where their range is small (x: negative values; v: two values 60,000 apart,
    # so the combined key space outgrows the table and is hashed), by factorisation where it is not (g: ids near
    # 10^12); a bool predictor; in Parquet row groups that the chunks cut across, and as CSV
    rng = np.random.default_rng(5)
    n = 20_000
    d = pd.DataFrame({"g": 10**12 + 7919 * rng.integers(0, 40, n), "x": rng.integers(-2, 3, n),
                      "b": rng.random(n) < 0.4, "v": 60_000 * rng.integers(0, 2, n), "y": rng.integers(0, 2, n)})
    formula = "y ~ x + b + v + (1 + x | g)"
    memory = bayesmlm.MLM(formula, d, family="bernoulli")
    d.to_parquet(tmp_path / "ints.parquet", row_group_size=3_000)
    d.to_csv(tmp_path / "ints.csv", index=False)
    for path in ["ints.parquet", "ints.csv"]:
        files = bayesmlm.MLM.from_files(formula, tmp_path / path, family="bernoulli", chunksize=2_000)
        assert _same_cells(memory, files).n_cells == 40 * 5 * 2 * 2


def test_chunks_with_different_groups_merge_their_labels(data, tmp_path):
    # rows sorted by group (about 500 a group): each chunk of 1,600 rows holds three to five of the 40 groups, so
    # every merge unites labels
    path = tmp_path / "sorted.parquet"
    sorted_rows = data.sort_values(["g", "x"], kind="stable").reset_index(drop=True)
    sorted_rows.to_parquet(path, row_group_size=4_000)
    memory = bayesmlm.MLM(FORMULA, sorted_rows, family="bernoulli")
    files = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli", chunksize=1_600)
    assert _same_cells(memory, files).n_cells == 600


def test_rows_with_missing_values_are_dropped_and_counted_by_column(data, tmp_path):
    holes = data.copy()
    holes.loc[::97, "x"] = np.nan
    holes["g"] = holes["g"].astype(object)
    holes.loc[5::301, "g"] = None
    path = tmp_path / "holes.parquet"
    holes.to_parquet(path, row_group_size=2_500)
    na = holes[["x", "g"]].isna()
    n_x, n_g, n_any = int(na["x"].sum()), int(na["g"].sum()), int(na.any(axis=1).sum())
    assert n_any < n_x + n_g  # a row that misses both counts once in the rows, once in each column
    with pytest.warns(bayesmlm.errors.RowsDroppedWarning, match=rf"Dropped {n_any} of 20000 rows.*x: {n_x}.*g: {n_g}"):
        files = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli", chunksize=3_000)
    with pytest.warns(bayesmlm.errors.RowsDroppedWarning):
        memory = bayesmlm.MLM(FORMULA, holes, family="bernoulli")
    assert files._cells.n_rows == 20_000 - n_any
    _same_cells(memory, files)


def test_an_offset_and_a_two_label_outcome_are_read_into_the_cells(data, tmp_path):
    # bernoulli with an offset: the offset is part of a cell's key (two values: twice the cells); the outcome as labels
    rows = data.assign(y=np.where(data["y"] == 1, "yes", "no"))
    path = tmp_path / "offset.parquet"
    rows.to_parquet(path, row_group_size=2_500)
    memory = bayesmlm.MLM(FORMULA, rows, family="bernoulli", offset="log_e")
    files = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli", offset="log_e", chunksize=1_500)
    mem = _same_cells(memory, files)
    assert mem.n_cells == 1_200 and set(np.unique(files._cells.offset)) == set(np.log([0.5, 2.0]))


def test_a_stateful_transform_takes_its_state_from_all_the_first_chunks_rows(data, tmp_path):
    # the first chunk's design is built on its distinct rows, except where a transform's state counts rows: center(x)
    # over one chunk of all the rows is the in-memory centring (over the distinct rows its mean would be another)
    path = tmp_path / "rows.parquet"
    data.to_parquet(path)
    formula = "y ~ center(x) + f + (1 | g)"
    memory = bayesmlm.MLM(formula, data, family="bernoulli")
    files = bayesmlm.MLM.from_files(formula, path, family="bernoulli", chunksize=len(data))
    _same_cells(memory, files)
    assert abs(files.design.X[:, 1].min() - (1 - data["x"].mean())) < 1e-12


def test_a_first_chunk_of_one_distinct_row_a_group_is_judged_by_its_rows(tmp_path):
    # every group's rows repeat one row: one distinct row a group, which alone would read as "one row per group"
    rng = np.random.default_rng(1)
    one = pd.DataFrame({"g": [f"g{j}" for j in range(30)], "x": rng.integers(0, 3, 30), "y": np.arange(30) % 2})
    rows = one.loc[np.repeat(np.arange(30), 4)].reset_index(drop=True)
    path = tmp_path / "repeated.parquet"
    rows.to_parquet(path)
    memory = bayesmlm.MLM("y ~ x + (1 | g)", rows, family="bernoulli")
    files = bayesmlm.MLM.from_files("y ~ x + (1 | g)", path, family="bernoulli")
    assert _same_cells(memory, files).n_cells == 30


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
def test_a_stateful_transform_over_several_chunks_is_refused(data, tmp_path, family):
    # center(x)'s mean would be the first chunk's, not all rows': a model other than the in-memory one, so refused
    path = tmp_path / "rows.parquet"
    data.to_parquet(path, row_group_size=2_500)
    with pytest.raises(bayesmlm.SpecError, match=r"center\(\).*first chunk's, not all rows'"):
        bayesmlm.MLM.from_files("y ~ center(x) + (1 | g)", path, family=family, chunksize=1_500)

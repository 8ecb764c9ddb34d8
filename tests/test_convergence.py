"""Vectorised R-hat and ESS give ArviZ's numbers (bayesmlm.sample.convergence)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayesmlm.sample.convergence import dataset_diagnostics, rhat_and_ess


def _draws(seed: int, chains: int = 4, draws: int = 300) -> np.ndarray:
    """(chains, draws, 8): AR(1) chains of different memory, one chain shifted, ties, a constant."""
    rng = np.random.default_rng(seed)
    out = np.empty((chains, draws, 8))
    for k, phi in enumerate([-0.4, 0.0, 0.5, 0.9, 0.97]):
        e = rng.normal(size=(chains, draws))
        for t in range(1, draws):
            e[:, t] += phi * e[:, t - 1]
        out[:, :, k] = e
    out[0, :, 4] += 3.0
    out[:, :, 5] = np.round(rng.normal(size=(chains, draws)))
    out[:, :, 6] = rng.poisson(0.2, size=(chains, draws))
    out[:, :, 7] = 2.5
    return out


@pytest.mark.parametrize("chains, draws", [(4, 300), (2, 7), (1, 50), (3, 101)])
def test_same_numbers_as_arviz(chains, draws):
    da = xr.DataArray(_draws(chains * 100 + draws, chains, draws), dims=("chain", "draw", "k"))
    rhat, bulk, tail = dataset_diagnostics(da.to_dataset(name="x"))
    np.testing.assert_allclose(rhat["x"], az.rhat(da), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(bulk["x"], az.ess(da, method="bulk"), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(tail["x"], az.ess(da, method="tail"), rtol=1e-10, equal_nan=True)
    r, e = rhat_and_ess(da)
    np.testing.assert_array_equal(r.values, rhat["x"].values)
    np.testing.assert_array_equal(e.values, bulk["x"].values)


def test_parameter_slices_in_threads_give_arviz_numbers(monkeypatch):
    """Many parameters are cut into slices that run in threads; each slice's columns land where they belong."""
    import bayesmlm.sample.convergence as convergence

    monkeypatch.setattr(convergence, "_CELLS", 4 * 300 * 3)  # 3 parameters a slice: 3 slices of the 8
    da = xr.DataArray(_draws(7), dims=("chain", "draw", "k"))
    rhat, bulk, tail = dataset_diagnostics(da.to_dataset(name="x"))
    np.testing.assert_allclose(rhat["x"], az.rhat(da), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(bulk["x"], az.ess(da, method="bulk"), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(tail["x"], az.ess(da, method="tail"), rtol=1e-10, equal_nan=True)

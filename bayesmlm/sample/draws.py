"""Posterior draws as flat arrays, read by the names of :mod:`bayesmlm.schema`.

The readers that turn a posterior's variables into (S, ...) arrays, S =
chains x draws: shared by the fast path's recovery of u and by predictions.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..schema import cor_var, pair_dim, sd_var, term_dim

__all__ = ["flat", "cholesky_factor", "block_cholesky", "nutpie_posterior"]


def flat(da: xr.DataArray, rest: tuple[str, ...]) -> np.ndarray:
    """Draws with chain and draw merged into one leading axis: (S, *rest).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> flat(xr.DataArray(np.zeros((2, 5, 3)), dims=("chain", "draw", "t")), ("t",)).shape
    (10, 3)
    """
    da = da.transpose("chain", "draw", *rest)
    return np.asarray(da.values, dtype=float).reshape((-1, *da.shape[2:]))


def cholesky_factor(sd: np.ndarray, cor: np.ndarray | None) -> np.ndarray:
    """Per draw, the lower Cholesky factor of diag(sd) R diag(sd).

    Parameters
    ----------
    sd : ndarray (S, q)
    cor : ndarray (S, q(q-1)/2) or None
        Correlations, upper triangle by rows (as ``cor_<label>``); None for
        uncorrelated terms.

    Examples
    --------
    >>> import numpy as np
    >>> L = cholesky_factor(np.array([[2.0, 3.0]]), np.array([[0.5]]))
    >>> np.allclose(L[0] @ L[0].T, [[4.0, 3.0], [3.0, 9.0]])
    True
    """
    S, q = sd.shape
    if cor is None or q == 1:
        return sd[:, :, None] * np.eye(q)[None]
    R = np.broadcast_to(np.eye(q), (S, q, q)).copy()
    iu = np.triu_indices(q, k=1)
    R[:, iu[0], iu[1]] = cor
    R[:, iu[1], iu[0]] = cor
    return sd[:, :, None] * np.linalg.cholesky(R)


def block_cholesky(posterior: xr.Dataset, block) -> np.ndarray:
    """Per draw, the Cholesky factor of one random block's covariance T = L L': (S, q, q).

    Examples
    --------
    >>> L = block_cholesky(fit.posterior, fit.design.blocks[0])  # doctest: +SKIP
    """
    sd = flat(posterior[sd_var(block.label)], (term_dim(block.label),))
    cor = flat(posterior[cor_var(block.label)], (pair_dim(block.label),)) if block.correlated else None
    return cholesky_factor(sd, cor)


def nutpie_posterior(trace, dims: dict, coords: dict) -> xr.Dataset:
    """The posterior of a nutpie trace with the model's dims and coordinates (chain and draw numbered from 0).

    Parameters
    ----------
    trace : nutpie's DataTree
    dims : dict of str to tuple of str
        Each stored variable's dims after (chain, draw).
    coords : dict of str to sequence

    Examples
    --------
    >>> posterior = nutpie_posterior(trace, {"fixef": ("term",)}, {"term": ["(Intercept)"]})  # doctest: +SKIP
    """
    draws = trace["posterior"]
    return xr.Dataset(
        {n: xr.DataArray(draws[n].values, dims=("chain", "draw", *dims[n]), coords={d: coords[d] for d in dims[n]})
         for n in dims},
        coords={"chain": np.arange(draws.sizes["chain"]), "draw": np.arange(draws.sizes["draw"])})

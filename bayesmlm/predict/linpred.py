"""Posterior draws as flat arrays, and the linear predictor computed in chunks.

Private helpers shared by :mod:`bayesmlm.predict.predictive` and :mod:`bayesmlm.predict.predictions`.
They read only the posterior variables every fit has (``fixef``, ``u_<label>``,
``sigma``), so they work for the full model and for the collapsed Gaussian
fast path alike. The linear predictor of N rows and S draws is never held
whole: it is computed a chunk of draws at a time (about ``CHUNK`` values).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..arguments import check_count
from ..sample.draws import flat
from ..schema import FIXED, FIXED_DIM, NU, PHI, SIGMA, THRESHOLD_DIM, THRESHOLDS, level_dim, term_dim, u_var

CHUNK = 4_000_000


MAX_VALUES = 50_000_000  # rows x draws held at once by a check, log-likelihood or predict(kind="draws")


def draws_within_memory(posterior: xr.Dataset, n_rows: int, draws: int | None, what: str) -> int | None:
    """``draws`` as given, or, when rows x draws would pass :data:`MAX_VALUES`, fewer draws (with a warning).

    Examples
    --------
    >>> import numpy as np, xarray as xr, warnings
    >>> post = xr.Dataset({"a": (("chain", "draw"), np.zeros((4, 1000)))})
    >>> draws_within_memory(post, 10, None, "ppc") is None
    True
    >>> with warnings.catch_warnings(record=True):
    ...     draws_within_memory(post, 50_000, None, "ppc")
    1000
    """
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    if draws is not None or total * n_rows <= MAX_VALUES:
        return draws
    keep = max(posterior.sizes["chain"], MAX_VALUES // n_rows)
    warnings.warn(f"{what}: {n_rows} rows x {total} draws is more than {MAX_VALUES:,} values; using {keep} draws, "
                  "evenly spaced. Pass draws= to choose how many.", UserWarning, stacklevel=4)
    return keep


def thin(posterior: xr.Dataset, draws: int | None) -> xr.Dataset:
    """The posterior with at most ``draws`` draws in all, evenly spaced within each chain."""
    if draws is None:
        return posterior
    draws = check_count(draws, "draws (None for all)")
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = min(n_draw, max(1, -(-int(draws) // n_chain)))
    keep = np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))
    return posterior.isel(draw=keep)


@dataclass(frozen=True, eq=False)
class Draws:
    """Posterior draws flattened over (chain, draw).

    Attributes
    ----------
    shape : tuple of int
        (n_chain, n_draw), to fold flat draws back.
    coords : dict
        ``chain`` and ``draw`` coordinates.
    beta : ndarray (S, p)
    u : tuple of ndarray (S, J, q)
        One per random block, in the design's block order.
    sigma : ndarray (S,) or None
    nu, phi : ndarray (S,) or None
        Student-t degrees of freedom; negative binomial shape.
    thresholds : ndarray (S, K - 1) or None
        A cumulative model's thresholds.
    """

    shape: tuple[int, int]
    coords: dict
    beta: np.ndarray
    u: tuple
    sigma: np.ndarray | None
    nu: np.ndarray | None = None
    phi: np.ndarray | None = None
    thresholds: np.ndarray | None = None

    def take(self, sl: slice) -> dict:
        """The family parameters of a slice of the draws, as keyword arguments of the likelihood."""
        return {k: None if v is None else v[sl] for k, v in
                (("sigma", self.sigma), ("nu", self.nu), ("phi", self.phi), ("thresholds", self.thresholds))}

    @property
    def n(self) -> int:
        """Number of draws S."""
        return self.beta.shape[0]


def posterior_draws(fit, draws: int | None = None) -> Draws:
    """Flat arrays of fixef, u per block and sigma (thinned to ``draws`` in all)."""
    post = thin(fit.posterior, draws)
    design = fit.design
    beta = flat(post[FIXED], (FIXED_DIM,)) if FIXED in post else np.zeros((post.sizes["chain"] * post.sizes["draw"], 0))
    u = []
    for b in design.blocks:
        name = u_var(b.label)
        if name not in post:
            raise ValueError(f"The posterior has no '{name}' (random effects of {b.label}); this needs the random effects "
                             "sampled, or recovered by the collapsed fit.")
        da = post[name].reindex({level_dim(b.group): list(design.factors[b.group].levels), term_dim(b.label): list(b.terms)})
        u.append(flat(da, (level_dim(b.group), term_dim(b.label))))
    sigma = flat(post[SIGMA], ()) if design.spec.family.has_sigma else None
    nu = flat(post[NU], ()) if NU in post else None
    phi = flat(post[PHI], ()) if PHI in post else None
    cuts = flat(post[THRESHOLDS], (THRESHOLD_DIM,)) if THRESHOLDS in post else None
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    return Draws((post.sizes["chain"], post.sizes["draw"]), coords, beta, tuple(u), sigma, nu, phi, cuts)


def chunks(n_draws: int, n_obs: int, size: int = CHUNK):
    """Slices of draws whose linear predictor holds about ``size`` values."""
    step = max(1, size // max(n_obs, 1))
    for start in range(0, n_draws, step):
        yield slice(start, min(start + step, n_draws))


def linear_predictor(beta: np.ndarray, u: tuple, X: np.ndarray, Z: tuple, index: tuple, offset) -> np.ndarray:
    """eta = X beta + sum_b (Z_b * u_b[index_b]).sum(-1) + offset, for a chunk of draws: (s, N)."""
    eta = beta @ X.T
    for u_b, Z_b, idx in zip(u, Z, index):
        eta += np.einsum("snq,nq->sn", u_b[:, idx, :], Z_b)
    if offset is not None:
        eta += offset
    return eta


def design_eta_parts(design) -> tuple[np.ndarray, tuple, tuple, np.ndarray | None]:
    """(X, Z per block, group index per block, offset) of the fitted rows."""
    return (design.X, tuple(b.Z for b in design.blocks), tuple(design.factors[b.group].index for b in design.blocks),
            design.offset)

"""Stage 4, sample (fast path): exact draws of the random effects a collapsed fit integrated out.

For each posterior draw of (gamma, T, sigma), group j's random effects have
the Gaussian conditional (DESIGN.md, "The fast path")

    u_j | gamma, T, sigma, y ~ N(m_j, V_j),
    V_j = (Z_j'Z_j / sigma^2 + T^-1)^-1,   m_j = V_j Z_j'r_j / sigma^2.

With T = L L', M_j = sigma^2 I + L' Z_j'Z_j L = C_j C_j' and b_j = L' Z_j'r_j
this is V_j = sigma^2 L M_j^-1 L' and m_j = L M_j^-1 b_j, so one draw is

    u_j = L C_j^-T (C_j^-1 b_j + sigma e_j),   e_j ~ N(0, I_q),

with no inverse of T (finite as a random SD goes to zero). The q x q algebra
runs in a Numba kernel written out for the model's q (:mod:`bayesmlm.fastpath.kernels`),
so 4,000 draws of 10,000 groups take seconds; draws are processed in slices
to bound memory.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..sample.draws import block_cholesky, flat
from ..schema import FIXED, FIXED_DIM, SIGMA, u_var, variable_dims
from .kernels import conditional_draws_kernel
from .stats import GroupStats

__all__ = ["recover_random_effects", "conditional_draws"]

_STREAM = 0x2EC0  # spawn key of the random stream used for u, apart from the sampler's
_CELLS_PER_SLICE = 2_000_000  # draws x groups handled at once


def _block_diagonal(parts: list[np.ndarray]) -> np.ndarray:
    S = parts[0].shape[0]
    q = sum(p.shape[1] for p in parts)
    L = np.zeros((S, q, q))
    k = 0
    for p in parts:
        L[:, k:k + p.shape[1], k:k + p.shape[1]] = p
        k += p.shape[1]
    return L


def _draws_of(posterior: xr.Dataset, blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """gamma (S, p), L (S, q, q), sigma (S,) from a posterior with the fast path's variable names."""
    fixef = posterior[FIXED]
    chains, draws = fixef.sizes["chain"], fixef.sizes["draw"]
    gamma = flat(fixef, (FIXED_DIM,))
    parts = [block_cholesky(posterior, b) for b in blocks]
    sigma = flat(posterior[SIGMA], ())
    return gamma, _block_diagonal(parts), sigma, (chains, draws)


def conditional_draws(L: np.ndarray, sigma: np.ndarray, stats: GroupStats, gamma_t: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """u (S, J, q) for draws of L (S, q, q), sigma (S,), gamma-tilde (S, p) and noise eps (S, J, q)."""
    q = L.shape[-1]
    iu = np.triu_indices(q)
    ztz = np.ascontiguousarray(stats.ZtZ[:, iu[0], iu[1]].T)
    zty = np.ascontiguousarray(stats.Zty.T)
    xtz = np.ascontiguousarray(stats.XtZ.transpose(2, 1, 0))
    return conditional_draws_kernel(q)(np.ascontiguousarray(L), np.ascontiguousarray(sigma), ztz, zty, xtz,
                                       np.ascontiguousarray(gamma_t), np.ascontiguousarray(eps))


def recover_random_effects(posterior: xr.Dataset, stats: GroupStats, blocks, *, seed: int) -> dict[str, xr.DataArray]:
    """Draws of ``u_<label>`` from their exact Gaussian conditional, one per posterior draw.

    Parameters
    ----------
    posterior : Dataset
        With ``fixef``, ``sd_<label>``, ``cor_<label>`` (correlated blocks) and ``sigma``.
    stats : GroupStats
        The statistics the posterior was sampled from.
    blocks : sequence of BlockDesign
        The random blocks of the grouping factor, in Z's column order.
    seed : int
        The fit's seed: the same seed gives the same draws.

    Returns
    -------
    dict of str to DataArray
        ``u_<label>`` with dims (chain, draw, <factor>, <label>_term).

    Examples
    --------
    >>> u = recover_random_effects(fit.posterior, group_stats(m.design), m.design.blocks, seed=1)  # doctest: +SKIP
    >>> u["u_Subject"].dims  # doctest: +SKIP
    ('chain', 'draw', 'Subject', 'Subject_term')
    """
    gamma, L, sigma, (chains, draws) = _draws_of(posterior, blocks)
    S = len(sigma)
    if "(Intercept)" in stats.fixed_terms:
        i0 = stats.fixed_terms.index("(Intercept)")
        gamma = gamma.copy()
        gamma[:, i0] += gamma @ stats.x_shift - stats.y_shift
    J, q = stats.n_groups, len(stats.random_terms)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_STREAM,)))
    u = np.empty((S, J, q))
    step = max(1, _CELLS_PER_SLICE // max(J, 1))
    for a in range(0, S, step):
        s = slice(a, min(S, a + step))
        u[s] = conditional_draws(L[s], sigma[s], stats, gamma[s], rng.standard_normal((s.stop - s.start, J, q)))
    u = u.reshape(chains, draws, J, q)
    out, k = {}, 0
    levels = list(stats.levels)
    for b in blocks:
        dims = ("chain", "draw", *variable_dims(b.label, b.group, b.correlated)[u_var(b.label)])
        out[u_var(b.label)] = xr.DataArray(
            u[..., k:k + b.q], dims=dims,
            coords={"chain": np.arange(chains), "draw": np.arange(draws), dims[2]: levels, dims[3]: list(b.terms)})
        k += b.q
    return out

"""Stage 4, sample (fast path): exact draws of the random effects a collapsed fit integrated out.

For each posterior draw of (gamma, T, sigma), group j's random effects have
the Gaussian conditional (DESIGN.md, "The fast path")

    u_j | gamma, T, sigma, y ~ N(m_j, V_j),
    V_j = (Z_j'Z_j / sigma^2 + T^-1)^-1,   m_j = V_j Z_j'r_j / sigma^2.

With T = L L', M_j = sigma^2 I + L' Z_j'Z_j L = C_j C_j' and b_j = L' Z_j'r_j
this is V_j = sigma^2 L M_j^-1 L' and m_j = L M_j^-1 b_j, so one draw is

    u_j = L C_j^-T (C_j^-1 b_j + sigma e_j),   e_j ~ N(0, I_q),

with no inverse of T (finite as a random SD goes to zero). The q x q algebra
runs in a Numba kernel written out for the model's q (:mod:`bayesmlm.kernels`),
so 4,000 draws of 10,000 groups take seconds; draws are processed in slices
to bound memory.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .design import level_dim, safe_name, term_dim
from .kernels import conditional_draws_kernel
from .suffstats import GroupStats

__all__ = ["recover_random_effects", "cholesky_factor"]

_STREAM = 0x2EC0  # spawn key of the random stream used for u, apart from the sampler's
_CELLS_PER_SLICE = 2_000_000  # draws x groups handled at once


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
    fixef = posterior["fixef"]
    chains, draws = fixef.sizes["chain"], fixef.sizes["draw"]
    S = chains * draws
    gamma = fixef.transpose("chain", "draw", "fixed_term").values.reshape(S, -1)
    parts = []
    for b in blocks:
        name = safe_name(b.label)
        sd = posterior[f"sd_{name}"].transpose("chain", "draw", term_dim(b.label)).values.reshape(S, -1)
        cor = None
        if b.correlated:
            cor = posterior[f"cor_{name}"].transpose("chain", "draw", ...).values.reshape(S, -1)
        parts.append(cholesky_factor(sd, cor))
    sigma = posterior["sigma"].transpose("chain", "draw").values.reshape(S)
    return gamma, _block_diagonal(parts), sigma, (chains, draws)


def _draw(L: np.ndarray, sigma: np.ndarray, stats: GroupStats, gamma_t: np.ndarray, eps: np.ndarray) -> np.ndarray:
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
        u[s] = _draw(L[s], sigma[s], stats, gamma[s], rng.standard_normal((s.stop - s.start, J, q)))
    u = u.reshape(chains, draws, J, q)
    out, k = {}, 0
    levels = list(stats.levels)
    for b in blocks:
        dims = ("chain", "draw", level_dim(b.group), term_dim(b.label))
        out[f"u_{safe_name(b.label)}"] = xr.DataArray(
            u[..., k:k + b.q], dims=dims,
            coords={"chain": np.arange(chains), "draw": np.arange(draws), dims[2]: levels, dims[3]: list(b.terms)})
        k += b.q
    return out

"""Stage 4, sample: the effects of a parent factor integrated out of its child's prior, drawn after sampling.

Where the kernel integrates a parent out (:func:`bayesmlm.design.nested_centring.integrable_parents`,
:data:`bayesmlm.fastpath.glmm_kernel.CENTRED_MARGINAL`), each draw holds the child's total deviations
r_j = v_j - H_j b (stored as its ``u``), its SD and the parent's. Given them the parent's effect at level l,
with n_l children summing to S_l, a = sd_child^2 and c = sd_parent^2, is exactly

    w_l | r ~ N(c S_l / (a + n_l c), a c / (a + n_l c))

(a level without children: its prior, N(0, c)). One such draw per posterior draw makes (r, w) a draw of the
full model's posterior; the child's reported u is then r_j - w_parent(j), its deviation from its parent, as
lme4's ``ranef``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..schema import cor_var, sd_var, u_var, variable_dims

__all__ = ["draw_parents"]


def draw_parents(posterior: xr.Dataset, design, integrated: dict, coords: dict, seed=None) -> xr.Dataset:
    """The posterior with each integrated parent's ``u`` drawn and its child's ``u`` made the deviation from it.

    Parameters
    ----------
    posterior : Dataset
        The kernel's draws: the child's ``u`` holds r_j, ``sd_<parent>`` the parent's SD.
    design : Design
    integrated : dict of str to ParentLink
        Per parent block label, its child's link (:attr:`bayesmlm.fastpath.glmm_fit.GlmmPlan.integrated`).
    coords : dict
        The model's coordinates (:func:`bayesmlm.build.full.model_coords`).
    seed : int or None
        The draws' own stream (from the fit's seed: the same fit, the same draws).

    Returns
    -------
    Dataset
        The variables in the design's order: fixef, then per block its SDs, correlations and effects.

    Examples
    --------
    >>> posterior = draw_parents(posterior, plan.design, plan.integrated, coords, seed=1)  # doctest: +SKIP
    >>> posterior["u_LOCATION"].dims  # doctest: +SKIP
    ('chain', 'draw', 'LOCATION', 'LOCATION_term')
    """
    rng = np.random.default_rng(np.random.SeedSequence(None if seed is None else [int(seed), 0x9A7E]))
    by_label = {b.label: b for b in design.blocks}
    out = dict(posterior.data_vars)
    for parent_label, link in integrated.items():
        parent = by_label[parent_label]
        r = posterior[u_var(link.child)]
        C, D, J = r.shape[:3]
        Jp = design.factors[parent.group].n_levels
        incidence = sp.csr_matrix((np.ones(J), (np.arange(J), link.levels)), shape=(J, Jp))
        S = np.asarray((r.values[..., 0].reshape(C * D, J) @ incidence)).reshape(C, D, Jp)
        n = np.bincount(link.levels, minlength=Jp).astype(float)
        a = posterior[sd_var(link.child)].values[..., :1] ** 2
        c = posterior[sd_var(parent_label)].values[..., :1] ** 2
        tau = a + n * c
        w = c * S / tau + np.sqrt(a * c / tau) * rng.standard_normal((C, D, Jp))
        dims = variable_dims(parent_label, parent.group, parent.correlated)[u_var(parent_label)]
        out[u_var(parent_label)] = xr.DataArray(w[..., None], dims=("chain", "draw", *dims),
                                                coords={d: coords[d] for d in dims})
        out[u_var(link.child)] = r - w[..., link.levels][..., None]
    order = [v for v in posterior.data_vars if not v.startswith(("sd_", "cor_", "u_"))]
    for b in design.blocks:
        order += [v for v in (sd_var(b.label), cor_var(b.label), u_var(b.label)) if v in out]
    order += [v for v in out if v not in order]
    return xr.Dataset({v: out[v] for v in order}, coords=posterior.coords, attrs=posterior.attrs)

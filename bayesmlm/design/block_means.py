"""Stage 2, design: the fixed effects that a centred block's group coefficients are centred on.

A centred block samples its groups' coefficients (hierarchical centring,
Gelfand, Sahu and Carlin 1995) instead of the deviations u_j. Where the data
pin down group j's coefficients, those barely move with the fixed effects that
the groups share, so NUTS does not have to move them together. Which fixed
effects a block's coefficients are centred on:

- a fixed column that is the block's term k times a value h_j constant within
  each group (X[:, t] = Z[:, k] h_j): the term itself (h_j = 1: ``smu`` in
  ``(1 + smu | country)``), a group-level covariate on the intercept
  (``Anger`` constant within each person, ``btype`` within each item) or a
  cross-level interaction on a slope (``x:w`` with ``w`` constant within
  groups, on the slope of ``x``);
- the intercept is one of these (the intercept column is the intercept term
  times 1).

Each fixed column is the mean of one block only. Two crossed factors' blocks
cannot share the intercept: their effects could then move by +c and -c with
the same predictions, a ridge only their priors hold. It goes to the centred
factor with the fewest groups (ties: the first in the formula), and so does a
column constant within several factors (a school covariate is also constant
within the school's classes): the other factor's effects are centred on zero
and, having more groups, pin the shared constant more tightly (the precision
of their mean is J / tau^2).

In the model's centred coordinates (fixed columns centred at their means c,
each block's basis with its intercept at Z's column means zbar, see
:func:`bayesmlm.build.full.centred_basis`) the block samples
v_j = M_j + A^-1 u_j, with M_j = H_j b (b the centred fixed effects
``b_centred``): a column t absorbed into term k with multiplier h_j adds h_j to
H[j, k, t] and, in a block with an intercept, zbar_k h_j - c_t to
H[j, intercept, t] (for k the intercept, zbar_k = 0), so that the linear
predictor of an absorbed column is Z_j A (v_j - M_j)'s part exactly. The model
is u_j ~ MvNormal(0, L L') whatever H is (a shift with unit Jacobian); H only
decides the geometry NUTS sees. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matrices import BlockDesign, Design

__all__ = ["BlockMean", "group_constant", "block_means"]

_TOL = 1e-10


@dataclass(frozen=True, eq=False)
class BlockMean:
    """What a centred block's group coefficients are centred on.

    Attributes
    ----------
    label : str
        The block's label.
    terms : dict of str to tuple of str
        Per random term of the block, the fixed terms its groups' coefficient is centred on.
    H : ndarray (J, q, p)
        The mean of v_j (the coefficients in the block's centred basis) is ``H[j] @ b_centred``.
    """

    label: str
    terms: dict
    H: np.ndarray

    @property
    def fixed_terms(self) -> tuple[str, ...]:
        """Every fixed term this block is centred on, in the block's term order."""
        return tuple(t for ts in self.terms.values() for t in ts)


def group_constant(x: np.ndarray, z: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray | None:
    """h_j with x = z h_j in every row of group j, or None where there is no such h.

    Examples
    --------
    >>> idx = np.array([0, 0, 1, 1])
    >>> group_constant(np.array([2.0, 4.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0, 1.0]), idx, 2).tolist()
    [2.0, 0.0]
    >>> group_constant(np.array([1.0, 2.0, 3.0, 3.0]), np.ones(4), idx, 2) is None
    True
    """
    scale = max(float(np.abs(x).max(initial=0.0)), 1.0)
    on = z != 0
    if np.any(np.abs(x[~on]) > _TOL * scale):
        return None
    ratio = np.where(on, x / np.where(on, z, 1.0), 0.0)
    count = np.bincount(index, weights=on.astype(float), minlength=n_groups)
    h = np.bincount(index, weights=ratio, minlength=n_groups) / np.maximum(count, 1.0)
    if np.any(np.abs(ratio - h[index])[on] > _TOL * max(float(np.abs(h).max(initial=0.0)), 1.0)):
        return None
    return h


def _candidate_terms(b: BlockDesign, term: str) -> list[int]:
    """The block's terms to try for a fixed term: the same-named one, then the intercept, then the others."""
    order = [b.terms.index(term)] if term in b.terms else []
    if "(Intercept)" in b.terms:
        order.append(b.terms.index("(Intercept)"))
    return list(dict.fromkeys(order + list(range(b.q))))


def block_means(design: Design, parameterization: dict[str, str]) -> dict[str, BlockMean]:
    """Per centred block, the fixed effects its group coefficients are centred on (the rule of this module).

    Parameters
    ----------
    design : Design
    parameterization : dict of str to str
        ``"centred"`` or ``"non-centred"`` per grouping factor; only centred blocks have a mean.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> {k: v.terms for k, v in block_means(m.design, {"plate": "centred", "sample": "centred"}).items()}
    {'plate': {'(Intercept)': ()}, 'sample': {'(Intercept)': ('(Intercept)',)}}
    """
    centred = [(i, b) for i, b in enumerate(design.blocks) if parameterization.get(b.group, "non-centred") == "centred"]
    owners = sorted(centred, key=lambda ib: (design.factors[ib[1].group].n_levels, ib[0]))  # fewest groups first
    c = design.model_centre
    taken: set[str] = set()
    out: dict[str, BlockMean] = {}
    for _, b in owners:
        f = design.factors[b.group]
        i0 = b.terms.index("(Intercept)") if "(Intercept)" in b.terms else None
        zbar = b.z_means.copy() if i0 is not None and b.q > 1 else np.zeros(b.q)  # the basis of centred_basis (row means)
        if i0 is not None:
            zbar[i0] = 0.0
        H = np.zeros((f.n_levels, b.q, len(design.fixed_terms)))
        terms: dict[str, list[str]] = {t: [] for t in b.terms}
        for t_i, t in enumerate(design.fixed_terms):
            if t in taken:
                continue
            for k in _candidate_terms(b, t):
                h = group_constant(design.X[:, t_i], b.Z[:, k], f.index, f.n_levels)
                if h is None:
                    continue
                H[:, k, t_i] += h
                if i0 is not None:
                    H[:, i0, t_i] += zbar[k] * h - c[t_i]
                terms[b.terms[k]].append(t)
                taken.add(t)
                break
        out[b.label] = BlockMean(b.label, {k: tuple(v) for k, v in terms.items()}, H)
    return {b.label: out[b.label] for _, b in centred}

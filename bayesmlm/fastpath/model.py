"""Stage 3, build (fast path): the PyMC model with the random effects integrated out.

For a Gaussian model with one grouping factor, u_j ~ N(0, T) integrates out
of y_j = X_j gamma + Z_j u_j + e_j. With T = L L' (L the block-diagonal
Cholesky factor of the random blocks' covariances), r_j = y_j - X_j gamma,
M_j = sigma^2 I + L' Z_j'Z_j L and b_j = L' Z_j'r_j, the matrix determinant
lemma and the Woodbury identity give (DESIGN.md, "The fast path")

    log p(y_j) = -1/2 [ n_j log(2 pi) + (n_j - q) log sigma^2 + log det M_j
                        + (r_j'r_j - b_j' M_j^-1 b_j) / sigma^2 ].

With precision weights every cross-product is weighted (Z_j'W_j Z_j, ...),
n_j counts the rows of positive weight, and the log-density gains
1/2 sum(log w_i) (the determinant of sigma^2 W^-1; :mod:`bayesmlm.fastpath.stats`).

Writing T^-1 nowhere keeps this finite when a random SD is near zero. The
r_j'r_j terms only enter as their sum over groups, so they need the totals of
X'X, X'y and y'y; the per-group work is the q x q part, one Numba loop over
groups with its own gradient (:class:`~bayesmlm.fastpath.op.GroupTerms`; any q).

Every number that comes from the data (the statistics, the centring, and the
data-scaled prior parameters) is a ``pm.Data`` variable, so one compiled model
serves every data set of the same structure (:mod:`bayesmlm.fastpath.nutpie_driver`).

Posterior variables are those of the full model (:mod:`bayesmlm.build.full`) except
``u_<label>``, which :mod:`bayesmlm.fastpath.recover` draws afterwards: ``fixef``,
``sd_<label>``, ``cor_<label>`` and ``sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..build.distributions import lkj_block, scalar_rv, vector_rv
from ..design.priors import Prior, cor_name, sd_name
from ..errors import SpecError
from ..schema import (
    FIXED,
    FIXED_DIM,
    SIGMA,
    block_coords,
    cor_var,
    safe_name,
    sd_var,
    variable_dims,
)
from .op import group_terms
from .stats import GroupStats

__all__ = ["CollapsedStructure", "collapsed_structure", "collapsed_data", "data_layout", "build_collapsed_model",
           "collapsed_loglik", "loglik_at", "unpacked_data"]


@dataclass(frozen=True)
class CollapsedStructure:
    """What a compiled collapsed model depends on, apart from data: its cache key.

    Attributes
    ----------
    fixed_terms : tuple of str
    blocks : tuple of (label, terms, correlated)
        The random blocks of the one grouping factor, in Z's column order.
    prior_dists : tuple of (name, distribution)
        Which distribution each prior is; their parameters are data.
    has_intercept : bool
    """

    fixed_terms: tuple[str, ...]
    blocks: tuple[tuple[str, tuple[str, ...], bool], ...]
    prior_dists: tuple[tuple[str, str], ...]
    has_intercept: bool

    @property
    def q(self) -> int:
        """Number of random terms."""
        return sum(len(t) for _, t, _ in self.blocks)

    def coords(self) -> dict[str, list[str]]:
        """Coordinates of the sampled variables (no group dimension: groups are data)."""
        coords = {FIXED_DIM: list(self.fixed_terms)}
        for label, terms, correlated in self.blocks:
            coords |= block_coords(label, terms, correlated)
        return coords


def collapsed_structure(design, priors: dict[str, Prior]) -> CollapsedStructure:
    """The structure of a design's collapsed model.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> collapsed_structure(m.design, m.prior_dict).q
    2
    """
    blocks = tuple((b.label, tuple(b.terms), bool(b.correlated)) for b in design.blocks)
    return CollapsedStructure(tuple(design.fixed_terms), blocks, tuple((k, p.dist) for k, p in priors.items()),
                              bool(design.has_intercept))


@dataclass(frozen=True)
class _Layout:
    """Where each number sits in the model's two data arrays.

    ``constants`` (a vector) holds the centring, the shifts, the totals of
    X'X, X'y and y'y, and every prior parameter; ``group_stats`` (one row per
    statistic, one column per group) holds the entries of Z'Z (upper
    triangle), Z'y and X'Z. Two inputs keep the compiled function's calls cheap.
    """

    slots: dict
    rows: dict
    size: int
    n_rows: int

    @classmethod
    def of(cls, structure: CollapsedStructure, priors: dict[str, Prior]) -> "_Layout":
        p, q = len(structure.fixed_terms), structure.q
        slots, k = {}, 0
        for name, length in [("x_centre", p), ("x_shift", p), ("y_shift", 1), ("n_obs", 1), ("xtx_total", p * p),
                             ("xty_total", p), ("yty_total", 1),
                             ("log_w_total", 1)]:
            slots[name] = (k, length)
            k += length
        for name, prior in priors.items():
            for param, _ in prior.params:
                slots[(name, param)] = (k, 1)
                k += 1
        rows, r = {}, 0
        for a in range(q):
            for b in range(a, q):
                rows[("ztz", a, b)] = r
                r += 1
        for a in range(q):
            rows[("zty", a)] = r
            r += 1
        for a in range(q):
            rows[("xtz", a)] = r
            r += p
        return cls(slots, rows, k, r)


def data_layout(structure: CollapsedStructure, priors: dict[str, Prior]) -> tuple[dict, dict]:
    """Where each number sits in :func:`collapsed_data`'s arrays.

    Returns ``slots``, (start, length) in ``constants`` by name (``"x_centre"``,
    ``"x_shift"``, ``"y_shift"``, ``"n_obs"``, ``"xtx_total"``, ``"xty_total"``,
    ``"yty_total"``, ``"log_w_total"``) or by (prior name, parameter); and ``rows``, the row of
    ``group_stats`` by ``("ztz", a, b)`` (a <= b), ``("zty", a)`` or the first
    row of ``("xtz", a)`` (p rows).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> slots, rows = data_layout(collapsed_structure(m.design, m.prior_dict), m.prior_dict)
    >>> slots["y_shift"], rows[("xtz", 1)]
    ((4, 1), 7)
    """
    layout = _Layout.of(structure, priors)
    return dict(layout.slots), dict(layout.rows)


def collapsed_data(structure: CollapsedStructure, stats: GroupStats, priors: dict[str, Prior],
                   x_centre) -> dict[str, np.ndarray]:
    """Values of the collapsed model's two ``pm.Data`` variables, ``constants`` and ``group_stats``.

    Parameters
    ----------
    structure : CollapsedStructure
    stats : GroupStats
    priors : dict of str to Prior
    x_centre : array (p,)
        Column means of X (0 for the intercept; all 0 without one): the
        intercept's prior is on the outcome at the predictors' means, as in
        the full model.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = collapsed_structure(m.design, m.prior_dict)
    >>> d = collapsed_data(s, group_stats(m.design), m.prior_dict, [0.0, 4.5])
    >>> d["group_stats"].shape
    (9, 18)
    """
    layout = _Layout.of(structure, priors)
    p, q = len(structure.fixed_terms), structure.q
    if stats.fixed_terms != structure.fixed_terms or stats.XtZ.shape[1:] != (p, q):
        raise SpecError(f"The statistics are for the terms {stats.fixed_terms} and {stats.random_terms}; the model has "
                        f"{structure.fixed_terms} and {q} random term(s). Compute them from this model's design.")
    const = np.empty(layout.size)
    values = {"x_centre": np.asarray(x_centre, dtype=float), "x_shift": stats.x_shift, "y_shift": stats.y_shift,
              "n_obs": stats.n.sum(), "xtx_total": stats.XtX.sum(axis=0), "xty_total": stats.Xty.sum(axis=0),
              "yty_total": stats.yty.sum(), "log_w_total": stats.log_w.sum()}
    for name, prior in priors.items():
        for param, value in prior.params:
            values[(name, param)] = value
    for key, (start, length) in layout.slots.items():
        const[start:start + length] = np.ravel(values[key])
    rows = np.empty((layout.n_rows, stats.n_groups))
    for a in range(q):
        for b in range(a, q):
            rows[layout.rows[("ztz", a, b)]] = stats.ZtZ[:, a, b]
        rows[layout.rows[("zty", a)]] = stats.Zty[:, a]
        r = layout.rows[("xtz", a)]
        rows[r:r + p] = stats.XtZ[:, :, a].T
    return {"constants": const, "group_stats": rows}


class _Unpacked:
    """The named pieces of the two data arrays, as PyTensor expressions (or numpy arrays)."""

    def __init__(self, layout: _Layout, constants, group_stats, p: int, q: int):
        self.layout, self.c, self.g, self.p, self.q = layout, constants, group_stats, p, q

    def __getitem__(self, key):
        start, length = self.layout.slots[key]
        if key == "xtx_total":
            return self.c[start:start + length].reshape((self.p, self.p))
        if key in ("x_centre", "x_shift", "xty_total"):
            return self.c[start:start + length]
        return self.c[start]

    def ztz(self, a: int, b: int):
        a, b = min(a, b), max(a, b)
        return self.g[self.layout.rows[("ztz", a, b)]]

    def zty(self, a: int):
        return self.g[self.layout.rows[("zty", a)]]

    def xtz(self, a: int):
        r = self.layout.rows[("xtz", a)]
        return self.g[r:r + self.p]


def unpacked_data(structure: CollapsedStructure, priors: dict[str, Prior], data: dict):
    """The named pieces of :func:`collapsed_data`'s arrays (``data["n_obs"]``, ``data.g``, ...), for a likelihood.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = collapsed_structure(m.design, m.prior_dict)
    >>> float(unpacked_data(s, m.prior_dict, collapsed_data(s, group_stats(m.design), m.prior_dict, [0, 4.5]))["n_obs"])
    180.0
    """
    return _Unpacked(_Layout.of(structure, priors), data["constants"], data["group_stats"], len(structure.fixed_terms),
                     structure.q)


def _params(name: str, prior: Prior, data: _Unpacked) -> dict:
    """A prior's parameters, read from the model's data."""
    return {param: data[(name, param)] for param, _ in prior.params}


def _vector_rv(rv_name: str, names: list[str], priors: dict[str, Prior], data: _Unpacked, dims: str):
    """One RV per prior name, as a vector named ``rv_name``, its parameters read from the model's data."""
    return vector_rv(rv_name, [priors[k].dist for k in names], [_params(k, priors[k], data) for k in names], dims=dims)


def _fixed(structure: CollapsedStructure, priors: dict[str, Prior], data: _Unpacked):
    """gamma (``fixef``) and gamma-tilde, the coefficients of the shifted columns."""
    beta_c = _vector_rv("b_centred", list(structure.fixed_terms), priors, data, FIXED_DIM)
    if not structure.has_intercept:
        pm.Deterministic(FIXED, beta_c, dims=FIXED_DIM)
        return beta_c
    i0 = structure.fixed_terms.index("(Intercept)")
    gamma = pt.set_subtensor(beta_c[i0], beta_c[i0] - pt.dot(beta_c, data["x_centre"]))
    pm.Deterministic(FIXED, gamma, dims=FIXED_DIM)
    return pt.set_subtensor(gamma[i0], gamma[i0] + pt.dot(gamma, data["x_shift"]) - data["y_shift"])


def _cholesky_entries(structure: CollapsedStructure, priors: dict[str, Prior], data: _Unpacked) -> dict:
    """The non-zero entries L[a, b] (a >= b) of the block-diagonal Cholesky factor of T."""
    entries, offset = {}, 0
    for label, terms, correlated in structure.blocks:
        q_b = len(terms)
        dims = variable_dims(label, label, correlated)
        sd_names = [sd_name(label, t) for t in terms]
        if correlated:
            chol, corr, sds = lkj_block(f"chol_{safe_name(label)}", label, [priors[k].dist for k in sd_names],
                                        [_params(k, priors[k], data) for k in sd_names], data[(cor_name(label), "eta")])
            pm.Deterministic(sd_var(label), sds, dims=dims[sd_var(label)])
            pm.Deterministic(cor_var(label), corr[np.triu_indices(q_b, k=1)], dims=dims[cor_var(label)])
            for a in range(q_b):
                for b in range(a + 1):
                    entries[(offset + a, offset + b)] = chol[a, b]
        else:
            sds = _vector_rv(sd_var(label), sd_names, priors, data, dims[sd_var(label)])
            for a in range(q_b):
                entries[(offset + a, offset + a)] = sds[a]
        offset += q_b
    return entries


def collapsed_loglik(L: dict, sigma, gamma_t, data: _Unpacked):
    """The collapsed log-likelihood summed over groups, as a PyTensor expression.

    ``L`` maps (a, b) to the non-zero entries of T's Cholesky factor;
    ``gamma_t`` are the coefficients of the shifted columns. The r_j'r_j terms
    need only totals; the q x q part per group is :class:`~bayesmlm.fastpath.op.GroupTerms`.
    """
    q = data.q
    s2 = sigma**2
    n_groups = data.g.shape[1]
    zr = pt.stack([data.zty(a) - pt.dot(gamma_t, data.xtz(a)) for a in range(q)])
    Lmat = pt.stack([pt.stack([L[a, b] if (a, b) in L else pt.constant(0.0) for b in range(q)]) for a in range(q)])
    terms = group_terms(q, data.g[:q * (q + 1) // 2], zr, Lmat, s2)
    rr = data["yty_total"] - 2.0 * pt.dot(gamma_t, data["xty_total"]) + pt.dot(gamma_t, pt.dot(data["xtx_total"], gamma_t))
    n = data["n_obs"]
    return -0.5 * (n * np.log(2 * np.pi) + (n - n_groups * q) * pt.log(s2) + terms + rr / s2 - data["log_w_total"])


def loglik_at(stats: GroupStats, gamma, cov, sigma: float) -> float:
    """The collapsed log-likelihood of the statistics at given gamma, T and sigma.

    The same expression the sampler differentiates, evaluated at numbers:
    to check it against the dense multivariate normal density, or to profile
    it. ``cov`` is T over all random terms (q x q, positive definite).

    Examples
    --------
    >>> import bayesmlm, numpy as np
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> round(loglik_at(group_stats(m.design), [251.4, 10.5], np.diag([24.7, 5.9]) ** 2, 25.6), 1)
    -876.0
    """
    p, q = len(stats.fixed_terms), len(stats.random_terms)
    has_intercept = "(Intercept)" in stats.fixed_terms
    structure = CollapsedStructure(tuple(stats.fixed_terms), (("T", tuple(stats.random_terms), True),), (), has_intercept)
    data = collapsed_data(structure, stats, {}, np.zeros(p))
    unpacked = _Unpacked(_Layout.of(structure, {}), data["constants"], data["group_stats"], p, q)
    gamma_t = np.array(gamma, dtype=float)
    if has_intercept:
        gamma_t[stats.fixed_terms.index("(Intercept)")] += gamma_t @ stats.x_shift - stats.y_shift
    chol = np.linalg.cholesky(np.asarray(cov, dtype=float))
    L = {(a, b): chol[a, b] for a in range(q) for b in range(a + 1)}
    return float(collapsed_loglik(L, float(sigma), gamma_t, unpacked).eval())


def build_collapsed_model(structure: CollapsedStructure, priors: dict[str, Prior], data: dict[str, np.ndarray],
                          loglik=None) -> pm.Model:
    """The collapsed PyMC model: gamma, the random blocks' SDs and correlations, and sigma.

    Parameters
    ----------
    structure : CollapsedStructure
    priors : dict of str to Prior
        Their distributions are structure; their parameters are read from ``data``.
    data : dict
        :func:`collapsed_data`.
    loglik : callable, optional
        ``loglik(L, sigma, gamma_t, data)`` in place of :func:`collapsed_loglik`
        (same arguments): the nested route's (:mod:`bayesmlm.fastpath.nested_model`).

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = collapsed_structure(m.design, m.prior_dict)
    >>> pmodel = build_collapsed_model(s, m.prior_dict, collapsed_data(s, group_stats(m.design), m.prior_dict, [0.0, 4.5]))
    >>> sorted(v.name for v in pmodel.free_RVs)
    ['b_centred', 'chol_Subject', 'sigma']
    """
    layout = _Layout.of(structure, priors)
    # Every prior parameter is checked positive where it must be (Prior), and every constrained
    # parameter is sampled through a transform: PyMC's parameter checks would only slow compilation.
    with pm.Model(coords=structure.coords(), check_bounds=False) as model:
        unpacked = _Unpacked(layout, pm.Data("constants", data["constants"]), pm.Data("group_stats", data["group_stats"]),
                             len(structure.fixed_terms), structure.q)
        gamma_t = _fixed(structure, priors, unpacked)
        L = _cholesky_entries(structure, priors, unpacked)
        sigma = scalar_rv(SIGMA, priors[SIGMA].dist, _params(SIGMA, priors[SIGMA], unpacked))
        pm.Potential("collapsed_loglik", (loglik or collapsed_loglik)(L, sigma, gamma_t, unpacked))
    return model

"""The PyMC side of the priors: one distribution per prior name, and the random blocks' SD and LKJ helpers.

Both PyMC models (the full model and the fast path's collapsed model) make
their random variables here, so a prior means the same in each. A prior's
parameters may be numbers (the full model) or tensors read from the model's
data (the collapsed model, whose compiled function is reused across data).
"""

from __future__ import annotations

import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.dist_math import log_diff_normal_cdf, normal_lcdf

from ..errors import SpecError

__all__ = ["DISTRIBUTIONS", "vector_rv", "scalar_rv", "lkj_block", "ordinal_log_probs"]

DISTRIBUTIONS = {
    "normal": pm.Normal,
    "student_t": pm.StudentT,
    "half_normal": pm.HalfNormal,
    "half_student_t": pm.HalfStudentT,
    "exponential": pm.Exponential,
    "gamma": pm.Gamma,
    "inv_gamma": pm.InverseGamma,
}


def scalar_rv(name: str, dist: str, params: dict):
    """One scalar random variable.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model():
    ...     s = scalar_rv("sigma", "exponential", {"lam": 0.5})
    >>> s.name
    'sigma'
    """
    return DISTRIBUTIONS[dist](name, **params)


def vector_rv(name: str, dists: list[str], params: list[dict], dims: str | None = None):
    """A vector of random variables named ``name``, one element per prior.

    One vector RV when the priors share a distribution; otherwise one scalar RV
    each (``name[i]``), stacked into a deterministic ``name``, so the posterior
    has ``name`` either way.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model(coords={"t": ["a", "b"]}) as m:
    ...     b = vector_rv("b", ["normal", "normal"], [{"mu": 0.0, "sigma": 1.0}, {"mu": 1.0, "sigma": 2.0}], dims="t")
    >>> [v.name for v in m.free_RVs]
    ['b']
    """
    if len(set(dists)) == 1:
        kw = {k: pt.stack([p[k] for p in params]) for k in params[0]}
        return DISTRIBUTIONS[dists[0]](name, **kw, dims=dims)
    parts = [DISTRIBUTIONS[d](f"{name}[{i}]", **p) for i, (d, p) in enumerate(zip(dists, params))]
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def lkj_block(name: str, label: str, dists: list[str], params: list[dict], eta):
    """The LKJ Cholesky covariance of one correlated block: (chol, corr, sds) from ``pm.LKJCholeskyCov``.

    Parameters
    ----------
    name : str
        The random variable's name (``chol_<label>``).
    label : str
        The block's label, for the error message.
    dists, params : list
        The prior of each term's SD; they must share one distribution (PyMC
        takes one ``sd_dist``).
    eta : float or tensor
        The LKJ shape.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model():
    ...     chol, corr, sds = lkj_block("chol_g", "g", ["half_normal"] * 2, [{"sigma": 1.0}] * 2, 1.0)
    >>> [int(n) for n in chol.shape.eval()]
    [2, 2]
    """
    if len(set(dists)) != 1:
        raise SpecError(f"The SDs of the correlated block '{label}' must share one prior distribution "
                        f"(pm.LKJCholeskyCov takes one sd_dist); got {dists}. Give them the same distribution, "
                        "e.g. half_normal with different scales.")
    kw = {k: pt.stack([p[k] for p in params]) for k in params[0]}
    sd_dist = DISTRIBUTIONS[dists[0]].dist(**kw, shape=len(params))
    return pm.LKJCholeskyCov(name, n=len(params), eta=eta, sd_dist=sd_dist, compute_corr=True)


def ordinal_log_probs(eta, cutpoints, link: str):
    """log p_k of every category (columns) for each linear predictor (rows) of a cumulative model.

    p_k = F(c_k - eta) - F(c_{k-1} - eta), c_0 = -inf, c_K = inf, in one
    vectorised expression (K separate ``pm.logp`` graphs compile for tens of
    seconds). For the logit link it uses the exact identity
    F(b) - F(a) = F(b) F(-a) (1 - exp(a - b)), stable in both tails; for
    probit, PyMC's ``log_diff_normal_cdf``.

    Examples
    --------
    >>> import numpy as np
    >>> lp = ordinal_log_probs(pt.as_tensor(np.zeros(1)), pt.as_tensor(np.array([-1.0, 1.0])), "logit").eval()
    >>> np.exp(lp).round(3).tolist()
    [[0.269, 0.462, 0.269]]
    """
    x = cutpoints[None, :] - eta[:, None]  # (C, K - 1)
    if link == "probit":
        first = normal_lcdf(0.0, 1.0, x[:, :1])
        last = normal_lcdf(0.0, 1.0, -x[:, -1:])
        middle = log_diff_normal_cdf(0.0, 1.0, x[:, 1:], x[:, :-1])
    else:
        first = -pt.softplus(-x[:, :1])
        last = -pt.softplus(x[:, -1:])
        a, b = x[:, :-1], x[:, 1:]
        middle = -pt.softplus(-b) - pt.softplus(a) + pt.log1mexp(a - b)
    return pt.concatenate([first, middle, last], axis=1)

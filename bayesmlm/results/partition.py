"""The variance partition of a random-intercept model: each level's share, and the correlations it implies.

With random intercepts only, the outcome's variance (on the latent scale for
a logit link) is the sum of one variance per grouping factor and the residual
variance: total = sum_f tau_f^2 + sigma^2 (pi^2/3 for logit, the variance of
the standard logistic distribution). Each level's *share* is its variance
over the total. Two observations that share the groups of a set S of factors
(and differ in the others) correlate by sum_{f in S} tau_f^2 / total: for
pupils in classes in schools, two pupils of the same class correlate by
(tau_school^2 + tau_class^2) / total, two of the same school but different
classes by tau_school^2 / total. A factor nested in another is always shared
with its parent. Computed per draw, so every number has its posterior; the
same function reads point estimates (the REML column of a comparison).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import UnsupportedModelError
from ..schema import SIGMA, sd_var

__all__ = ["LOGIT_RESIDUAL_VARIANCE", "partition_of", "posterior_partition", "intercept_variances", "residual_variance"]

LOGIT_RESIDUAL_VARIANCE = np.pi**2 / 3


def intercept_variances(design, sd_of) -> dict:
    """Per grouping factor, the variance of its random intercept, from ``sd_of(block_label)``.

    Refuses a model with random slopes: its between-group variance depends on
    the predictors, so no single partition exists.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> intercept_variances(m.design, lambda label: 2.0)
    {'batch': 4.0, 'batch:cask': 4.0}
    """
    slopes = [f"{b.label}: {t}" for b in design.blocks for t in b.terms if t != "(Intercept)"]
    if slopes:
        raise ValueError("The variance partition (and the ICC) is defined for random-intercept models; this model has "
                         f"random slopes ({', '.join(slopes)}), so the share of variance between groups depends on the "
                         "predictors. Fit the model with random intercepts only, e.g. 'y ~ 1 + (1 | school/class)'.")
    return {b.group: sd_of(b.label) ** 2 for b in design.blocks}


def residual_variance(design, sigma=None, nu=None):
    """The residual variance: sigma^2 (gaussian), sigma^2 nu / (nu - 2) (student, ``nu`` given; NaN where
    nu <= 2, which has none), pi^2/3 for a logit and 1 for a probit link (the latent scale); others are refused.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), family="binomial",
    ...                  trials="size")
    >>> round(residual_variance(m.design), 3)
    3.29
    """
    fam = design.spec.family
    if fam.name == "student":
        if nu is None:
            raise UnsupportedModelError("A variance partition of a student model needs its nu: pass nu=.")
        out = sigma**2 * nu / (nu - 2)
        return out.where(nu > 2) if isinstance(out, xr.DataArray) else (out if nu > 2 else np.nan)
    if fam.has_sigma:
        return sigma**2
    if fam.link == "logit":
        return LOGIT_RESIDUAL_VARIANCE
    if fam.link == "probit":
        return 1.0
    raise UnsupportedModelError(f"A variance partition for the {fam.link} link ({fam.name} family) is not defined "
                                "here: its residual variance depends on the mean. It is for gaussian and logit models.")


def _sets(factors: tuple[str, ...], parents: dict) -> list[tuple[str, tuple[str, ...]]]:
    """(label, factors shared) for each correlation row: each factor with its parents, then all factors."""
    out = []
    for f in factors:
        shared = (*parents[f], f)
        others = [g for g in factors if g not in shared]
        out.append((f"same {f}" + (f", different {', '.join(others)}" if others else ""), shared))
    every = tuple(factors)
    if all(set(s) != set(every) for _, s in out):
        out.append(("same " + " and ".join(factors), every))
    return out


def partition_of(variances: dict, residual, parents: dict) -> xr.DataArray:
    """Shares and correlations from the variances, over a dimension ``component``.

    Parameters
    ----------
    variances : dict of str to DataArray or float
        Per grouping factor, its random-intercept variance (draws or a point estimate).
    residual : DataArray or float
        The residual variance (sigma^2, or pi^2/3 on the logit latent scale).
    parents : dict of str to tuple of str
        Per factor, the factors it is nested in
        (:attr:`bayesmlm.design.structure.FactorStructure.parents`).

    Returns
    -------
    DataArray
        Dimension ``component`` (labels such as ``"school"``, ``"Residual"``,
        ``"same school:class"``) with a coordinate ``quantity``: ``"share"``
        (one per factor and the residual) or ``"correlation"`` (two or more factors).

    Examples
    --------
    >>> p = partition_of({"school": 2.0, "school:class": 1.0}, 1.0, {"school": (), "school:class": ("school",)})
    >>> dict(zip(p.component.values.tolist(), p.values.round(2).tolist()))
    {'school': 0.5, 'school:class': 0.25, 'Residual': 0.25, 'same school, different school:class': 0.5, 'same school:class': 0.75}
    """
    factors = tuple(variances)
    total = sum(variances.values()) + residual
    parts = [(f, "share", variances[f] / total) for f in factors] + [("Residual", "share", residual / total)]
    if len(factors) > 1:
        parts += [(label, "correlation", sum(variances[f] for f in shared) / total)
                  for label, shared in _sets(factors, parents)]
    values = [xr.DataArray(v) if not isinstance(v, xr.DataArray) else v for _, _, v in parts]
    out = xr.concat([v.expand_dims(component=[c]) for (c, _, _), v in zip(parts, values)], dim="component")
    return out.assign_coords(quantity=("component", [q for _, q, _ in parts])).rename("variance_partition")


def posterior_partition(design, posterior, parents: dict) -> xr.DataArray:
    """:func:`partition_of` per draw of a posterior Dataset (``sd_<block>``, ``sigma``).

    Examples
    --------
    >>> posterior_partition(fit.design, fit.posterior, fit.structure.parents)  # doctest: +SKIP
    """
    variances = intercept_variances(design, lambda label: posterior[sd_var(label)].squeeze(drop=True))
    sigma = posterior[SIGMA] if design.spec.family.has_sigma else None
    nu = posterior["nu"] if design.spec.family.name == "student" else None
    out = partition_of(variances, residual_variance(design, sigma, nu), parents)
    return out.transpose("chain", "draw", "component")


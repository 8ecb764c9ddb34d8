"""The family's own parameters, beside the regression's: residual scale, Student-t degrees of freedom,
negative binomial shape, and a cumulative model's thresholds.

Tables have the summary columns of :func:`bayesmlm.results.fit.summarise_draws`
(mean, sd, lower, upper, ess_bulk, r_hat).
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from ..schema import NU, PHI, SIGMA, THRESHOLD_DIM, THRESHOLDS

__all__ = ["FAMILY_PARAMETER_NOTES", "family_parameter_draws", "threshold_draws", "notes_column"]

FAMILY_PARAMETER_NOTES = {
    SIGMA: "residual SD",
    NU: "Student-t degrees of freedom (small: heavy tails; large: near gaussian)",
    PHI: "negative binomial shape: var = mu + mu^2 / phi (large: near poisson)",
}


def family_parameter_draws(posterior: xr.Dataset, family: str) -> dict[str, xr.DataArray]:
    """Draws of the family's scalar parameters, by name (none for bernoulli, binomial, poisson, cumulative).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> post = xr.Dataset({"nu": (("chain", "draw"), np.ones((1, 3))), "sigma": (("chain", "draw"), np.ones((1, 3)))})
    >>> list(family_parameter_draws(post, "student"))
    ['sigma', 'nu']
    """
    names = {"gaussian": (SIGMA,), "student": (SIGMA, NU), "negbinomial": (PHI,)}.get(family, ())
    return {n: posterior[n] for n in names if n in posterior}


def threshold_draws(posterior: xr.Dataset) -> xr.DataArray:
    """A cumulative model's thresholds, dims (chain, draw, threshold), labelled ``"low|high"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> post = xr.Dataset({"thresholds": (("chain", "draw", "threshold"), np.zeros((1, 2, 1)))},
    ...                   coords={"threshold": ["1|2"]})
    >>> threshold_draws(post).dims
    ('chain', 'draw', 'threshold')
    """
    if THRESHOLDS not in posterior:
        raise ValueError("This fit has no thresholds: they belong to a cumulative (ordinal) model, family='cumulative'.")
    return posterior[THRESHOLDS].transpose("chain", "draw", THRESHOLD_DIM)


def notes_column(names) -> pd.Series:
    """The note of each family parameter, as a Series by name.

    Examples
    --------
    >>> notes_column(["phi"]).index.tolist()
    ['phi']
    """
    return pd.Series([FAMILY_PARAMETER_NOTES.get(n, "") for n in names], index=list(names))

"""Model comparison by PSIS-LOO (ArviZ), for gaussian and generalized fits alike.

The pointwise log-likelihood comes from :func:`bayesmlm.predict.predictive.pointwise_log_likelihood`:
log p(y_i | gamma, u, sigma), given the random effects of the row's own
group. LOO therefore leaves out one observation, not one group: it asks how
well each model predicts a new respondent of a country it has seen. Pareto k
above ArviZ's threshold (``good_k``, 0.7 from about 2,200 draws on) marks rows
whose LOO estimate is unreliable; :func:`compare` warns, naming the model and
the count, and the table carries the numbers.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.utils import ELPDDataLOO

from ..predict.ordinal import category_values
from ..predict.predictive import pointwise_log_likelihood
from ..schema import is_parameter
from .psis import psis_loo

__all__ = ["loo", "compare", "relative_efficiency"]


def loo(fit, draws: int | None = None):
    """PSIS-LOO of one fit, as ArviZ's ELPD data (pointwise elpd and Pareto k included).

    The importance weights are ArviZ's PSIS, computed for all rows at once
    (:mod:`bayesmlm.comparison.psis`), with ArviZ's relative efficiency (mean ESS of
    the population parameters over the number of draws), ArviZ's totals and
    threshold ``good_k``; the weights themselves are not kept.

    Parameters
    ----------
    fit : Fit
    draws : int, optional
        Use at most this many posterior draws in all (memory is rows x draws).

    Returns
    -------
    arviz_stats.utils.ELPDDataLOO
        ``elpd``, ``se``, ``p``, ``good_k``, ``warning``, and per row
        ``elpd_i`` and ``pareto_k`` (dim ``obs``).

    Examples
    --------
    >>> res = loo(fit)  # doctest: +SKIP
    >>> res.elpd, res.se  # doctest: +SKIP
    """
    ll = pointwise_log_likelihood(fit, draws=draws)
    n_samples = ll.sizes["chain"] * ll.sizes["draw"]
    r_eff = relative_efficiency(fit.posterior.sel(chain=ll["chain"], draw=ll["draw"]))
    elpd_i, p_loo_i, k = psis_loo(ll.values.reshape(n_samples, -1), r_eff)
    obs = {"obs": ll["obs"].values}
    elpd_i = xr.DataArray(elpd_i, dims="obs", coords=obs, name="y")
    elpd, se, p, _ = elpd_i.azstats.loo_summary(xr.DataArray(p_loo_i, dims="obs", coords=obs))
    good_k = min(1 - 1 / np.log10(n_samples), 0.7) if n_samples > 1 else 0.7
    return ELPDDataLOO(elpd=float(elpd), se=float(se), p=float(p), n_samples=n_samples, n_data_points=ll.sizes["obs"],
                       scale="log", warning=bool(np.any(k > good_k)), good_k=good_k, elpd_i=elpd_i,
                       pareto_k=xr.DataArray(k, dims="obs", coords=obs, name="y"), approx_posterior=False)


def relative_efficiency(post: xr.Dataset) -> float:
    """ArviZ's r_eff: mean ESS ("mean" method) of the population parameters over the number of draws.

    Examples
    --------
    >>> relative_efficiency(fit.posterior)  # doctest: +SKIP
    0.83
    """
    if post.sizes["chain"] == 1:
        return 1.0
    params = [v for v in post.data_vars if is_parameter(v, random_effects=False)]
    ess = az.ess(post[params], method="mean")
    values = np.hstack([np.ravel(ess[v].values) for v in ess.data_vars])
    return float(np.mean(values) / (post.sizes["chain"] * post.sizes["draw"]))


def _outcome(design) -> np.ndarray:
    """The outcome as observed: a cumulative model's category codes back to their values (ratings 1-10, say)."""
    if design.categories is None:
        return design.y
    return category_values(design.categories)[design.y.astype(np.intp)]


def _check_same_data(fits: dict) -> None:
    names = list(fits)
    first = fits[names[0]].design
    for name in names[1:]:
        d = fits[name].design
        if d.n_obs != first.n_obs or not np.array_equal(_outcome(d), _outcome(first)):
            raise ValueError(f"Models '{names[0]}' and '{name}' were not fitted to the same outcome rows ({first.n_obs} and "
                             f"{d.n_obs} rows): LOO compares models of the same data. Fit them on the same rows (mind rows "
                             "dropped for missing values in predictors that only one model uses).")


def compare(fits: dict, *, draws: int | None = None, method: str = "stacking") -> pd.DataFrame:
    """Rank fits of the same data by their expected log predictive density (PSIS-LOO).

    Parameters
    ----------
    fits : dict of str to Fit
        Two or more fits of the same outcome rows, by name.
    draws : int, optional
        Use at most this many posterior draws of each fit.
    method : str
        How model weights are computed: ``"stacking"`` (default),
        ``"BB-pseudo-BMA"`` or ``"pseudo-BMA"`` (see ``arviz.compare``).

    Returns
    -------
    DataFrame
        ArviZ's comparison table, best model first: rank, elpd, se (of elpd),
        p (effective parameters), elpd_diff and dse (difference from the best
        model and its standard error), weight, and ArviZ's diagnostic texts;
        plus ``pareto_k_max`` and ``n_high_k`` (rows with k above ``good_k``).
        Numbers are not rounded.

    Warns
    -----
    UserWarning
        When a model has rows with Pareto k above ``good_k``.

    Examples
    --------
    >>> import bayesmlm
    >>> table = bayesmlm.compare({"m0": f0, "m1": f1, "m2": f2})  # doctest: +SKIP
    >>> table.index[0]  # doctest: +SKIP
    'm2'
    """
    if not isinstance(fits, dict) or len(fits) < 2:
        raise ValueError("compare() takes a dict of two or more fits by name, e.g. {'m0': f0, 'm1': f1}.")
    for name, fit in fits.items():
        if not hasattr(fit, "design") or not hasattr(fit, "idata"):
            raise ValueError(f"fits['{name}'] is a {type(fit).__name__}, not a bayesmlm Fit.")
    _check_same_data(fits)
    results = {name: loo(fit, draws=draws) for name, fit in fits.items()}
    table = az.compare(results, method=method, round_to="none")
    k_max = {n: float(np.nanmax(r.pareto_k.values)) for n, r in results.items()}
    n_high = {n: int(np.sum(r.pareto_k.values > r.good_k)) for n, r in results.items()}
    table["pareto_k_max"] = pd.Series(k_max)
    table["n_high_k"] = pd.Series(n_high)
    bad = [f"'{n}': {n_high[n]} of {results[n].n_data_points} rows (max k {k_max[n]:.2f} > {results[n].good_k:.2f})"
           for n in results if n_high[n]]
    if bad:
        warnings.warn("PSIS-LOO may be unreliable where Pareto k is high, in " + "; ".join(bad) + ". Those rows are "
                      "influential: check them, draw more, or compare by K-fold cross-validation.", UserWarning, stacklevel=2)
    return table

"""Predictions from a fit's posterior: population-level, group-level, or for new groups.

For each posterior draw the linear predictor of a row is

    eta = X gamma + sum over random blocks of Z u_j  (+ offset),

and the prediction is eta itself (``kind="link"``) or the inverse link of it
(``kind="mean"``): the mean of a gaussian outcome, the probability of a
success for bernoulli and binomial models (per trial, as lme4's
``predict(type = "response")``), the expected count for poisson and
negbinomial models (the offset included), the expected rating for cumulative
models (sum_k p_k x value_k, the categories' numbers where they are numbers,
else 1..K); ``kind="probs"`` gives a cumulative model's probability of each
category (see :mod:`bayesmlm.predict.ordinal`). Which u_j enters is ``groups``:

- ``"include"``: each row's own group's u_j; a group the fit has not seen
  gets, per draw, a u drawn from the fitted random-effects distribution
  N(0, T) (with a warning that names those groups);
- ``"exclude"``: no random effects (u = 0), the population-level prediction
  at the "typical" group;
- ``"new"``: every group is treated as unseen: a fresh u per group and draw
  from N(0, T), so the intervals hold the between-group variation.

A group's drawn u is shared by all of its rows within a draw.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit

from ..arguments import check_probability, check_seed
from ..design.newdata import new_data_design
from ..errors import DataError
from ..sample.draws import block_cholesky
from .linpred import CHUNK, draws_within_memory, linear_predictor, posterior_draws, thin
from .ordinal import category_log_probs, category_values

__all__ = ["predict", "KINDS", "GROUPS"]

KINDS = ("mean", "link", "draws", "probs")
GROUPS = ("include", "exclude", "new")
_INVERSE = {"identity": lambda x: x, "logit": expit, "log": np.exp}
_SCALE = {"gaussian": "mean of the outcome", "student": "mean of the outcome (the centre of the Student-t)",
          "bernoulli": "probability of a 1", "binomial": "probability of a success per trial",
          "poisson": "expected count (offset included)", "negbinomial": "expected count (offset included)",
          "cumulative": "expected rating (sum over categories of probability x category value)"}
_LINK = {"identity": "outcome scale (identity link)", "logit": "log odds (logit link)", "log": "log rate (log link)"}
_LATENT = {"logit": "latent scale (logit link; thresholds not subtracted)", "probit": "latent scale (probit link; thresholds not subtracted)"}


def _rows(fit, newdata, groups: str):
    """X, Z per block, each row's level index and label per factor, offset, and the row labels."""
    design = fit.design
    if newdata is None:
        design.require_rows("predict() without newdata", "Pass newdata= with the rows to predict, or fit the model from a DataFrame.")
        labels = {n: np.asarray(f.levels, dtype=object)[f.index] for n, f in design.factors.items()}
        index = {n: f.index for n, f in design.factors.items()}
        return (design.X, tuple(b.Z for b in design.blocks), index, labels, design.offset,
                pd.RangeIndex(design.n_obs, name="obs"))
    nd = new_data_design(design, newdata, groups=groups != "exclude")
    return nd.X, nd.Z, nd.index, nd.labels, nd.offset, newdata.index


def _random_effects(fit, post: xr.Dataset, d, index: dict, labels: dict, groups: str, rng) -> tuple[tuple, tuple, str]:
    """Per block: u (S, J + K, q) with K drawn new levels appended, each row's index into it; and a note."""
    design = fit.design
    us, idxs, new_by_factor = [], [], {}
    for b, u in zip(design.blocks, d.u):
        idx = index[b.group].copy()
        if groups == "new":
            idx[:] = -1
        unseen = idx < 0
        if not unseen.any():
            us.append(u)
            idxs.append(idx)
            continue
        new_levels, inverse = np.unique(labels[b.group][unseen], return_inverse=True)
        new_by_factor[b.group] = new_levels
        L = block_cholesky(post, b)
        z = rng.standard_normal((d.n, len(new_levels), b.q))
        u_new = np.einsum("sqr,skr->skq", L, z)
        idx[unseen] = u.shape[1] + inverse
        us.append(np.concatenate([u, u_new], axis=1))
        idxs.append(idx)
    note = ""
    if new_by_factor:
        parts = [f"{len(v)} level(s) of '{g}'" + (f" ({', '.join(map(str, v[:5]))}{', ...' if len(v) > 5 else ''})"
                                                  if groups == "include" else "") for g, v in new_by_factor.items()]
        note = (f"{'; '.join(parts)} {'not in the fitted data' if groups == 'include' else 'treated as new groups'}: "
                "their random effects are drawn, per posterior draw, from the fitted random-effects distribution N(0, T).")
        if groups == "include":
            warnings.warn(note + " Pass groups='exclude' for population-level predictions.", UserWarning, stacklevel=4)
    return tuple(us), tuple(idxs), note


def _category_table(fit, d, u, X, Z, idx, offset, row_index, prob: float, attrs: dict) -> pd.DataFrame:
    """Posterior of each row's probability of each category: rows (row, category), columns mean, sd, lower, upper."""
    cats = fit.design.categories
    n, K = X.shape[0], len(cats)
    step = max(1, CHUNK // (d.n * K))
    alpha = (1 - prob) / 2
    table = np.empty((n, K, 4))
    for start in range(0, n, step):
        r = slice(start, min(start + step, n))
        eta = linear_predictor(d.beta, u, X[r], tuple(z[r] for z in Z), tuple(i[r] for i in idx),
                               None if offset is None else offset[r])
        p = np.exp(category_log_probs(eta, d.thresholds, fit.design.spec.family.link))
        q = np.quantile(p, [alpha, 1 - alpha], axis=0)
        table[r] = np.stack([p.mean(axis=0), p.std(axis=0, ddof=1), q[0], q[1]], axis=-1)
    index = pd.MultiIndex.from_product([np.asarray(row_index), list(cats)], names=[row_index.name or "row", "category"])
    frame = pd.DataFrame(table.reshape(n * K, 4), columns=["mean", "sd", "lower", "upper"], index=index)
    frame.attrs = {**attrs, "scale": "probability of each category"}
    return frame


def predict(fit, newdata: pd.DataFrame | None = None, kind: str = "mean", groups: str = "include", *, prob: float = 0.95,
            draws: int | None = None, seed: int | None = None):
    """Posterior predictions of the mean (or the linear predictor) for the fitted or new rows.

    Parameters
    ----------
    fit : Fit
    newdata : DataFrame, optional
        Rows to predict, with the model's predictor columns (and grouping
        columns, unless ``groups="exclude"``, and the offset column where the
        fit has one). Default: the fitted rows.
    kind : str
        ``"mean"``: a table of the inverse-link mean (see the module notes for
        each family); ``"link"``: a table on the link scale; ``"draws"``: the
        draws of the mean as a DataArray (chain, draw, obs).
    groups : str
        ``"include"``, ``"exclude"`` or ``"new"`` (see the module notes).
    prob : float
        Mass of the equal-tailed interval (columns lower, upper).
    draws : int, optional
        Use at most this many posterior draws in all. Tables are computed a
        block of rows at a time, so they need little memory with all draws;
        ``"draws"`` holds rows x draws doubles and is thinned, with a
        warning, past :data:`bayesmlm.predict.linpred.MAX_VALUES`.
    seed : int, optional
        Seed for the random effects of new groups.

    Returns
    -------
    DataFrame or DataArray
        For ``"mean"`` and ``"link"``, columns mean, sd, lower, upper, one row
        per row of ``newdata`` (same index); ``attrs`` say the scale and how
        new groups were handled. For ``"draws"``, a DataArray with the same
        ``attrs``.

    Examples
    --------
    >>> fit.predict(kind="link", groups="exclude").head()  # doctest: +SKIP
    >>> predict(fit, pd.DataFrame({"Days": [0, 9], "Subject": ["new", "new"]}), groups="new")  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind '{kind}'. Valid kinds: {', '.join(KINDS)}.")
    ordinal = fit.design.spec.family.name == "cumulative"
    if kind == "probs" and not ordinal:
        raise ValueError(f"kind='probs' is the probability of each category of a cumulative (ordinal) model; this model's "
                         f"family is '{fit.design.spec.family.name}'. Use kind='mean'.")
    if groups not in GROUPS:
        raise ValueError(f"Unknown groups '{groups}'. Valid options: {', '.join(GROUPS)}.")
    prob = check_probability(prob)
    seed = check_seed(seed)
    family = fit.design.spec.family
    X, Z, index, labels, offset, row_index = _rows(fit, newdata, groups)
    if kind == "draws":
        draws = draws_within_memory(fit.posterior, X.shape[0], draws, "predict(kind='draws')")
    d = posterior_draws(fit, draws)
    if groups == "exclude":
        u, idx, Z, note = (), (), (), "population level: random effects set to zero"
    else:
        u, idx, note = _random_effects(fit, thin(fit.posterior, draws), d, index, labels, groups, np.random.default_rng(seed))
    link_scale = _LATENT[family.link] if ordinal else _LINK[family.link]
    attrs = {"scale": link_scale if kind == "link" else _SCALE[family.name], "groups": groups, "note": note}
    if kind == "probs":
        return _category_table(fit, d, u, X, Z, idx, offset, row_index, prob, attrs)
    if kind == "link":
        inverse = lambda x: x  # noqa: E731
    elif ordinal:
        rating = category_values(fit.design.categories)
        inverse = lambda eta: np.exp(category_log_probs(eta, d.thresholds, family.link)) @ rating  # noqa: E731
    else:
        inverse = _INVERSE[family.link]
    n = X.shape[0]
    step = max(1, CHUNK // (d.n * (len(fit.design.categories) if ordinal else 1)))
    alpha = (1 - prob) / 2
    table = np.empty((n, 4))
    out = np.empty((d.n, n)) if kind == "draws" else None
    for start in range(0, n, step):
        r = slice(start, min(start + step, n))
        values = inverse(linear_predictor(d.beta, u, X[r], tuple(z[r] for z in Z), tuple(i[r] for i in idx),
                                          None if offset is None else offset[r]))
        if out is not None:
            out[:, r] = values
            continue
        q = np.quantile(values, [alpha, 1 - alpha], axis=0)
        table[r] = np.column_stack([values.mean(axis=0), values.std(axis=0, ddof=1), q[0], q[1]])
    values = out if out is not None else table
    if not np.isfinite(values).all():
        rows = ~np.isfinite(values).all(axis=0 if out is not None else 1)
        raise DataError(f"The predictions of {int(rows.sum())} row(s) are not finite (first at row {int(np.argmax(rows))}): "
                        f"the linear predictor overflows the inverse link there. Check those rows of newdata for values "
                        "far outside the fitted data, or predict with kind='link'.")
    if out is not None:
        da = xr.DataArray(out.reshape(*d.shape, n), dims=("chain", "draw", "obs"),
                          coords={**d.coords, "obs": np.asarray(row_index)}, name="mean")
        da.attrs = attrs
        return da
    frame = pd.DataFrame(table, columns=["mean", "sd", "lower", "upper"], index=row_index)
    frame.attrs = attrs
    return frame

"""Plot of a predictive check: replicated outcomes against the observed ones.

Reads the DataTree of :meth:`bayesmlm.Fit.ppc` (posterior predictive) or
:meth:`bayesmlm.MLM.prior_predictive` (prior predictive). Two panels:

- ``dist``: the outcome's distribution. Gaussian: the density (histogram
  outline, one bin per value when the outcome is an integer scale) of each
  of ``n_draws`` replicates, and the observed one on top;
  bernoulli and poisson: the share of rows at each value 0, 1, 2, ... with
  the replicates' interval; binomial: as gaussian, for the proportion
  successes / trials (with at most 60 rows: each row's proportion against
  the replicates' intervals).
- ``groups``: per group, the observed mean of the outcome (proportion for
  binomial) against the replicates' 50% and ``prob`` intervals, groups
  sorted by the observed value; the check that matters for a multilevel model.
  Where replicates reach a hundred times the observed means (wide priors),
  the axis is symmetric-log so the data stay visible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..arguments import check_probability, check_seed
from .visuals import check_visuals, style

__all__ = ["plot_predictive"]

VISUALS = ("replicates", "observed", "intervals", "groups", "legend")
_MAX_VALUES = 40
_FEW_ROWS = 60


def _read(tree, group: str | None):
    present = [g for g in ("posterior_predictive", "prior_predictive") if g in tree.children]
    if group is None:
        if not present:
            raise ValueError("The data has no posterior_predictive or prior_predictive group; pass fit.ppc() or "
                             "model.prior_predictive().")
        group = present[0]
    elif group not in present:
        raise ValueError(f"No '{group}' group in the data; it has: {', '.join(present) or 'neither predictive group'}.")
    rep = tree[group]["y"].transpose("chain", "draw", "obs").values
    rep = rep.reshape(-1, rep.shape[-1]).astype(float)
    obs = tree["observed_data"]["y"].values.astype(float)
    attrs = tree["observed_data"].attrs
    const = tree["constant_data"].to_dataset() if "constant_data" in tree.children else None
    return group, rep, obs, attrs, const


def _density_panel(ax, rep, obs, draws, visuals, xlabel):
    pooled = np.concatenate([rep[draws].ravel(), obs])
    lo, hi = np.nanpercentile(pooled, [0.5, 99.5])
    lo, hi = min(lo, obs.min()), max(hi, obs.max())
    if np.all(obs == np.round(obs)) and len(np.unique(obs)) <= _MAX_VALUES and hi - lo <= 3 * _MAX_VALUES:
        bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0)  # an integer scale: one bin per value
    else:
        bins = np.linspace(lo, hi, int(np.clip(2 * np.sqrt(len(obs)), 10, 40)) + 1)
    centres = (bins[:-1] + bins[1:]) / 2
    kw = style(visuals, "replicates", color="C0", alpha=0.25, lw=0.8)
    if kw is not None:
        for i, d in enumerate(draws):
            ax.plot(centres, np.histogram(rep[d], bins=bins, density=True)[0], label="replicates" if i == 0 else None, **kw)
    kw = style(visuals, "observed", color="black", lw=2)
    if kw is not None:
        ax.plot(centres, np.histogram(obs, bins=bins, density=True)[0], label="observed", **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    return {"bins": bins}


def _counts_panel(ax, rep, obs, prob, visuals, xlabel, categories=None):
    top = len(categories) - 1 if categories else int(min(max(obs.max(), np.nanpercentile(rep, 99)), _MAX_VALUES))
    values = np.arange(top + 1)
    share_rep = np.stack([(rep == v).mean(axis=1) for v in values], axis=1)
    share_obs = np.array([(obs == v).mean() for v in values])
    alpha = (1 - prob) / 2
    lo, mid, hi = np.quantile(share_rep, [alpha, 0.5, 1 - alpha], axis=0)
    kw = style(visuals, "replicates", color="C0", alpha=0.35, width=0.7)
    if kw is not None:
        ax.bar(values, hi - lo, bottom=lo, label=f"replicates, {100 * prob:g}%", **kw)
    kw = style(visuals, "observed", color="black", marker="o", ls="none", ms=5)
    if kw is not None:
        ax.plot(values, share_obs, label="observed", **kw)
    ax.set_xlabel(xlabel + (f" (values above {top} not shown)" if obs.max() > top else ""))
    ax.set_ylabel("share of rows")
    if categories:
        ax.set_xticks(values, labels=categories)
    else:
        ax.set_xticks(values if top <= 12 else values[:: max(1, top // 10)])
    return {"values": values, "observed": share_obs, "lower": lo, "median": mid, "upper": hi}


def _groups_panel(ax, rep, obs, labels, weights, prob, visuals, ylabel, factor):
    codes, levels = pd.factorize(labels, sort=True)
    w = np.ones_like(obs) if weights is None else weights
    tot = np.bincount(codes, weights=w, minlength=len(levels))
    obs_g = np.bincount(codes, weights=obs, minlength=len(levels)) / tot
    rep_g = np.stack([np.bincount(codes, weights=r, minlength=len(levels)) for r in rep]) / tot
    order = np.argsort(obs_g)
    alpha = (1 - prob) / 2
    q = np.quantile(rep_g, [alpha, 0.25, 0.75, 1 - alpha], axis=0)[:, order]
    x = np.arange(len(levels))
    kw = style(visuals, "intervals", color="C0")
    if kw is not None:
        ax.vlines(x, q[0], q[3], lw=1, label=f"replicates, {100 * prob:g}%", **kw)
        ax.vlines(x, q[1], q[2], lw=3.5, label="replicates, 50%", **kw)
    kw = style(visuals, "observed", color="black", marker="o", ls="none", ms=4)
    if kw is not None:
        kw.pop("lw", None)
        ax.plot(x, obs_g[order], label="observed", **kw)
    if len(levels) <= 40:
        ax.set_xticks(x, np.asarray(levels)[order], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"{factor} (sorted by observed)")
    ax.set_ylabel(ylabel)
    spread = np.nanmax(np.abs(q[3])) if q.size else 0.0
    if spread > 100 * max(np.nanmax(np.abs(obs_g)), 1e-12):
        ax.set_yscale("symlog", linthresh=max(np.nanmax(np.abs(obs_g)), 1e-12))  # wide priors: keep the data visible
        if np.nanmin(q[0]) >= 0:
            ax.set_ylim(bottom=0)
    return {"groups": list(np.asarray(levels)[order]), "observed": obs_g[order], "lower": q[0], "upper": q[3]}


def plot_predictive(tree, *, group: str | None = None, factor: str | None = None, n_draws: int = 50, prob: float = 0.95,
                    seed: int = 0, figsize: tuple[float, float] = (11, 4), visuals: dict | None = None) -> Figure:
    """Replicated outcomes against the observed ones: distribution, and means per group.

    Parameters
    ----------
    tree : DataTree
        From :meth:`bayesmlm.Fit.ppc` or :meth:`bayesmlm.MLM.prior_predictive`.
    group : str, optional
        ``"posterior_predictive"`` or ``"prior_predictive"``; default: the one present.
    factor : str, optional
        Grouping factor of the ``groups`` panel; default: the first.
    n_draws : int
        Replicates drawn as lines in the gaussian and binomial density panel.
    prob : float
        Mass of the outer intervals.
    seed : int
        Which replicates are drawn (a seed for the choice).
    figsize : tuple
    visuals : dict, optional
        Per element, matplotlib keyword arguments, or False to leave it out:
        ``replicates``, ``observed``, ``intervals`` (groups panel),
        ``groups`` (False: the distribution panel alone), ``legend``.

    Returns
    -------
    Figure
        Its ``plotted`` attribute holds the numbers drawn, per panel.

    Examples
    --------
    >>> fig = plot_predictive(fit.ppc(draws=200, seed=1))  # doctest: +SKIP
    >>> fig.savefig("ppc.png")  # doctest: +SKIP
    """
    prob = check_probability(prob)
    visuals = check_visuals(visuals, VISUALS, "plot_predictive")
    group, rep, obs, attrs, const = _read(tree, group)
    family, outcome = attrs.get("family", "gaussian"), attrs.get("outcome", "y")
    trials = const["trials"].values.astype(float) if const is not None and "trials" in const else None
    factors = [v.split(":", 1)[1] for v in (const.data_vars if const is not None else []) if v.startswith("group:")]
    show_groups = style(visuals, "groups") is not None and factors
    fig = Figure(figsize=figsize if show_groups else (figsize[0] / 2, figsize[1]), layout="constrained")
    axes = fig.subplots(1, 2 if show_groups else 1, squeeze=False)[0]
    what = "prior" if group == "prior_predictive" else "posterior"
    plotted = {}
    if family == "binomial" and trials is not None and len(obs) <= _FEW_ROWS:
        plotted["dist"] = _groups_panel(axes[0], rep, obs, np.arange(len(obs)), trials, prob, visuals,
                                        f"proportion {outcome}", "row")
    elif family == "binomial" and trials is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            prop_rep, prop_obs = rep / trials, obs / trials
        keep = trials > 0
        draws = np.random.default_rng(check_seed(seed)).choice(rep.shape[0], size=min(n_draws, rep.shape[0]), replace=False)
        plotted["dist"] = _density_panel(axes[0], prop_rep[:, keep], prop_obs[keep], draws, visuals,
                                         f"proportion {outcome}")
    elif family in ("bernoulli", "poisson", "negbinomial"):
        plotted["dist"] = _counts_panel(axes[0], rep, obs, prob, visuals, outcome)
    elif family == "cumulative":
        plotted["dist"] = _counts_panel(axes[0], rep, obs, prob, visuals, f"{outcome} (category)",
                                        [str(c) for c in attrs.get("categories", [])] or None)
    else:
        draws = np.random.default_rng(check_seed(seed)).choice(rep.shape[0], size=min(n_draws, rep.shape[0]), replace=False)
        plotted["dist"] = _density_panel(axes[0], rep, obs, draws, visuals, outcome)
    first = "each row" if "groups" in plotted["dist"] else "distribution"
    axes[0].set_title(f"{what} predictive check: {first}", fontsize=10)
    if show_groups:
        factor = factor or factors[0]
        if factor not in factors:
            raise ValueError(f"Unknown factor '{factor}'. Factors in the data: {', '.join(factors)}.")
        labels = const[f"group:{factor}"].values
        ylabel = (f"proportion {outcome}" if family in ("binomial", "bernoulli") else
                  f"mean {outcome} category (0 = lowest)" if family == "cumulative" else f"mean {outcome}")
        plotted["groups"] = _groups_panel(axes[1], rep, obs, labels, trials, prob, visuals, ylabel, factor)
        axes[1].set_title(f"{what} predictive check: {ylabel} per {factor}", fontsize=10)
    kw = style(visuals, "legend", fontsize=8, frameon=False)
    if kw is not None:
        axes[0].legend(**kw)
    fig.plotted = plotted
    return fig

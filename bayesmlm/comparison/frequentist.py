"""Compare: a posterior beside the REML (or ML) fit of the same model.

:func:`compare_frequentist` puts :func:`bayesmlm.comparison.statsmodels_reml.fit_frequentist` of a
Fit's design beside the Fit's posterior summaries (``fit.fixef()``,
``fit.varcorr()``, ``fit.ranef()``) in a :class:`Comparison`. The Bayesian
model is never refitted; what statsmodels cannot fit exactly (see
:mod:`bayesmlm.comparison.statsmodels_reml`) is refused, never approximated.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from scipy.stats import norm

from ..arguments import check_probability
from ..report.render import Note, Section, Table
from .statsmodels_reml import fit_frequentist

__all__ = ["Comparison", "compare_frequentist"]


_BAYES = {"mean": "bayes_mean", "sd": "bayes_sd", "lower": "bayes_lower", "upper": "bayes_upper"}


@dataclass(frozen=True, eq=False, repr=False)
class Comparison:
    """A posterior and the REML (or ML) fit of the same model, side by side.

    Made by :func:`compare_frequentist` (or :meth:`bayesmlm.Fit.compare_frequentist`).
    Every ``diff_in_sd`` is (posterior mean - frequentist estimate) / posterior SD.

    Attributes
    ----------
    method : str
        ``"reml"`` or ``"ml"``.
    formula : str
    factor : str
        The grouping factor.
    prob : float
        Mass of the credible intervals, and level of the Wald intervals.
    fixed : DataFrame
        Index term; columns bayes_mean, bayes_sd, bayes_lower, bayes_upper,
        freq_estimate, freq_se, freq_lower, freq_upper (Wald), diff_in_sd.
    variance : DataFrame
        Columns group, var1, var2 (lme4's ``as.data.frame(VarCorr())``),
        bayes_mean, bayes_sd, bayes_lower, bayes_upper, freq_estimate,
        boundary (the estimate is on the boundary: an SD of 0, a correlation of
        +-1), diff_in_sd. SDs, correlations, then the residual SD.
    groups : DataFrame
        Index (group, term); columns bayes_mean, bayes_sd, bayes_lower,
        bayes_upper (of u_j), freq_estimate (the conditional mode, BLUP),
        freq_se (its conditional SD), diff_in_sd.
    singular : bool
        lme4's ``isSingular()`` of the frequentist fit.
    converged : bool
        Whether statsmodels reports convergence.
    loglik : float
        The maximised REML or ML log-likelihood.
    optimizer : str
        The statsmodels optimizer whose fit was kept.
    notes : tuple of str
        Warnings statsmodels raised while fitting.

    Examples
    --------
    >>> cmp = fit.compare_frequentist()  # doctest: +SKIP
    >>> cmp.fixed[["bayes_mean", "freq_estimate", "diff_in_sd"]]  # doctest: +SKIP
    >>> cmp.variance.query("boundary")  # doctest: +SKIP
    """

    method: str
    formula: str
    factor: str
    prob: float
    fixed: pd.DataFrame
    variance: pd.DataFrame
    groups: pd.DataFrame
    singular: bool
    converged: bool
    loglik: float
    optimizer: str
    notes: tuple[str, ...]

    @property
    def label(self) -> str:
        """``"REML"`` or ``"ML"``."""
        return self.method.upper()

    def section(self) -> Section:
        """The comparison as a report :class:`~bayesmlm.report.render.Section` (text, HTML and Markdown).

        Examples
        --------
        >>> print(fit.compare_frequentist().section().to_markdown())  # doctest: +SKIP
        """
        pct = f"{100 * self.prob:g}%"
        intro = (f"Formula: {self.formula}. Posterior mean, SD and {pct} credible interval beside the {self.label} "
                 f"estimate (statsmodels MixedLM, {self.optimizer}; log-likelihood {self.loglik:.2f}), its standard "
                 f"error and {pct} Wald interval; diff_in_sd is (posterior mean - estimate) / posterior SD.")
        blocks = [Note(intro), Table(self.fixed, "Fixed effects", name="frequentist_fixed"),
                  Table(self.variance, "Random-effect SDs, correlations and residual SD", name="frequentist_variance")]
        flagged = self.variance[self.variance["boundary"]]
        if self.singular or len(flagged):
            names = ", ".join(f"{g}: {a}" + (f" ~ {b}" if b else "")
                              for g, a, b in zip(flagged.group, flagged.var1, flagged.var2))
            blocks.append(Note(f"The {self.label} fit is singular (as lme4's isSingular): "
                               f"{names or 'a variance component'} on the boundary. The posterior keeps the "
                               "uncertainty that the point estimate drops.", "warn"))
        if not self.converged:
            blocks.append(Note(f"statsmodels did not report convergence for the {self.label} fit.", "bad"))
        blocks += [Note(f"statsmodels: {n}", "warn") for n in self.notes]
        blocks.append(Table(_group_agreement(self.groups), f"Random effects by {self.factor}: posterior means "
                            "against BLUPs", name="frequentist_groups"))
        return Section(f"Posterior against {self.label}", tuple(blocks), key="frequentist")

    def plot(self, *, terms=None, visuals: dict | None = None):
        """Fixed effects interval beside interval, and BLUPs against posterior means per group.

        See :func:`bayesmlm.plots.comparison.comparison_plot` for the options.

        Examples
        --------
        >>> fig = fit.compare_frequentist().plot()  # doctest: +SKIP
        """
        from ..plots.comparison import comparison_plot

        return comparison_plot(self, terms=terms, visuals=visuals)

    def __str__(self) -> str:
        return self.section().to_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.section().to_html()


def _group_agreement(groups: pd.DataFrame) -> pd.DataFrame:
    """Per term: how closely the posterior means of u_j follow the BLUPs."""
    rows = {}
    for term, g in groups.groupby(level="term", sort=False):
        rows[term] = {"groups": len(g), "correlation": g["bayes_mean"].corr(g["freq_estimate"]),
                      "max_abs_diff_in_sd": g["diff_in_sd"].abs().max()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("term")


def _side_by_side(bayes: pd.DataFrame, freq: pd.DataFrame) -> pd.DataFrame:
    out = bayes[list(_BAYES)].rename(columns=_BAYES).join(freq)
    out["diff_in_sd"] = (out["bayes_mean"] - out["freq_estimate"]) / out["bayes_sd"]
    return out


def compare_frequentist(fit, method: str = "reml", prob: float = 0.95) -> Comparison:
    """The same model fitted by REML (or ML) beside a fit's posterior.

    Reads the posterior through ``fit.fixef()``, ``fit.varcorr()`` and
    ``fit.ranef()``; never refits it. The frequentist fit is
    :func:`fit_frequentist` of ``fit.design``.

    Parameters
    ----------
    fit : Fit
    method : str
        ``"reml"`` (default) or ``"ml"``.
    prob : float
        Mass of the credible intervals and level of the Wald intervals.

    Returns
    -------
    Comparison

    Raises
    ------
    UnsupportedModelError
        Where MixedLM cannot fit the model (a family other than gaussian,
        several grouping factors).

    Examples
    --------
    >>> cmp = compare_frequentist(fit)  # doctest: +SKIP
    >>> cmp.fixed[["bayes_mean", "freq_estimate", "diff_in_sd"]]  # doctest: +SKIP
    >>> cmp.plot().savefig("compare.png")  # doctest: +SKIP
    """
    prob = check_probability(prob)
    ff = fit_frequentist(fit.design, method)
    factor = fit.design.spec.groups[0]
    z = norm.ppf(0.5 + prob / 2)
    freq = ff.fixed.rename(columns={"estimate": "freq_estimate", "se": "freq_se"})
    freq["freq_lower"] = freq["freq_estimate"] - z * freq["freq_se"]
    freq["freq_upper"] = freq["freq_estimate"] + z * freq["freq_se"]
    fixed = _side_by_side(fit.fixef(prob), freq)
    keys = ["group", "var1", "var2"]
    variance = fit.varcorr(prob).set_index(keys)[list(_BAYES)].rename(columns=_BAYES)
    variance = variance.join(ff.variance.set_index(keys).rename(columns={"estimate": "freq_estimate"}), how="outer")
    variance = variance.loc[list(ff.variance.set_index(keys).index)]
    variance["diff_in_sd"] = (variance["bayes_mean"] - variance["freq_estimate"]) / variance["bayes_sd"]
    groups = _side_by_side(fit.ranef(prob, factor), ff.ranef.rename(columns={"estimate": "freq_estimate", "se": "freq_se"}))
    return Comparison(method=method, formula=fit.formula, factor=factor, prob=prob, fixed=fixed,
                      variance=variance.reset_index(), groups=groups, singular=ff.singular, converged=ff.converged,
                      loglik=ff.loglik, optimizer=ff.optimizer, notes=ff.notes)

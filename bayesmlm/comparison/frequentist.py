"""Compare: a posterior beside lme4's fit of the same model (REML, ML or glmer's Laplace).

:func:`compare_frequentist` puts the frequentist engine's fit of a Fit's
design (:func:`bayesmlm.frequentist_engine.design_fit.fit_design`: lme4's
profiled REML/ML for gaussian models, glmer's Laplace approximation for the
others, any number of grouping factors) beside the Fit's posterior summaries
(``fit.fixef()``, ``fit.varcorr()``, ``fit.ranef()``) in a :class:`Comparison`.
The Bayesian model is never refitted. A frequentist fit that did not converge,
or is singular, is flagged in every table and figure that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..arguments import check_probability
from ..frequentist_engine.design_fit import default_method, fit_design
from ..design.structure import factor_structure
from ..report.render import Note, Section, Table
from ..results.partition import intercept_variances, partition_of, residual_variance
from ..schema import safe_name

__all__ = ["FrequentistTables", "frequentist_tables", "Comparison", "compare_frequentist"]

_TOL = 1e-4  # lme4's isSingular(tol = 1e-4)
_LABELS = {"reml": "REML", "ml": "ML", "laplace": "Laplace"}


@dataclass(frozen=True, eq=False)
class FrequentistTables:
    """lme4's fit of a design in the comparison's layout (by block label, as the posterior's tables).

    Attributes
    ----------
    method : str
        ``"reml"``, ``"ml"`` or ``"laplace"``.
    fixed : DataFrame
        Index term; columns estimate, se (lme4's ``vcov()``).
    variance : DataFrame
        lme4's ``as.data.frame(VarCorr())`` rows with the posterior's block
        labels: group, var1, var2, estimate (SDs, correlations, the residual
        SD for gaussian models) and boundary (an SD of zero or a correlation
        of +-1, what makes lme4 call a fit singular).
    ranef : dict of str to DataFrame
        Per grouping factor, index (group, term); columns estimate (the
        conditional mode) and se (its conditional SD, lme4's ``condVar``).
    singular, converged : bool
    loglik : float
        The maximised (REML) log-likelihood, or its Laplace approximation.
    optimizer : str
        The optimiser and its number of evaluations.
    notes : tuple of str
        The optimiser's and the convergence checks' messages.
    thresholds : DataFrame or None
        A cumulative model's thresholds (ordinal::clmm's), index term; columns
        estimate, se. None for other families.
    """

    method: str
    fixed: pd.DataFrame
    variance: pd.DataFrame
    ranef: dict
    singular: bool
    converged: bool
    loglik: float
    optimizer: str
    notes: tuple[str, ...]
    thresholds: pd.DataFrame | None = None


def frequentist_tables(design, method: str | None = None) -> FrequentistTables:
    """The frequentist engine's fit of a design, in the layout of the posterior's tables.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> frequentist_tables(m.design).fixed.round(3)
                 estimate     se
    term
    (Intercept)   251.405  6.825
    Days           10.467  1.546
    """
    method = (method or default_method(design.spec.family.name)).lower()
    ff = fit_design(design, method)
    scale = ff.sigma if ff.sigma is not None else 1.0
    vc = {(str(r.grp).split(".")[0] if r.grp != "Residual" else "Residual",
           "" if pd.isna(r.var1) else r.var1, "" if pd.isna(r.var2) else r.var2): float(r.sdcor)
          for r in ff.varcorr.itertuples()}
    rows = []
    for b in design.blocks:
        for t in b.terms:
            sd = vc[(b.group, t, "")]
            rows.append((b.label, t, "", sd, bool(sd / scale < _TOL)))
        if b.correlated:
            for i, a in enumerate(b.terms):
                for c in b.terms[i + 1:]:
                    cor = vc.get((b.group, a, c), vc.get((b.group, c, a)))
                    rows.append((b.label, a, c, cor, bool(not np.isfinite(cor) or abs(cor) > 1 - _TOL)))
    if ff.sigma is not None:
        rows.append(("Residual", "", "", ff.sigma, False))
    variance = pd.DataFrame(rows, columns=["group", "var1", "var2", "estimate", "boundary"])
    ranef = {f: t.rename(columns={"condval": "estimate", "condsd": "se"}) for f, t in ff.ranef.items()}
    log = ff.optimizer
    optimizer = f"{log.optimizer}, {log.evaluations} evaluations" if log is not None else ""
    thresholds = None if ff.thresholds is None else ff.thresholds.set_index("term")
    return FrequentistTables(method=method, fixed=ff.fixed.set_index("term"), variance=variance, ranef=ranef,
                             singular=ff.singular, converged=ff.converged, loglik=ff.loglik, optimizer=optimizer,
                             notes=tuple(ff.warnings), thresholds=thresholds)


_BAYES = {"mean": "bayes_mean", "sd": "bayes_sd", "lower": "bayes_lower", "upper": "bayes_upper"}


@dataclass(frozen=True, eq=False, repr=False)
class Comparison:
    """A posterior and the REML (or ML) fit of the same model, side by side.

    Made by :func:`compare_frequentist` (or :meth:`bayesmlm.Fit.compare_frequentist`).
    Every ``diff_in_sd`` is (posterior mean - frequentist estimate) / posterior SD.

    Attributes
    ----------
    method : str
        ``"reml"``, ``"ml"`` or ``"laplace"``.
    formula : str
    factor : str
        The grouping factor of ``groups``.
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
        Whether the optimiser converged and lme4's gradient and Hessian checks
        passed; a fit that did not is flagged wherever it is shown.
    loglik : float
        The maximised (REML) log-likelihood, or its Laplace approximation.
    optimizer : str
        The optimiser and its number of evaluations.
    notes : tuple of str
        The optimiser's and the convergence checks' messages.
    groups_by_factor : dict of str to DataFrame
        ``groups``' layout for every grouping factor (``groups`` is the one of ``factor``).
    partition : DataFrame or None
        For random-intercept models (gaussian or logit): the posterior of
        :meth:`bayesmlm.Fit.variance_partition` (bayes_mean, bayes_sd,
        bayes_lower, bayes_upper) beside the same shares and correlations
        computed from the frequentist estimates (freq_estimate), index
        (quantity, component); None where no partition is defined.
    thresholds : DataFrame or None
        A cumulative model's thresholds in ``fixed``'s layout (ordinal::clmm's
        estimates beside :meth:`bayesmlm.Fit.thresholds`); None otherwise.

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
    groups_by_factor: dict = field(default_factory=dict)
    partition: pd.DataFrame | None = None
    thresholds: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        """``"REML"``, ``"ML"`` or ``"Laplace"``."""
        return _LABELS[self.method]

    def section(self) -> Section:
        """The comparison as a report :class:`~bayesmlm.report.render.Section` (text, HTML and Markdown).

        Examples
        --------
        >>> print(fit.compare_frequentist().section().to_markdown())  # doctest: +SKIP
        """
        pct = f"{100 * self.prob:g}%"
        intro = (f"Formula: {self.formula}. Posterior mean, SD and {pct} credible interval beside the {self.label} "
                 f"estimate ({"ordinal::clmm" if self.thresholds is not None else "lme4"}'s method, bayesmlm's engine: {self.optimizer}; log-likelihood {self.loglik:.2f}), "
                 f"its standard error and {pct} Wald interval; diff_in_sd is (posterior mean - estimate) / posterior SD.")
        blocks = [Note(intro), Table(self.fixed, "Fixed effects", name="frequentist_fixed")]
        if self.thresholds is not None:
            blocks.append(Table(self.thresholds, "Thresholds (latent scale)", name="frequentist_thresholds"))
        blocks += [Table(self.variance, "Random-effect SDs, correlations and residual SD", name="frequentist_variance")]
        flagged = self.variance[self.variance["boundary"]]
        if self.singular or len(flagged):
            names = ", ".join(f"{g}: {a}" + (f" ~ {b}" if b else "")
                              for g, a, b in zip(flagged.group, flagged.var1, flagged.var2))
            blocks.append(Note(f"The {self.label} fit is singular (as lme4's isSingular): "
                               f"{names or 'a variance component'} on the boundary. The posterior keeps the "
                               "uncertainty that the point estimate drops.", "warn"))
        if not self.converged:
            blocks.append(Note(f"The {self.label} fit did not converge: its numbers are not an optimum, so do not "
                               "read the differences below as disagreement.", "bad"))
        blocks += [Note(f"{self.label} fit: {n}", "warn") for n in self.notes]
        if self.partition is not None:
            blocks.append(Table(self.partition, f"Variance partition: posterior beside the {self.label} estimates' "
                                "shares and correlations", name="frequentist_partition"))
        for f, groups in (self.groups_by_factor or {self.factor: self.groups}).items():
            blocks.append(Table(_group_agreement(groups), f"Random effects by {f}: posterior means against BLUPs",
                                name="frequentist_groups" if f == self.factor else f"frequentist_groups_{safe_name(f)}"))
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


def compare_frequentist(fit, method: str | None = None, prob: float = 0.95, factor: str | None = None) -> Comparison:
    """The same model fitted as lme4 does (REML, ML or Laplace) beside a fit's posterior.

    Reads the posterior through ``fit.fixef()``, ``fit.varcorr()`` and
    ``fit.ranef()``; never refits it. The frequentist fit is
    :func:`frequentist_tables` of ``fit.design``.

    Parameters
    ----------
    fit : Fit
    method : str, optional
        ``"reml"`` (default for gaussian models) or ``"ml"``; ``"laplace"``
        (glmer's nAGQ = 1, the default and only method for other families).
    prob : float
        Mass of the credible intervals and level of the Wald intervals.
    factor : str, optional
        The grouping factor whose random effects ``groups`` holds; default:
        the first (``groups_by_factor`` holds every factor).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> cmp = compare_frequentist(fit)  # doctest: +SKIP
    >>> cmp.fixed[["bayes_mean", "freq_estimate", "diff_in_sd"]]  # doctest: +SKIP
    >>> cmp.plot().savefig("compare.png")  # doctest: +SKIP
    """
    prob = check_probability(prob)
    ff = frequentist_tables(fit.design, method)
    factor = fit.design.spec.factor(factor)
    z = norm.ppf(0.5 + prob / 2)
    freq = _wald(ff.fixed, z)
    fixed = _side_by_side(fit.fixef(prob), freq)
    thresholds = None
    if ff.thresholds is not None:
        thresholds = _side_by_side(fit.thresholds(prob), _wald(ff.thresholds, z))
    keys = ["group", "var1", "var2"]
    variance = fit.varcorr(prob).set_index(keys)[list(_BAYES)].rename(columns=_BAYES)
    variance = variance.join(ff.variance.set_index(keys).rename(columns={"estimate": "freq_estimate"}), how="outer")
    variance = variance.loc[list(ff.variance.set_index(keys).index)]
    variance["diff_in_sd"] = (variance["bayes_mean"] - variance["freq_estimate"]) / variance["bayes_sd"]
    by_factor = {f: _side_by_side(fit.ranef(prob, f), ff.ranef[f].rename(columns={"estimate": "freq_estimate",
                                                                                   "se": "freq_se"}))
                 for f in fit.design.spec.groups}
    return Comparison(method=ff.method, formula=fit.formula, factor=factor, prob=prob, fixed=fixed,
                      variance=variance.reset_index(), groups=by_factor[factor], singular=ff.singular,
                      converged=ff.converged, loglik=ff.loglik, optimizer=ff.optimizer, notes=ff.notes,
                      groups_by_factor=by_factor, partition=_partition_beside(fit, ff, prob), thresholds=thresholds)


def _wald(table: pd.DataFrame, z: float) -> pd.DataFrame:
    freq = table.rename(columns={"estimate": "freq_estimate", "se": "freq_se"})
    freq["freq_lower"] = freq["freq_estimate"] - z * freq["freq_se"]
    freq["freq_upper"] = freq["freq_estimate"] + z * freq["freq_se"]
    return freq


def _partition_beside(fit, ff: FrequentistTables, prob: float) -> pd.DataFrame | None:
    """The posterior's variance partition beside the one the frequentist estimates give; None where undefined."""
    try:
        bayes = fit.variance_partition(prob)
    except ValueError:  # random slopes, or a link without a partition: the posterior side says why
        return None
    est = ff.variance.set_index(["group", "var1", "var2"])["estimate"]
    variances = intercept_variances(fit.design, lambda label: est[(label, "(Intercept)", "")])
    sigma = est.get(("Residual", "", "")) if fit.design.spec.family.has_sigma else None
    point = partition_of(variances, residual_variance(fit.design, sigma), factor_structure(fit.design).parents)
    out = bayes[list(_BAYES)].rename(columns=_BAYES)
    out["freq_estimate"] = point.values
    out["diff_in_sd"] = (out["bayes_mean"] - out["freq_estimate"]) / out["bayes_sd"]
    return out

"""Stage 5, results: a Fit over the posterior DataTree, and its tables.

Every table has the columns mean, sd, lower, upper (an equal-tailed credible
interval, ``prob=0.95`` by default), ess_bulk and r_hat, and real labels in
its index: terms, and groups as they appear in the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..arguments import check_probability
from ..design.levels import level_structure
from ..design.matrices import Design
from ..design.priors import Prior, priors_table
from ..design.structure import factor_structure
from ..sample.convergence import rhat_and_ess
from ..sample.nuts import Diagnostics
from ..schema import (
    FIXED,
    FIXED_DIM,
    SIGMA,
    cor_var,
    level_dim,
    pair_dim,
    sd_var,
    split_pair,
    term_dim,
    u_var,
)
from .family import family_parameter_draws, notes_column, threshold_draws
from .format import format_values
from .partition import posterior_partition
from .record import FitRecord
from .store import read_fit, save_fit

__all__ = ["Fit", "Summary", "load", "summarise_draws", "COLUMNS"]

COLUMNS = ["mean", "sd", "lower", "upper", "ess_bulk", "r_hat"]


def summarise_draws(da: xr.DataArray, prob: float = 0.95) -> pd.DataFrame:
    """Summary columns of posterior draws, one row per element.

    Parameters
    ----------
    da : DataArray
        Dimensions ``chain``, ``draw`` and any others; the others' coordinates
        become the index (a MultiIndex for two or more).
    prob : float
        Mass of the equal-tailed credible interval.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.random.default_rng(1).normal(size=(4, 1000, 2)), dims=("chain", "draw", "term"),
    ...                   coords={"term": ["a", "b"]})
    >>> bool(summarise_draws(da).loc["a", "lower"] < -1.8)
    True
    """
    prob = check_probability(prob)
    other = [d for d in da.dims if d not in ("chain", "draw")]
    alpha = (1 - prob) / 2
    q = da.quantile([alpha, 1 - alpha], dim=("chain", "draw"))
    r_hat, ess_bulk = rhat_and_ess(da)  # ArviZ's numbers, every element at once
    cols = {
        "mean": da.mean(("chain", "draw")),
        "sd": da.std(("chain", "draw"), ddof=1),
        "lower": q.isel(quantile=0, drop=True),
        "upper": q.isel(quantile=1, drop=True),
        "ess_bulk": ess_bulk,
        "r_hat": r_hat,
    }
    if not other:
        return pd.DataFrame({k: [float(v)] for k, v in cols.items()})
    frame = pd.DataFrame({k: np.ravel(v.transpose(*other).values) for k, v in cols.items()})
    frame.index = pd.MultiIndex.from_product([list(da[d].values) for d in other], names=other) if len(other) > 1 \
        else pd.Index(list(da[other[0]].values), name=other[0])
    return frame


class Summary(pd.DataFrame):
    """The summary table; prints like lme4's ``summary(lmer(...))``.

    A DataFrame (index: section, parameter) whose text form adds the formula,
    the diagnostics and the sampler settings. Slices are plain DataFrames.
    """

    _metadata = ["_text"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def __repr__(self) -> str:
        return getattr(self, "_text", None) or pd.DataFrame.__repr__(self)

    __str__ = __repr__


class Fit:
    """A fitted model: the posterior and the tables read off it.

    Made by :meth:`bayesmlm.MLM.fit`; read back with :func:`bayesmlm.load`.

    Attributes
    ----------
    design : Design
        The data and design matrices that were fitted.
    prior_dict : dict of str to Prior
        The priors used, by name.
    idata : DataTree
        ArviZ data: ``posterior`` (``fixef``, ``sd_<group>``, ``cor_<group>``,
        ``u_<group>``, ``sigma``) and ``sample_stats``.
    record : FitRecord
    """

    def __init__(self, design: Design, prior_dict: dict[str, Prior], idata, record: FitRecord):
        self.design = design
        self.prior_dict = prior_dict
        self.idata = idata
        self.record = record

    # -- small accessors -------------------------------------------------
    @property
    def formula(self) -> str:
        """The combined mixed formula."""
        return self.design.spec.formula

    @property
    def converged(self) -> bool:
        """Whether R-hat, ESS and divergences pass (see :mod:`bayesmlm.sample.nuts`)."""
        return self.record.diagnostics.converged

    @property
    def diagnostics(self) -> Diagnostics:
        """Max R-hat, min ESS, divergences and flagged parameters."""
        return self.record.diagnostics

    @property
    def structure(self):
        """How the grouping factors relate: nested, crossed (see :func:`bayesmlm.design.structure.factor_structure`)."""
        return factor_structure(self.design)

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an xarray Dataset."""
        return self.idata["posterior"].to_dataset()

    def priors(self) -> pd.DataFrame:
        """The table of priors this fit used (see :func:`bayesmlm.design.priors.priors_table`)."""
        return priors_table(self.prior_dict, self.design)

    # -- draws -------------------------------------------------------------
    def fixef_draws(self) -> xr.DataArray:
        """Draws of the fixed effects, dims (chain, draw, term)."""
        return self.posterior[FIXED].rename({FIXED_DIM: "term"})

    def ranef_draws(self, factor: str | None = None) -> xr.DataArray:
        """Draws of the random effects u_j of one factor, dims (chain, draw, group, term).

        Examples
        --------
        >>> fit.ranef_draws().dims  # doctest: +SKIP
        ('chain', 'draw', 'group', 'term')
        """
        factor = self.design.spec.factor(factor)
        parts = [self.posterior[u_var(b.label)].rename({level_dim(factor): "group", term_dim(b.label): "term"})
                 for b in self.design.blocks if b.group == factor]
        return xr.concat(parts, dim="term").transpose("chain", "draw", "group", "term")

    def coef_draws(self, factor: str | None = None) -> xr.DataArray:
        """Draws of the group-specific coefficients b_kj (level-2 predictors included).

        b_kj = sum_m gamma_km W_mj + u_kj over level-1 terms k; dims (chain,
        draw, group, term).
        """
        factor = self.design.spec.factor(factor)
        ls = level_structure(self.design, factor)
        A = xr.DataArray(ls.loadings(), dims=("group", "term", "fixed"),
                         coords={"group": list(self.design.factors[factor].levels), "term": list(ls.level1_terms)})
        gamma = self.posterior[FIXED].rename({FIXED_DIM: "fixed"}).drop_vars("fixed")
        total = xr.dot(A, gamma, dim="fixed")
        u = self.ranef_draws(factor)
        total = total + u.reindex(term=list(ls.level1_terms), fill_value=0.0)
        return total.transpose("chain", "draw", "group", "term")

    def _varcorr_draws(self) -> list[tuple[str, str, str, xr.DataArray]]:
        rows = []
        for b in self.design.blocks:
            sd = self.posterior[sd_var(b.label)]
            for t in b.terms:
                rows.append((b.label, t, "", sd.sel({term_dim(b.label): t}, drop=True)))
            if b.correlated:
                cor = self.posterior[cor_var(b.label)]
                for pair in cor[pair_dim(b.label)].values:
                    a, c = split_pair(str(pair), b.terms)
                    rows.append((b.label, a, c, cor.sel({pair_dim(b.label): pair}, drop=True)))
        if self.design.spec.family.has_sigma:
            rows.append(("Residual", "", "", self.posterior[SIGMA]))
        return rows

    def icc_draws(self, factor: str | None = None) -> xr.DataArray:
        """Draws of the intraclass correlation tau_00 / (tau_00 + sigma^2) of one factor.

        Defined for random-intercept models (each grouping factor has only a
        random intercept); with several factors, the denominator holds all
        their variances, so it is the factor's share in
        :meth:`variance_partition`. For logit models the residual variance is
        pi^2/3 (the latent-scale ICC).
        """
        factor = self.design.spec.factor(factor)
        return self.variance_partition_draws().sel(component=factor, drop=True).rename("icc")

    def variance_partition_draws(self) -> xr.DataArray:
        """Draws of the variance partition, dims (chain, draw, component); see :meth:`variance_partition`.

        Examples
        --------
        >>> fit.variance_partition_draws().sel(component="same school:class")  # doctest: +SKIP
        """
        return posterior_partition(self.design, self.posterior, self.structure.parents)

    # -- tables ------------------------------------------------------------
    def fixef(self, prob: float = 0.95) -> pd.DataFrame:
        """Fixed effects gamma, indexed by term (lme4's names).

        Examples
        --------
        >>> fit.fixef().loc["Days", "mean"]  # doctest: +SKIP
        10.47
        """
        return _on_scale(summarise_draws(self.fixef_draws(), prob), self)

    def ranef(self, prob: float = 0.95, factor: str | None = None) -> pd.DataFrame:
        """Random effects u_j of one grouping factor, indexed by (group, term).

        ``factor``: its name as in the formula (``"school:class"`` for
        classes nested in schools); default: the first the formula names.

        Examples
        --------
        >>> fit.ranef().loc[("308", "Days"), "mean"]  # doctest: +SKIP
        9.2
        """
        return _on_scale(summarise_draws(self.ranef_draws(factor), prob), self)

    def coef(self, prob: float = 0.95, factor: str | None = None) -> pd.DataFrame:
        """Group-specific coefficients gamma + u_j (level-2 predictors folded in), by (group, term).

        As lme4's ``coef()``: per factor, the fixed effects plus that factor's
        own random effects; for classes nested in schools the coefficients of
        ``"school:class"`` do not add the school's effect. ``factor`` as for
        :meth:`ranef`.

        Examples
        --------
        >>> fit.coef().loc[("308", "Days"), "mean"]  # doctest: +SKIP
        19.7
        """
        return _on_scale(summarise_draws(self.coef_draws(factor), prob), self)

    def varcorr(self, prob: float = 0.95) -> pd.DataFrame:
        """SDs and correlations of the random effects, and the residual SD.

        The layout of lme4's ``as.data.frame(VarCorr(fit))``: columns group,
        var1, var2 (empty except for correlations), then the summary columns.

        Examples
        --------
        >>> fit.varcorr().query("group == 'Residual'")["mean"]  # doctest: +SKIP
        """
        out = []
        for group, v1, v2, da in self._varcorr_draws():
            row = summarise_draws(da, prob).iloc[0].to_dict()
            out.append({"group": group, "var1": v1, "var2": v2, **row})
        return _on_scale(pd.DataFrame(out, columns=["group", "var1", "var2", *COLUMNS]), self)

    def icc(self, prob: float = 0.95) -> pd.DataFrame:
        """Posterior of the intraclass correlation, one row per grouping factor.

        Examples
        --------
        >>> fit_m0.icc().loc["country", "mean"]  # doctest: +SKIP
        0.086
        """
        rows = [summarise_draws(self.icc_draws(f), prob).set_axis([f]) for f in self.design.spec.groups]
        out = pd.concat(rows).rename_axis("group")
        family = self.design.spec.family
        if family.link == "probit":
            out.attrs["scale"] = "latent scale: the residual variance of the probit link's latent outcome is 1"
        elif not family.has_sigma:
            out.attrs["scale"] = ("latent scale: the residual variance of the logit link's latent outcome is pi^2/3 "
                                  "(about 3.29)")
        elif family.name == "student":
            out.attrs["scale"] = ("residual variance sigma^2 nu / (nu - 2), the Student-t's variance (draws with "
                                  "nu <= 2 have none and are left out)")
        return out

    def family_parameters(self, prob: float = 0.95) -> pd.DataFrame:
        """The family's own parameters: sigma (gaussian, student), nu (student), phi (negbinomial).

        Empty for families without any (bernoulli, binomial, poisson, cumulative: see :meth:`thresholds`).

        Examples
        --------
        >>> fit_nb.family_parameters().loc["phi", "mean"]  # doctest: +SKIP
        1.9
        """
        draws = family_parameter_draws(self.posterior, self.design.spec.family.name)
        if not draws:
            return pd.DataFrame(columns=[*COLUMNS, "note"], index=pd.Index([], name="parameter"))
        out = pd.concat([summarise_draws(da, prob).set_axis([n]) for n, da in draws.items()]).rename_axis("parameter")
        return out.assign(note=notes_column(out.index))

    def thresholds(self, prob: float = 0.95) -> pd.DataFrame:
        """A cumulative model's ordered thresholds on the latent scale, one row per boundary ``"low|high"``.

        P(y <= k) = F(threshold_k - eta), F the link's CDF; there is no intercept (the thresholds absorb it).

        Examples
        --------
        >>> fit_ord.thresholds().index.tolist()  # doctest: +SKIP
        ['1|2', '2|3', '3|4', '4|5']
        """
        out = summarise_draws(threshold_draws(self.posterior), prob)
        out.attrs["scale"] = f"latent scale ({self.design.spec.family.link} link)"
        return out

    def variance_partition(self, prob: float = 0.95) -> pd.DataFrame:
        """Each level's share of the variance, and the correlation of two observations that share groups.

        For random-intercept models (:mod:`bayesmlm.results.partition`).
        Index (quantity, component): ``("share", factor)`` is tau_f^2 / total
        for each grouping factor (its ICC), ``("share", "Residual")`` sigma^2 /
        total; with two or more factors, ``("correlation", "same school:class")``
        is the correlation of two observations in the same class (so the same
        school), ``("correlation", "same school, different school:class")`` of
        two in the same school but different classes. For logit models on the
        latent scale (residual variance pi^2/3), said in ``attrs["scale"]``.

        Examples
        --------
        >>> fit.variance_partition().loc[("share", "school"), "mean"]  # doctest: +SKIP
        0.16
        """
        draws = self.variance_partition_draws()
        table = summarise_draws(draws.drop_vars("quantity"), prob)
        table.index = pd.MultiIndex.from_arrays([draws["quantity"].values, table.index], names=["quantity", "component"])
        table.attrs["scale"] = _partition_scale(self.design.spec.family)
        return table

    def summary(self, prob: float = 0.95) -> Summary:
        """All population-level parameters in one table that prints like lme4's summary.

        Examples
        --------
        >>> print(fit.summary())  # doctest: +SKIP
        Bayesian linear mixed model fit by NUTS (nutpie), method: full
        Formula: Reaction ~ 1 + Days + (1 + Days | Subject)
        ...
        """
        fe = self.fixef(prob)
        vc = self.varcorr(prob)
        vc_index = [f"{g}: {a}" + (f" ~ {b}" if b else "") if g != "Residual" else "Residual" for g, a, b in
                    zip(vc.group, vc.var1, vc.var2)]
        parts = [fe.assign(section="fixed").set_index("section", append=True).reorder_levels([1, 0]),
                 vc[COLUMNS].set_axis(pd.MultiIndex.from_arrays([["random"] * len(vc), vc_index]))]
        extra = self._family_sections(prob)
        parts += [t[COLUMNS].set_axis(pd.MultiIndex.from_arrays([[section] * len(t), list(t.index)]))
                  for section, t in extra.items()]
        table = pd.concat(parts)
        table.index.names = ["section", "parameter"]
        out = Summary(table)
        out._text = _summary_text(self, fe, vc, prob, extra)
        return out

    def _family_sections(self, prob: float) -> dict[str, pd.DataFrame]:
        """The summary's sections beyond fixed and random: thresholds, and family parameters other than sigma."""
        out = {}
        if self.design.categories is not None:
            out["thresholds"] = self.thresholds(prob)
        fam = self.family_parameters(prob).drop(index=SIGMA, errors="ignore")
        if len(fam):
            out["family"] = fam
        return out

    def __repr__(self) -> str:
        return f"<bayesmlm.Fit {self.formula} | {self.record.method}, {self.record.settings.chains}x{self.record.settings.draws} draws>"

    # -- downstream views (each lives in its own module; a Fit never refits) --
    def compare_frequentist(self, method: str | None = None, prob: float = 0.95, factor: str | None = None):
        """The same model fitted as lme4 does (REML or ML; glmer's Laplace for other families), beside this posterior.

        See :func:`bayesmlm.comparison.frequentist.compare_frequentist`.

        Examples
        --------
        >>> fit.compare_frequentist().fixed  # doctest: +SKIP
        """
        from ..comparison.frequentist import compare_frequentist

        return compare_frequentist(self, method=method, prob=prob, factor=factor)

    def pooling(self, factor: str | None = None, prob: float = 0.95):
        """Complete-, no- and partial-pooling estimates per group and term.

        Examples
        --------
        >>> fit.pooling().head()  # doctest: +SKIP
        """
        from ..comparison.pooling import pooling

        return pooling(self, factor=factor, prob=prob)

    def predict(self, newdata=None, kind: str = "mean", groups: str = "include", *, prob: float = 0.95,
                draws: int | None = None, seed: int | None = None):
        """Predictions from the posterior, population- or group-level (see :func:`bayesmlm.predict.predictions.predict`).

        Examples
        --------
        >>> fit.predict(kind="mean").head()  # doctest: +SKIP
        """
        from ..predict.predictions import predict

        return predict(self, newdata=newdata, kind=kind, groups=groups, prob=prob, draws=draws, seed=seed)

    def ppc(self, draws: int | None = None, seed: int | None = None):
        """Posterior predictive draws as ArviZ data.

        Examples
        --------
        >>> fit.ppc()  # doctest: +SKIP
        """
        from ..predict.predictive import posterior_predictive

        return posterior_predictive(self, draws=draws, seed=seed)

    def log_likelihood(self, draws: int | None = None):
        """Pointwise log-likelihood draws (chain, draw, obs), for LOO (see :mod:`bayesmlm.predict.predictive`).

        Examples
        --------
        >>> fit.log_likelihood().shape  # doctest: +SKIP
        """
        from ..predict.predictive import pointwise_log_likelihood

        return pointwise_log_likelihood(self, draws=draws)

    def save(self, path) -> None:
        """Write the fit to one NetCDF file; :func:`bayesmlm.load` reads it back.

        Examples
        --------
        >>> fit.save("m2.nc"); bayesmlm.load("m2.nc").fixef()  # doctest: +SKIP
        """

        save_fit(self, path)


def _partition_scale(family) -> str:
    """What the variance partition's residual variance is, in words."""
    if family.link == "probit":
        return "latent scale: the residual variance of the probit link's latent outcome is 1"
    if family.name == "student":
        return "outcome scale: the residual variance is the Student-t's, sigma^2 nu / (nu - 2)"
    return _LATENT if not family.has_sigma else "outcome scale (identity link)"


_LATENT = ("latent scale: the residual variance of the logit link's latent outcome is pi^2/3 (about 3.29), the "
           "variance of the standard logistic distribution")
_SCALES = {"logit": "log odds (logit link)", "log": "log rate (log link)", "probit": "probit (latent normal) link"}


def _scale_words(family) -> str:
    """`` (on the log odds scale ...)`` for a link other than identity, else nothing."""
    if family.name == "cumulative":
        return f", on the latent {family.link} scale"
    return f", on the {_SCALES[family.link]} scale" if family.link in _SCALES else ""


def _on_scale(table: pd.DataFrame, fit: Fit) -> pd.DataFrame:
    """A table labelled with the scale of its numbers (``attrs["scale"]``)."""
    family = fit.design.spec.family
    if family.name == "cumulative":
        table.attrs["scale"] = f"latent scale ({family.link} link)"
    else:
        table.attrs["scale"] = _SCALES.get(family.link, "outcome scale (identity link)")
    return table


def _summary_text(fit: Fit, fe: pd.DataFrame, vc: pd.DataFrame, prob: float, extra: dict | None = None) -> str:
    r, d, s = fit.record, fit.record.diagnostics, fit.record.settings
    family = fit.design.spec.family
    kind = {"gaussian": "linear", "student": "linear (Student-t residuals)"}.get(
        family.name, f"generalized linear ({family.name}, {family.link} link)")
    pct = f"{100 * prob:g}%"
    lines = [f"Bayesian {kind} mixed model fit by NUTS ({s.sampler}), method: {r.method}"
             + (" (APPROXIMATE: random effects integrated out by a Laplace approximation)" if r.method == "laplace" else ""),
             f"Formula: {fit.formula}",
             f"Draws: {s.chains} chains x {s.draws} (tune {s.tune}), seed {s.seed}",
             *([f"Outcome: {fit.design.spec.response} = {fit.design.success!r} is 1"] if fit.design.success else []),
             "", f"Random effects (posterior of SDs and correlations){_scale_words(family)}:"]
    vt = vc.copy()
    vt["var1"] = vt["var1"].where(vt["var2"] == "", vt["var1"] + " ~ " + vt["var2"])
    lines.append(_table_text(vt.drop(columns="var2").rename(columns={"var1": "name", "lower": f"lower {pct}",
                                                                         "upper": f"upper {pct}"})))
    ngroups = ", ".join(f"{f.name}, {f.n_levels}" for f in fit.design.factors.values())
    lines.append(f"Number of obs: {r.n_obs}, groups:  {ngroups}" + (f"  ({r.rows_dropped} rows with missing values dropped)"
                                                                    if r.rows_dropped else ""))
    lines += ["", f"Fixed effects{_scale_words(family)}:"]
    lines.append(_table_text(fe.rename(columns={"lower": f"lower {pct}", "upper": f"upper {pct}"})))
    titles = {"thresholds": f"Thresholds (latent {family.link} scale; no intercept, the thresholds absorb it; "
                            f"categories {' < '.join(fit.design.categories or ())}):",
              "family": f"Family parameters ({family.name}):"}
    for section, table in (extra or {}).items():
        lines += ["", titles[section], _table_text(table[COLUMNS].rename(columns={"lower": f"lower {pct}",
                                                                                  "upper": f"upper {pct}"}))]
    verdict = "converged" if d.converged else "NOT converged (see the warning)"
    lines += ["", f"Diagnostics: {verdict}; max R-hat {d.max_rhat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
                  f"min tail ESS {d.min_ess_tail:.0f}, divergences {d.divergences}",
              f"Time: build {r.seconds_build:.1f} s, compile and sample {r.seconds_sample:.1f} s"]
    return "\n".join(lines)


def _table_text(df: pd.DataFrame) -> str:
    return format_values(df).to_string()


def load(path) -> Fit:
    """Read a fit written by :meth:`Fit.save`; the rows are not checked again.

    Examples
    --------
    >>> fit2 = bayesmlm.load("fit.nc")  # doctest: +SKIP
    """
    return Fit(*read_fit(path))

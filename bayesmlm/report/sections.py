"""The sections of a report on a fit: what each reportable object says, once.

Each function reads a :class:`~bayesmlm.Fit` (or an :class:`~bayesmlm.MLM`,
for what is known before fitting) and returns a :class:`bayesmlm.report.render.Section`,
which displays in a notebook and renders as Markdown, HTML or text. The
command line, the HTML report (:mod:`bayesmlm.report.html`) and the notebooks all
use these. Nothing here refits a model.

Examples
--------
>>> import bayesmlm
>>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
>>> print(equations_section(m).to_text().splitlines()[3])
  Reaction_ij = β0_j + β1_j·Days_ij + e_ij
"""

from __future__ import annotations

import io

import pandas as pd

from ..design.equations import model_equations
from ..design.structure import factor_structure
from ..plots.save import PLOTS
from ..schema import safe_name
from ..sample.nuts import ESS_MIN, RHAT_MAX
from .render import Image, Math, Note, Section, Table

__all__ = ["overview_section", "equations_section", "priors_section", "fixed_section", "variance_section",
           "diagnostics_section", "factor_sections", "plots_section", "comparison_section", "report_sections", "figure_image",
           "PLOT_CAPTIONS"]

PLOT_CAPTIONS = {
    "bar": "Each group's total effect of {term} (fixed effect plus the group's random effect) with its own {pct} "
           "interval, sorted; the population effect is the line and band.",
    "slopes": "Each group's posterior-mean line over the range of the predictor it observed; the bold line is the "
              "population line with its credible band.",
    "forest": "Each group's own posterior interval for {term} (thick 50%, thin {pct}), sorted by effect; groups "
              "with little data have wide intervals.",
    "correlation": "One point per group at its intercept and slope, with interval whiskers and the population "
                   "covariance ellipse; the title gives the correlation's posterior.",
    "shrinkage": "Each group's own least-squares estimate (no pooling) with an arrow to its partial-pooling "
                 "posterior mean: small groups move most toward the population.",
}
_SCALE = {"identity": "", "logit": " (log-odds scale)", "log": " (log scale)"}


def _pct(prob: float) -> str:
    return f"{100 * prob:g}%"


def _scale(obj) -> str:
    family = obj.design.spec.family
    if family.name == "cumulative":
        return f" (latent {family.link} scale)"
    return _SCALE[family.link]


def overview_section(fit, title: str = "") -> Section:
    """What was fitted, to which data, and how.

    Examples
    --------
    >>> overview_section(fit).to_text()  # doctest: +SKIP
    """
    d, r, s = fit.design, fit.record, fit.record.settings
    fam = d.spec.family
    groups = ", ".join(f"{f.n_levels} groups of {f.name}" for f in d.factors.values())
    blocks = [Note(title)] if title else []
    blocks += [Note(f"Model: {fit.formula} ({fam.name} family, {fam.link} link)."),
               Note(f"Data: {r.n_obs:,} observations in {groups}"
                    + (f", weighted by '{d.options['weights']}' ({_weights_meaning(fam)})" if d.options.get("weights") else "")
                    + (f"; {r.rows_dropped:,} rows with missing values dropped." if r.rows_dropped else ".")),
               Note(f"Sampling: NUTS ({s.sampler}), {s.chains} chains x {s.draws} draws after {s.tune} tuning steps, "
                    f"seed {s.seed}, method {r.method}" + (f" (log density: {r.density}"
                    + (", group effects through the Laplace map" if r.precondition == "laplace" else "") + ")"
                    if r.density else "")
                    + (" (approximate: the random effects integrated out by a Laplace approximation)"
                       if r.method == "laplace" else "")
                    + f"; {r.seconds_build + r.seconds_sample:.1f} s.")]
    return Section("Overview", tuple(blocks), key="overview")


def _weights_meaning(family) -> str:
    return "precision weights: residual variance sigma^2 / w" if family.name == "gaussian" else "each row's log-likelihood times w"


def equations_section(obj) -> Section:
    """The level-1, level-2 and combined equations (symbols as in Raudenbush and Bryk).

    Parameters
    ----------
    obj : MLM or Fit

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("tech ~ smu + (1 | country)", bayesmlm.datasets.load("wvs7_sim"))
    >>> equations_section(m).blocks[0].text
    'Level 1 (observation i in group j):'
    """
    eq = model_equations(obj.design)
    if eq.level3:
        outer, inner = factor_structure(obj.design).hierarchy
        levels = [Note(f"Level 1 (observation i in group j of {inner}, within group k of {outer}):"),
                  Math(eq.level1, eq.level1_text),
                  Note(f"Level 2 (group j of {inner} in group k of {outer}):"),
                  *(Math(a, b) for a, b in zip(eq.level2, eq.level2_text)),
                  Note(f"Level 3 (group k of {outer}):"), *(Math(a, b) for a, b in zip(eq.level3, eq.level3_text))]
    else:
        levels = [Note("Level 1 (observation i in group j):"), Math(eq.level1, eq.level1_text),
                  Note("Level 2 (group j):"), *(Math(a, b) for a, b in zip(eq.level2, eq.level2_text))]
    blocks = [*levels, Note("Random effects:"), Math(eq.random, eq.random_text),
              Note("Combined (mixed) model:"), Math(eq.combined, eq.combined_text)]
    return Section("Equations", tuple(blocks), key="equations")


def priors_section(obj) -> Section:
    """Every prior the fit uses, and whether it is a default or the user's.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> list(priors_section(m).blocks[1].frame["class"])
    ['fixed', 'fixed', 'group sd', 'residual sd']
    """
    note = Note("Defaults are weakly informative and scaled to the data (as in brms and rstanarm); any can be "
                "overridden by name.")
    return Section("Priors", (note, Table(obj.priors(), name="priors")), key="priors")


def _reading(row) -> str:
    if row["upper"] < 0:
        return "below zero"
    if row["lower"] > 0:
        return "above zero"
    return "includes zero"


def fixed_section(fit, prob: float = 0.95) -> Section:
    """The fixed effects (gamma) with their credible intervals and a plain reading of each.

    Examples
    --------
    >>> fixed_section(fit).blocks[1].frame.loc["Days", "interval"]  # doctest: +SKIP
    'above zero'
    """
    fe = fit.fixef(prob)
    fe = fe.assign(interval=fe.apply(_reading, axis=1))
    lines = [f"{t}: {row['mean']:.4g}, {_pct(prob)} interval {row['lower']:.4g} to {row['upper']:.4g} ({row['interval']})."
             for t, row in fe.iterrows() if t != "(Intercept)"]
    blocks = [Note(f"Posterior means, SDs and {_pct(prob)} credible intervals{_scale(fit)}. 'below zero' means the "
                   "whole interval is negative.")]
    blocks.append(Table(fe.rename_axis("term"), name="fixef"))
    blocks += [Note(x) for x in lines]
    return Section("Fixed effects", tuple(blocks), key="fixed")


def variance_section(fit, prob: float = 0.95) -> Section:
    """SDs and correlations of the random effects, the residual SD, the ICC and, with several factors, the variance partition.

    Examples
    --------
    >>> variance_section(fit_m0).to_text()  # doctest: +SKIP
    """
    vc = fit.varcorr(prob).rename(columns={"var1": "term", "var2": "with"})
    blocks = [Note(f"Standard deviations of the random effects{_scale(fit)} and their correlations; 'Residual' is "
                   "sigma, the spread within groups."), Table(vc, name="varcorr")]
    try:
        icc = fit.icc(prob)
    except ValueError as err:
        blocks.append(Note(f"ICC: not reported. {err}"))
    else:
        blocks.append(Table(icc, caption="Intraclass correlation tau_00 / (tau_00 + sigma^2), as a posterior", name="icc"))
        fam = fit.design.spec.family
        what = (f"the variance in {fit.design.spec.response}" if fam.has_sigma else
                "the latent-scale variance (the logit link's residual variance is pi^2/3, about 3.29)")
        for g, row in icc.iterrows():
            blocks.append(Note(f"About {100 * row['mean']:.1f}% ({_pct(prob)} interval {100 * row['lower']:.1f}% to "
                               f"{100 * row['upper']:.1f}%) of {what} lies between groups of {g}; the rest lies "
                               "within them."))
        if len(fit.design.spec.groups) > 1:
            blocks += _partition_blocks(fit, prob)
    return Section("Variance components", tuple(blocks), key="variance")


def _partition_blocks(fit, prob: float) -> list:
    """The variance partition of a model with several factors: the table and a sentence per correlation."""
    part = fit.variance_partition(prob)
    blocks = [Note(f"Variance partition{_scale(fit)}: each level's share of the total variance, and the correlation "
                   "of two observations that share the groups named (a nested factor's parent is shared with it)."),
              Table(part, caption=f"Variance partition: posterior mean, SD and {_pct(prob)} interval",
                    name="variance_partition")]
    for (quantity, name), row in part.iterrows():
        if quantity == "correlation":
            where = name.replace("same ", "in the same ", 1).replace(", different ", " but different groups of ")
            blocks.append(Note(f"Two observations {where}: correlation {row['mean']:.2f} "
                               f"({_pct(prob)} interval {row['lower']:.2f} to {row['upper']:.2f})."))
    return blocks


def factor_sections(fit, prob: float = 0.95) -> list[Section]:
    """One section per grouping factor of a model with several: its groups, its nesting, its SDs and a forest plot.

    Empty for a model with one grouping factor (the other sections cover it).

    Examples
    --------
    >>> [s.key for s in factor_sections(fit_nested)]  # doctest: +SKIP
    ['factor:batch', 'factor:batch:cask']
    """
    groups = fit.design.spec.groups
    if len(groups) < 2:
        return []
    structure = fit.structure
    vc = fit.varcorr(prob)
    out = []
    for f in groups:
        n = fit.design.factors[f].n_levels
        rel = [f"nested in {r.outer}" if r.relation == "nested" and r.inner == f else
               f"containing {r.inner}" if r.relation == "nested" else f"{r.relation} with {r.inner if r.outer == f else r.outer}"
               for r in structure.pairs.itertuples() if f in (r.outer, r.inner)]
        blocks = [Note(f"{n} groups of {f}, " + "; ".join(rel) + "."),
                  Table(vc[vc["group"].isin([b.label for b in fit.design.blocks if b.group == f])]
                        .rename(columns={"var1": "term", "var2": "with"}), caption=f"SDs and correlations of {f}",
                        name=f"varcorr_{safe_name(f)}")]
        try:
            from ..plots import forest

            fig = forest(fit, factor=f)
        except (ValueError, KeyError) as err:
            blocks.append(Note(f"forest: not drawn. {err}", "warn"))
        else:
            blocks.append(figure_image(fig, f"plots/forest_{safe_name(f)}.png",
                                       PLOT_CAPTIONS["forest"].format(term="each term", pct=_pct(prob))))
        out.append(Section(f"Groups of {f}", tuple(blocks), key=f"factor:{f}"))
    return out


def diagnostics_section(fit) -> Section:
    """Convergence checks with a verdict in plain words for each.

    Examples
    --------
    >>> diagnostics_section(fit).blocks[0].kind  # doctest: +SKIP
    'ok'
    """
    d, s = fit.diagnostics, fit.record.settings
    ess = min(d.min_ess_bulk, d.min_ess_tail)
    rows = [("max R-hat", f"{d.max_rhat:.3f}", f"<= {RHAT_MAX}", d.max_rhat <= RHAT_MAX),
            ("min bulk ESS", f"{d.min_ess_bulk:.0f}", f">= {ESS_MIN}", d.min_ess_bulk >= ESS_MIN),
            ("min tail ESS", f"{d.min_ess_tail:.0f}", f">= {ESS_MIN}", d.min_ess_tail >= ESS_MIN),
            ("divergences", str(d.divergences), "0", d.divergences == 0)]
    table = pd.DataFrame(rows, columns=["check", "value", "target", "passed"])
    if d.converged:
        blocks = [Note("The sampler converged: every check below passes, so the posterior summaries can be read.", "ok")]
    else:
        blocks = [Note("The sampler did not converge: treat these numbers as provisional and do not report them yet.",
                       "bad")]
    blocks.append(Note(f"The {s.chains} chains agree with one another (max R-hat {d.max_rhat:.3f})." if d.max_rhat <= RHAT_MAX
                       else f"The chains disagree (max R-hat {d.max_rhat:.3f} > {RHAT_MAX}): they have not found the same "
                            "posterior; draw longer chains.", "ok" if d.max_rhat <= RHAT_MAX else "bad"))
    blocks.append(Note(f"There are enough effectively independent draws for stable means and intervals (min ESS "
                       f"{ess:.0f})." if ess >= ESS_MIN else
                       f"Too few effectively independent draws (min ESS {ess:.0f} < {ESS_MIN}): intervals are noisy; "
                       f"draw more than {s.draws} per chain.", "ok" if ess >= ESS_MIN else "warn"))
    blocks.append(Note("No divergent transitions: the sampler explored the posterior without trouble." if not d.divergences
                       else f"{d.divergences} divergent transitions: the sampler struggled in part of the posterior, "
                            f"so it may be missed; raise target_accept (now {s.target_accept}) toward 0.99.",
                       "ok" if not d.divergences else "bad"))
    if d.flagged:
        blocks.append(Note("Worst parameters: " + ", ".join(d.flagged) + "."))
    blocks.append(Table(table, name="diagnostics"))
    return Section("Diagnostics", tuple(blocks), key="diagnostics")


def figure_image(fig, filename: str, caption: str, dpi: int = 110, svg: bool = False) -> Image:
    """A matplotlib Figure as an :class:`~bayesmlm.report.render.Image` (PNG, and SVG if asked); the figure is closed.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1])
    >>> figure_image(fig, "line.png", "A line").png[:4]
    b'\\x89PNG'
    """
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    svg_text = None
    if svg:
        sbuf = io.StringIO()
        fig.savefig(sbuf, format="svg", bbox_inches="tight")
        svg_text = sbuf.getvalue()
    plt.close(fig)
    return Image(buf.getvalue(), caption, filename, svg_text)


def _draw(name: str, fit, term: str | None, factor: str | None = None):
    from .. import plots

    fn = getattr(plots, name, None)
    if fn is None:
        raise NotImplementedError(f"bayesmlm.plots has no '{name}' plot in this version.")
    if name == "correlation":
        return fn(fit, factor=factor) if term is None else fn(fit, x=term, factor=factor)
    return fn(fit, term, factor=factor)


def plots_section(fit, which=PLOTS, term: str | None = None,
                  prob: float = 0.95, svg: bool = False) -> Section:
    """The plots of :mod:`bayesmlm.plots` for this fit, each with a caption that says what it shows.

    A plot that does not apply to the model (a correlation plot with one
    random term, say) is replaced by a note that says why. Figures are named
    ``plots/NAME.png``; with ``svg=True`` they also keep an SVG rendering.

    Examples
    --------
    >>> [im.filename for im in plots_section(fit, ["bar", "forest"]).images()]  # doctest: +SKIP
    ['plots/bar.png', 'plots/forest.png']
    """
    blocks = []
    for name in which:
        caption = PLOT_CAPTIONS[name].format(term=term or "the slope", pct=_pct(prob))
        try:
            fig = _draw(name, fit, term)
        except (ImportError, NotImplementedError, ValueError, KeyError) as err:
            blocks.append(Note(f"{name}: not drawn. {err}", "warn"))
            continue
        blocks.append(figure_image(fig, f"plots/{name}.png", caption, svg=svg))
    return Section("Plots", tuple(blocks), key="plots")


def comparison_section(fit) -> Section:
    """This posterior beside lme4's fit of the same model (REML, or glmer's Laplace), with its figure.

    The tables and notes are the :class:`~bayesmlm.comparison.frequentist.Comparison`'s
    own section (one renderer per reportable object); this adds its plot.
    Where the engine cannot fit the model, the section says why.

    Examples
    --------
    >>> comparison_section(fit).to_text()  # doctest: +SKIP
    """
    title = "Bayes beside the frequentist fit"
    try:
        cmp = fit.compare_frequentist()
    except (ValueError, NotImplementedError) as err:
        return Section(title, (Note(f"No frequentist comparison: {err}", "warn"),), key="frequentist")
    sec = cmp.section()
    fig = figure_image(cmp.plot(), "plots/frequentist.png",
                       f"Left: fixed effects, posterior interval beside the {cmp.label} Wald interval. Right: each "
                       f"group's {cmp.label} conditional mode (BLUP) against its posterior mean.")
    return Section(sec.title, (*sec.blocks, fig), key=sec.key or "frequentist")


def report_sections(fit, *, title: str = "", which=PLOTS,
                    term: str | None = None, compare: bool = True, prob: float = 0.95, svg: bool = False
                    ) -> list[Section]:
    """Every section of a report on one fit, in reading order (``svg``: keep SVG renderings of the plots).

    Examples
    --------
    >>> [s.key for s in report_sections(fit, compare=False)]  # doctest: +SKIP
    ['overview', 'diagnostics', 'equations', 'priors', 'fixed', 'variance', 'plots']
    >>> [s.key for s in report_sections(fit_nested, compare=False)][6:8]  # doctest: +SKIP
    ['factor:batch', 'factor:batch:cask']
    """
    out = [overview_section(fit, title), diagnostics_section(fit), equations_section(fit), priors_section(fit),
           fixed_section(fit, prob), variance_section(fit, prob), *factor_sections(fit, prob)]
    if which:
        out.append(plots_section(fit, which, term, prob, svg=svg))
    if compare:
        out.append(comparison_section(fit))
    return out

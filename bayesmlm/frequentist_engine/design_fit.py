"""The engine on a model's design: :class:`~bayesmlm.design.matrices.Design` to :class:`MixedProblem`, then fit.

The bridge from the package's design stage to the engine's plain arrays, so
that every model the Bayesian side fits (any family, one or several grouping
factors, uncorrelated blocks, offsets, binomial trials) has its lme4 fit.

Examples
--------
>>> import bayesmlm
>>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
>>> ff = fit_design(m.design)
>>> ff.method, round(float(ff.fixed.set_index("term").loc["Days", "estimate"]), 3)
('REML', 10.467)
"""

from __future__ import annotations

from ..design.matrices import Design
from ..errors import UnsupportedModelError
from .fit import fit_frequentist
from .problem import FAMILIES, MixedProblem, RandomBlock
from .result import FrequentistFit

__all__ = ["problem_of", "fit_design", "default_method"]


def default_method(family: str) -> str:
    """lme4's default: REML for a linear model (``lmer``), the Laplace approximation otherwise (``glmer``).

    Examples
    --------
    >>> default_method("gaussian"), default_method("poisson")
    ('reml', 'laplace')
    """
    return "reml" if family == "gaussian" else "laplace"


def problem_of(design: Design) -> MixedProblem:
    """The design's arrays as the engine's problem (the rows, never a copy of their summaries).

    With weights (``MLM(..., weights=)``) the problem carries them: gaussian
    precision weights, as ``lmer(weights=)``; likelihood weights of the other
    families: ``glmer(weights=)``'s likelihood for poisson rows, and for
    bernoulli rows with integer weights (glmer reads them as binomial trials
    with y the proportion). With non-integer weights on bernoulli or binomial
    rows glmer's Laplace criterion rounds the trials and successes
    (``binomial()$aic``), so glmer does not fit the weighted likelihood; this
    engine does.
    Rows of weight 0 drop out of the likelihood, so they are left out here
    (lme4 would need them removed too: log 0 enters its REML criterion).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmlm.datasets.load("penicillin"))
    >>> [b.factor for b in problem_of(m.design).blocks]
    ['plate', 'sample']
    """
    family = design.spec.family.name
    if family == "student":
        raise UnsupportedModelError("There is no frequentist column for family='student': lme4 has no Student-t "
                                    "residuals, so the engine (which reproduces lme4) has no anchor to reproduce. "
                                    "Compare with the gaussian fit (family='gaussian'), or read the posterior alone.")
    if family not in FAMILIES:
        raise UnsupportedModelError(f"The frequentist engine fits the families {', '.join(FAMILIES)}; this model has "
                                    f"family='{family}'. Compare the posterior with a fit of that family elsewhere.")
    if design.X.shape[1] == 0 and family != "cumulative":
        raise UnsupportedModelError("The frequentist fit needs at least one fixed-effect term; this model has none "
                                    "(add '1 +' to the fixed part).")
    design.require_rows("The frequentist fit", "Fit the model from a DataFrame, MLM(formula, data), to compare it "
                        "with lme4's estimates.")
    rows = slice(None) if design.weights is None else design.weights > 0

    def kept(values):
        return None if values is None else values[rows]

    blocks = tuple(RandomBlock(b.group, design.factors[b.group].index[rows], design.factors[b.group].levels, b.Z[rows],
                               b.terms, b.correlated) for b in design.blocks)
    ordinal = {"link": design.spec.family.link, "categories": design.categories} if family == "cumulative" else {}
    return MixedProblem(design.X[rows], design.y[rows], design.fixed_terms, blocks, family=family,
                        trials=kept(design.trials), offset=kept(design.offset), weights=kept(design.weights), **ordinal)


def fit_design(design: Design, method: str | None = None) -> FrequentistFit:
    """lme4's fit of a design: REML or ML (``lmer``) for gaussian models, Laplace (``glmer``) otherwise.

    Parameters
    ----------
    design : Design
    method : {"reml", "ml", "laplace"}, optional
        Default: :func:`default_method` of the family.

    Returns
    -------
    FrequentistFit

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> fit_design(m.design, "ml").method
    'ML'
    """
    return fit_frequentist(problem_of(design), method or default_method(design.spec.family.name))

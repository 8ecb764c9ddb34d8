"""Fit a mixed model as lme4 does: :func:`fit_frequentist` and :func:`fit_grouped`.

Gaussian models get lme4's profiled REML or ML (``lmer``); bernoulli,
binomial, poisson and negbinomial models glmer's Laplace approximation (``nAGQ = 1``, see
:mod:`bayesmlm.frequentist_engine.laplace`); cumulative models ordinal::clmm's
(:mod:`bayesmlm.frequentist_engine.cumulative`).  A one-factor Gaussian model can
be fitted from its per-group statistics alone (:func:`fit_grouped`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .blocked import RandomStructure, random_cross_products, random_structure, row_design
from .cumulative import fit_cumulative
from .laplace import fit_laplace, fit_negbinomial
from .optimize import check_convergence, minimize_bounded, polish
from .problem import GroupedGaussian, MixedProblem
from .profiled import GaussianStatistics, grouped_cross_products, profiled_deviance, profiled_solution
from .result import FrequentistFit, OptimizerLog
from .tables import fixed_table, ranef_tables, varcorr_table

__all__ = ["fit_frequentist", "fit_grouped", "theta_names"]

_GAUSSIAN_METHODS = {"reml": "REML", "ml": "ML"}


def theta_names(structure: RandomStructure) -> tuple[str, ...]:
    """lme4's names of theta: ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> g = RandomBlock("g", np.array([0, 1]), ("a", "b"), np.ones((2, 2)), ("(Intercept)", "x"))
    >>> theta_names(random_structure([g]))
    ('g.(Intercept)', 'g.x.(Intercept)', 'g.x')
    """
    names = []
    for k, lay in enumerate(structure.layouts):
        terms = structure.terms[k]
        for r, c in zip(lay.rows, lay.cols):
            names.append(f"{structure.factors[k]}.{terms[r]}" if r == c
                         else f"{structure.factors[k]}.{terms[r]}.{terms[c]}")
    return tuple(names)


def _method(method: str | None, family: str) -> str:
    if family == "gaussian":
        key = "reml" if method is None else str(method).lower()
        if key not in _GAUSSIAN_METHODS:
            raise ValueError(
                f"method {method!r} is not available for family 'gaussian'; use 'reml' or 'ml' "
                "(both exact: lme4's profiled deviance)"
            )
        return _GAUSSIAN_METHODS[key]
    key = "laplace" if method is None else str(method).lower()
    if key != "laplace":
        raise ValueError(
            f"method {method!r} is not available for family {family!r}: REML and the profiled "
            "ML are for gaussian models; use method='laplace' (glmer's nAGQ = 1)"
        )
    return "Laplace"


def _fit_gaussian(stats: GaussianStatistics, method: str, fixed_terms, n_groups: dict) -> FrequentistFit:
    reml = method == "REML"
    structure = stats.structure
    lower = structure.lower

    def objective(theta: np.ndarray) -> float:
        return profiled_deviance(stats, theta, reml)

    start = structure.initial
    opt = minimize_bounded(objective, start, lower)
    theta, _, grad, hess, _ = polish(objective, opt.x, lower, opt.fun)
    check = check_convergence(grad, hess, theta, lower, structure.n_theta)
    sol = profiled_solution(stats, theta, reml)
    vcov = sol.sigma**2 * np.linalg.inv(sol.RXtRX)
    warnings = list(check.messages)
    if not opt.success:
        warnings.insert(0, f"optimizer did not report convergence: {opt.message}")
    n_par = stats.p + structure.n_theta + 1
    loglik = -sol.deviance / 2.0
    log = OptimizerLog(
        optimizer=opt.optimizer, parameters=theta_names(structure), initial=start, final=theta,
        objective=sol.deviance, evaluations=opt.evaluations, message=opt.message, success=opt.success,
        gradient=grad, hessian=hess, max_scaled_gradient=check.max_scaled_gradient,
    )
    terms = list(fixed_terms)
    return FrequentistFit(
        method=method,
        family="gaussian",
        n_obs=stats.n,
        n_groups=n_groups,
        fixed=fixed_table(terms, sol.beta, vcov),
        vcov=pd.DataFrame(vcov, index=terms, columns=terms),
        varcorr=varcorr_table(structure, theta, sol.sigma),
        sigma=sol.sigma,
        ranef=ranef_tables(structure, theta, sol.u, sol.factor.inverse_blocks(structure), sol.sigma**2),
        theta=theta,
        criterion=sol.deviance,
        loglik=loglik,
        n_parameters=n_par,
        converged=bool(opt.success and check.converged),
        singular=check.singular,
        warnings=tuple(warnings),
        optimizer=log,
    )


def _n_groups(structure: RandomStructure) -> dict:
    out: dict[str, int] = {}
    for f, lev in zip(structure.factors, structure.levels):
        out.setdefault(f, len(lev))
    return out


def fit_frequentist(problem: MixedProblem, method: str | None = None) -> FrequentistFit:
    """Fit `problem` by lme4's method.

    Parameters
    ----------
    problem : MixedProblem
    method : {"reml", "ml", "laplace"}, optional
        Gaussian: ``"reml"`` (default) or ``"ml"``, lme4's profiled criteria,
        exact.  Bernoulli, binomial, poisson: ``"laplace"`` (the default and
        the only one), glmer's ``nAGQ = 1``.

    Returns
    -------
    FrequentistFit

    Raises
    ------
    ValueError
        For a method the family has not (the message names the ones it has).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import MixedProblem, RandomBlock
    >>> rng = np.random.default_rng(1)
    >>> codes = np.repeat(np.arange(8), 6)
    >>> y = 1 + rng.normal(size=8)[codes] + 0.5 * rng.normal(size=48)
    >>> g = RandomBlock("g", codes, tuple("abcdefgh"), np.ones((48, 1)), ("(Intercept)",))
    >>> fit = fit_frequentist(MixedProblem(np.ones((48, 1)), y, ("(Intercept)",), (g,)), method="ml")
    >>> fit.method, fit.converged, fit.n_parameters
    ('ML', True, 3)
    """
    resolved = _method(method, problem.family)
    structure = random_structure(problem.blocks)
    if resolved == "Laplace" and problem.family == "cumulative":
        return fit_cumulative(problem, structure, theta_names(structure), _n_groups(structure))
    if resolved == "Laplace" and problem.family == "negbinomial":
        return fit_negbinomial(problem, structure, theta_names(structure), _n_groups(structure))
    if resolved == "Laplace":
        return fit_laplace(problem, structure, theta_names(structure), _n_groups(structure))
    rows = row_design(structure, problem.blocks)
    w = np.ones(problem.n) if problem.weights is None else problem.weights
    y = problem.y if problem.offset is None else problem.y - problem.offset
    cp = random_cross_products(rows, w, np.column_stack([problem.X, y]))
    stats = GaussianStatistics(structure, cp, problem.n, problem.p, float(np.log(w).sum()))
    return _fit_gaussian(stats, resolved, problem.fixed_terms, _n_groups(structure))


def fit_grouped(stats: GroupedGaussian, method: str = "reml") -> FrequentistFit:
    """Fit a one-factor Gaussian model from its per-group statistics.

    Each evaluation of the profiled deviance costs ``O(J q^3)`` (vectorised
    over groups), whatever the number of rows.

    Parameters
    ----------
    stats : GroupedGaussian
        From :func:`~bayesmlm.frequentist_engine.problem.group_statistics` or
        accumulated elsewhere (chunks, a database, a distributed dataframe).
    method : {"reml", "ml"}

    Returns
    -------
    FrequentistFit
        The same numbers as :func:`fit_frequentist` on the rows.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import MixedProblem, RandomBlock, group_statistics
    >>> rng = np.random.default_rng(2)
    >>> codes = np.repeat(np.arange(6), 10)
    >>> y = rng.normal(size=6)[codes] + rng.normal(size=60)
    >>> g = RandomBlock("g", codes, tuple("abcdef"), np.ones((60, 1)), ("(Intercept)",))
    >>> problem = MixedProblem(np.ones((60, 1)), y, ("(Intercept)",), (g,))
    >>> a, b = fit_grouped(group_statistics(problem)), fit_frequentist(problem)
    >>> bool(abs(a.criterion - b.criterion) < 1e-8)
    True
    """
    resolved = _method(method, "gaussian")
    structure = random_structure([stats])
    gstats = GaussianStatistics(structure, grouped_cross_products(stats), stats.n, len(stats.fixed_terms),
                                stats.sum_log_weights)
    return _fit_gaussian(gstats, resolved, stats.fixed_terms, _n_groups(structure))

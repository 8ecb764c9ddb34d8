"""ordinal::clmm's Laplace fit of a cumulative (ordinal) mixed model.

``P(y <= k) = F(a_k - eta)``, ``eta = X beta + Z Lambda u`` (no intercept:
the thresholds ``a`` take its place), ``u ~ N(0, I)``.  As in ``clmm``
(Christensen 2019, the ordinal package's ``clmm`` vignette), the Laplace
likelihood is maximised over the thresholds, beta and the random-effect
covariance together, with the conditional mode ``u*`` found at each point
by Newton steps (:func:`~bayesmlm.frequentist_engine.laplace.pirls` with
the cumulative family's exact Hessian).  The criterion is glmer's form of
the same approximation::

    d(theta, a, beta) = log|Lambda' Z' W Z Lambda + I| + ||u*||^2 - 2 log p(y | u*, a, beta)

with ``W`` the observed information at the mode; ``-d / 2`` is clmm's
``logLik``.  Rows that share their groups, fixed and random columns and
offset share their likelihood term, so they are first collapsed into cells
of (weighted) category counts (:func:`ordinal_cells`): exact, and a survey
of 90,000 rows on a 1-5 predictor in 90 countries becomes 450 cells.

The thresholds are optimised as the first one and the logs of the gaps
(so that they stay ordered); at the optimum the finite-difference Hessian
in the thresholds themselves (lme4's ``deriv12``), inverted (``2 H^{-1}``),
gives the standard errors of the thresholds and beta, as ``clmm``'s
``vcov`` does from its numerical Hessian.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import logit, ndtri

from ..schema import threshold_names
from .blocked import RandomStructure, row_design
from .laplace import GlmmData, pirls
from .optimize import check_convergence, finite_differences, minimize_bounded
from .problem import MixedProblem, RandomBlock
from .result import FrequentistFit, OptimizerLog
from .tables import fixed_table, ranef_tables, varcorr_table

__all__ = ["ordinal_cells", "cumulative_data", "fit_cumulative"]


def ordinal_cells(problem: MixedProblem) -> tuple[np.ndarray, np.ndarray]:
    """Collapse a cumulative problem's rows into cells with their (weighted) category counts.

    Rows are one cell when they share every block's level and columns, the
    fixed columns and the offset; the likelihood of the cells is the rows'.

    Returns
    -------
    (first, counts)
        The index of each cell's first row, and the counts, shape (cells, K).

    Examples
    --------
    >>> import numpy as np
    >>> g = RandomBlock("g", np.array([0, 0, 0, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> p = MixedProblem(np.array([[1.0], [1.0], [0.0], [1.0]]), np.array([0, 1, 1, 1.0]), ("x",), (g,),
    ...                  family="cumulative")
    >>> first, counts = ordinal_cells(p)
    >>> first.tolist(), counts.tolist()
    ([2, 0, 3], [[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    """
    n = problem.n
    offset = np.zeros(n) if problem.offset is None else problem.offset
    key = np.column_stack([problem.X, offset] + [np.column_stack([b.codes, b.Z]) for b in problem.blocks])
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    counts = np.zeros((first.size, len(problem.categories)))
    w = np.ones(n) if problem.weights is None else problem.weights
    np.add.at(counts, (inverse.ravel(), problem.y.astype(np.intp)), w)
    return first, counts


def cumulative_data(problem: MixedProblem, structure: RandomStructure) -> GlmmData:
    """PIRLS's input for a cumulative problem: its cells, their counts, the link.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 0, 1, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> p = MixedProblem(np.array([[0.0], [1.0], [0.0], [1.0]]), np.array([0, 1, 0, 1.0]), ("x",), (g,),
    ...                  family="cumulative", link="probit")
    >>> d = cumulative_data(p, random_structure(p.blocks))
    >>> d.counts.shape, d.link
    ((4, 2), 'probit')
    """
    first, counts = ordinal_cells(problem)
    blocks = [RandomBlock(b.factor, b.codes[first], b.levels, b.Z[first], b.terms, b.correlated)
              for b in problem.blocks]
    n = first.size
    offset = np.zeros(n) if problem.offset is None else problem.offset[first]
    return GlmmData("cumulative", problem.X[first], counts.sum(axis=1), np.ones(n), np.ones(n), offset, structure,
                    row_design(structure, blocks), 0.0, counts=counts, link=problem.link)


def _start(counts: np.ndarray, link: str) -> np.ndarray:
    """Thresholds of the marginal category shares (clm's start with beta = 0)."""
    share = np.cumsum(counts.sum(axis=0))[:-1] / counts.sum()
    return ndtri(share) if link == "probit" else logit(share)


def _to_thresholds(z: np.ndarray) -> np.ndarray:
    return z[0] + np.concatenate([[0.0], np.cumsum(np.exp(z[1:]))])


def fit_cumulative(problem: MixedProblem, structure: RandomStructure, theta_names: tuple[str, ...],
                   n_groups: dict) -> FrequentistFit:
    """ordinal::clmm's fit (Laplace) of a cumulative problem.

    Parameters
    ----------
    problem : MixedProblem
        ``family="cumulative"``.
    structure : RandomStructure
    theta_names : tuple of str
    n_groups : dict

    Returns
    -------
    FrequentistFit
        ``fixed`` holds beta, ``thresholds`` the thresholds; ``theta`` and
        ``varcorr`` as lme4 has them (clmm's ``VarCorr``).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine import fit_frequentist
    >>> rng = np.random.default_rng(5)
    >>> codes = np.repeat(np.arange(15), 40)
    >>> x = rng.normal(size=600)
    >>> latent = 0.8 * x + rng.normal(size=15)[codes] + rng.logistic(size=600)
    >>> y = np.digitize(latent, [-1.0, 0.5, 2.0]).astype(float)
    >>> g = RandomBlock("g", codes, tuple(f"g{j}" for j in range(15)), np.ones((600, 1)), ("(Intercept)",))
    >>> fit = fit_frequentist(MixedProblem(x[:, None], y, ("x",), (g,), family="cumulative"))
    >>> fit.thresholds["term"].tolist(), fit.converged
    (['1|2', '2|3', '3|4'], True)
    """
    data = cumulative_data(problem, structure)
    nt, nk, p = structure.n_theta, data.counts.shape[1] - 1, problem.p
    warm = {"u": None}

    def deviance(x: np.ndarray) -> float:
        a = x[nt:nt + nk]
        if np.any(np.diff(a) <= 0):
            return np.inf
        try:
            st = pirls(replace(data, thresholds=a), x[:nt], x[nt + nk:], warm["u"])
        except (RuntimeError, np.linalg.LinAlgError, ValueError):
            return np.inf
        warm["u"] = st.u
        return st.deviance

    def gaps(z: np.ndarray) -> float:
        return deviance(np.concatenate([z[:nt], _to_thresholds(z[nt:nt + nk]), z[nt + nk:]]))

    a0 = _start(data.counts, data.link)
    z0 = np.concatenate([structure.initial, [a0[0]], np.log(np.diff(a0)), np.zeros(p)])
    lower = np.concatenate([structure.lower, np.full(nk + p, -np.inf)])
    opt = minimize_bounded(gaps, z0, lower, final_radius=1e-7)
    x = np.concatenate([opt.x[:nt], _to_thresholds(opt.x[nt:nt + nk]), opt.x[nt + nk:]])
    grad, hess = finite_differences(deviance, x, lower, fx=deviance(x))
    check = check_convergence(grad, hess, x, lower, nt)
    theta, a, beta = x[:nt], x[nt:nt + nk], x[nt + nk:]
    state = pirls(replace(data, thresholds=a), theta, beta, warm["u"])
    free = ~((lower == 0) & (x < 1e-4))  # a theta on its bound has no curvature to invert
    cov = np.full_like(hess, np.nan)
    warnings = list(check.messages)
    try:
        cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(hess[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        warnings.append("the Hessian of the Laplace deviance is singular: no standard errors")
    vcov = cov[nt:, nt:]
    if not opt.success:
        warnings.insert(0, f"optimizer did not report convergence: {opt.message}")
    names = theta_names + tuple(threshold_names(problem.categories)) + tuple(problem.fixed_terms)
    log = OptimizerLog(
        optimizer=opt.optimizer, parameters=names, initial=np.concatenate([structure.initial, a0, np.zeros(p)]),
        final=x, objective=state.deviance, evaluations=opt.evaluations, message=opt.message,
        success=opt.success, gradient=grad, hessian=hess, max_scaled_gradient=check.max_scaled_gradient,
    )
    terms = list(problem.fixed_terms)
    vb = vcov[nk:, nk:]
    return FrequentistFit(
        method="Laplace",
        family="cumulative",
        n_obs=problem.n,
        n_groups=n_groups,
        fixed=fixed_table(terms, beta, vb),
        vcov=pd.DataFrame(vb, index=terms, columns=terms),
        varcorr=varcorr_table(structure, theta, None),
        sigma=None,
        ranef=ranef_tables(structure, theta, state.u, state.factor.inverse_blocks(structure), 1.0),
        theta=theta,
        criterion=state.deviance,
        loglik=-state.deviance / 2.0,
        n_parameters=nt + nk + p,
        converged=bool(opt.success and check.converged),
        singular=check.singular,
        warnings=tuple(warnings),
        optimizer=log,
        thresholds=fixed_table(threshold_names(problem.categories), a, vcov[:nk, :nk]),
    )

"""The frequentist fit of a design: REML or ML with statsmodels' MixedLM, in lme4's terms.

:func:`fit_frequentist` takes a :class:`~bayesmlm.design.matrices.Design` and returns
plain tables (:class:`FrequentistFit`); it never looks at a posterior.
:mod:`bayesmlm.comparison.frequentist` puts them beside one.

Equivalence with lme4. The fixed design (``design.X``), the random design
(the blocks' Z, side by side) and the grouping are passed to ``MixedLM`` as
they are. Uncorrelated blocks on one factor (``(1 + x || g)``, or
``(1 | g) + (0 + x | g)``) are fitted exactly: the covariance of the random
effects is held block-diagonal with ``MixedLM.fit(free=...)``, which fixes the
off-block entries of its Cholesky factor at zero. ``MixedLM`` estimates the
variance parameters; the standard errors of the fixed effects are then
computed as lme4's ``vcov()`` does, ``(X' V^-1 X)^-1`` at the estimates
(statsmodels' own ``bse_fe`` comes from the numerical Hessian of all
parameters and differs from lme4's in the third digit), and the conditional
modes and their SDs as lme4's ``ranef(condVar = TRUE)`` does. MixedLM is
run with both of its optimizers that respect the mask (lbfgs and bfgs) and
the higher log-likelihood is kept: each alone stops short on some of the
reference data sets. What MixedLM
cannot fit exactly is refused with :class:`UnsupportedModelError`: families
other than gaussian, and several grouping factors. A gaussian offset is
subtracted from the outcome.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..design.matrices import Design
from ..errors import UnsupportedModelError

__all__ = ["UnsupportedModelError", "FrequentistFit", "fit_frequentist", "REML_METHODS"]

REML_METHODS = ("reml", "ml")
_TOL = 1e-4  # lme4's isSingular(tol = 1e-4) on the relative Cholesky factor


@dataclass(frozen=True, eq=False)
class FrequentistFit:
    """The REML (or ML) fit of a design by statsmodels' MixedLM, as tables.

    Attributes
    ----------
    method : str
        ``"reml"`` or ``"ml"``.
    fixed : DataFrame
        Index term (lme4's names); columns estimate, se (lme4's ``vcov()``).
    variance : DataFrame
        lme4's ``as.data.frame(VarCorr())`` layout: group, var1, var2,
        estimate (SDs, correlations, the residual SD) and boundary (True where
        the estimate sits on the boundary of its space: an SD of zero, a
        correlation of +-1, what makes lme4 call a fit singular).
    ranef : DataFrame
        Index (group, term); columns estimate (the conditional mode, BLUP)
        and se (its conditional SD, lme4's ``condVar``).
    singular : bool
        lme4's ``isSingular()``: a diagonal entry of the relative Cholesky
        factor below 1e-4.
    converged : bool
        Whether statsmodels reports convergence.
    loglik : float
        The maximised REML or ML log-likelihood.
    optimizer : str
        The optimizer whose fit was kept (the highest log-likelihood of
        lbfgs and bfgs).
    notes : tuple of str
        Warnings statsmodels raised while fitting, each once.
    """

    method: str
    fixed: pd.DataFrame
    variance: pd.DataFrame
    ranef: pd.DataFrame
    singular: bool
    converged: bool
    loglik: float
    optimizer: str
    notes: tuple[str, ...]


def _check_supported(design: Design) -> str:
    """The one grouping factor, or a clear refusal."""
    family = design.spec.family
    if family.name != "gaussian":
        raise UnsupportedModelError(
            f"compare_frequentist needs a gaussian model: statsmodels' MixedLM fits linear mixed models only, and this "
            f"model has family='{family.name}' ({family.link} link). statsmodels' mixed GLMs are variational Bayes, "
            "not maximum likelihood, so none is substituted. For a frequentist GLMM fit the model in R with lme4::glmer.")
    groups = design.spec.groups
    if len(groups) != 1:
        raise UnsupportedModelError(
            f"compare_frequentist needs one grouping factor: statsmodels' MixedLM fits random effects for one grouping "
            f"factor, and this model has {len(groups)} ({', '.join(groups)}). Fit the model in R with lme4::lmer "
            "for a frequentist comparison, or compare a model with one of these factors.")
    if design.X.shape[1] == 0:
        raise UnsupportedModelError("compare_frequentist needs at least one fixed-effect term; this model has none "
                                    "(add '1 +' to the fixed part).")
    return groups[0]


def _free_mask(design: Design):
    """MixedLM's mask for a block-diagonal covariance, or None when it is full."""
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    sizes = [b.q for b in design.blocks]
    if len(sizes) == 1 and (design.blocks[0].correlated or sizes[0] == 1):
        return None
    mask = np.zeros((sum(sizes), sum(sizes)))
    start = 0
    for b in design.blocks:
        if b.correlated:
            mask[start:start + b.q, start:start + b.q] = 1.0
        else:
            mask[range(start, start + b.q), range(start, start + b.q)] = 1.0
        start += b.q
    return MixedLMParams.from_components(np.ones(design.X.shape[1]), mask)


def _psd_cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where it is singular)."""
    q = A.shape[0]
    L = np.zeros_like(A)
    for j in range(q):
        d = A[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(A[j, j], 1e-300):
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (A[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


def _group_slices(index: np.ndarray, J: int):
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(J + 1))
    return order, bounds


def _lme4_quantities(X, Z, y, index, J, beta, Lam, s2):
    """lme4's vcov(), conditional modes and condVar at given estimates.

    With Lam the relative Cholesky factor (Lam Lam' = cov_re / sigma^2) and
    M_j = I + Lam' Z_j'Z_j Lam: X'V^-1X = sum_j (X_j'X_j - X_j'Z_j Lam M_j^-1
    Lam' Z_j'X_j) / sigma^2, u_j = Lam M_j^-1 Lam' Z_j' r_j and
    Var(u_j | y) = sigma^2 Lam M_j^-1 Lam'.
    """
    p, q = X.shape[1], Z.shape[1]
    order, bounds = _group_slices(index, J)
    r = y - X @ beta
    info = np.zeros((p, p))
    modes, cond_sd = np.zeros((J, q)), np.zeros((J, q))
    for j in range(J):
        rows = order[bounds[j]:bounds[j + 1]]
        Xj, Zj = X[rows], Z[rows]
        ZL = Zj @ Lam
        M = np.eye(q) + ZL.T @ ZL
        XZL = Xj.T @ ZL
        info += Xj.T @ Xj - XZL @ np.linalg.solve(M, XZL.T)
        modes[j] = Lam @ np.linalg.solve(M, ZL.T @ r[rows])
        cond_sd[j] = np.sqrt(np.maximum(np.diag(s2 * Lam @ np.linalg.solve(M, Lam.T)), 0.0))
    vcov = s2 * np.linalg.inv(info)
    return np.sqrt(np.diag(vcov)), modes, cond_sd


def _variance_table(design: Design, cov: np.ndarray, Lam: np.ndarray, sigma: float) -> pd.DataFrame:
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    rows, start = [], 0
    for b in design.blocks:
        idx = range(start, start + b.q)
        flat = {k: bool(Lam[k, k] < _TOL) for k in idx}
        for k, t in zip(idx, b.terms):
            rows.append((b.label, t, "", sd[k], flat[k] and sd[k] / sigma < _TOL))
        if b.correlated:
            for a_i, a in zip(idx, b.terms):
                for c_i, c in zip(idx, b.terms):
                    if c_i <= a_i:
                        continue
                    both = sd[a_i] * sd[c_i]
                    cor = cov[a_i, c_i] / both if both > 0 else np.nan
                    # A flat Cholesky column with a non-zero SD means the correlation is at +-1.
                    edge = (flat[c_i] and sd[c_i] / sigma >= _TOL) or not np.isfinite(cor) or abs(cor) > 1 - _TOL
                    rows.append((b.label, a, c, cor, bool(edge)))
        start += b.q
    rows.append(("Residual", "", "", sigma, False))
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "estimate", "boundary"])


_OPTIMIZERS = ("lbfgs", "bfgs")


def _best_fit(model, reml: bool, free):
    """MixedLM's fit from each optimizer; the highest finite (RE)ML log-likelihood wins.

    One optimizer alone is not reliable: on the radon model bfgs stops short
    (log-likelihood -1028.24 against lme4's -1027.07), on hsb82 lbfgs does,
    and lbfgs can return an infinite log-likelihood at a zero variance. Both
    respect the block-diagonal mask; Nelder-Mead and Powell would not.
    """
    fits = []
    for name in _OPTIMIZERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = model.fit(reml=reml, free=free, method=[name])
            except (np.linalg.LinAlgError, ValueError) as err:
                fits.append((-np.inf, False, None, (f"{name}: {err}",), name))
                continue
        notes = tuple(dict.fromkeys(str(w.message) for w in caught))
        llf = float(result.llf)
        fits.append((llf if np.isfinite(llf) else -np.inf, bool(result.converged), result, notes, name))
    llf, _, result, notes, name = max(fits, key=lambda f: (f[0], f[1]))
    if result is None or not np.isfinite(llf):
        raise RuntimeError("statsmodels' MixedLM found no finite log-likelihood for this model with any of "
                           f"{', '.join(_OPTIMIZERS)}; its messages: {'; '.join(n for f in fits for n in f[3])}.")
    return result, notes, name


def fit_frequentist(design: Design, method: str = "reml") -> FrequentistFit:
    """Fit a design by REML or ML with statsmodels' MixedLM, in lme4's terms.

    Parameters
    ----------
    design : Design
        A gaussian design with one grouping factor.
    method : str
        ``"reml"`` (default, as lme4's ``lmer``) or ``"ml"`` (``REML = FALSE``).

    Returns
    -------
    FrequentistFit

    Raises
    ------
    UnsupportedModelError
        For families other than gaussian, and for several grouping factors.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> ff = fit_frequentist(m.design)
    >>> ff.fixed.round(3)
                 estimate     se
    term
    (Intercept)   251.405  6.825
    Days           10.467  1.546
    """
    if method not in REML_METHODS:
        raise ValueError(f"Unknown method '{method}'. Valid methods: {', '.join(REML_METHODS)}.")
    from statsmodels.regression.mixed_linear_model import MixedLM

    factor = design.factors[_check_supported(design)]
    terms = [t for b in design.blocks for t in b.terms]
    Z = np.column_stack([b.Z for b in design.blocks])
    y = design.y - design.offset if design.offset is not None else design.y
    free = _free_mask(design)
    model = MixedLM(y, pd.DataFrame(design.X, columns=list(design.fixed_terms)), factor.index,
                    exog_re=pd.DataFrame(Z, columns=[f"z{k}" for k in range(len(terms))]))
    result, notes, optimizer = _best_fit(model, method == "reml", free)
    beta = np.asarray(result.fe_params, dtype=float)
    cov = np.asarray(result.cov_re, dtype=float)
    s2 = float(result.scale)
    Lam = _psd_cholesky(cov / s2)
    se, modes, cond_sd = _lme4_quantities(design.X, Z, y, factor.index, factor.n_levels, beta, Lam, s2)
    fixed = pd.DataFrame({"estimate": beta, "se": se}, index=pd.Index(design.fixed_terms, name="term"))
    index = pd.MultiIndex.from_product([list(factor.levels), terms], names=["group", "term"])
    ranef = pd.DataFrame({"estimate": modes.ravel(), "se": cond_sd.ravel()}, index=index)
    return FrequentistFit(method=method, fixed=fixed, variance=_variance_table(design, cov, Lam, np.sqrt(s2)),
                          ranef=ranef, singular=bool(np.any(np.diag(Lam) < _TOL)), converged=bool(result.converged),
                          loglik=float(result.llf), optimizer=optimizer, notes=notes)


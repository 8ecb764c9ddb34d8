"""lme4's tables from the engine's numbers: fixed effects, VarCorr, ranef.

One home for the layouts that :class:`~bayesmlm.frequentist_engine.result.FrequentistFit`
promises, shared by the linear and the Laplace fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .blocked import RandomStructure

__all__ = ["fixed_table", "varcorr_table", "ranef_tables", "group_names"]


def group_names(structure: RandomStructure) -> list[str]:
    """lme4's VarCorr names: a factor's second term is ``g.1``, its third ``g.2``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> a = RandomBlock("g", np.array([0, 1]), ("x", "y"), np.ones((2, 1)), ("(Intercept)",))
    >>> b = RandomBlock("g", np.array([0, 1]), ("x", "y"), np.ones((2, 1)), ("t",))
    >>> group_names(random_structure([a, b]))
    ['g', 'g.1']
    """
    seen: dict[str, int] = {}
    names = []
    for f in structure.factors:
        k = seen.get(f, 0)
        names.append(f if k == 0 else f"{f}.{k}")
        seen[f] = k + 1
    return names


def fixed_table(terms, beta: np.ndarray, vcov: np.ndarray) -> pd.DataFrame:
    """Columns term, estimate, se.

    Examples
    --------
    >>> import numpy as np
    >>> fixed_table(("(Intercept)",), np.array([1.5]), np.array([[0.04]]))
              term  estimate   se
    0  (Intercept)       1.5  0.2
    """
    return pd.DataFrame({"term": list(terms), "estimate": np.asarray(beta, float),
                         "se": np.sqrt(np.diag(vcov))})


def varcorr_table(structure: RandomStructure, theta: np.ndarray, sigma: float | None) -> pd.DataFrame:
    """``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor.

    The covariance of a factor's effects is ``sigma^2 T T'`` (``T T'`` when
    `sigma` is None, i.e. for non-Gaussian families).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 1]), ("x", "y"), np.ones((2, 1)), ("(Intercept)",))
    >>> varcorr_table(random_structure([g]), np.array([0.5]), 2.0)["sdcor"].tolist()
    [1.0, 2.0]
    """
    scale = 1.0 if sigma is None else sigma**2
    rows = []
    for k, grp in enumerate(group_names(structure)):
        T = structure.factor_of(theta, k)
        cov = scale * T @ T.T
        sd = np.sqrt(np.diag(cov))
        terms = structure.terms[k]
        for a, name in enumerate(terms):
            rows.append((grp, name, np.nan, cov[a, a], sd[a]))
        if structure.correlated[k]:
            for a in range(len(terms)):
                for b in range(a + 1, len(terms)):
                    denom = sd[a] * sd[b]
                    rows.append((grp, terms[a], terms[b], cov[a, b], cov[a, b] / denom if denom > 0 else np.nan))
    if sigma is not None:
        rows.append(("Residual", np.nan, np.nan, sigma**2, sigma))
    table = pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])
    return table.astype({"var1": object, "var2": object})


def ranef_tables(structure: RandomStructure, theta: np.ndarray, u: np.ndarray,
                 inverse_blocks: list[np.ndarray] | None, scale: float) -> dict[str, pd.DataFrame]:
    """Per factor, conditional modes of ``b`` and conditional SDs, indexed by (group, term).

    Parameters
    ----------
    structure : RandomStructure
    theta : ndarray
    u : ndarray
        Spherical modes, level-major per term, terms in engine order.
    inverse_blocks : list of ndarray or None
        Per term, the (J, q, q) diagonal blocks of ``A^{-1}``; None leaves
        condsd NaN.
    scale : float
        ``sigma^2`` (Gaussian) or 1.

    Returns
    -------
    dict of str to DataFrame
        Terms of one factor in several blocks (``(1 | g) + (0 + x | g)``) share
        the factor's table.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmlm.frequentist_engine.problem import RandomBlock
    >>> from bayesmlm.frequentist_engine.blocked import random_structure
    >>> g = RandomBlock("g", np.array([0, 1]), ("x", "y"), np.ones((2, 1)), ("(Intercept)",))
    >>> t = ranef_tables(random_structure([g]), np.array([2.0]), np.array([0.5, -0.5]), None, 1.0)
    >>> t["g"]["condval"].tolist()
    [1.0, -1.0]
    """
    parts: dict[str, list[pd.DataFrame]] = {}
    for k, factor in enumerate(structure.factors):
        T = structure.factor_of(theta, k)
        levels, terms = structure.levels[k], structure.terms[k]
        J, q = len(levels), len(terms)
        uk = u[structure.offsets[k]:structure.offsets[k + 1]].reshape(J, q)
        b = uk @ T.T
        if inverse_blocks is None:
            sd = np.full((J, q), np.nan)
        else:
            V = scale * np.einsum("ab,jbc,dc->jad", T, inverse_blocks[k], T)
            sd = np.sqrt(np.clip(np.diagonal(V, axis1=1, axis2=2), 0.0, None))
        index = pd.MultiIndex.from_product([list(levels), list(terms)], names=["group", "term"])
        parts.setdefault(factor, []).append(pd.DataFrame({"condval": b.ravel(), "condsd": sd.ravel()}, index=index))
    out = {}
    for factor, frames in parts.items():
        table = pd.concat(frames) if len(frames) > 1 else frames[0]
        if len(frames) > 1:
            levels = list(dict.fromkeys(table.index.get_level_values("group")))
            terms = list(dict.fromkeys(table.index.get_level_values("term")))
            table = table.reindex(pd.MultiIndex.from_product([levels, terms], names=["group", "term"]))
        out[factor] = table
    return out

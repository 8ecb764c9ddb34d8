"""Bounded derivative-free optimisation and lme4's convergence checks.

lme4 minimises its profiled deviance with BOBYQA (nloptr) and MixedModels.jl
with NLopt's BOBYQA / Nelder-Mead.  Here the optimiser is scipy's COBYQA (a
derivative-free trust-region method by Powell's successor of BOBYQA, in
scipy >= 1.14; bounded Powell where it is missing), run in two passes: from
the start, then restarted from the best point with a small trust region, as
lme4 restarts at a boundary.  Values of theta's diagonal within
:data:`BOUNDARY_TOL` of 0 are tried at 0 (lme4's ``check.boundary``).

At the optimum, :func:`finite_differences` is lme4's ``deriv12`` (central
differences, step 1e-4, one-sided at a lower bound) and
:func:`check_convergence` its ``checkConv``: a boundary (singular) fit when a
bounded parameter is below 1e-4 (lme4's ``isSingular``); otherwise the scaled
gradient ``solve(chol(H), g)`` must stay within 0.002 and the Hessian must not
have negative eigenvalues.  Nothing is hidden: every message is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.optimize as so

__all__ = [
    "BOUNDARY_TOL",
    "SINGULAR_TOL",
    "GRADIENT_TOL",
    "HESSIAN_TOL",
    "OptimizerResult",
    "ConvergenceCheck",
    "minimize_bounded",
    "finite_differences",
    "polish",
    "check_convergence",
]

BOUNDARY_TOL = 1e-5
"""A bounded parameter this close to its bound is tried at the bound."""
SINGULAR_TOL = 1e-4
"""lme4's isSingular tolerance on theta's diagonal."""
GRADIENT_TOL = 2e-3
"""lme4's check.conv.grad tolerance on the scaled gradient."""
HESSIAN_TOL = 1e-6
"""lme4's check.conv.hess tolerance on the Hessian's eigenvalues."""

_HAS_COBYQA = "COBYQA" in so.show_options(solver="minimize", disp=False).upper()


@dataclass(frozen=True)
class OptimizerResult:
    """What the optimiser did.

    Attributes
    ----------
    optimizer : str
        ``"COBYQA"`` or ``"Powell"``.
    x : ndarray
        Best point found.
    fun : float
        Objective there.
    evaluations : int
        Objective evaluations, all passes together.
    success : bool
        Every pass ended on its convergence criterion (not on a limit).
    message : str
        The optimiser's own messages, one per pass.
    """

    optimizer: str
    x: np.ndarray
    fun: float
    evaluations: int
    success: bool
    message: str


class _Counted:
    def __init__(self, fun: Callable[[np.ndarray], float]):
        self.fun = fun
        self.count = 0
        self.best_x: np.ndarray | None = None
        self.best_f = np.inf

    def __call__(self, x: np.ndarray) -> float:
        self.count += 1
        f = float(self.fun(np.asarray(x, dtype=float)))
        if not np.isfinite(f):
            return 1e100
        if f < self.best_f:
            self.best_f, self.best_x = f, np.array(x, dtype=float)
        return f


def _one_pass(fun: _Counted, x0: np.ndarray, lower: np.ndarray, radius: float, final_radius: float,
              max_evaluations: int):
    bounds = so.Bounds(lower, np.full_like(lower, np.inf))
    x0 = np.maximum(x0, lower)
    if _HAS_COBYQA:
        res = so.minimize(fun, x0, method="COBYQA", bounds=bounds,
                          options={"initial_tr_radius": radius, "final_tr_radius": final_radius,
                                   "maxfev": max_evaluations})
        return "COBYQA", bool(res.success), str(res.message)
    res = so.minimize(fun, x0, method="Powell", bounds=bounds,
                      options={"xtol": final_radius, "ftol": 1e-12, "maxfev": max_evaluations})
    return "Powell", bool(res.success), str(res.message)


def minimize_bounded(fun: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, *,
                     radius: float = 0.2, final_radius: float = 1e-6,
                     max_evaluations: int = 10_000) -> OptimizerResult:
    """Minimise `fun` subject to ``x >= lower``: a pass, a restart, a boundary check.

    Parameters
    ----------
    fun : callable
        Objective; may return ``inf`` where undefined.
    x0 : ndarray
        Start.
    lower : ndarray
        Lower bounds (``-inf`` for none).
    radius : float
        Initial trust-region radius of the first pass.
    final_radius : float
        Final trust-region radius (accuracy in x).
    max_evaluations : int
        Per pass.

    Returns
    -------
    OptimizerResult

    Examples
    --------
    >>> import numpy as np
    >>> res = minimize_bounded(lambda x: (x[0] + 1) ** 2 + (x[1] - 2) ** 2, np.array([1.0, 1.0]),
    ...                        np.array([0.0, -np.inf]))
    >>> np.round(res.x, 6).tolist(), res.success
    ([0.0, 2.0], True)
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    counted = _Counted(fun)
    counted(np.maximum(x0, lower))
    name, ok1, msg1 = _one_pass(counted, x0, lower, radius, final_radius, max_evaluations)
    _, ok2, msg2 = _one_pass(counted, counted.best_x, lower, max(10 * final_radius, radius * 0.05),
                             final_radius * 0.1, max_evaluations)
    x = counted.best_x.copy()
    near = (lower == 0) & (x > 0) & (x < BOUNDARY_TOL)
    if near.any():
        trial = x.copy()
        trial[near] = 0.0
        counted(trial)
        x = counted.best_x.copy()
    return OptimizerResult(name, x, counted.best_f, counted.count, ok1 and ok2,
                           f"pass 1: {msg1}; restart: {msg2}")


def finite_differences(fun: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                       delta: float = 1e-4, fx: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian by central differences: lme4's ``deriv12``.

    Parameters
    ----------
    fun : callable
    x : ndarray
    lower : ndarray
        Where ``x - delta`` would cross a bound the step below is shortened
        to the bound, as lme4 does; on the bound the second difference is
        one-sided.
    delta : float
    fx : float, optional
        ``fun(x)`` if already known.

    Returns
    -------
    (gradient, hessian)

    Examples
    --------
    >>> import numpy as np
    >>> g, H = finite_differences(lambda v: v[0] ** 2 + 3 * v[0] * v[1], np.array([1.0, 2.0]),
    ...                           np.array([-np.inf, -np.inf]))
    >>> np.round(g, 6).tolist(), np.round(H, 4).tolist()
    ([8.0, 3.0], [[2.0, 3.0], [3.0, 0.0]])
    """
    x = np.asarray(x, dtype=float)
    nx = x.size
    fx = float(fun(x)) if fx is None else fx
    up = np.full(nx, delta)
    down = np.where(x - delta < lower, x - lower, delta)
    H = np.empty((nx, nx))
    g = np.empty(nx)

    def at(changes: dict[int, float]) -> float:
        z = x.copy()
        for i, v in changes.items():
            z[i] += v
        return float(fun(z))

    for j in range(nx):
        fadd = at({j: up[j]})
        if down[j] > 0:
            fsub = at({j: -down[j]})
            H[j, j] = fadd / up[j] ** 2 - 2 * fx / (up[j] * down[j]) + fsub / down[j] ** 2
        else:  # on the bound: one-sided second difference (lme4 would divide by 0 here)
            H[j, j] = (at({j: 2 * up[j]}) - 2 * fadd + fx) / up[j] ** 2
            fsub = fx
        g[j] = (fadd - fsub) / (up[j] + down[j])
        for i in range(j):
            H[i, j] = H[j, i] = (
                at({i: up[i], j: up[j]}) / (up[i] + up[j]) ** 2
                - at({i: up[i], j: -down[j]}) / (up[i] + down[j]) ** 2
                - at({i: -down[i], j: up[j]}) / (down[i] + up[j]) ** 2
                + at({i: -down[i], j: -down[j]}) / (down[i] + down[j]) ** 2
            )
    return g, H


def polish(fun: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray, fx: float,
           steps: int = 2) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, int]:
    """Newton steps on finite-difference derivatives from an interior optimum.

    A derivative-free optimiser stops where its trust region is small, which
    on a flat criterion can be 1e-5 (relative) from the optimum in theta.  Up
    to `steps` Newton steps ``x - H^{-1} g`` (each kept only if it does not
    raise the criterion beyond rounding, 1e-11 relative, and stays inside the
    bounds) bring it to the precision of the
    derivatives, so that two routes to the same criterion (rows, grouped
    statistics) end at the same point.  Skipped at a boundary.

    Parameters
    ----------
    fun : callable
    x : ndarray
        The optimiser's point.
    lower : ndarray
    fx : float
        ``fun(x)``.
    steps : int

    Returns
    -------
    (x, fx, gradient, hessian, evaluations)
        The derivatives are those at the returned point.

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda v: (v[0] - 1.0) ** 2 + 10 * (v[1] + 2.0) ** 2
    >>> x, fx, g, H, n = polish(f, np.array([1.001, -2.003]), np.array([0.0, -np.inf]), f([1.001, -2.003]))
    >>> np.round(x, 9).tolist()
    [1.0, -2.0]
    """
    evaluations = 0
    x = np.asarray(x, dtype=float)
    g, H = finite_differences(fun, x, lower, fx=fx)
    evaluations += 2 * x.size * x.size + 1
    for _ in range(steps):
        if np.any((lower == 0) & (x < SINGULAR_TOL)):
            break
        try:
            step = np.linalg.solve(np.linalg.cholesky(H).T, np.linalg.solve(np.linalg.cholesky(H), g))
        except np.linalg.LinAlgError:
            break
        trial = x - step
        if np.any(trial < lower):
            break
        f_trial = float(fun(trial))
        evaluations += 1
        if not f_trial <= fx + 1e-11 * abs(fx):
            break
        x, fx = trial, f_trial
        g, H = finite_differences(fun, x, lower, fx=fx)
        evaluations += 2 * x.size * x.size
        if np.max(np.abs(step)) < 1e-10 * (1.0 + np.max(np.abs(x))):
            break
    return x, fx, g, H, evaluations


@dataclass(frozen=True)
class ConvergenceCheck:
    """lme4's checkConv verdict.

    Attributes
    ----------
    singular : bool
        A bounded parameter (theta's diagonal) below :data:`SINGULAR_TOL`.
    converged : bool
        False when the scaled gradient is too large or the Hessian has
        negative eigenvalues or is singular.
    max_scaled_gradient : float
        ``max(min(|solve(chol(H), g)|, |g|))`` (NaN when not computed).
    messages : tuple of str
        lme4's wording.
    """

    singular: bool
    converged: bool
    max_scaled_gradient: float
    messages: tuple[str, ...]


def _check_hessian(H: np.ndarray, tol: float, kind: str) -> tuple[bool, list[str]]:
    what = f"{kind} Hessian" if kind else "Hessian"
    try:
        ev = np.linalg.eigvalsh(H)
    except np.linalg.LinAlgError:
        return False, ["Problem with Hessian check (infinite or missing values?)"]
    if (ev < -tol).any():
        return False, [f"Model failed to converge: degenerate {what} with {int((ev < -tol).sum())} negative eigenvalues"]
    if (np.abs(ev) < tol).any() or ev.min() <= 0:
        return False, [f"{what} is numerically singular: parameters are not uniquely determined"]
    messages = []
    if ev.max() * tol > 1:
        messages.append("Model is nearly unidentifiable: very large eigenvalue - Rescale variables?")
    if ev.min() / ev.max() < tol:
        messages.append("Model is nearly unidentifiable: large eigenvalue ratio - Rescale variables?")
    return True, messages


def check_convergence(gradient: np.ndarray, hessian: np.ndarray, x: np.ndarray, lower: np.ndarray,
                      n_theta: int) -> ConvergenceCheck:
    """lme4's ``checkConv`` at an optimum.

    Parameters
    ----------
    gradient, hessian : ndarray
        From :func:`finite_differences`.
    x : ndarray
        The optimum (theta first, then beta for a Laplace fit).
    lower : ndarray
        Lower bounds of `x`.
    n_theta : int
        Number of theta parameters at the start of `x`.

    Returns
    -------
    ConvergenceCheck

    Examples
    --------
    >>> import numpy as np
    >>> c = check_convergence(np.array([1e-6]), np.array([[2.0]]), np.array([0.5]), np.array([0.0]), 1)
    >>> c.singular, c.converged
    (False, True)
    >>> check_convergence(np.array([5.0]), np.array([[2.0]]), np.array([0.0]), np.array([0.0]), 1).singular
    True
    """
    lower = np.asarray(lower)[:n_theta]
    singular = bool(np.any(x[:n_theta][lower == 0] < SINGULAR_TOL))
    if singular:
        return ConvergenceCheck(True, True, float("nan"), ("boundary (singular) fit: see help('isSingular')",))
    messages: list[str] = []
    converged = True
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(hessian).T, gradient)
        worst = float(np.max(np.minimum(np.abs(scaled), np.abs(gradient))))
        if worst > GRADIENT_TOL:
            converged = False
            component = int(np.argmax(np.minimum(np.abs(scaled), np.abs(gradient)))) + 1
            messages.append(f"Model failed to converge with max|grad| = {worst:.6g} "
                            f"(tol = {GRADIENT_TOL:g}, component {component})")
    except np.linalg.LinAlgError:
        worst = float("nan")
        converged = False
        messages.append("unable to evaluate scaled gradient")
    if hessian.shape[0] > n_theta:
        ok, msgs = _check_hessian(hessian[n_theta:, n_theta:], HESSIAN_TOL, "fixed-effect")
        converged &= ok
        messages += msgs
    ok, msgs = _check_hessian(hessian, HESSIAN_TOL, "")
    converged &= ok
    messages += [m for m in msgs if m not in messages]
    return ConvergenceCheck(False, converged, worst, tuple(messages))

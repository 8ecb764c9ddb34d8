"""The engine's input: plain arrays for a mixed model, and one-factor statistics.

A :class:`MixedProblem` is what lme4 calls the model frame after ``lFormula``:
the fixed-effects matrix ``X``, the response, and one :class:`RandomBlock` per
random-effects term, each with the integer code of every row's level and the
``(n, q)`` matrix of that term's columns (``Z`` of the term before it is
spread over the levels).  A :class:`GroupedGaussian` holds the per-group
cross-products of a Gaussian model with one grouping factor, from which the
profiled REML / ML deviance is computed without the rows.

Nothing here imports PyMC; the arrays can come from any design builder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FAMILIES", "RandomBlock", "MixedProblem", "GroupedGaussian", "group_statistics"]

FAMILIES = ("gaussian", "bernoulli", "binomial", "poisson", "negbinomial", "cumulative")


def _as_float(name: str, value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=float)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has missing or infinite values; drop or impute those rows first")
    return arr


@dataclass(frozen=True)
class RandomBlock:
    """One random-effects term ``(terms | factor)`` as arrays.

    Attributes
    ----------
    factor : str
        Name of the grouping factor (``"Subject"``, ``"cask:batch"``).
    codes : ndarray of int, shape (n,)
        Level of each row, ``0 .. len(levels) - 1``.
    levels : tuple of str
        Level labels, in code order.
    Z : ndarray, shape (n, q)
        The term's columns per row (a column of ones for an intercept).
    terms : tuple of str
        Names of the ``q`` columns (``("(Intercept)", "Days")``).
    correlated : bool
        ``True`` for ``(1 + x | g)`` (a full lower-triangular relative
        covariance factor); ``False`` for ``(1 + x || g)`` (diagonal).

    Examples
    --------
    >>> import numpy as np
    >>> block = RandomBlock("g", np.array([0, 0, 1]), ("a", "b"), np.ones((3, 1)), ("(Intercept)",))
    >>> block.q, block.n_levels
    (1, 2)
    """

    factor: str
    codes: np.ndarray
    levels: tuple[str, ...]
    Z: np.ndarray
    terms: tuple[str, ...]
    correlated: bool = True

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes of factor {self.factor!r} must be a 1-d integer array")
        Z = np.asarray(self.Z, dtype=float)
        if Z.ndim == 1:
            Z = Z[:, None]
        if Z.shape != (codes.shape[0], len(self.terms)):
            raise ValueError(
                f"Z of factor {self.factor!r} has shape {Z.shape}; expected "
                f"({codes.shape[0]}, {len(self.terms)}) for terms {self.terms}"
            )
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.levels)):
            raise ValueError(
                f"codes of factor {self.factor!r} must lie in 0..{len(self.levels) - 1} "
                f"(one per level in `levels`)"
            )
        object.__setattr__(self, "codes", codes.astype(np.intp))
        object.__setattr__(self, "Z", _as_float(f"Z of factor {self.factor!r}", Z))
        object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        object.__setattr__(self, "terms", tuple(str(v) for v in self.terms))

    @property
    def q(self) -> int:
        """Number of random-effect columns of the term."""
        return len(self.terms)

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)


@dataclass(frozen=True)
class MixedProblem:
    """A mixed model as arrays: ``y ~ X beta + sum_b Z_b u_b``.

    Attributes
    ----------
    X : ndarray, shape (n, p)
        Fixed-effects model matrix (full column rank).
    y : ndarray, shape (n,)
        Response.  For ``"bernoulli"`` 0/1; for ``"binomial"`` the number of
        successes out of `trials`; for ``"poisson"`` counts.
    fixed_terms : tuple of str
        Names of the columns of `X`.
    blocks : tuple of RandomBlock
        Random-effects terms.  Two blocks may share a factor only where lme4
        would treat them as separate terms, e.g. ``(1 | g) + (0 + x | g)``.
    family : str
        ``"gaussian"`` (identity link), ``"bernoulli"`` or ``"binomial"``
        (logit link), ``"poisson"`` (log link).
    trials : ndarray, shape (n,), optional
        Binomial number of trials; required for ``"binomial"`` only.
    offset : ndarray, shape (n,), optional
        Known part of the linear predictor (``log(exposure)`` for a Poisson rate).
    weights : ndarray, shape (n,), optional
        Gaussian precision weights (lme4's ``weights``), or likelihood weights
        of the other families.
    link : str, optional
        A ``"cumulative"`` model's link: ``"logit"`` (default) or ``"probit"``.
    categories : tuple of str, optional
        A ``"cumulative"`` model's categories, lowest first (default
        ``"1", "2", ...``); ``y`` holds their codes ``0 .. K - 1`` and ``X`` has
        no intercept (the thresholds take its place).

    Examples
    --------
    >>> import numpy as np
    >>> g = RandomBlock("g", np.array([0, 0, 1, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> problem = MixedProblem(np.ones((4, 1)), np.array([1.0, 2.0, 3.0, 5.0]), ("(Intercept)",), (g,))
    >>> problem.n, problem.p, problem.family
    (4, 1, 'gaussian')
    """

    X: np.ndarray
    y: np.ndarray
    fixed_terms: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    family: str = "gaussian"
    trials: np.ndarray | None = None
    offset: np.ndarray | None = None
    weights: np.ndarray | None = None
    link: str | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"unknown family {self.family!r}; the engine fits {', '.join(FAMILIES)} "
                "(gaussian with identity link, bernoulli/binomial with logit, poisson with log)"
            )
        X = np.asarray(self.X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-d (n, p) array; got shape {X.shape}")
        n, p = X.shape
        if len(self.fixed_terms) != p:
            raise ValueError(f"fixed_terms names {len(self.fixed_terms)} columns but X has {p}")
        object.__setattr__(self, "X", _as_float("X", X))
        object.__setattr__(self, "y", _as_float("y", self.y, (n,)))
        object.__setattr__(self, "fixed_terms", tuple(str(t) for t in self.fixed_terms))
        blocks = tuple(self.blocks)
        if not blocks:
            raise ValueError("a mixed model needs at least one RandomBlock; for none use a GLM")
        for b in blocks:
            if b.codes.shape[0] != n:
                raise ValueError(f"factor {b.factor!r} has {b.codes.shape[0]} rows; X has {n}")
        object.__setattr__(self, "blocks", blocks)
        for name in ("trials", "offset", "weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_float(name, value, (n,)))
        if self.weights is not None and np.any(self.weights <= 0):
            raise ValueError("weights must be positive; drop rows with weight 0")
        if self.family == "binomial" and self.trials is None:
            raise ValueError("family 'binomial' needs `trials` (successes out of trials); "
                             "for 0/1 outcomes use family 'bernoulli'")
        if self.family != "binomial" and self.trials is not None:
            raise ValueError(f"`trials` is only for family 'binomial', not {self.family!r}")
        y = self.y
        if self.family == "bernoulli" and not np.all((y == 0) | (y == 1)):
            raise ValueError("family 'bernoulli' needs y in {0, 1}")
        if self.family == "binomial" and (np.any(y < 0) or np.any(y > self.trials)):
            raise ValueError("family 'binomial' needs 0 <= y <= trials")
        if self.family in ("poisson", "negbinomial") and (np.any(y < 0) or np.any(y != np.round(y))):
            raise ValueError(f"family {self.family!r} needs non-negative integer counts y")
        if self.family == "cumulative":
            self._check_cumulative()
        elif self.link is not None or self.categories is not None:
            raise ValueError(f"`link` and `categories` are for family 'cumulative', not {self.family!r}")

    def _check_cumulative(self) -> None:
        link = "logit" if self.link is None else self.link
        if link not in ("logit", "probit"):
            raise ValueError(f"unknown link {link!r} for family 'cumulative'; use 'logit' or 'probit'")
        y = self.y
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise ValueError("family 'cumulative' needs y as category codes 0, 1, ..., K - 1 (lowest first)")
        K = int(y.max()) + 1 if self.categories is None else len(self.categories)
        cats = tuple(str(k + 1) for k in range(K)) if self.categories is None else tuple(map(str, self.categories))
        missing = sorted(set(range(K)) - set(np.unique(y).astype(int)))
        if K < 2 or missing or y.max() >= K:
            raise ValueError(f"family 'cumulative' needs rows in each of its {K} categories (at least two); "
                             f"codes {missing} have none: drop or merge those categories")
        if self.p and np.any(np.ptp(self.X, axis=0) == 0):
            const = [t for t, c in zip(self.fixed_terms, np.ptp(self.X, axis=0) == 0) if c]
            raise ValueError(f"a cumulative model has no intercept (its thresholds take its place); the fixed "
                             f"column(s) {const} are constant: drop them from X")
        object.__setattr__(self, "link", link)
        object.__setattr__(self, "categories", cats)

    @property
    def n(self) -> int:
        """Number of rows."""
        return self.X.shape[0]

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return self.X.shape[1]


@dataclass(frozen=True)
class GroupedGaussian:
    """Per-group cross-products of a Gaussian model with one grouping factor.

    With rows ``i`` of group ``j``, ``X_j`` (n_j, p), ``Z_j`` (n_j, q) and
    precision weights ``w`` (1 when unweighted), the statistics are
    ``X_j' W X_j`` and so on.  They are sums, so they can be accumulated in
    chunks or by any engine that groups; the profiled deviance needs nothing
    else.

    Attributes
    ----------
    factor : str
    levels : tuple of str
    fixed_terms : tuple of str
    terms : tuple of str
        Names of the ``q`` random-effect columns.
    n_j : ndarray, shape (J,)
    XtX : ndarray, shape (J, p, p)
    XtZ : ndarray, shape (J, p, q)
    ZtZ : ndarray, shape (J, q, q)
    Xty : ndarray, shape (J, p)
    Zty : ndarray, shape (J, q)
    yty : ndarray, shape (J,)
    correlated : bool
    sum_log_weights : float
        ``sum(log w)`` over rows (0 when unweighted); enters the deviance.

    Examples
    --------
    >>> import numpy as np
    >>> g = RandomBlock("g", np.array([0, 0, 1, 1]), ("a", "b"), np.ones((4, 1)), ("(Intercept)",))
    >>> problem = MixedProblem(np.ones((4, 1)), np.array([1.0, 2.0, 3.0, 5.0]), ("(Intercept)",), (g,))
    >>> stats = group_statistics(problem)
    >>> stats.n_j.tolist(), stats.Zty[:, 0].tolist()
    ([2.0, 2.0], [3.0, 8.0])
    """

    factor: str
    levels: tuple[str, ...]
    fixed_terms: tuple[str, ...]
    terms: tuple[str, ...]
    n_j: np.ndarray
    XtX: np.ndarray
    XtZ: np.ndarray
    ZtZ: np.ndarray
    Xty: np.ndarray
    Zty: np.ndarray
    yty: np.ndarray
    correlated: bool = True
    sum_log_weights: float = 0.0

    def __post_init__(self) -> None:
        J, p, q = len(self.levels), len(self.fixed_terms), len(self.terms)
        shapes = {"n_j": (J,), "XtX": (J, p, p), "XtZ": (J, p, q), "ZtZ": (J, q, q),
                  "Xty": (J, p), "Zty": (J, q), "yty": (J,)}
        for name, shape in shapes.items():
            object.__setattr__(self, name, _as_float(name, getattr(self, name), shape))
        object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))

    @property
    def n(self) -> int:
        """Number of rows summarised."""
        return int(round(self.n_j.sum()))


def group_statistics(problem: MixedProblem) -> GroupedGaussian:
    """Per-group cross-products of a one-factor Gaussian problem.

    Parameters
    ----------
    problem : MixedProblem
        Family ``"gaussian"`` with exactly one random block.

    Returns
    -------
    GroupedGaussian
        Weighted by ``problem.weights`` and with ``problem.offset`` subtracted
        from ``y`` when given.

    Examples
    --------
    >>> import numpy as np
    >>> g = RandomBlock("g", np.array([0, 1, 1]), ("a", "b"), np.ones((3, 1)), ("(Intercept)",))
    >>> stats = group_statistics(MixedProblem(np.ones((3, 1)), np.arange(3.0), ("(Intercept)",), (g,)))
    >>> stats.yty.tolist()
    [0.0, 5.0]
    """
    if problem.family != "gaussian" or len(problem.blocks) != 1:
        raise ValueError(
            "group_statistics needs a gaussian problem with one random block; "
            f"got family {problem.family!r} with {len(problem.blocks)} blocks "
            "(fit those from the rows with fit_frequentist)"
        )
    block = problem.blocks[0]
    w = np.ones(problem.n) if problem.weights is None else problem.weights
    y = problem.y if problem.offset is None else problem.y - problem.offset
    X, Z, codes, J = problem.X, block.Z, block.codes, block.n_levels

    def gsum(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(values.shape[0], -1)
        out = np.zeros((J, flat.shape[1]))
        np.add.at(out, codes, flat)
        return out.reshape((J,) + values.shape[1:])

    wX = X * w[:, None]
    wZ = Z * w[:, None]
    return GroupedGaussian(
        factor=block.factor,
        levels=block.levels,
        fixed_terms=problem.fixed_terms,
        terms=block.terms,
        n_j=np.bincount(codes, minlength=J).astype(float),
        XtX=gsum(wX[:, :, None] * X[:, None, :]),
        XtZ=gsum(wX[:, :, None] * Z[:, None, :]),
        ZtZ=gsum(wZ[:, :, None] * Z[:, None, :]),
        Xty=gsum(wX * y[:, None]),
        Zty=gsum(wZ * y[:, None]),
        yty=np.bincount(codes, weights=w * y * y, minlength=J),
        correlated=block.correlated,
        sum_log_weights=float(np.log(w).sum()),
    )

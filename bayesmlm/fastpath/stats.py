"""Stage 2, design (fast path): per-group sufficient statistics.

For a Gaussian model with one grouping factor the likelihood reads the data
only through, per group j, the count n_j and the cross-products X'X, X'Z, Z'Z,
X'y, Z'y and y'y (see "The fast path" in DESIGN.md). With precision weights w
(lme4's: the residual variance of row i is sigma^2 / w_i) they are the weighted
cross-products X'WX, ..., y'Wy, with n_j the rows of positive weight and
sum(log w_i) for the log-determinant: y_j ~ N(X_j gamma, Z_j T Z_j' + sigma^2 W_j^-1)
gives the same formula with W inside every product, plus 1/2 sum(log w_i). They are group-by sums,
computed here in O(N) with :func:`numpy.bincount`; summing the statistics of
two disjoint sets of rows gives the statistics of their union, which is what
lets chunked files and Dask compute them (:mod:`bayesmlm.fastpath.readers`).

The columns are stored *shifted*: X's columns minus ``x_shift`` (zero for the
intercept) and y minus the offset and ``y_shift``. Shifting by about the means
keeps the cross-products free of cancellation when the outcome or a predictor
has a large mean; :meth:`GroupStats.shifted` re-expresses the statistics at any
other shift, exactly. Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..design.matrices import Design
from ..errors import SpecError
from .nesting import nesting_problem

__all__ = ["STATISTICS", "GroupStats", "group_stats", "collapse_problem", "collapsed_route", "accumulate", "default_shift"]

STATISTICS = (  # the fields of GroupStats that are per-group sums, in order
    "n", "XtX", "XtZ", "ZtZ", "Xty", "Zty", "yty", "x_sum", "z_sum", "y_sum", "w_sum", "log_w")


@dataclass(frozen=True, eq=False)
class GroupStats:
    """Sufficient statistics of a Gaussian model, per level of its one grouping factor.

    With X* = X - 1 x_shift' and y* = y - offset - y_shift (rows of group j),
    and W the diagonal of the rows' weights (the identity when unweighted):

    Attributes
    ----------
    factor : str
        The grouping factor.
    levels : tuple of str
        Its levels, in the order of the arrays' first axis (as ``Design``).
    fixed_terms, random_terms : tuple of str
        Names of X's columns, and of Z's (every block of the factor, in order).
    x_shift : ndarray (p,)
    y_shift : float
    n : ndarray (J,)
        Rows per group in the likelihood: of positive weight (every row when
        unweighted).
    XtX : ndarray (J, p, p)
        X*'W X*; likewise the other cross-products.
    XtZ : ndarray (J, p, q)
    ZtZ : ndarray (J, q, q)
    Xty : ndarray (J, p)
    Zty : ndarray (J, q)
    yty : ndarray (J,)
    x_sum : ndarray (J, p)
    z_sum : ndarray (J, q)
    y_sum : ndarray (J,)
        Weighted column sums of X*, Z and y* per group (1'W X*, ...).
    w_sum : ndarray (J,)
        Sum of the weights (= n when unweighted).
    log_w : ndarray (J,)
        Sum of log w_i over the rows of positive weight (0 when unweighted).
    """

    factor: str
    levels: tuple[str, ...]
    fixed_terms: tuple[str, ...]
    random_terms: tuple[str, ...]
    x_shift: np.ndarray
    y_shift: float
    n: np.ndarray
    XtX: np.ndarray
    XtZ: np.ndarray
    ZtZ: np.ndarray
    Xty: np.ndarray
    Zty: np.ndarray
    yty: np.ndarray
    x_sum: np.ndarray
    z_sum: np.ndarray
    y_sum: np.ndarray
    w_sum: np.ndarray
    log_w: np.ndarray

    @property
    def n_obs(self) -> int:
        """Number of rows summarised (of positive weight)."""
        return int(self.n.sum())

    @property
    def n_groups(self) -> int:
        """Number of groups J."""
        return len(self.levels)

    def shifted(self, x_shift, y_shift: float) -> "GroupStats":
        """The same statistics with X and y shifted by other constants (exact algebra).

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
        >>> s = group_stats(m.design)
        >>> raw = s.shifted([0.0, 0.0], 0.0)
        >>> bool(abs(raw.y_sum.sum() - m.design.y.sum()) < 1e-6)
        True
        """
        x_shift = np.asarray(x_shift, dtype=float)
        d, e = x_shift - self.x_shift, float(y_shift) - self.y_shift
        n = self.w_sum  # every shifted sum is weighted
        nd = n[:, None] * d
        return replace(
            self, x_shift=x_shift, y_shift=float(y_shift),
            XtX=self.XtX - self.x_sum[:, :, None] * d[None, None, :] - d[None, :, None] * self.x_sum[:, None, :]
            + nd[:, :, None] * d[None, None, :],
            XtZ=self.XtZ - d[None, :, None] * self.z_sum[:, None, :],
            Xty=self.Xty - self.x_sum * e - d * self.y_sum[:, None] + nd * e,
            Zty=self.Zty - self.z_sum * e,
            yty=self.yty - 2 * e * self.y_sum + n * e * e,
            x_sum=self.x_sum - nd,
            y_sum=self.y_sum - n * e,
        )


def collapse_problem(design: Design) -> str | None:
    """Why the random effects of a design cannot be integrated out, or None if they can.

    The fast path needs a Gaussian outcome and one grouping factor (several
    random blocks on that factor are fine: their covariance is block-diagonal),
    or several grouping factors each nested in the next coarser one (the
    nested route, :mod:`bayesmlm.fastpath.nested_stats`).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> collapse_problem(m.design) is None
    True
    """
    family = design.spec.family.name
    if family != "gaussian":
        return f"the family is '{family}': only a gaussian outcome has random effects that integrate out in closed form"
    groups = design.spec.groups
    if len(groups) > 1:
        problem = nesting_problem(design)
        if problem:
            return f"{problem}; the collapsed likelihood needs one grouping factor or nested ones"
        if design.weights is not None:
            return "the model has weights and nested grouping factors: the nested route does not take weights yet"
    return None


def collapsed_route(design: Design) -> str | None:
    """The collapsed route a design takes: ``"one-factor"``, ``"nested"``, or None where none applies.

    Examples
    --------
    >>> import bayesmlm
    >>> collapsed_route(bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes")).design)
    'nested'
    """
    if collapse_problem(design):
        return None
    return "nested" if len(design.spec.groups) > 1 else "one-factor"


def accumulate(codes: np.ndarray, n_groups: int, X: np.ndarray, Z: np.ndarray, y: np.ndarray,
               w: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The group-by sums of :class:`GroupStats` for rows already shifted, as a dict of arrays.

    Parameters
    ----------
    codes : ndarray of int (N,)
        Each row's group, 0 .. n_groups - 1.
    n_groups : int
    X, Z : ndarray (N, p), (N, q)
    y : ndarray (N,)
    w : ndarray (N,), optional
        Precision weights, 0 or more (checked before); None: all 1.

    Examples
    --------
    >>> import numpy as np
    >>> s = accumulate(np.array([0, 0, 1]), 2, np.ones((3, 1)), np.ones((3, 1)), np.array([1.0, 2.0, 3.0]))
    >>> s["n"].tolist(), s["Zty"].ravel().tolist(), s["yty"].tolist()
    ([2.0, 1.0], [3.0, 3.0], [5.0, 9.0])
    >>> s = accumulate(np.array([0, 0, 1]), 2, np.ones((3, 1)), np.ones((3, 1)), np.array([1.0, 2.0, 3.0]),
    ...                np.array([2.0, 0.0, 1.0]))
    >>> s["n"].tolist(), s["yty"].tolist(), s["w_sum"].tolist()
    ([1.0, 1.0], [2.0, 9.0], [2.0, 1.0])
    """
    codes = np.asarray(codes, dtype=np.int64)
    p, q = X.shape[1], Z.shape[1]
    cols = np.column_stack([X, Z, y]).astype(float, copy=False)
    k = p + q + 1
    sums = np.empty((n_groups, k))
    gram = np.empty((n_groups, k, k))
    wcols = cols if w is None else cols * np.asarray(w, dtype=float)[:, None]
    for a in range(k):
        sums[:, a] = np.bincount(codes, weights=wcols[:, a], minlength=n_groups)
        for b in range(a, k):
            gram[:, a, b] = gram[:, b, a] = np.bincount(codes, weights=wcols[:, a] * cols[:, b], minlength=n_groups)
    xs, zs, ys = slice(0, p), slice(p, p + q), p + q
    if w is None:
        n = np.bincount(codes, minlength=n_groups).astype(float)
        weighted = {"w_sum": n.copy(), "log_w": np.zeros(n_groups)}
    else:
        w = np.asarray(w, dtype=float)
        positive = w > 0
        n = np.bincount(codes, weights=positive.astype(float), minlength=n_groups)
        log_w = np.log(np.where(positive, w, 1.0))
        weighted = {"w_sum": np.bincount(codes, weights=w, minlength=n_groups),
                    "log_w": np.bincount(codes, weights=log_w, minlength=n_groups)}
    return weighted | {
        "n": n,
        "XtX": gram[:, xs, xs].copy(), "XtZ": gram[:, xs, zs].copy(), "ZtZ": gram[:, zs, zs].copy(),
        "Xty": gram[:, xs, ys].copy(), "Zty": gram[:, zs, ys].copy(), "yty": gram[:, ys, ys].copy(),
        "x_sum": sums[:, xs].copy(), "z_sum": sums[:, zs].copy(), "y_sum": sums[:, ys].copy(),
    }


def default_shift(design: Design) -> tuple[np.ndarray, float]:
    """Column means of X (0 for the intercept) and the mean outcome: the shift :func:`group_stats` uses.

    Without an intercept the shift is zero (a constant cannot be absorbed).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> default_shift(m.design)[0].tolist()
    [0.0, 4.5]
    """
    if not design.has_intercept:
        return design.x_centre, 0.0
    return design.x_centre, float(_outcome(design).mean())


def _outcome(design: Design) -> np.ndarray:
    """y minus the offset: what the linear predictor X gamma + Z u models."""
    return design.y - design.offset if design.offset is not None else design.y


def group_stats(design: Design, x_shift=None, y_shift: float | None = None) -> GroupStats:
    """Per-group sufficient statistics of an in-memory design, in O(N).

    Parameters
    ----------
    design : Design
        A gaussian design with one grouping factor; its weights, if any,
        make the statistics weighted.
    x_shift, y_shift : optional
        Shift of X's columns and of y; by default :func:`default_shift`.

    Returns
    -------
    GroupStats

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = group_stats(m.design)
    >>> s.n_groups, s.ZtZ.shape, s.n[:3].tolist()
    (18, (18, 2, 2), [10.0, 10.0, 10.0])
    """
    problem = collapse_problem(design)
    if problem:
        raise SpecError(f"No sufficient statistics for this model: {problem}. Fit it with method='full'.")
    if len(design.spec.groups) > 1:
        raise SpecError(f"The grouping factors {', '.join(design.spec.groups)} are nested: their statistics are "
                        "bayesmlm.fastpath.nested_stats.nested_stats(design), per leaf group.")
    factor = design.factors[design.spec.groups[0]]
    d_x, d_y = default_shift(design)
    x_shift = d_x if x_shift is None else np.asarray(x_shift, dtype=float)
    y_shift = d_y if y_shift is None else float(y_shift)
    blocks = [b for b in design.blocks if b.group == factor.name]
    Z = np.column_stack([b.Z for b in blocks])
    sums = accumulate(factor.index, factor.n_levels, design.X - x_shift, Z, _outcome(design) - y_shift, design.weights)
    return GroupStats(factor.name, tuple(factor.levels), tuple(design.fixed_terms), tuple(t for b in blocks for t in b.terms),
                      x_shift, y_shift, **sums)

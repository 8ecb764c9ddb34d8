"""The relative covariance factor of a random-effects term and its parameters.

As in lme4, the covariance of one level's effects is ``sigma^2 T T'`` (Gaussian)
or ``T T'`` (other families) with ``T`` lower triangular.  ``theta`` lists
``T``'s free elements column by column from the lower triangle (lme4's order,
``(T11, T21, T22)`` for ``q = 2``); a diagonal element has lower bound 0, the
others none.  An uncorrelated term (``||``) has a diagonal ``T`` and only the
diagonal in ``theta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ThetaLayout", "theta_layout", "relative_factor"]


@dataclass(frozen=True)
class ThetaLayout:
    """Where one term's parameters sit in the full theta vector.

    Attributes
    ----------
    q : int
        Number of random-effect columns of the term.
    correlated : bool
    start : int
        Index of the term's first parameter in theta.
    rows, cols : ndarray of int
        Position in ``T`` of each of the term's parameters.

    Examples
    --------
    >>> layout = theta_layout(2, True, start=0)
    >>> layout.size, layout.rows.tolist(), layout.cols.tolist()
    (3, [0, 1, 1], [0, 0, 1])
    """

    q: int
    correlated: bool
    start: int
    rows: np.ndarray
    cols: np.ndarray

    @property
    def size(self) -> int:
        """Number of parameters of the term."""
        return int(self.rows.size)

    @property
    def stop(self) -> int:
        """One past the index of the term's last parameter."""
        return self.start + self.size

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds: 0 on the diagonal, minus infinity elsewhere."""
        return np.where(self.rows == self.cols, 0.0, -np.inf)

    @property
    def initial(self) -> np.ndarray:
        """lme4's starting value: ``T`` the identity."""
        return np.where(self.rows == self.cols, 1.0, 0.0)


def theta_layout(q: int, correlated: bool, start: int = 0) -> ThetaLayout:
    """The theta layout of a term with `q` columns.

    Parameters
    ----------
    q : int
        Number of random-effect columns.
    correlated : bool
        Full lower triangle (``True``) or diagonal only.
    start : int
        Index of the first parameter in the full theta vector.

    Returns
    -------
    ThetaLayout

    Examples
    --------
    >>> theta_layout(3, False).rows.tolist()
    [0, 1, 2]
    """
    if correlated:
        cols, rows = [], []
        for c in range(q):
            for r in range(c, q):
                rows.append(r)
                cols.append(c)
    else:
        rows = cols = list(range(q))
    return ThetaLayout(q, bool(correlated), int(start), np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp))


def relative_factor(theta: np.ndarray, layout: ThetaLayout) -> np.ndarray:
    """The lower-triangular ``T`` of one term from the full theta vector.

    Parameters
    ----------
    theta : ndarray
        Full theta vector.
    layout : ThetaLayout
        The term's layout.

    Returns
    -------
    ndarray, shape (q, q)

    Examples
    --------
    >>> import numpy as np
    >>> relative_factor(np.array([2.0, 0.5, 1.0]), theta_layout(2, True))
    array([[2. , 0. ],
           [0.5, 1. ]])
    """
    T = np.zeros((layout.q, layout.q))
    T[layout.rows, layout.cols] = theta[layout.start:layout.stop]
    return T

"""Plots of a fitted multilevel model, drawn from its posterior; each returns a matplotlib Figure.

One module per plot. Every plot reads a :class:`~bayesmlm.Fit` (never refits),
takes the term as its first option and everything else by keyword, and lets
each visual element be restyled or left out with ``visuals={name: {...} or False}``.

- :func:`bar`: each group's effect as a bar with its credible interval.
- :func:`slopes`: each group's predicted line, and the population line with its band.
- :func:`forest`: each group's effect with its own 50% and 95% intervals.
- :func:`correlation`: two group-specific coefficients against each other, with the population ellipse.
- :func:`shrinkage`: no pooling to partial pooling, against complete pooling.
- :func:`save_all`: all five as PNG and SVG.

Examples
--------
>>> import bayesmlm
>>> fit = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy")).fit()  # doctest: +SKIP
>>> bayesmlm.plots.forest(fit).savefig("forest.png")  # doctest: +SKIP
"""

from .bar import bar
from .correlation import correlation
from .forest import forest
from .save import save_all
from .shrinkage import shrinkage
from .slopes import slopes

__all__ = ["bar", "slopes", "forest", "correlation", "shrinkage", "save_all"]

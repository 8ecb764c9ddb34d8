"""bayesmlm's own frequentist engine: lme4's profiled REML / ML and glmer's Laplace.

Pure numpy / scipy (no PyMC).  The input is plain arrays
(:class:`MixedProblem`, or :class:`GroupedGaussian` statistics for a
one-factor Gaussian model); the output a :class:`FrequentistFit` with lme4's
tables.  Modules, one idea each:

- ``problem``: the input records and :func:`group_statistics`.
- ``covariance``: theta and the relative covariance factor (lme4's layout).
- ``blocked``: the blocked Cholesky of ``Lambda' Z' W Z Lambda + I``.
- ``profiled``: the profiled REML criterion and ML deviance.
- ``laplace``: PIRLS and the Laplace deviance (nAGQ = 1).
- ``optimize``: COBYQA with a restart, lme4's deriv12 and checkConv.
- ``tables``: lme4's fixed-effect, VarCorr and ranef tables.
- ``result``: the :class:`FrequentistFit` record.
- ``fit``: :func:`fit_frequentist` and :func:`fit_grouped`.
- ``design_fit``: :func:`fit_design`, the engine on a model's design.

Examples
--------
>>> import numpy as np
>>> from bayesmlm.frequentist_engine import MixedProblem, RandomBlock, fit_frequentist
>>> rng = np.random.default_rng(0)
>>> codes = np.repeat(np.arange(12), 8)
>>> x = rng.normal(size=96)
>>> y = 1 + 0.5 * x + rng.normal(size=12)[codes] + rng.normal(size=96)
>>> X = np.column_stack([np.ones(96), x])
>>> g = RandomBlock("g", codes, tuple(f"g{j}" for j in range(12)), np.ones((96, 1)), ("(Intercept)",))
>>> fit = fit_frequentist(MixedProblem(X, y, ("(Intercept)", "x"), (g,)))
>>> fit.fixed["term"].tolist()
['(Intercept)', 'x']
"""

from .fit import fit_frequentist, fit_grouped, theta_names
from .problem import FAMILIES, GroupedGaussian, MixedProblem, RandomBlock, group_statistics
from .result import FrequentistFit, OptimizerLog

__all__ = [
    "FAMILIES",
    "RandomBlock",
    "MixedProblem",
    "GroupedGaussian",
    "group_statistics",
    "fit_frequentist",
    "fit_grouped",
    "theta_names",
    "FrequentistFit",
    "OptimizerLog",
]

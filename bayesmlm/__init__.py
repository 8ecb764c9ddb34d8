"""bayesmlm: Bayesian multilevel models, from level equations to plots.

Examples
--------
>>> import bayesmlm
>>> data = bayesmlm.datasets.load("sleepstudy")
>>> model = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data)
>>> fit = model.fit(draws=500, seed=1)          # doctest: +SKIP
>>> fit.fixef()                                 # doctest: +SKIP
"""

from . import datasets
from .errors import ConvergenceWarning, DataError, RowsDroppedWarning, SpecError
from .comparison.loo import compare
from .model import MLM
from .comparison.pooling import pooling
from .design.priors import Prior
from .results.fit import Fit
from .results.store import load

__all__ = ["MLM", "Fit", "Prior", "load", "datasets", "SpecError", "DataError", "ConvergenceWarning",
           "RowsDroppedWarning", "pooling", "compare"]
__version__ = "0.1.0"

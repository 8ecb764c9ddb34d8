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
from .comparison.loo import compare
from .comparison.pooling import pooling
from .design.priors import Prior
from .design.weights import normalize_weights
from .errors import (
           ArgumentError,
           ConfigError,
           ConvergenceWarning,
           DataError,
           FitFileError,
           NestingWarning,
           RowsDroppedWarning,
           SeparationWarning,
           SpecError,
           UnsupportedModelError,
           WeightsWarning,
)
from .model import MLM
from .results.fit import Fit, load

__all__ = ["MLM", "Fit", "Prior", "load", "datasets", "pooling", "compare", "normalize_weights", "SpecError", "DataError", "ArgumentError",
           "FitFileError", "ConfigError", "UnsupportedModelError", "ConvergenceWarning", "RowsDroppedWarning",
           "SeparationWarning", "WeightsWarning", "NestingWarning"]
__version__ = "0.1.0"

"""Error and warning types shared by every stage.

Whether a check warns or raises is decided where these are raised; the types
only say which kind of problem it is.
"""

__all__ = ["SpecError", "DataError", "ArgumentError", "FitFileError", "ConfigError", "UnsupportedModelError", "ConvergenceWarning",
           "RowsDroppedWarning", "SeparationWarning", "WeightsWarning", "NestingWarning"]


class SpecError(ValueError):
    """The model as written cannot be understood (formula, terms, priors)."""


class DataError(ValueError):
    """The data cannot support the model (missing columns, bad values)."""


class ArgumentError(ValueError):
    """An argument of a public function has the wrong type or is out of range; the message names it and what it takes."""


class FitFileError(ValueError):
    """A saved fit cannot be written or read back (missing folder or file, truncated, corrupt, or not written by
    ``Fit.save``); the message names the file."""


class ConfigError(ValueError):
    """A config file that cannot be run; the message names the key and the allowed values."""


class UnsupportedModelError(ValueError):
    """The model has no frequentist counterpart in the engine that was asked for; the message says what to use."""


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the posterior may not be trustworthy."""


class RowsDroppedWarning(UserWarning):
    """Rows with missing values in the model's columns were dropped."""


class SeparationWarning(UserWarning):
    """A predictor separates the outcome of a logit model, so the data alone put its coefficient at infinity:
    the estimate is set by its prior."""


class WeightsWarning(UserWarning):
    """Weights whose sum is far from the number of rows: a weighted likelihood then counts the data as that many
    rows, so the posterior is too narrow or too wide (see :func:`bayesmlm.normalize_weights`)."""


class NestingWarning(UserWarning):
    """Two grouping factors written as crossed whose labels look nested (class 1, 2, 3 reused in every school):
    the message says how to write the nesting, ``(1 | school/class)``."""

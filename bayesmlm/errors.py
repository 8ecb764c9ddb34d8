"""Error and warning types shared by every stage.

Whether a check warns or raises is decided where these are raised; the types
only say which kind of problem it is.
"""

__all__ = ["SpecError", "DataError", "ConvergenceWarning", "RowsDroppedWarning"]


class SpecError(ValueError):
    """The model as written cannot be understood (formula, terms, priors)."""


class DataError(ValueError):
    """The data cannot support the model (missing columns, bad values)."""


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the posterior may not be trustworthy."""


class RowsDroppedWarning(UserWarning):
    """Rows with missing values in the model's columns were dropped."""

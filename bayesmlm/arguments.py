"""Checks of the public arguments that several stages take: counts, seeds, probabilities, flags.

Each raises :class:`~bayesmlm.ArgumentError` naming the argument, what it
takes and what it got, before any work starts (a negative seed used to fail
inside nutpie as an OverflowError). Nothing here imports PyMC.
"""

from __future__ import annotations

import numbers

from .errors import ArgumentError

__all__ = ["check_count", "check_seed", "check_probability", "check_flag", "SEED_MAX"]

SEED_MAX = 2**32 - 1
"""The largest seed: every sampler and NumPy take seeds from 0 to 2**32 - 1."""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int, if it is a whole number of at least ``minimum``.

    Examples
    --------
    >>> check_count(500, "draws")
    500
    >>> check_count(2.5, "draws")
    Traceback (most recent call last):
    ...
    bayesmlm.errors.ArgumentError: draws must be a whole number of at least 1; got 2.5 (float).
    """
    if not _is_int(value) or value < minimum:
        raise ArgumentError(f"{name} must be a whole number of at least {minimum}; got {value!r} ({type(value).__name__}).")
    return int(value)


def check_seed(seed, name: str = "seed") -> int | None:
    """A seed (None, or a whole number from 0 to :data:`SEED_MAX`) as an int.

    Examples
    --------
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    bayesmlm.errors.ArgumentError: seed must be None or a whole number from 0 to 4294967295; got -1 (int).
    """
    if seed is None:
        return None
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise ArgumentError(f"{name} must be None or a whole number from 0 to {SEED_MAX}; got {seed!r} ({type(seed).__name__}).")
    return int(seed)


def check_probability(value, name: str = "prob") -> float:
    """A probability strictly between 0 and 1, as a float.

    Examples
    --------
    >>> check_probability("95%")
    Traceback (most recent call last):
    ...
    bayesmlm.errors.ArgumentError: prob must be a number between 0 and 1 (not included); got '95%' (str).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ArgumentError(f"{name} must be a number between 0 and 1 (not included); got {value!r} ({type(value).__name__}).")
    return float(value)


def check_flag(value, name: str) -> bool:
    """A True/False argument.

    Examples
    --------
    >>> check_flag("no", "progressbar")
    Traceback (most recent call last):
    ...
    bayesmlm.errors.ArgumentError: progressbar must be True or False; got 'no' (str).
    """
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return value

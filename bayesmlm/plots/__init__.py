"""Plots of a fitted multilevel model; each reads a Fit and returns a matplotlib Figure."""

from .bar import bar
from .correlation import correlation
from .forest import forest
from .slopes import slopes

__all__ = ["bar", "slopes", "forest", "correlation"]

"""Write every plot of a fit to a folder."""

from __future__ import annotations

import warnings
from pathlib import Path

from . import common as c
from .bar import bar
from .correlation import correlation
from .forest import forest
from .shrinkage import shrinkage
from .slopes import slopes

__all__ = ["save_all", "PLOTS"]

PLOTS = ("bar", "slopes", "forest", "correlation", "shrinkage")


def save_all(fit, folder, *, term: str | None = None, factor: str | None = None, formats: tuple[str, ...] = ("png", "svg"),
             dpi: int = 150) -> list[Path]:
    """Draw the five plots of ``term`` and write each in every format: ``folder/bar.png``, ...

    A plot the model cannot support is skipped with a warning that says
    why: ``slopes`` needs a slope term, ``correlation`` needs a second
    group-specific coefficient.

    Parameters
    ----------
    fit : Fit
    folder : str or Path
        Created if missing; files in it with the same names are replaced.
    term : str, optional
        Default: the first random slope.
    factor : str, optional
        Grouping factor (for a nested one its full name, e.g. ``"school:class"``); default: the first the formula names.
    formats : tuple of str
        File formats matplotlib can write (``"png"``, ``"svg"``, ``"pdf"``).
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    list of Path
        The files written, plot by plot.

    Examples
    --------
    >>> bayesmlm.plots.save_all(fit, "figures")  # doctest: +SKIP
    [PosixPath('figures/bar.png'), PosixPath('figures/bar.svg'), ...]
    """
    factor = c.resolve_factor(fit, factor)
    term = c.resolve_term(fit, factor, term)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in _drawers(fit, factor, term).items():
        try:
            fig = draw()
        except ValueError as err:
            warnings.warn(f"save_all skipped the {name} plot: {err}", UserWarning, stacklevel=2)
            continue
        for fmt in formats:
            path = folder / f"{name}.{fmt}"
            fig.savefig(path, dpi=dpi)
            written.append(path)
    return written


def _drawers(fit, factor: str, term: str) -> dict:
    others = [t for t in c.coef_terms(fit, factor) if t != term]
    return {
        "bar": lambda: bar(fit, term, factor=factor),
        "slopes": lambda: slopes(fit, term, factor=factor),
        "forest": lambda: forest(fit, term, factor=factor),
        "correlation": lambda: correlation(fit, term, others[0] if others else term, factor=factor),
        "shrinkage": lambda: shrinkage(fit, term, factor=factor),
    }

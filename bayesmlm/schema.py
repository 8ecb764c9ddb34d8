"""The posterior's naming scheme: variable names, dimensions and pair labels.

Every stage that writes draws (the full model, the fast path and its
recovery of u) or reads them (tables, predictions, plots) names them here,
so the routes cannot drift apart. For a random block labelled ``b`` (the
grouping factor, ``g.1`` for a second block on ``g``) on factor ``g``:

================ ========================== ==================================
variable         dimensions                 what
================ ========================== ==================================
``fixef``        (``fixed_term``)           fixed effects gamma
``sigma``        ()                         residual SD (families with one)
``nu``           ()                         Student-t degrees of freedom
``phi``          ()                         negative binomial shape
``thresholds``   (``threshold``)            cumulative model's ordered cut-points
``sd_<b>``       (``<b>_term``)             SDs of the block's random terms
``cor_<b>``      (``<b>_pair``)             correlations, upper triangle by rows
``u_<b>``        (``<g>``, ``<b>_term``)    random effects per group
================ ========================== ==================================

``<b>`` and ``<g>`` are made safe for names by :func:`safe_name`. Nothing
here imports PyMC.

Examples
--------
>>> sd_var("country"), cor_var("country"), u_var("school:class")
('sd_country', 'cor_country', 'u_school_class')
>>> variable_dims("country", "country", correlated=True)["u_country"]
('country', 'country_term')
"""

from __future__ import annotations

import re

__all__ = ["FIXED", "FIXED_DIM", "SIGMA", "NU", "PHI", "THRESHOLDS", "THRESHOLD_DIM", "FAMILY_VARIABLES", "threshold_names",
           "safe_name", "level_dim", "term_dim", "pair_dim", "pair_names", "split_pair",
           "sd_var", "cor_var", "u_var", "block_coords", "variable_dims", "is_parameter"]

FIXED = "fixef"
FIXED_DIM = "fixed_term"
SIGMA = "sigma"
NU = "nu"
PHI = "phi"
THRESHOLDS = "thresholds"
THRESHOLD_DIM = "threshold"
FAMILY_VARIABLES = (SIGMA, NU, PHI, THRESHOLDS)
"""The family's own parameters, beside the regression's: those a family has are in its posterior."""
_BLOCK_PREFIXES = ("sd_", "cor_", "u_")


def threshold_names(categories: tuple[str, ...]) -> list[str]:
    """Labels of a cumulative model's thresholds: the boundary between two neighbouring categories.

    Examples
    --------
    >>> threshold_names(("1", "2", "3"))
    ['1|2', '2|3']
    """
    return [f"{a}|{b}" for a, b in zip(categories[:-1], categories[1:])]


def safe_name(label: str) -> str:
    """A label made safe for a variable or dimension name (``a:b`` -> ``a_b``).

    Examples
    --------
    >>> safe_name("school:class.1")
    'school_class_1'
    """
    return re.sub(r"\W", "_", label)


def level_dim(factor: str) -> str:
    """Dimension name of a grouping factor's levels.

    Examples
    --------
    >>> level_dim("school:class")
    'school_class'
    """
    return safe_name(factor)


def term_dim(label: str) -> str:
    """Dimension name of a random block's terms.

    Examples
    --------
    >>> term_dim("Subject")
    'Subject_term'
    """
    return f"{safe_name(label)}_term"


def pair_dim(label: str) -> str:
    """Dimension name of a random block's correlation pairs.

    Examples
    --------
    >>> pair_dim("Subject")
    'Subject_pair'
    """
    return f"{safe_name(label)}_pair"


def pair_names(terms: tuple[str, ...]) -> list[str]:
    """Labels of the correlations of a block, upper triangle by rows.

    Examples
    --------
    >>> pair_names(("(Intercept)", "x", "z"))
    ['(Intercept):x', '(Intercept):z', 'x:z']
    """
    return [f"{a}:{b}" for i, a in enumerate(terms) for b in terms[i + 1:]]


def split_pair(pair: str, terms: tuple[str, ...]) -> tuple[str, str]:
    """The two terms of a pair label (terms may contain ``:`` themselves).

    Examples
    --------
    >>> split_pair("(Intercept):x:w", ("(Intercept)", "x:w"))
    ('(Intercept)', 'x:w')
    """
    for a, b in zip(*_upper(terms)):
        if pair == f"{a}:{b}":
            return a, b
    raise KeyError(f"{pair!r} is not a pair of the terms {list(terms)}.")


def _upper(terms: tuple[str, ...]) -> tuple[list[str], list[str]]:
    firsts = [a for i, a in enumerate(terms) for _ in terms[i + 1:]]
    seconds = [b for i, _ in enumerate(terms) for b in terms[i + 1:]]
    return firsts, seconds


def sd_var(label: str) -> str:
    """Name of a block's SDs.

    Examples
    --------
    >>> sd_var("Subject")
    'sd_Subject'
    """
    return f"sd_{safe_name(label)}"


def cor_var(label: str) -> str:
    """Name of a block's correlations.

    Examples
    --------
    >>> cor_var("Subject")
    'cor_Subject'
    """
    return f"cor_{safe_name(label)}"


def u_var(label: str) -> str:
    """Name of a block's random effects.

    Examples
    --------
    >>> u_var("Subject")
    'u_Subject'
    """
    return f"u_{safe_name(label)}"


def block_coords(label: str, terms: tuple[str, ...], correlated: bool) -> dict[str, list[str]]:
    """The coordinates of one block's term (and pair) dimensions.

    Examples
    --------
    >>> block_coords("Subject", ("(Intercept)", "Days"), True)
    {'Subject_term': ['(Intercept)', 'Days'], 'Subject_pair': ['(Intercept):Days']}
    """
    coords = {term_dim(label): list(terms)}
    if correlated:
        coords[pair_dim(label)] = pair_names(terms)
    return coords


def variable_dims(label: str, group: str, correlated: bool) -> dict[str, tuple[str, ...]]:
    """The dimensions of one block's variables, by name.

    Examples
    --------
    >>> variable_dims("Subject", "Subject", correlated=False)
    {'sd_Subject': ('Subject_term',), 'u_Subject': ('Subject', 'Subject_term')}
    """
    dims = {sd_var(label): (term_dim(label),)}
    if correlated:
        dims[cor_var(label)] = (pair_dim(label),)
    dims[u_var(label)] = (level_dim(group), term_dim(label))
    return dims


def is_parameter(name: str, *, random_effects: bool = True) -> bool:
    """Whether a posterior variable is a model parameter that tables report (not a sampler's helper).

    ``random_effects=False`` leaves out the ``u_<b>`` (the population-level
    parameters only).

    Examples
    --------
    >>> [n for n in ("fixef", "b_centred", "sd_g", "chol_g", "u_g", "sigma", "nu") if is_parameter(n)]
    ['fixef', 'sd_g', 'u_g', 'sigma', 'nu']
    >>> [n for n in ("fixef", "sd_g", "cor_g", "u_g") if is_parameter(n, random_effects=False)]
    ['fixef', 'sd_g', 'cor_g']
    """
    prefixes = _BLOCK_PREFIXES if random_effects else ("sd_", "cor_")
    return name in (FIXED, *FAMILY_VARIABLES) or name.startswith(prefixes)

"""Example data sets shipped with bayesmlm.

Four real data sets exported unchanged from R packages, and one simulated
stand-in for the World Values Survey extract used in the tutorial
"Visualization of Multilevel Modeling":

============== ======= ====================== =====================================
name           rows    groups                 what
============== ======= ====================== =====================================
wvs7_sim       91,175  64 countries           SIMULATED social media use and
                                              attitude to technology (WVS-7 like)
sleepstudy     180     18 subjects            reaction time under sleep deprivation
radon          919     85 counties            Minnesota household radon
hsb82          7,185   160 schools            High School and Beyond maths scores
ucb_admissions 24      6 departments          UC Berkeley admissions, 1973
============== ======= ====================== =====================================

Use :func:`load` to get one as a :class:`pandas.DataFrame` and
:func:`describe` for the table above with sources.  Grouping and ID columns
(``country``, ``Subject``, ``county``, ``school``, ``Dept``) are read as
strings, so they are labels, never numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pandas as pd

__all__ = ["load", "describe"]


@dataclass(frozen=True)
class _Dataset:
    file: str
    rows: int
    groups: int
    grouping: str
    simulated: bool
    dtypes: dict
    description: str
    source: str


_WVS7_TARGETS = (
    "REML targets from the tutorial (lme4), with this simulation's statsmodels "
    "MixedLM REML estimates in brackets: "
    "m0 tech ~ 1 + (1|country): intercept 7.04 (7.03), country variance 0.536 (0.534), "
    "residual variance 5.68 (5.70), ICC 0.086 (0.086); "
    "m1 tech ~ smu + (1|country): smu -0.045 (-0.046), country variance 0.539 (0.540); "
    "m2 tech ~ smu + (1 + smu|country): intercept 7.18 (7.17), smu -0.054 (-0.054), "
    "intercept variance 0.447 (0.454), slope variance 0.0059 (0.0059), "
    "intercept-slope correlation 0.16 (0.16), residual variance 5.66 (5.68)."
)

_DATASETS: dict[str, _Dataset] = {
    "wvs7_sim": _Dataset(
        file="wvs7_sim.csv.gz",
        rows=91_175,
        groups=64,
        grouping="country",
        simulated=True,
        dtypes={"country": str, "smu": "int64", "tech": "int64"},
        description=(
            "SIMULATED data, not survey responses: a stand-in for the World Values "
            "Survey wave 7 extract of the tutorial 'Visualization of Multilevel "
            "Modeling', same shape (91,175 respondents in 64 countries). country: "
            "ISO3 code; smu: social media use, 1-5; tech: 'Is the world better off, "
            "or worse off, because of science and technology?', 1-10. " + _WVS7_TARGETS
        ),
        source=(
            "Simulated by scripts/make_wvs7_sim.py (numpy default_rng, seed 20240607), "
            "tuned to the lme4 fits printed in the tutorial 'Visualization of "
            "Multilevel Modeling', which uses World Values Survey wave 7 "
            "(Haerpfer et al., eds., 2022, World Values Survey: Round Seven, "
            "JD Systems Institute & WVSA Secretariat)."
        ),
    ),
    "sleepstudy": _Dataset(
        file="sleepstudy.csv",
        rows=180,
        groups=18,
        grouping="Subject",
        simulated=False,
        dtypes={"Reaction": "float64", "Days": "int64", "Subject": str},
        description=(
            "Average reaction time (Reaction, ms) by day of sleep deprivation "
            "(Days, 0-9) for 18 subjects (Subject, an ID label)."
        ),
        source=(
            "lme4 `sleepstudy`; Belenky et al. (2003), J. Sleep Research 12, 1-12."
        ),
    ),
    "radon": _Dataset(
        file="radon.csv",
        rows=919,
        groups=85,
        grouping="county",
        simulated=False,
        dtypes={"floor": "int64", "county": str, "log_radon": "float64", "log_uranium": "float64"},
        description=(
            "Minnesota household radon: log_radon measured on the basement (floor 0) "
            "or first floor (floor 1) of 919 houses in 85 counties; log_uranium is a "
            "county-level predictor."
        ),
        source=(
            "rstanarm `radon` (Minnesota radon); Gelman and Hill (2007), Data Analysis "
            "Using Regression and Multilevel/Hierarchical Models."
        ),
    ),
    "hsb82": _Dataset(
        file="hsb82.csv",
        rows=7_185,
        groups=160,
        grouping="school",
        simulated=False,
        dtypes={
            "school": str,
            "minrty": str,
            "sx": str,
            "ses": "float64",
            "mAch": "float64",
            "meanses": "float64",
            "sector": str,
            "cses": "float64",
        },
        description=(
            "High School and Beyond, 1982: maths achievement (mAch) of 7,185 pupils "
            "in 160 schools (school, an ID label); ses, cses = SES centred within "
            "school, meanses = school mean SES (level 2), sector = Catholic or "
            "Public, minrty, sx."
        ),
        source=(
            "mlmRev `Hsb82` (High School and Beyond, 1982); Raudenbush and Bryk "
            "(2002), Hierarchical Linear Models, ch. 4."
        ),
    ),
    "ucb_admissions": _Dataset(
        file="ucb_admissions.csv",
        rows=24,
        groups=6,
        grouping="Dept",
        simulated=False,
        dtypes={"Admit": str, "Gender": str, "Dept": str, "Freq": "int64"},
        description=(
            "UC Berkeley graduate admissions, 1973, six largest departments: a long "
            "table of 24 cells (Admit, Gender, Dept, Freq) covering 4,526 "
            "applicants; the textbook case of Simpson's paradox."
        ),
        source=(
            "R datasets `UCBAdmissions`; Bickel, Hammel and O'Connell (1975), "
            "Science 187, 398-404."
        ),
    ),
}


def _ucb_wide(long: pd.DataFrame) -> pd.DataFrame:
    wide = long.pivot_table(index=["Dept", "Gender"], columns="Admit", values="Freq", aggfunc="sum").reset_index()
    wide.columns.name = None
    return wide[["Dept", "Gender", "Admitted", "Rejected"]].astype({"Admitted": "int64", "Rejected": "int64"})


# Reshaped views of a shipped table: name -> (base data set, reshaping, description).
_DERIVED = {
    "ucb_admissions_wide": (
        "ucb_admissions", _ucb_wide,
        "ucb_admissions reshaped to one row per department and gender (12 rows) with Admitted and "
        "Rejected counts, for a binomial model: cbind(Admitted, Rejected) ~ Gender + (1 | Dept).",
    ),
}


def _names() -> list[str]:
    return list(_DATASETS) + list(_DERIVED)


def load(name: str) -> pd.DataFrame:
    """Load one of the example data sets.

    Parameters
    ----------
    name : str
        One of ``"wvs7_sim"``, ``"sleepstudy"``, ``"radon"``, ``"hsb82"``,
        ``"ucb_admissions"`` (see :func:`describe`).

    Returns
    -------
    pandas.DataFrame
        A fresh copy, with the columns as in the R original.  Grouping and ID
        columns (``country``, ``Subject``, ``county``, ``school``, ``Dept``) and
        other labels are strings; counts and integer scales are ``int64``.

    Raises
    ------
    ValueError
        If `name` is not one of the data sets; the message lists the valid
        names.

    Notes
    -----
    ``wvs7_sim`` is SIMULATED (``scripts/make_wvs7_sim.py``), tuned so that
    its REML fits resemble those of the tutorial's World Values Survey
    extract; it is not survey data.  ``ucb_admissions`` is a long table of
    counts (``Freq``); ``ucb_admissions_wide`` is the same counts with one row
    per department and gender (``Admitted``, ``Rejected``), for a binomial
    model.

    Examples
    --------
    >>> from bayesmlm.datasets import load
    >>> sleep = load("sleepstudy")
    >>> sleep.shape
    (180, 3)
    >>> sleep["Subject"].nunique()
    18
    >>> wide = load("ucb_admissions_wide")
    >>> int(wide[["Admitted", "Rejected"]].to_numpy().sum())
    4526
    """
    if name in _DERIVED:
        base, reshape, _ = _DERIVED[name]
        return reshape(load(base))
    try:
        ds = _DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; valid names are: {', '.join(_names())}"
        ) from None
    resource = resources.files("bayesmlm") / "data" / ds.file
    with resources.as_file(resource) as path:
        return pd.read_csv(path, dtype=ds.dtypes)


def describe() -> pd.DataFrame:
    """Table of the shipped data sets with their sources.

    Returns
    -------
    pandas.DataFrame
        One row per data set, with columns ``name``, ``rows``, ``groups``
        (number of groups), ``grouping`` (the grouping column), ``simulated``,
        ``description`` and ``source`` (citation).  ``wvs7_sim`` is marked
        SIMULATED and its description lists the tutorial's REML targets beside
        the values the simulation achieves.

    Examples
    --------
    >>> from bayesmlm.datasets import describe
    >>> table = describe()
    >>> list(table["name"])
    ['wvs7_sim', 'sleepstudy', 'radon', 'hsb82', 'ucb_admissions', 'ucb_admissions_wide']
    >>> int(table.set_index("name").loc["hsb82", "groups"])
    160
    >>> bool(table.set_index("name").loc["wvs7_sim", "simulated"])
    True
    """
    return pd.DataFrame(
        [
            {
                "name": name,
                "rows": ds.rows,
                "groups": ds.groups,
                "grouping": ds.grouping,
                "simulated": ds.simulated,
                "description": ds.description,
                "source": ds.source,
            }
            for name, ds in _DATASETS.items()
        ]
        + [
            {
                "name": name,
                "rows": 12,
                "groups": _DATASETS[base].groups,
                "grouping": _DATASETS[base].grouping,
                "simulated": _DATASETS[base].simulated,
                "description": text,
                "source": _DATASETS[base].source,
            }
            for name, (base, _, text) in _DERIVED.items()
        ]
    )

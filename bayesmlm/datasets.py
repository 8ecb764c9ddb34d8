"""Example data sets shipped with bayesmlm.

Fifteen real data sets exported unchanged from R packages, and one simulated
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
nlschools      2,287   133 classes            Dutch pupils' language test scores
dyestuff2      30      6 batches              simulated dyestuff yields (singular)
penicillin     144     24 plates x 6 samples  penicillin potency (crossed)
pastes         60      30 casks in 10 batches paste strength (nested)
cbpp           56      15 herds               contagious bovine pleuropneumonia
verbagg        7,584   316 persons x 24 items verbal aggression (crossed, binary)
contraception  1,934   60 districts           contraception use in Bangladesh
grouseticks    403     118 broods, 63 places  ticks on red grouse chicks (counts)
wine           72      9 judges               wine bitterness ratings 1-5 (ordinal)
mmmec          354     78 regions, 9 nations  melanoma deaths, expected counts
insteval       73,421  2,972 students x       lecture evaluations at ETH Zurich
                       1,128 lecturers
============== ======= ====================== =====================================

The last ten are exported from R packages (lme4 1.1-31, mlmRev 1.0-8, MASS
7.3-58) by ``scripts/references/lme4_references.R``, which also writes the
lme4 reference fits the frequentist engine is tested against.

Use :func:`load` to get one as a :class:`pandas.DataFrame` and
:func:`describe` for the table above with sources.  Grouping and ID columns
(``country``, ``Subject``, ``county``, ``school``, ``Dept``, and those of the
R exports: ``class``, ``Batch``, ``plate``, ``herd``, ``id``, ...) and coded
categories (``period``, ``YEAR``, ``service``, ...) are read as strings, so
they are labels, never numbers.
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
        dtypes={"country": str, "smu": "int64", "tech": "int64", "weight": "float64"},
        description=(
            "SIMULATED data, not survey responses: a stand-in for the World Values "
            "Survey wave 7 extract of the tutorial 'Visualization of Multilevel "
            "Modeling', same shape (91,175 respondents in 64 countries). country: "
            "ISO3 code; smu: social media use, 1-5; tech: 'Is the world better off, "
            "or worse off, because of science and technology?', 1-10; weight: a design "
            "weight simulated like WVS-7's W_WEIGHT (mean 1 within each country, 1 throughout in 8 self-weighting "
            "countries, lognormal spread, a little higher for smu = 5, trimmed at 5; use it as "
            "MLM(..., weights='weight')). " + _WVS7_TARGETS
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

    "nlschools": _Dataset(
        file="nlschools.csv",
        rows=2_287,
        groups=133,
        grouping="class",
        simulated=False,
        dtypes={"lang": "int64", "IQ": "float64", "class": str, "GS": "int64", "SES": "int64", "COMB": str},
        description=(
            "Language test score (lang) of 2,287 Dutch eighth-grade pupils in 133 classes "
            "(class, an ID label) with verbal IQ (IQ), class size (GS), family SES (SES) "
            "and whether the class is a multi-grade class (COMB, '0'/'1'). "
            "lang ~ IQ + (IQ | class) has an intercept-slope correlation near -0.97."
        ),
        source=(
            "MASS `nlschools`; Snijders and Bosker (1999), Multilevel Analysis, "
            "Sage, example 4.1."
        ),
    ),
    "dyestuff2": _Dataset(
        file="dyestuff2.csv",
        rows=30,
        groups=6,
        grouping="Batch",
        simulated=False,
        dtypes={"Batch": str, "Yield": "float64"},
        description=(
            "Simulated yields (Yield) of 5 preparations from each of 6 batches (Batch) "
            "of an intermediate product; the between-batch variance is estimated as 0, "
            "lme4's textbook singular fit (Yield ~ 1 + (1 | Batch))."
        ),
        source=(
            "lme4 `Dyestuff2`; Box and Tiao (1973), Bayesian Inference in Statistical "
            "Analysis, Table 5.1.4 (simulated by them)."
        ),
    ),
    "penicillin": _Dataset(
        file="penicillin.csv",
        rows=144,
        groups=24,
        grouping="plate",
        simulated=False,
        dtypes={"diameter": "float64", "plate": str, "sample": str},
        description=(
            "Diameter of the zone of inhibited growth (diameter, mm) for 6 penicillin "
            "samples (sample) each applied to 24 agar plates (plate): two fully crossed "
            "factors."
        ),
        source=(
            "lme4 `Penicillin`; Davies and Goldsmith (1972), Statistical Methods in "
            "Research and Production, 4th ed., Table 6.6."
        ),
    ),
    "pastes": _Dataset(
        file="pastes.csv",
        rows=60,
        groups=30,
        grouping="sample",
        simulated=False,
        dtypes={"strength": "float64", "batch": str, "cask": str, "sample": str},
        description=(
            "Strength of a chemical paste (strength), 2 assays from each of 3 casks "
            "(cask, a-c, labels reused across batches) in each of 10 batches (batch); "
            "sample = batch:cask identifies the 30 casks: nested factors."
        ),
        source=(
            "lme4 `Pastes`; Davies and Goldsmith (1972), Statistical Methods in "
            "Research and Production, 4th ed., Table 6.5."
        ),
    ),
    "cbpp": _Dataset(
        file="cbpp.csv",
        rows=56,
        groups=15,
        grouping="herd",
        simulated=False,
        dtypes={"herd": str, "incidence": "int64", "size": "int64", "period": str},
        description=(
            "New serological cases of contagious bovine pleuropneumonia (incidence) out "
            "of herd size at the start of the period (size) in 15 zebu herds (herd) over "
            "4 periods (period, '1'-'4')."
        ),
        source=(
            "lme4 `cbpp`; Lesnoff et al. (2004), Preventive Veterinary Medicine 62, 101-117."
        ),
    ),
    "verbagg": _Dataset(
        file="verbagg.csv.gz",
        rows=7_584,
        groups=316,
        grouping="id",
        simulated=False,
        dtypes={
            "Anger": "int64", "Gender": str, "item": str, "resp": str, "id": str,
            "btype": str, "situ": str, "mode": str, "r2": str,
        },
        description=(
            "Verbal aggression questionnaire: 316 persons (id) x 24 items (item), "
            "response resp (no/perhaps/yes) and r2 (N/Y: perhaps or yes), trait anger "
            "(Anger), Gender (F/M), behaviour type (btype: curse/scold/shout), situation "
            "(situ: other/self) and mode (want/do): crossed factors, binary outcome."
        ),
        source=(
            "lme4 `VerbAgg`; De Boeck and Wilson (2004), Explanatory Item Response "
            "Models, Springer."
        ),
    ),
    "contraception": _Dataset(
        file="contraception.csv",
        rows=1_934,
        groups=60,
        grouping="district",
        simulated=False,
        dtypes={"woman": str, "district": str, "use": str, "livch": str, "age": "float64", "urban": str},
        description=(
            "Contraception use (use, N/Y) of 1,934 women (woman) in 60 districts "
            "(district) of Bangladesh, 1988, with centred age (age), number of living "
            "children (livch: '0', '1', '2', '3+') and urban residence (urban, N/Y)."
        ),
        source=(
            "mlmRev `Contraception`; Huq and Cleland (1990), Bangladesh Fertility Survey "
            "1989; Steele, Diamond and Amin (1996), Population Studies 50, 245-260."
        ),
    ),
    "grouseticks": _Dataset(
        file="grouseticks.csv",
        rows=403,
        groups=118,
        grouping="BROOD",
        simulated=False,
        dtypes={
            "INDEX": str, "TICKS": "int64", "BROOD": str, "HEIGHT": "float64",
            "YEAR": str, "LOCATION": str, "cHEIGHT": "float64",
        },
        description=(
            "Ticks counted on the heads of 403 red grouse chicks (INDEX) in 118 broods "
            "(BROOD) at 63 locations (LOCATION) in 3 years (YEAR, '95'-'97'); HEIGHT is "
            "the altitude (m), cHEIGHT the altitude centred at its mean."
        ),
        source=(
            "lme4 `grouseticks`; Elston et al. (2001), Parasitology 122, 563-569."
        ),
    ),
    "wine": _Dataset(
        file="wine.csv",
        rows=72,
        groups=9,
        grouping="judge",
        simulated=False,
        dtypes={
            "response": "int64", "rating": "int64", "temp": str, "contact": str,
            "bottle": str, "judge": str,
        },
        description=(
            "Bitterness of white wines: 9 judges (judge) each rated 8 bottles (bottle) on "
            "a 1-5 scale (rating, ordinal; response is the underlying 0-100 score), made "
            "at a cold or warm temperature (temp) with or without skin contact (contact). "
            "Exported by scripts/references/families_references.R."
        ),
        source=(
            "R package ordinal (2022.11-16) `wine`; Randall (1989), The analysis of "
            "sensory data by generalised linear model, Biometrical Journal 31, 781-793."
        ),
    ),
    "mmmec": _Dataset(
        file="mmmec.csv",
        rows=354,
        groups=78,
        grouping="region",
        simulated=False,
        dtypes={
            "nation": str, "region": str, "county": str, "deaths": "int64",
            "expected": "float64", "uvb": "float64",
        },
        description=(
            "Male malignant melanoma deaths (deaths) and the number expected from the "
            "population (expected) in 354 counties (county) of 78 regions (region, "
            "numbered uniquely) in 9 EEC nations (nation), 1971-1980, with centred UV-B "
            "exposure (uvb): a Poisson count with an exposure offset log(expected)."
        ),
        source=(
            "mlmRev `Mmmec`; Smans, Muir and Boyle (1992), Atlas of Cancer Mortality in "
            "the European Economic Community, IARC Scientific Publication 107."
        ),
    ),
    "insteval": _Dataset(
        file="insteval.csv.gz",
        rows=73_421,
        groups=2_972,
        grouping="s",
        simulated=False,
        dtypes={
            "s": str, "d": str, "studage": str, "lectage": str, "service": str,
            "dept": str, "y": "int64",
        },
        description=(
            "Lecture evaluations at ETH Zurich: 73,421 ratings (y, 1-5) by 2,972 "
            "students (s) of 1,128 lecturers (d) in 14 departments (dept); service "
            "('0'/'1': lecture held for another department), studage and lectage "
            "(ordered codes): large crossed factors."
        ),
        source=(
            "lme4 `InstEval`; ETH Zurich course evaluations, contributed by Martin "
            "Maechler."
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
        ``"ucb_admissions"``, ``"ucb_admissions_wide"``, ``"nlschools"``,
        ``"dyestuff2"``, ``"penicillin"``, ``"pastes"``, ``"cbpp"``,
        ``"verbagg"``, ``"contraception"``, ``"grouseticks"``, ``"mmmec"``,
        ``"insteval"`` (see :func:`describe`).

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
    >>> list(table["name"])[:6]
    ['wvs7_sim', 'sleepstudy', 'radon', 'hsb82', 'ucb_admissions', 'nlschools']
    >>> len(table)
    17
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

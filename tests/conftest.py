"""Shared test fixtures: small fits made once per test session and shared.

Under pytest-xdist each worker is its own process, so a fit is cached on disk
(NetCDF, via Fit.save) under a file lock: the first worker that needs it fits
it, the others read it back. Fits are keyed by a name that says what they are.
"""

from __future__ import annotations

import fcntl
import json
import warnings
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import bayesmlm  # noqa: E402

REFERENCE = Path(__file__).parent / "reference"


def reference(name: str) -> dict:
    """lme4's reference fit of a shipped data set (tests/reference/NAME.json)."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


def cached_fit(cache_dir: Path, key: str, make):
    """The fit ``make()`` returns, computed once per test session across workers."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.nc"
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                return bayesmlm.load(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
                fit = make()
            fit.save(path)
            return fit
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def fit_cache(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if base.name.startswith("popen-gw") else base
    return root / "bayesmlm-fit-cache"


@pytest.fixture(scope="session")
def sleep_fit(fit_cache):
    """Reaction ~ Days + (Days | Subject) on sleepstudy, full model, 4 x 500 draws."""
    data = bayesmlm.datasets.load("sleepstudy")
    return cached_fit(fit_cache, "sleep_full", lambda: bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", data).fit(
        draws=500, tune=500, chains=4, seed=11, progressbar=False, method="full"))


@pytest.fixture(scope="session")
def radon_fit(fit_cache):
    """log_radon ~ floor + log_uranium + (1 + floor | county), full model, 4 x 500 draws."""
    data = bayesmlm.datasets.load("radon")
    return cached_fit(fit_cache, "radon_full", lambda: bayesmlm.MLM(
        "log_radon ~ floor + log_uranium + (1 + floor | county)", data).fit(
        draws=500, tune=500, chains=4, seed=12, progressbar=False, method="full"))


@pytest.fixture(scope="session")
def hsb_fit(fit_cache):
    """mAch ~ meanses * cses + sector * cses + (1 + cses | school) on hsb82, method="auto", 4 x 300 draws."""
    data = bayesmlm.datasets.load("hsb82")
    return cached_fit(fit_cache, "hsb_auto", lambda: bayesmlm.MLM(
        "mAch ~ meanses * cses + sector * cses + (1 + cses | school)", data).fit(
        draws=300, tune=300, chains=4, seed=13, progressbar=False, method="auto"))


# -- artefacts (issue 7): files a test keeps for people to look at, listed at the end of the run --------------
def _session_root(base: Path) -> Path:
    return base.parent if base.name.startswith("popen-gw") else base


@pytest.fixture(scope="session")
def artefact_dir(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers for files kept for people to look at (screenshots)."""
    path = _session_root(tmp_path_factory.getbasetemp()) / "artefacts"
    path.mkdir(exist_ok=True)
    return path


def record_artefact(folder: Path, what: str, path: Path) -> None:
    """Note a kept file; the end of the test run lists it."""
    with open(folder / "index.txt", "a") as f:
        f.write(f"{what}: {path}\n")


def pytest_terminal_summary(terminalreporter, config):
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or hasattr(config, "workerinput"):
        return
    index = _session_root(factory.getbasetemp()) / "artefacts" / "index.txt"
    if index.is_file():
        terminalreporter.write_sep("-", "artefacts kept")
        terminalreporter.write(index.read_text())


# -- generalized families, predictions and LOO (issue 6) ---------------------------------------------------------
def ucb_wide():
    """ucb_admissions as one row per Gender x Dept with Admitted and Rejected counts (R's ucb_wide)."""
    return bayesmlm.datasets.load("ucb_admissions_wide")


SIM_POISSON = {"(Intercept)": 0.3, "x": 0.5, "sd_int": 0.5, "sd_x": 0.3, "cor": 0.3}
SIM_BERNOULLI = {"(Intercept)": -0.5, "x": 1.0, "sd_int": 0.8, "sd_x": 0.5, "cor": 0.0}


def _simulate_groups(truth: dict, n_groups: int, n_per: int, seed: int, discrete: bool = False):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sd = np.array([truth["sd_int"], truth["sd_x"]])
    cov = np.diag(sd) @ np.array([[1, truth["cor"]], [truth["cor"], 1]]) @ np.diag(sd)
    u = rng.multivariate_normal([0, 0], cov, size=n_groups)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.integers(-2, 3, size=g.size).astype(float) if discrete else rng.normal(size=g.size)
    eta = truth["(Intercept)"] + u[g, 0] + (truth["x"] + u[g, 1]) * x
    return pd.DataFrame({"g": [f"g{j:02d}" for j in g], "x": x}), eta, rng


def poisson_sim():
    """Counts y ~ Poisson(exposure * exp(eta)), eta = 0.3 + 0.5 x + u0 + u1 x; 30 groups x 40 rows, seed 61."""
    import numpy as np

    data, eta, rng = _simulate_groups(SIM_POISSON, 30, 40, 61)
    data["exposure"] = rng.uniform(0.5, 2.0, len(data))
    data["y"] = rng.poisson(data["exposure"] * np.exp(eta))
    return data


def bernoulli_sim(discrete: bool = False):
    """Labels "yes"/"no", P(yes) = logistic(-0.5 + 1.0 x + u0 + u1 x); 40 groups x 60 rows, seed 62.

    ``discrete``: x drawn from the integers -2 to 2 (so that rows collapse into cells), not from N(0, 1).
    """
    import numpy as np

    data, eta, rng = _simulate_groups(SIM_BERNOULLI, 40, 60, 62, discrete)
    data["y"] = np.where(rng.random(len(data)) < 1 / (1 + np.exp(-eta)), "yes", "no")
    return data


def wvs_subsample():
    """wvs7_sim, 300 respondents from each of its 64 countries (19,200 rows), pandas seed 0."""
    data = bayesmlm.datasets.load("wvs7_sim")
    return data.groupby("country").sample(300, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def ucb_fit(fit_cache):
    """cbind(Admitted, Rejected) ~ Gender + (1 | Dept), binomial, full model, 4 x 1000 draws."""
    return cached_fit(fit_cache, "ucb_binomial", lambda: bayesmlm.MLM(
        "cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", ucb_wide(), family="binomial").fit(
        draws=1000, tune=1000, chains=4, seed=21, progressbar=False, method="full"))


@pytest.fixture(scope="session")
def poisson_fit(fit_cache):
    """y ~ x + offset(np.log(exposure)) + (1 + x | g) on poisson_sim(), 2 x 400 draws."""
    return cached_fit(fit_cache, "poisson_sim", lambda: bayesmlm.MLM(
        "y ~ x + offset(np.log(exposure)) + (1 + x | g)", poisson_sim(), family="poisson").fit(
        draws=400, tune=400, chains=2, seed=22, progressbar=False, method="full"))


@pytest.fixture(scope="session")
def bernoulli_fit(fit_cache):
    """y ~ x + (1 + x | g) on bernoulli_sim() ("yes" coded 1), 2 x 400 draws."""
    return cached_fit(fit_cache, "bernoulli_sim", lambda: bayesmlm.MLM(
        "y ~ x + (1 + x | g)", bernoulli_sim(), family="bernoulli").fit(
        draws=400, tune=400, chains=2, seed=23, progressbar=False, method="full"))


@pytest.fixture(scope="session")
def wvs_fits(fit_cache):
    """m0, m1, m2 of the tutorial on wvs_subsample(), collapsed (the fast path), 2 x 500 draws each."""
    formulas = {"m0": "tech ~ 1 + (1 | country)", "m1": "tech ~ smu + (1 | country)",
                "m2": "tech ~ smu + (1 + smu | country)"}
    data = wvs_subsample()
    return {name: cached_fit(fit_cache, f"wvs_sub_collapsed_{name}", lambda f=f: bayesmlm.MLM(f, data).fit(
        draws=500, tune=500, chains=2, seed=24, progressbar=False, method="collapsed")) for name, f in formulas.items()}

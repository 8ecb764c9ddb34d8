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

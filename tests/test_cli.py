"""The command line: every config in configs/ runs with ``bayesmlm run``; the report opens in Chromium.

Runs are small (2 chains x 200 draws after 200 tuning steps, set with
--draws/--tune/--chains), on all the data (the Gaussian models take the
collapsed fast path), so the numbers checked here are loose: signs and rough
sizes against lme4's REML / glmer fits in tests/reference (the R calls are in
each JSON's "call") and the tutorial's printed lme4 fits.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from browser import find_chromium, probe, screenshot
from conftest import record_artefact, reference

import bayesmlm
import bayesmlm.app.config
from bayesmlm.app.cli import DEMO_CONFIG, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["--draws", "200", "--tune", "200", "--chains", "2", "--no-progress"]
SUBSAMPLE: dict[str, int] = {}  # config -> rows, for data too large to fit quickly (none since the fast path)
# Label placement in the correlation plot takes ~10 s with 85+ groups; the plots' own tests cover it.
PLOTS = {"radon": "bar,forest", "hsb82": "bar,forest"}


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    """run_config(name) -> the output folder of ``bayesmlm run configs/NAME.yaml`` (once per module)."""
    done: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in done:
            out = tmp_path_factory.mktemp(f"run-{name}")
            args = ["run", str(CONFIGS / f"{name}.yaml"), "--out", str(out), *SMALL]
            if name in SUBSAMPLE:
                args += ["--subsample", str(SUBSAMPLE[name])]
            if name in PLOTS:
                args += ["--plots", PLOTS[name]]
            assert main(args) == 0
            done[name] = out
        return done[name]

    return run


def _fixef(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "fixef.csv", index_col=0)


def _sorted_terms(fe: pd.DataFrame) -> pd.DataFrame:
    """Interactions spelt one way (parts sorted), as lme4's names and level equations' may differ in order."""
    return fe.set_axis([":".join(sorted(t.split(":"))) for t in fe.index])


def _check_sleepstudy(out: Path) -> None:
    # lmer(Reaction ~ Days + (Days | Subject), sleepstudy): Days 10.467, SE 1.546
    fe, ref = _fixef(out), reference("sleepstudy")["fixef"]
    assert abs(fe.loc["Days", "mean"] - ref["Days"]["estimate"]) < 1.5
    vc = pd.read_csv(out / "varcorr.csv", index_col=0, keep_default_na=False)
    assert 20 < vc.query("group == 'Residual'")["mean"].iloc[0] < 32  # lme4: sigma 25.59


def _check_radon(out: Path) -> None:
    fe = _fixef(out)
    assert fe.loc["floor", "upper"] < 0 and fe.loc["log_uranium", "lower"] > 0  # lme4: floor -0.67, uranium 0.72


def _check_hsb82(out: Path) -> None:
    # lmer(mAch ~ meanses * cses + sector * cses + (1 + cses | school), Hsb82)
    fe = _sorted_terms(_fixef(out))
    ref = {":".join(sorted(k.split(":"))): v for k, v in reference("hsb82")["fixef"].items()}
    for term in ("meanses", "sectorPublic", "cses:sectorPublic", "cses:meanses"):
        assert abs(fe.loc[term, "mean"] - ref[term]["estimate"]) < ref[term]["se"]
    assert fe.loc["cses:meanses", "mean"] > 0  # the cross-level interactions


def _check_ucb(out: Path) -> None:
    # glmer(cbind(Admitted, Rejected) ~ Gender + (1 | Dept), binomial): GenderMale -0.094 (SE 0.081),
    # against +0.61 for the department-blind glm: the sign reverses.
    fe, ref = _fixef(out), reference("ucb_admissions")["fixef"]
    assert fe.loc["GenderMale", "mean"] < 0
    assert abs(fe.loc["GenderMale", "mean"] - ref["GenderMale"]["estimate"]) < 0.1


def _check_m0(out: Path) -> None:
    icc = pd.read_csv(out / "icc.csv", index_col=0)
    assert abs(icc.loc["country", "mean"] - 0.086) < 0.02  # tutorial's REML ICC: 0.086
    assert abs(_fixef(out).loc["(Intercept)", "mean"] - 7.04) < 0.2


def _check_m1(out: Path) -> None:
    smu = _fixef(out).loc["smu"]
    assert smu["upper"] < 0 and abs(smu["mean"] - (-0.045)) < 0.01  # tutorial: -0.045 (SE 0.0047)


def _check_m2(out: Path) -> None:
    fe = _fixef(out)
    assert fe.loc["smu", "upper"] < 0 and abs(fe.loc["smu", "mean"] - (-0.054)) < 0.01  # tutorial: -0.054 (SE 0.011)
    vc = pd.read_csv(out / "varcorr.csv", index_col=0, keep_default_na=False)
    assert ((vc["term"] == "(Intercept)") & (vc["with"] == "smu")).sum() == 1  # the LKJ-modelled correlation
    coef = pd.read_csv(out / "coef.csv", index_col=[0, 1])
    assert coef.index.get_level_values(0).nunique() == 64
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == sorted(
        ["bar", "slopes", "forest", "correlation", "shrinkage", "frequentist"])


CHECKS = {"sleepstudy": _check_sleepstudy, "radon": _check_radon, "hsb82": _check_hsb82,
          "ucb_admissions": _check_ucb, "wvs7_m0": _check_m0, "wvs7_m1": _check_m1, "wvs7_m2": _check_m2}


def test_every_config_has_a_check():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_config_runs(run_config, name):
    out = run_config(name)
    for f in ("summary.txt", "summary.md", "fixef.csv", "varcorr.csv", "priors.csv", "diagnostics.csv", "coef.csv",
              "fit.nc", "report.html", "config.yaml"):
        assert (out / f).is_file(), f
    fit = bayesmlm.load(out / "fit.nc")
    pd.testing.assert_frame_equal(fit.fixef().reset_index(drop=True), _fixef(out)[fit.fixef().columns].reset_index(drop=True),
                                  check_exact=False, rtol=1e-6)
    assert fit.record.settings.draws == 200 and fit.record.settings.chains == 2
    md = (out / "summary.md").read_text()
    for heading in ("## Equations", "## Priors", "## Fixed effects", "## Variance components", "## Diagnostics"):
        assert heading in md
    which = bayesmlm.app.config.load_config(out / "config.yaml").plots
    pngs = sorted((out / "plots").glob("*.png"))
    assert which and set(which) <= {p.stem for p in pngs}, (which, pngs)
    for png in pngs:
        assert f"]({png.relative_to(out)})" in md
    CHECKS[name](out)


def test_demo_config_is_the_m2_file():
    from bayesmlm.app.config import load_config, parse_config

    from_file = load_config(CONFIGS / "wvs7_m2.yaml").to_dict()
    built_in = parse_config(DEMO_CONFIG).to_dict()
    assert from_file == built_in


def test_bad_config_names_key_and_values(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: sleepstudy\nformula: Reaction ~ Days + (Days | Subject)\nfamily: gausian\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'family'" in err and "gausian" in err and "gaussian, student, bernoulli, binomial, poisson, negbinomial, cumulative" in err
    assert not (tmp_path / "out").exists()


def test_datasets_lists_sources(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("wvs7_sim", "sleepstudy", "radon", "hsb82", "ucb_admissions"):
        assert re.search(rf"^{name}\s", out, re.M)
    assert "SIMULATED" in out and "Bickel, Hammel" in out


def test_report_opens_in_chromium(run_config, artefact_dir):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run does it), so the report "
                    "cannot be opened in a browser here.")
    report = run_config("wvs7_m2") / "report.html"
    text = report.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text), "the report must not load anything from outside"
    n_png = len(list((report.parent / "plots").glob("*.png")))
    result = probe(report, chromium)
    assert result["errors"] == [] and result["console"] == []
    assert len(result["images"]) == n_png == 6
    for im in result["images"]:
        assert im["complete"] and im["naturalWidth"] > 0 and im["naturalHeight"] > 0 and im["shownWidth"] > 0, im
    assert result["sections"] == 8
    shot = screenshot(report, artefact_dir / "report-screenshot.png", chromium)
    record_artefact(artefact_dir, "report screenshot", shot)
    assert shot.stat().st_size > 50_000


def test_overrides_subsample_and_plots(tmp_path):
    out = tmp_path / "quick"
    assert main(["run", str(CONFIGS / "sleepstudy.yaml"), "--out", str(out), "--subsample", "120", "--plots", "none",
                 "--draws", "100", "--tune", "100", "--chains", "1", "--seed", "5", "--no-progress"]) == 0
    fit = bayesmlm.load(out / "fit.nc")
    assert fit.record.n_obs == 120 and fit.record.settings.seed == 5 and fit.record.settings.chains == 1
    assert "Number of obs: 120" in (out / "summary.txt").read_text()
    assert not (out / "plots").exists() or not any((out / "plots").glob("bar.*"))
    assert "'which': []" in str(bayesmlm.app.config.load_config(out / "config.yaml").to_dict()["plots"])


def test_misspelt_plot_term_exits_non_zero_before_sampling(tmp_path, capsys):
    # Before: the run sampled, skipped every per-group plot with a note, and exited 0 having drawn nothing.
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("data: sleepstudy\nformula: Reaction ~ Days + (Days | Subject)\nplots: {which: [slopes], term: Dayz}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "Key 'plots.term'" in err and "'Dayz'" in err and "Valid terms: (Intercept), Days" in err
    assert not (tmp_path / "out" / "fit.nc").exists()


def test_a_binary_file_as_config_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "fit.yaml"
    cfg.write_bytes(b"\x89HDF\r\n\x1a\n\x00\xff")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "is not a text file" in capsys.readouterr().err

"""Weights on the tutorial's m2: the weighted fit beside lmer(weights=), and what the weights cost.

Model: ``tech ~ 1 + smu + (1 + smu | country)`` on ``wvs7_sim`` (91,175 rows,
64 countries; SIMULATED) with its design weight ``weight`` (mean 1 per
country) as lme4's precision weights.

In one run, at the same load:

- ``lmer``: ``lmer(tech ~ 1 + smu + (1 + smu | country), weights = weight)``
  through Rscript (REML; the time is lmer's own, inside R, data read before);
- ``engine``: ``MLM(..., weights="weight").fit_frequentist()`` (design and
  statistics included);
- ``collapsed``: ``MLM(..., weights="weight").fit(seed=1)`` at default settings
  (4 chains x 1000 draws, nutpie), weighted and unweighted, with R-hat, ESS and
  divergences, after one untimed short fit that compiles the kernel both use;

and the estimates of each. Writes ``benchmarks/weights_results.md``.

    .venv/bin/python benchmarks/bench_weights.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bayesmlm

import bayesmlm  # noqa: E402

FORMULA = "tech ~ 1 + smu + (1 + smu | country)"
R_CODE = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
d <- read.csv(gzfile("bayesmlm/data/wvs7_sim.csv.gz"), colClasses = c(country = "character"))
t0 <- proc.time()[["elapsed"]]
f <- lmer(tech ~ 1 + smu + (1 + smu | country), data = d, weights = weight)
secs <- proc.time()[["elapsed"]] - t0
vc <- as.data.frame(VarCorr(f))
cat(toJSON(list(seconds = secs, fixef = as.list(fixef(f)), sd = vc$sdcor, logLik = as.numeric(logLik(f))),
           auto_unbox = TRUE, digits = NA))
"""


def lmer() -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as f:
        f.write(R_CODE)
    out = subprocess.run(["Rscript", f.name], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    os.unlink(f.name)
    return json.loads(out.stdout)


def main() -> int:
    warnings.filterwarnings("ignore", category=bayesmlm.ConvergenceWarning)
    data = bayesmlm.datasets.load("wvs7_sim")
    load = os.getloadavg()[0]
    ref = lmer()
    start = time.perf_counter()
    ff = bayesmlm.MLM(FORMULA, data, weights="weight").fit_frequentist()
    engine_s = time.perf_counter() - start
    fixed = ff.fixed.set_index("term")["estimate"]
    rows = [f"| lmer (REML) | {ref['seconds']:.2f} | {ref['fixef']['(Intercept)']:.5f} | {ref['fixef']['smu']:.5f} | "
            f"{ref['sd'][0]:.5f} | {ref['sd'][1]:.5f} | {ref['sd'][3]:.5f} | |",
            f"| engine (REML) | {engine_s:.2f} | {fixed['(Intercept)']:.5f} | {fixed['smu']:.5f} | "
            f"{ff.varcorr.sdcor.iloc[0]:.5f} | {ff.varcorr.sdcor.iloc[1]:.5f} | {ff.sigma:.5f} | |"]
    bayesmlm.MLM(FORMULA, data).fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)  # compiles the kernel once
    for label, weights in (("collapsed, weighted", "weight"), ("collapsed, unweighted", None)):
        m = bayesmlm.MLM(FORMULA, data, weights=weights)
        start = time.perf_counter()
        fit = m.fit(seed=1, progressbar=False)
        seconds = time.perf_counter() - start
        fe, vc, d = fit.fixef(), fit.varcorr(), fit.record.diagnostics
        rows.append(f"| {label} (posterior mean) | {seconds:.2f} | {fe.loc['(Intercept)', 'mean']:.5f} | "
                    f"{fe.loc['smu', 'mean']:.5f} | {vc['mean'].iloc[0]:.5f} | {vc['mean'].iloc[1]:.5f} | "
                    f"{vc['mean'].iloc[-1]:.5f} | R-hat {d.max_rhat:.3f}, ESS bulk {d.min_ess_bulk:.0f}, tail "
                    f"{d.min_ess_tail:.0f}, {d.divergences} divergences |")
    text = "\n".join([
        "# Weights on wvs7_sim's m2 (benchmarks/bench_weights.py)", "",
        f"`{FORMULA}`, 91,175 rows, `weights=\"weight\"` (the simulated design weight, mean 1 per country).",
        f"Load average at the start: {load:.1f} (2 cores shared); seconds are wall time, noisy at this load.", "",
        "| fit | seconds | (Intercept) | smu | sd (Intercept) | sd smu | sigma | diagnostics |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"lmer logLik {ref['logLik']:.4f}, engine {ff.loglik:.4f}. lmer runs at its default tolerances here; where "
        "the REML criterion is this flat an SD can differ in the fourth digit at an equal logLik (the tests compare "
        "with lmer at tight tolerances: tests/reference/sleepstudy_weighted.json, 1e-4).", ""])
    out = Path(__file__).with_name("weights_results.md")
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

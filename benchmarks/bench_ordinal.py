"""Benchmark: the ordinal (cumulative logit) model on all of wvs7_sim, bayesmlm against ordinal::clmm.

``tech ~ smu + (1 + smu | country)``, family="cumulative", on all 91,175 rows
(tech 1-10 as ordered categories, a random slope of smu by country), at
bayesmlm's default fit settings (4 chains x 1000 draws after the default
warm-up, 400 steps with nutpie); converged means R-hat <= 1.01, bulk and tail ESS >= 400 and no
divergences. The rows aggregate exactly into country x smu cells of
category counts (:mod:`bayesmlm.design.aggregate`), 320 cells of 10 counts.
The anchor, R's ``ordinal::clmm`` on the same rows, is timed in the same run
(``system.time`` inside R; reading the CSV and loading the package not
counted) when Rscript and ordinal are installed.

Run from the repository root:

    python benchmarks/bench_ordinal.py [--out benchmarks/ordinal_results.md] [--no-clmm]

``--no-clmm`` skips the anchor (clmm takes about 5 minutes on these rows): the run then has no ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bayesmlm, not an installed one

import bayesmlm  # noqa: E402

FORMULA = "tech ~ smu + (1 + smu | country)"
TARGET_S = 60.0


def fit_bayesmlm(frame) -> tuple[dict, object]:
    model = bayesmlm.MLM(FORMULA, frame, family="cumulative")
    start = time.perf_counter()
    fit = model.fit(seed=1, progressbar=False)
    seconds = time.perf_counter() - start
    d = fit.diagnostics
    return {"seconds": seconds, "cells": fit.record.n_cells, "converged": d.converged, "rhat": d.max_rhat,
            "ess_bulk": d.min_ess_bulk, "ess_tail": d.min_ess_tail, "divergences": d.divergences,
            "build": fit.record.seconds_build, "sample": fit.record.seconds_sample,
            "parameterization": fit.record.parameterization, "density": fit.record.density}, fit


def fit_clmm(frame) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "wvs.csv")
        frame.to_csv(path, index=False)
        script = (f"suppressPackageStartupMessages(library(ordinal)); d <- read.csv('{path}'); "
                  "d$tech <- factor(d$tech, levels = 1:10, ordered = TRUE); d$country <- factor(d$country); "
                  "t <- system.time(f <- clmm(tech ~ smu + (1 + smu | country), data = d))[['elapsed']]; "
                  "cat(t, coef(f)[['smu']], sqrt(VarCorr(f)$country[1, 1]), '\\n')")
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1]}
        t, smu, sd0 = map(float, out.stdout.split())
        return {"seconds": t, "smu": smu, "sd_intercept": sd0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "ordinal_results.md"))
    parser.add_argument("--no-clmm", action="store_true", help="skip the ordinal::clmm anchor (about 5 minutes)")
    args = parser.parse_args()
    frame = bayesmlm.datasets.load("wvs7_sim")
    load = os.getloadavg()[0]
    b, fit = fit_bayesmlm(frame)
    r = None if args.no_clmm else fit_clmm(frame)
    fe, vc = fit.fixef(), fit.varcorr()
    lines = ["# Ordinal model on all of wvs7_sim (benchmarks/bench_ordinal.py)", "",
             f"`{FORMULA}`, family='cumulative' (logit), {len(frame):,} rows; load average at start {load:.1f} "
             f"on {os.cpu_count()} cores.", "",
             "| fit | seconds | converged | max R-hat | min bulk ESS | min tail ESS | divergences |",
             "|---|---|---|---|---|---|---|",
             f"| bayesmlm defaults (4 x 1000, {b['cells']} cells, {b['parameterization']}, density {b['density']}) | "
             f"{b['seconds']:.1f} (build {b['build']:.1f}, compile and sample {b['sample']:.1f}) | {b['converged']} | {b['rhat']:.3f} | "
             f"{b['ess_bulk']:.0f} | {b['ess_tail']:.0f} | {b['divergences']} |"]
    if r and "seconds" in r:
        lines.append(f"| ordinal::clmm (Laplace) | {r['seconds']:.1f} | | | | | |")
    lines += ["", f"Target: converged in under {TARGET_S:.0f} s: "
                  f"{'met' if b['converged'] and b['seconds'] < TARGET_S else 'NOT met'}"
                  + (f"; {b['seconds'] / r['seconds']:.2f} x clmm's time." if r and "seconds" in r else "."), "",
              f"smu: posterior mean {fe.loc['smu', 'mean']:.4f} (sd {fe.loc['smu', 'sd']:.4f})"
              + (f", clmm {r['smu']:.4f}" if r and "smu" in r else "") + "; "
              f"SD of the country intercepts: {vc['mean'].iloc[0]:.3f}"
              + (f", clmm {r['sd_intercept']:.3f}" if r and "sd_intercept" in r else "") + "."]
    if args.no_clmm:
        lines.append("clmm not run (--no-clmm): no ratio from this run.")
    if r and "error" in r:
        lines.append(f"clmm failed: {r['error']}")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

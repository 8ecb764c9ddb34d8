"""Benchmark: a 10,000,000-row bernoulli model with 10,000 groups from Parquet, bayesmlm against lme4's glmer.

Simulated survey rows: ``country`` (10,000 groups, uniform), ``smu`` (a
5-level ordinal item coded 1..5), ``female`` (0/1), and a 0/1 outcome
``hi ~ smu + female + (1 + smu | country)`` with known fixed effects, SDs and
correlation. The rows are written to one Parquet file in row groups of
1,000,000 (generation and writing are timed apart and not counted).

Timed end to end, from the file to a converged fit at default settings
(4 chains x 1000 draws after the default warm-up, 400 steps with nutpie): ``MLM.from_files(...,
family="bernoulli")`` (read the model's columns chunk by chunk and aggregate
the rows into cells exactly: :mod:`bayesmlm.fastpath.cell_readers`), then
``fit()`` (build, compile, sample, diagnose). Converged means R-hat <= 1.01,
bulk and tail ESS >= 400 and no divergences; the truth is recovered when
every fixed effect and SD lies within 3 posterior SDs of its true value.
Peak RSS is the process's (``ru_maxrss``), after reading and at the end.

The anchor, in the same run when Rscript and lme4 are present: glmer on a
1,000,000-row subsample (the first rows: the groups are drawn at random), and
glmer on the cells of all rows (``cbind(S, N - S)``: the same likelihood as the
rows, so the same Laplace fit), both timed inside R (``system.time``; reading
the CSV and loading lme4 not counted).

    python benchmarks/bench_big_binary.py                  # 10,000,000 rows, 10,000 groups
    python benchmarks/bench_big_binary.py --quick          # 200,000 rows, 1,000 groups
    python benchmarks/bench_big_binary.py --rows 1000000 --groups 2000 --glmer-rows 0 --out /tmp/x.md
    python benchmarks/bench_big_binary.py --read-only      # stop after reading: the read step alone
    python benchmarks/bench_big_binary.py --method laplace # the Laplace route (approximate): the effects integrated out

``--method laplace`` fits ``MLM.fit(method="laplace")`` (APPROXIMATE: the
random effects integrated out by a Laplace approximation,
:mod:`bayesmlm.fastpath.laplace_fit`); the report then adds the gradients per
draw and the seconds spent drawing the effects afterwards.

The read step is also timed in CPU seconds (this process's user + system
time: what the load cannot stretch) and against its anchor in the same run:
pandas reading the same four columns whole (``read_parquet``) and summing the
outcome by the raw values (``groupby(["country", "smu", "female"])``), which
holds every row in memory and builds no model matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bayesmlm, not an installed one

import bayesmlm  # noqa: E402

FORMULA = "hi ~ smu + female + (1 + smu | country)"
TRUTH = {"(Intercept)": -1.0, "smu": 0.25, "female": -0.3, "sd0": 0.5, "sd1": 0.1, "cor": -0.3}
ROW_GROUP = 1_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate(path: Path, rows: int, groups: int, seed: int = 2026) -> None:
    """Write the rows to ``path`` in row groups, never holding more than one in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    s0, s1, r = TRUTH["sd0"], TRUTH["sd1"], TRUTH["cor"]
    cov = np.array([[s0 * s0, r * s0 * s1], [r * s0 * s1, s1 * s1]])
    u = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        g = rng.integers(0, groups, n)
        smu = rng.integers(1, 6, n)
        female = rng.integers(0, 2, n)
        eta = TRUTH["(Intercept)"] + TRUTH["smu"] * smu + TRUTH["female"] * female + u[g, 0] + u[g, 1] * smu
        hi = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int8)
        table = pa.table({"country": pa.array(g.astype(np.int32)), "smu": pa.array(smu.astype(np.int8)),
                          "female": pa.array(female.astype(np.int8)), "hi": pa.array(hi),
                          "other": pa.array(rng.normal(size=n).astype(np.float32))})  # a column the model does not read
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_files(path: Path) -> dict:
    """``MLM.from_files``: the file to the model over its cells, timed in wall and CPU seconds."""
    start, cpu = time.perf_counter(), cpu_seconds()
    model = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli")
    return {"read": time.perf_counter() - start, "read_cpu": cpu_seconds() - cpu, "rss_read": peak_rss_mb(),
            "cells": model._cells.n_cells, "rows": model._cells.n_rows, "model": model, "start": start}


def pandas_group_by(path: Path) -> float:
    """The anchor of the read step: pandas reads the four columns whole and sums the outcome by the raw values."""
    start = time.perf_counter()
    frame = pd.read_parquet(path, columns=["hi", "smu", "female", "country"])
    frame.groupby(["country", "smu", "female"], sort=False)["hi"].agg(["sum", "count"])
    return time.perf_counter() - start


def fit_files(path: Path, method: str = "auto") -> dict:
    res = read_files(path)
    model, start = res["model"], res["start"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        fit = model.fit(seed=1, progressbar=False, method=method)
    total = time.perf_counter() - start
    d, rec = fit.record.diagnostics, fit.record
    fe = fit.fixef()
    vc = fit.varcorr().set_index(["group", "var1", "var2"])
    est = {t: (fe.loc[t, "mean"], fe.loc[t, "sd"]) for t in ("(Intercept)", "smu", "female")}
    est["sd0"] = tuple(vc.loc[("country", "(Intercept)", ""), ["mean", "sd"]])
    est["sd1"] = tuple(vc.loc[("country", "smu", ""), ["mean", "sd"]])
    est["cor"] = tuple(vc.loc[("country", "(Intercept)", "smu"), ["mean", "sd"]])
    return {**res, "build": rec.seconds_build, "sample": rec.seconds_sample, "total": total,
            "rss_end": peak_rss_mb(), "cells": rec.n_cells, "rows": rec.n_obs,
            "parameterization": rec.parameterization, "precondition": rec.precondition, "rhat": d.max_rhat,
            "ess_bulk": d.min_ess_bulk, "ess_tail": d.min_ess_tail, "divergences": d.divergences,
            "converged": d.converged, "est": est, "method": rec.method, "tune": rec.settings.tune,
            "steps": float(fit.idata["sample_stats"]["n_steps"].mean()),
            "effects_seconds": fit.posterior.attrs.get("effects_seconds")}


GLMER = """suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$country <- factor(d$country)
t <- system.time(m <- glmer({formula}, family = binomial, data = d))[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
cat(sprintf('{{"wall": %.3f, "fixef": {{%s}}, "sd": [%.6f, %.6f], "cor": %.6f, "singular": %s}}\\n', t,
            paste(sprintf('"%s": %.6f', names(fixef(m)), fixef(m)), collapse = ", "),
            vc$sdcor[1], vc$sdcor[2], vc$sdcor[3], tolower(isSingular(m))))
"""


def run_glmer(frame: pd.DataFrame, formula: str) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        frame.to_csv(csv, index=False)
        script = Path(tmp) / "g.R"
        script.write_text(GLMER.format(csv=csv, formula=formula))
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell_frame(model) -> pd.DataFrame:
    """The cells of all rows as a data frame for glmer: successes, failures, the predictors, the country."""
    d, c = model.design, model._cells
    labels = np.asarray(d.factors["country"].levels, dtype=object)[d.factors["country"].index]
    return pd.DataFrame({"S": c.y.astype(int), "F": (c.trials - c.y).astype(int), "smu": d.X[:, 1], "female": d.X[:, 2],
                         "country": labels})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--glmer-rows", type=int, default=1_000_000, help="rows of the glmer subsample (0: skip)")
    ap.add_argument("--quick", action="store_true", help="200,000 rows, 1,000 groups, glmer on 100,000 rows")
    ap.add_argument("--read-only", action="store_true", help="stop after MLM.from_files (the read step alone)")
    ap.add_argument("--out", type=Path, default=None, help="the report (default benchmarks/big_binary_results.md; "
                    "with --method laplace big_binary_laplace_quick.md or big_binary_laplace_10m.md)")
    ap.add_argument("--method", choices=("auto", "laplace"), default="auto",
                    help="fit(method=): auto (the exact route) or laplace (approximate)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.groups, args.glmer_rows = 200_000, 1_000, 100_000
    if args.out is None:
        laplace = "big_binary_laplace_quick.md" if args.quick else "big_binary_laplace_10m.md"
        args.out = ROOT / "benchmarks" / (laplace if args.method == "laplace" else "big_binary_results.md")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        rss_import = peak_rss_mb()
        start = time.perf_counter()
        simulate(path, args.rows, args.groups)
        generate = time.perf_counter() - start
        rss_generated = peak_rss_mb()
        size_mb = path.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows in {generate:.1f} s ({size_mb:.0f} MB)", flush=True)
        if args.read_only:
            res = {**read_files(path), "rss_import": rss_import, "rss_generated": rss_generated}
            res["pandas"] = pandas_group_by(path)
            lines = read_report(args, res, generate, size_mb, load_before, os.getloadavg())
            args.out.write_text("\n".join(lines) + "\n")
            print("\n".join(lines))
            return
        res = fit_files(path, args.method)
        res["pandas"] = pandas_group_by(path)
        print({k: v for k, v in res.items() if k != "model"}, flush=True)
        # written now and again with glmer's times: glmer on a million rows takes minutes of its own
        args.out.write_text("\n".join(report(args, res, generate, size_mb, None, None, load_before, os.getloadavg())) + "\n")
        sub = None
        if args.glmer_rows:
            import pyarrow.parquet as pq

            frame = pq.ParquetFile(path).read_row_groups(
                list(range(-(-args.glmer_rows // ROW_GROUP))), columns=["hi", "smu", "female", "country"]).to_pandas()
            sub = run_glmer(frame.iloc[:args.glmer_rows], FORMULA)
            print("glmer rows", sub, flush=True)
        cells = run_glmer(cell_frame(res["model"]), "cbind(S, F) ~ smu + female + (1 + smu | country)")
        print("glmer cells", cells, flush=True)
    load_after = os.getloadavg()
    lines = report(args, res, generate, size_mb, sub, cells, load_before, load_after)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def read_row(res) -> str:
    return (f"| `MLM.from_files`: read 4 of 5 columns in chunks, aggregate {res['rows']:,} rows into {res['cells']:,} "
            f"cells | {res['read']:.1f} ({res['read_cpu']:.1f} CPU) |")


def pandas_row(res) -> str:
    return f"| pandas: `read_parquet` the 4 columns whole, `groupby` the raw values, sum `hi` (anchor) | {res['pandas']:.1f} |"


def command(args) -> str:
    return (f"Command: `python benchmarks/bench_big_binary.py{' --quick' if args.quick else ''}"
            + (f" --rows {args.rows} --groups {args.groups} --glmer-rows {args.glmer_rows}" if not args.quick and
               (args.rows, args.groups, args.glmer_rows) != (10_000_000, 10_000, 1_000_000) else "")
            + (" --read-only" if args.read_only else "") + (f" --method {args.method}" if args.method != "auto" else "")
            + "`")


def read_report(args, res, generate, size_mb, load_before, load_after) -> list[str]:
    """The read step alone (``--read-only``)."""
    return [f"**{args.rows:,} rows, {args.groups:,} groups, `{FORMULA}`, family=\"bernoulli\", from Parquet "
            f"({size_mb:.0f} MB, row groups of {ROW_GROUP:,}): the read step**", "",
            "| step | seconds |", "|---|---|",
            f"| simulate and write the Parquet file (not counted) | {generate:.1f} |", read_row(res), pandas_row(res), "",
            f"Peak RSS (the process's, `ru_maxrss`): {res['rss_import']:.0f} MB with bayesmlm, PyMC and pyarrow "
            f"imported, {res['rss_generated']:.0f} MB after simulating the file, {res['rss_read']:.0f} MB after reading. "
            "The pandas anchor ran after it, in the same process.",
            f"Machine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before and {load_after[0]:.1f} after.",
            command(args)]


def report(args, res, generate, size_mb, sub, cells, load_before, load_after) -> list[str]:
    names = {"(Intercept)": "(Intercept)", "smu": "smu", "female": "female", "sd0": "sd(country: (Intercept))",
             "sd1": "sd(country: smu)", "cor": "cor(country: (Intercept), smu)"}
    within = {k: abs(e - TRUTH[k]) <= 3 * s for k, (e, s) in res["est"].items()}
    met = res["total"] < 120 and res["converged"] and all(within.values())
    lines = [f"**{args.rows:,} rows, {args.groups:,} groups, `{FORMULA}`, family=\"bernoulli\", from Parquet "
             f"({size_mb:.0f} MB, row groups of {ROW_GROUP:,}), default fit settings**", "",
             "| step | seconds |", "|---|---|",
             f"| simulate and write the Parquet file (not counted) | {generate:.1f} |",
             read_row(res),
             f"| `fit()`: build the model | {res['build']:.1f} |",
             f"| `fit()`: compile and sample 4 chains x 1000 draws (tune {res['tune']}) | {res['sample']:.1f} |",
             *([f"| `fit()`: of which drawing the 4,000 x {args.groups:,} effects from their Laplace conditionals | "
                f"{res['effects_seconds']:.1f} |"] if res.get("effects_seconds") is not None else []),
             f"| **end to end, file to fit** | **{res['total']:.1f}** |"]
    if "pandas" in res:
        lines.append(pandas_row(res))
    if sub is not None:
        lines.append(f"| lme4 glmer on a {args.glmer_rows:,}-row subsample | {sub['wall']:.1f} |")
    if cells is not None:
        lines.append(f"| lme4 glmer on the {res['cells']:,} cells of all rows (`cbind(S, N - S)`) | {cells['wall']:.1f} |")
    lines += ["", f"Peak RSS: {res['rss_read']:.0f} MB after reading, {res['rss_end']:.0f} MB at the end. "
              f"Parameterisation: {res['parameterization']}, precondition: {res['precondition']} "
              f"(`fastpath/preconditioned.py`).",
              f"Method: {res['method']}"
              + (" (APPROXIMATE: the random effects integrated out by a Laplace approximation)"
                 if res["method"] == "laplace" else "") + f"; {res['steps']:.1f} gradients per draw (mean leapfrog steps).",
              f"Diagnostics: max R-hat {res['rhat']:.4f}, min bulk ESS {res['ess_bulk']:.0f}, min tail ESS "
              f"{res['ess_tail']:.0f}, divergences {res['divergences']}: "
              f"{'converged' if res['converged'] else 'NOT converged'}.", "",
              "| parameter | truth | bayesmlm (posterior sd) | within 3 sd | glmer, cells of all rows |"
              + (f" glmer, {args.glmer_rows:,} rows |" if sub else ""),
              "|---|---|---|---|---|" + ("---|" if sub else "")]
    for k, (e, s) in res["est"].items():
        def g(fit):
            if fit is None:
                return "-"
            return f"{fit['fixef'][k]:.4f}" if k in fit["fixef"] else f"{(fit['sd'] + [fit['cor']])[['sd0', 'sd1', 'cor'].index(k)]:.4f}"
        lines.append(f"| {names[k]} | {TRUTH[k]:g} | {e:.4f} ({s:.4f}) | {'yes' if within[k] else 'NO'} | {g(cells)} |"
                     + (f" {g(sub)} |" if sub else ""))
    lines += ["", f"Target (under 2 minutes end to end, converged, truth recovered): {'met' if met else 'NOT met'}.",
              f"Machine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before and {load_after[0]:.1f} after "
              "(other jobs share the cores; seconds move with the load, the glmer times beside them move alike).",
              command(args)]
    return lines


if __name__ == "__main__":
    main()

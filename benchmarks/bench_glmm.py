"""Benchmark: a binary multilevel model at survey size, bayesmlm against lme4's glmer.

wvs7_sim with a binary outcome ``hi = tech >= 8``, ``hi ~ smu + (1 + smu | country)``,
family="bernoulli":

- all 91,175 rows at bayesmlm's default fit settings (4 chains x 1000 draws
  after the default warm-up, 400 steps with nutpie), converged meaning R-hat <= 1.01, bulk and tail
  ESS >= 400 and no divergences; glmer on the same rows, timed in the same run
  with Rscript (when R and lme4 are present);
- a 1,934-row subsample (pandas seed 7) at 2 chains x 500 draws (500 tuning
  steps), before (the rows sampled one by one, non-centred: main's full model,
  ``aggregate=False, parameterization="non-centred"``) and after (the defaults:
  rows aggregated into cells, parameterisation chosen from the data).

Times are wall seconds of ``MLM.fit`` (build, compile and sampling; imports
not counted) and of ``glmer()`` inside R (``system.time``, reading the CSV and
loading lme4 not counted). Run from the repository root:

    python benchmarks/bench_glmm.py [--before-full] [--out benchmarks/glmm_results.md]

``--before-full`` also fits all rows the old way (slow: the issue stopped it
after 15 minutes on two cores).

``--verbagg`` fits the crossed binary model of issue 16 instead: lme4's
VerbAgg (7,584 rows, 316 persons x 24 items),
``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``, at default
fit settings (``--verbagg-init sampler frequentist`` adds ``init="frequentist"``), beside glmer in the same run;
the fixed effects are compared with glmer's in posterior SDs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bayesmlm, not an installed one

import bayesmlm  # noqa: E402

FORMULA = "hi ~ smu + (1 + smu | country)"
R_FORMULA = "hi ~ smu + (1 + smu | country)"
SUBSAMPLE = 1934


def data(rows: int | None = None):
    wvs = bayesmlm.datasets.load("wvs7_sim").assign(hi=lambda d: (d.tech >= 8).astype(int))
    return wvs if rows is None else wvs.sample(rows, random_state=7).reset_index(drop=True)


def fit_bayesmlm(frame, label: str, **kwargs) -> dict:
    model = bayesmlm.MLM(FORMULA, frame, family="bernoulli")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(seed=1, progressbar=False, **kwargs)
    wall = time.perf_counter() - start
    d, r = fit.diagnostics, fit.record
    fe = fit.fixef()
    return {"label": label, "rows": len(frame), "wall": wall, "sample": r.seconds_sample, "converged": d.converged,
            "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
            "divergences": d.divergences, "n_cells": r.n_cells, "parameterization": r.parameterization,
            "draws": f"{r.settings.chains} x {r.settings.draws}", "smu": float(fe.loc["smu", "mean"]),
            "smu_sd": float(fe.loc["smu", "sd"])}


R_SCRIPT = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
t <- system.time(m <- glmer({formula}, family = binomial, data = d))[["elapsed"]]
cat(sprintf('{{"wall": %.3f, "smu": %.6f, "smu_se": %.6f, "singular": %s}}\\n', t, fixef(m)[["smu"]],
            sqrt(diag(vcov(m)))[2], tolower(isSingular(m))))
"""


def fit_glmer(frame) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        frame[["hi", "smu", "country"]].to_csv(csv, index=False)
        script = Path(tmp) / "glmer.R"
        script.write_text(R_SCRIPT.format(csv=csv, formula=R_FORMULA))
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(r: dict, glmer: dict | None) -> str:
    ratio = f"{r['wall'] / glmer['wall']:.2f}" if glmer else "-"
    par = ", ".join(f"{k} {v}" for k, v in r["parameterization"].items()) or "-"
    cells = f"{r['n_cells']:,}" if r["n_cells"] else "rows"
    return (f"| {r['label']} | {r['rows']:,} | {r['draws']} | {cells} | {par} | {r['wall']:.1f} | {ratio} | "
            f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | {r['min_ess_tail']:.0f} | {r['divergences']} | "
            f"{'yes' if r['converged'] else 'NO'} | {r['smu']:.4f} ({r['smu_sd']:.4f}) |")


HEADER = ("| fit | rows | chains x draws | likelihood terms | parameterisation | wall (s) | / glmer | max R-hat | "
          "min bulk ESS | min tail ESS | divergences | converged | smu (sd) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def glmer_row(g: dict | None, rows: int) -> str:
    if g is None:
        return f"| lme4 glmer (Laplace) | {rows:,} | - | rows | - | not run (no Rscript) | | | | | | | |"
    return (f"| lme4 glmer (Laplace) | {rows:,} | - | rows | - | {g['wall']:.1f} | 1.00 | - | - | - | - | "
            f"{'singular' if g['singular'] else '-'} | {g['smu']:.4f} ({g['smu_se']:.4f}) |")


VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
VERBAGG_R = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
t <- system.time(m <- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), family = binomial, data = d))[["elapsed"]]
cat(sprintf('{{"wall": %.3f, "fixef": {{%s}}}}\n', t,
            paste(sprintf('"%s": %.6f', names(fixef(m)), fixef(m)), collapse = ", ")))
"""


def _gradients_per_draw(fit) -> str:
    """The mean leapfrog steps (gradients) per kept draw, from the sampler's stats (nutpie's n_steps)."""
    stats = fit.idata["sample_stats"]
    name = "n_steps" if "n_steps" in stats else "tree_size" if "tree_size" in stats else None
    return f"{float(stats[name].mean()):.1f}" if name else "-"


def verbagg(out: str, inits: tuple[str, ...] = ("sampler",)) -> None:
    frame = bayesmlm.datasets.load("verbagg").assign(r2=lambda d: (d.r2 == "Y").astype(int))
    glmer = None
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "d.csv"
            frame[["r2", "Anger", "Gender", "btype", "situ", "id", "item"]].to_csv(csv, index=False)
            (Path(tmp) / "g.R").write_text(VERBAGG_R.format(csv=csv))
            run = subprocess.run(["Rscript", str(Path(tmp) / "g.R")], capture_output=True, text=True, timeout=1800)
            glmer = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else None
            if glmer is None:
                print(run.stderr, file=sys.stderr)
    lines = [f"**verbagg, `{VERBAGG}`, family=\"bernoulli\", 7,584 rows, default fit settings**", "",
             "| fit | init | parameterisation | wall (s) | / glmer | max R-hat | min bulk ESS | min tail ESS | divergences | "
             "converged | max abs(fixef - glmer) / posterior SD | worst parameters | gradients per draw |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    if glmer:
        lines.append(f"| lme4 glmer (Laplace) | - | - | {glmer['wall']:.2f} | 1.00 | - | - | - | - | - | - | - | - |")
    for init in inits:
        model = bayesmlm.MLM(VERBAGG, frame, family="bernoulli")
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(seed=1, progressbar=False, init=init)
        wall = time.perf_counter() - start
        d, r = fit.diagnostics, fit.record
        fe = fit.fixef()
        gap = max(abs(fe.loc[t, "mean"] - v) / fe.loc[t, "sd"] for t, v in glmer["fixef"].items()) if glmer else float("nan")
        par = ", ".join(f"{k} {v}" + (f" on {' + '.join(r.centred_on[k])}" if r.centred_on.get(k) else "")
                        for k, v in r.parameterization.items())
        ratio = f"{wall / glmer['wall']:.2f}" if glmer else "-"
        lines.append(f"| bayesmlm, defaults, density {r.density} | {r.init} | {par} | {wall:.1f} | {ratio} | {d.max_rhat:.3f} | {d.min_ess_bulk:.0f} | "
                     f"{d.min_ess_tail:.0f} | {d.divergences} | {'yes' if d.converged else 'NO'} | {gap:.2f} | "
                     f"{', '.join(d.flagged[:3]) or '-'} | {_gradients_per_draw(fit)} |")
        print(lines[-1], flush=True)
    load = os.getloadavg()
    lines.append(f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end "
                 "(shared with other work); times include PyTensor/Numba compilation from a warm cache.")
    text = "\n".join(lines)
    print(text)
    Path(out).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-full", action="store_true", help="also fit all rows the old way (slow)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "glmm_results.md"))
    parser.add_argument("--verbagg", action="store_true", help="the crossed binary model (VerbAgg) instead")
    parser.add_argument("--verbagg-init", nargs="+", default=["sampler"], choices=["sampler", "frequentist"],
                        help="with --verbagg: the inits to fit (default: the sampler's own start)")
    args = parser.parse_args()
    if args.verbagg:
        verbagg(args.out if args.out != parser.get_default("out") else str(ROOT / "benchmarks" / "verbagg_results.md"),
                tuple(args.verbagg_init))
        return
    before = dict(aggregate=False, parameterization="non-centred")
    full, sub = data(), data(SUBSAMPLE)

    results = {"full": [], "sub": []}
    g_full = fit_glmer(full)
    results["full"].append(fit_bayesmlm(full, "bayesmlm, defaults (after)"))
    if args.before_full:
        results["full"].append(fit_bayesmlm(full, "bayesmlm, rows, non-centred (before)", **before))
    g_sub = fit_glmer(sub)
    short = dict(draws=500, tune=500, chains=2)
    results["sub"].append(fit_bayesmlm(sub, "bayesmlm, rows, non-centred (before)", **short, **before))
    results["sub"].append(fit_bayesmlm(sub, "bayesmlm, defaults (after)", **short))

    lines = [f"**wvs7_sim, `{FORMULA}`, family=\"bernoulli\", all {len(full):,} rows, default fit settings**", "",
             HEADER, glmer_row(g_full, len(full)), *(row(r, g_full) for r in results["full"]), "",
             f"**The same model on {SUBSAMPLE:,} rows (pandas seed 7), 2 chains x 500 draws**", "",
             HEADER, glmer_row(g_sub, SUBSAMPLE), *(row(r, g_sub) for r in results["sub"]), ""]
    after = results["full"][0]
    if g_full:
        ratio = after["wall"] / g_full["wall"]
        lines.append(f"Target (all rows, converged at defaults in <= 3 x glmer): {'met' if after['converged'] and ratio <= 3 else 'MISSED'} "
                     f"({'converged' if after['converged'] else 'not converged'}, {ratio:.2f} x glmer's {g_full['wall']:.1f} s).")
    lines.append(f"Machine: {os.cpu_count()} cores; times include PyTensor/Numba compilation from a warm cache.")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

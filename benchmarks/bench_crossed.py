"""The crossed route (issue #12) at default fit settings, beside lmer in the same run.

Two crossed gaussian models, each fitted with ``MLM(...).fit(seed=...)`` at its
defaults (4 chains x 1000 draws after the default warm-up, 400 steps with nutpie), which takes
the crossed route (``fit.record.route == "crossed"``):

- penicillin: ``diameter ~ 1 + (1 | plate) + (1 | sample)`` (144 rows);
  target: converged (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences)
  in under 5 s;
- InstEval: ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)`` (73,421 rows,
  2,972 x 1,128 x 14 levels); target: converged in no more than 2 x lmer's time.

lmer is timed by Rscript on the very CSV the package ships (``system.time`` of
the ``lmer`` call alone, data already read), in the same run. The first
bayesmlm fit of the run includes Numba loading its cached kernels (penicillin
is fitted a second time in the process to show the difference); the seconds
are wall seconds of ``MLM(...)`` plus ``.fit(...)``. The load average is printed
beside the times (the machine is shared), and the CPU seconds of both (all
threads), which a shared machine inflates far less than wall seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_crossed.py [--out benchmarks/crossed_results.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import warnings

import bayesmlm

MODELS = {
    "penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "insteval": "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
}
LABELS = {"penicillin": ("plate", "sample"), "insteval": ("s", "d", "dept", "service")}
R_CODE = """
suppressPackageStartupMessages(library(lme4))
invisible(Sys.setlocale("LC_COLLATE", "C"))
df <- read.csv("{path}", colClasses = "character")
for (col in names(df)) if (!(col %in% c({labels}))) df[[col]] <- as.numeric(df[[col]])
for (col in c({labels})) df[[col]] <- factor(df[[col]], levels = sort(unique(df[[col]])))
st <- system.time(fit <- lmer({formula}, data = df))
t <- st[["elapsed"]]
cpu <- st[["user.self"]] + st[["sys.self"]]
cat(sprintf("%.3f %.6f %s %.3f\\n", t, fixef(fit)[[1]], paste(sprintf("%.6f", as.data.frame(VarCorr(fit))$sdcor), collapse = ","), cpu))
"""


def lmer_seconds(name: str, formula: str) -> tuple[float, str, float]:
    """Seconds of lmer's fit of the model in Rscript, its estimates (intercept; SDs, sigma last), and its CPU seconds."""
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, f"{name}.csv")
        bayesmlm.datasets.load(name).to_csv(path, index=False)
        labels = ", ".join(f'"{c}"' for c in LABELS[name])
        script = os.path.join(folder, "fit.R")
        with open(script, "w") as f:
            f.write(R_CODE.format(path=path, labels=labels, formula=formula))
        out = subprocess.run(["Rscript", script], capture_output=True, text=True, check=True).stdout.split()
        return float(out[0]), f"intercept {float(out[1]):.4f}; SDs {out[2]}", float(out[3])
    finally:
        shutil.rmtree(folder)


def bayes(name: str, formula: str, seed: int) -> dict:
    data = bayesmlm.datasets.load(name)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmlm.MLM(formula, data).fit(seed=seed, progressbar=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    d, post = fit.diagnostics, fit.posterior
    sds = [f"{v}={float(post[v].mean()):.4f}" for v in post.data_vars if v.startswith("sd_") or v == "sigma"]
    return {"wall": wall, "cpu": cpu, "route": fit.record.route, "method": fit.record.method,
            "parameterization": fit.record.parameterization, "rhat": d.max_rhat, "ess_bulk": d.min_ess_bulk,
            "ess_tail": d.min_ess_tail, "divergences": d.divergences, "converged": fit.converged,
            "estimates": f"intercept {float(post['fixef'].sel(fixed_term='(Intercept)').mean()):.4f}; " + ", ".join(sds)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", choices=list(MODELS), default=None)
    args = parser.parse_args()
    lines = [f"load average before: {os.getloadavg()[0]:.1f} (2 cores, shared)", ""]
    for name, formula in MODELS.items():
        if args.only and name != args.only:
            continue
        r_sec, r_est, r_cpu = lmer_seconds(name, formula)
        b = bayes(name, formula, seed=2024)
        load = os.getloadavg()[0]
        ratio = b["wall"] / r_sec
        target = b["wall"] < 5.0 if name == "penicillin" else ratio <= 2.0
        lines += [f"## {name}: {formula}",
                  (f"bayesmlm: {b['wall']:.1f} s, route={b['route']} (method={b['method']}), "
                   f"parameterization={b['parameterization']}"),
                  (f"  max R-hat {b['rhat']:.4f}, min bulk ESS {b['ess_bulk']:.0f}, min tail ESS {b['ess_tail']:.0f}, "
                   f"divergences {b['divergences']}, converged={b['converged']}"),
                  f"  posterior means: {b['estimates']}",
                  f"lmer (Rscript, same run): {r_sec:.2f} s; {r_est}",
                  f"ratio bayesmlm / lmer: {ratio:.2f}; load average after: {load:.1f}",
                  (f"CPU seconds (all threads): bayesmlm {b['cpu']:.1f} (sampling runs {min(4, os.cpu_count() or 1)} "
                   f"chains on {os.cpu_count()} cores), lmer {r_cpu:.1f}"),
                  (f"target ({'under 5 s' if name == 'penicillin' else '<= 2 x lmer'}, converged): "
                   f"{'met' if target and b['converged'] else 'NOT met'}"), ""]
        if name == "penicillin":  # the first fit of a process includes Numba loading the kernel from its disk cache
            again = bayes(name, formula, seed=2025)
            lines.insert(-1, f"second fit, same process (seed 2025): {again['wall']:.1f} s, max R-hat {again['rhat']:.4f}, "
                             f"min bulk ESS {again['ess_bulk']:.0f}, min tail ESS {again['ess_tail']:.0f}, "
                             f"divergences {again['divergences']}, converged={again['converged']}")
        print("\n".join(lines[-11:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()

"""The nested route at default settings: lme4's Pastes and a simulated 3-level set of 1,000,000 pupils, beside lmer.

Targets (issue #12): Pastes (strength ~ 1 + (1 | batch/cask), 60 rows) converged
at default settings (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences)
in under 5 s; 1,000,000 pupils in 20,000 classes in 2,000 schools, a random
intercept and slope by school and a random intercept by class, read from
Parquet in under 2 minutes in all (read + reduce + sample), converged.

lmer is timed in the same run with Rscript (inside R: ``system.time`` of the
fit, not R's start-up), on Pastes and on the big set (``--lmer-rows`` rows of
it, all by default). Each bayesmlm fit runs in this process after one warm-up
fit of another data set of the same structure, which loads the compiled
kernels from Numba's disk cache; the first line of the output says how long
that took (the cost of the first fit in a fresh process).

The output also splits the big fit's wall time: reading the Parquet file into
statistics, building the tree, compiling (or loading) the density kernel,
sampling (the gradients nutpie took, and the wall time per gradient per core),
drawing u, and the rest (posterior assembly, diagnostics over every parameter,
u included). ``--pupils`` sets pupils per class (50 by default: 1,000,000
rows; 10 gives the same tree of 22,000 groups in 200,000 rows, a quick profile).

    python benchmarks/bench_nested.py [--lmer-rows N] [--pupils 50] [--out benchmarks/nested_results.md]
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

import numpy as np
import pandas as pd

import bayesmlm

PASTES = "strength ~ 1 + (1 | batch/cask)"
BIG = "y ~ 1 + x + (1 + x | school) + (1 | school:class)"
R_SCRIPT = """
suppressMessages(library(lme4))
d <- read.csv("{csv}", colClasses = c({classes}))
t <- system.time(m <- lmer({formula}, data = d))[["elapsed"]]
cat(sprintf('{{"wall": %.3f, "sigma": %.6f, "singular": %s}}\\n', t, sigma(m), tolower(isSingular(m))))
"""


def simulate(schools: int, classes: int, pupils: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Pupils in classes in schools: y = 2 + 0.5 x + u0_s + u1_s x + v_c + e."""
    rng = np.random.default_rng(seed)
    n = schools * classes * pupils
    school = np.repeat(np.arange(schools), classes * pupils)
    klass = np.repeat(np.arange(schools * classes), pupils)
    tau0, tau1, rho, tau_c, sigma = 1.0, 0.4, 0.3, 0.6, 0.8
    cov = np.array([[tau0**2, rho * tau0 * tau1], [rho * tau0 * tau1, tau1**2]])
    us = rng.multivariate_normal([0.0, 0.0], cov, size=schools)
    x = rng.normal(size=n)
    y = 2.0 + 0.5 * x + us[school, 0] + us[school, 1] * x + rng.normal(0, tau_c, schools * classes)[klass]
    y += rng.normal(0, sigma, n)
    frame = pd.DataFrame({"y": y, "x": x, "school": pd.Series(school).map("s{}".format),
                          "class": pd.Series(klass % classes).map("c{}".format)})
    truth = {"(Intercept)": 2.0, "x": 0.5, "sd school (Intercept)": tau0, "sd school x": tau1, "cor school": rho,
             "sd school:class": tau_c, "sigma": sigma}
    return frame, truth


def lmer(frame: pd.DataFrame, formula: str, text: list[str]) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        frame.to_csv(csv, index=False)
        classes = ", ".join(f'{c} = "character"' if c in text else f'{c} = "numeric"' for c in frame.columns)
        script = Path(tmp) / "lmer.R"
        script.write_text(R_SCRIPT.format(csv=csv, classes=classes, formula=formula))
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def record(fit, wall: float, label: str, rows: int, read: float = float("nan")) -> dict:
    d = fit.record.diagnostics
    converged = d.max_rhat <= 1.01 and d.min_ess_bulk >= 400 and d.min_ess_tail >= 400 and d.divergences == 0
    return {"label": label, "rows": rows, "wall": wall, "read": read, "route": fit.record.route,
            "max_rhat": d.max_rhat, "ess_bulk": d.min_ess_bulk, "ess_tail": d.min_ess_tail,
            "divergences": d.divergences, "converged": converged}


def markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, not a dependency)."""
    frame = frame.reset_index() if index else frame
    head = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns)
    return head + "".join("\n| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False))


def gradient_seconds(frame: pd.DataFrame, calls: int = 100) -> float:
    """Seconds per call of the nested density kernel (log density and gradient) on this frame's tree, one thread."""
    from bayesmlm.fastpath.fit import x_centre
    from bayesmlm.fastpath.kernels import density_kernels, pack_data
    from bayesmlm.fastpath.nested_model import nested_data, nested_structure
    from bayesmlm.fastpath.nested_stats import nested_stats
    from bayesmlm.fastpath.nutpie_driver import density_plan

    m = bayesmlm.MLM(BIG, frame)
    stats = nested_stats(m.design)
    structure = nested_structure(m.design, m.prior_dict, stats.factors)
    plan = density_plan(structure, m.prior_dict)
    buffer = pack_data(**nested_data(structure, stats, m.prior_dict, x_centre(stats.leaf)))
    kernel = density_kernels(plan, structure.tree).logp_grad
    x, grad = np.zeros(plan.n_dim), np.empty(plan.n_dim)
    kernel(x, buffer, grad)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            kernel(x, buffer, grad)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def breakdown(fit, wall: float, read: float, per_gradient: float) -> list[tuple[str, str, str]]:
    """The big fit's wall time by step (from the fit's record and its posterior's timing attributes)."""
    a, rec = fit.posterior.attrs, fit.record
    steps = fit.idata["sample_stats"]["n_steps"].values
    n_grad, chains = int(steps.sum()), steps.shape[0]
    cores = min(chains, os.cpu_count() or 1)
    rest = wall - read - rec.seconds_build - a["compile_seconds"] - a["sampling_seconds"] - a["recover_seconds"]
    return [("read Parquet + statistics per class", f"{read:.1f}", "MLM.from_files"),
            ("tree statistics + model data", f"{rec.seconds_build:.1f}", "fit_nested, before sampling"),
            ("compile / load density kernel", f"{a['compile_seconds']:.1f}", "0 when this process compiled it already"),
            ("sampling (NUTS, nutpie)", f"{a['sampling_seconds']:.1f}",
             f"{n_grad:,} gradients in the {steps.shape[1]} draws x {chains} chains (tuning not counted); one gradient "
             f"{per_gradient * 1e3:.2f} ms on one thread, so the sampling time on {cores} cores is "
             f"{a['sampling_seconds'] * cores / per_gradient:,.0f} gradients' worth"),
            ("conditional draws of u", f"{a['recover_seconds']:.1f}",
             f"{steps.size:,} exact joint draws of every level's u"),
            ("results + diagnostics", f"{rest:.1f}", "posterior assembly, R-hat/ESS of every parameter (u included)")]


def fit_quietly(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        return model.fit(seed=2024, progressbar=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lmer-rows", type=int, default=0, help="rows of the big set given to lmer (0: all)")
    parser.add_argument("--pupils", type=int, default=50, help="pupils per class (50: the 1,000,000-row target)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("nested_results.md")))
    args = parser.parse_args()
    lines, rows = [], []
    load = os.getloadavg()[0]

    # warm-up: a small set of each structure (Numba's disk cache, or a compile on a fresh machine)
    start = time.perf_counter()
    small, _ = simulate(30, 3, 5, seed=1)
    fit_quietly(bayesmlm.MLM(BIG, small))
    fit_quietly(bayesmlm.MLM(PASTES, bayesmlm.datasets.load("pastes").sample(frac=1.0, random_state=1)))
    warm_up = time.perf_counter() - start

    pastes = bayesmlm.datasets.load("pastes")
    start = time.perf_counter()
    fit = fit_quietly(bayesmlm.MLM(PASTES, pastes))
    rows.append(record(fit, time.perf_counter() - start, "bayesmlm, Pastes", len(pastes)))
    print(f"warm-up {warm_up:.1f} s;", rows[-1], flush=True)
    r_pastes = lmer(pastes[["strength", "batch", "cask"]], PASTES, ["batch", "cask"])
    print("lmer pastes", r_pastes, flush=True)
    pastes_fit = fit

    big, truth = simulate(2000, 10, args.pupils, seed=2026)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pupils.parquet"
        big.to_parquet(path, row_group_size=250_000)
        start = time.perf_counter()
        model = bayesmlm.MLM.from_files(BIG, path)
        read = time.perf_counter() - start
        fit = fit_quietly(model)
        rows.append(record(fit, time.perf_counter() - start, "bayesmlm, 3-level from Parquet", len(big), read))
        print(rows[-1], fit.posterior.attrs, flush=True)
    split = breakdown(fit, rows[-1]["wall"], read, gradient_seconds(big))
    sub = big if not args.lmer_rows else big.iloc[:args.lmer_rows]
    r_big = lmer(sub, BIG, ["school", "class"])

    lines.append(f"**Nested route (`benchmarks/bench_nested.py`), load average {load:.1f} on {os.cpu_count()} cores at "
                 f"the start**\n")
    lines.append(f"Warm-up (first fits of this process: kernels from Numba's disk cache): {warm_up:.1f} s.\n")
    lines.append(f"Where the {len(big):,}-row fit's {rows[-1]['wall']:.1f} s went:\n")
    lines.append(markdown(pd.DataFrame(split, columns=["step", "seconds", "note"]), index=False))
    lines.append("")
    lines.append("| fit | rows | route | read + reduce (s) | wall (s) | max R-hat | min bulk ESS | min tail ESS | "
                 "divergences | converged |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        read_s = "-" if np.isnan(r["read"]) else f"{r['read']:.1f}"
        lines.append(f"| {r['label']} | {r['rows']:,} | {r['route']} | {read_s} | {r['wall']:.1f} | {r['max_rhat']:.3f} | "
                     f"{r['ess_bulk']:.0f} | {r['ess_tail']:.0f} | {r['divergences']} | "
                     f"{'yes' if r['converged'] else 'NO'} |")
    for label, r, n in [("lmer, Pastes", r_pastes, len(pastes)), (f"lmer, 3-level", r_big, len(sub))]:
        lines.append(f"| {label} (REML, inside R) | {n:,} | - | - | " + (f"{r['wall']:.1f} | | | | | |" if r else
                     "not run (no Rscript) | | | | | |"))
    lines.append("")
    ratio = lambda ours, r: f", {ours / r['wall']:.1f} x lmer's {r['wall']:.2f} s" if r else ""  # noqa: E731
    p, b = rows
    lines.append("Targets:")
    lines.append(f"- Pastes converged at default settings in under 5 s: {p['wall']:.1f} s{ratio(p['wall'], r_pastes)}; "
                 f"{'met' if p['converged'] and p['wall'] < 5 else 'MISSED'}")
    lines.append(f"- {len(big):,} pupils from Parquet, converged, under 120 s in all: {b['wall']:.1f} s "
                 f"(read and reduce {b['read']:.1f} s){ratio(b['wall'], r_big) if len(sub) == len(big) else ''}; "
                 f"{'met' if b['converged'] and b['wall'] < 120 else 'MISSED'}")
    summary = fit.fixef()[["mean", "sd"]].round(3)
    vc = fit.varcorr()[["group", "var1", "var2", "mean", "sd"]].round(3)
    lines.append("\nThe 3-level fit against the truth (" + ", ".join(f"{k} {v}" for k, v in truth.items()) + "):\n")
    lines.append(markdown(summary))
    lines.append("")
    lines.append(markdown(vc, index=False))
    lines.append("\nPastes:\n\n" + markdown(pastes_fit.varcorr()[["group", "mean", "sd"]].round(3), index=False))
    lines.append("\nNUTS: 4 chains x 1000 draws after the default warm-up (400 steps with nutpie), seed 2024. "
                 f"Python {sys.version.split()[0]}; timings are wall-clock under the load above.")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

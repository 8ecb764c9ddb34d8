"""Small real generalized data sets with several grouping factors at default fit settings, beside glmer (issue #12).

Each model is fitted with ``MLM(...).fit(seed=s)`` at its defaults (4 chains x
1000 draws after the default warm-up, 400 steps with nutpie; a full model on the GLMM kernel),
for seeds 1, 2 and 3; target: converged (R-hat <= 1.01, bulk and tail ESS >= 400,
no divergences) in under 5 s warm (the first fit of the process loads Numba's
cached kernels and is not counted).

- grouseticks (lme4; 403 chicks, 118 broods nested in 63 locations):
  ``TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)``, poisson: BROOD is
  centred on LOCATION (:mod:`bayesmlm.design.nested_centring`);
- cbpp (lme4): ``incidence ~ period + (1 | herd)``, binomial with ``trials="size"`` (one factor, unchanged).

glmer is timed by Rscript on the very CSV the package ships (``system.time`` of
the ``glmer`` call alone, data already read), in the same run. Seconds are wall
seconds of ``MLM(...)`` plus ``.fit(...)``; the load average is printed beside them.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_small_glmm.py [--out benchmarks/small_glmm_results.md]
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

MODELS = {  # name: (formula, family, R's glmer call, factor columns)
    "grouseticks": ("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", "poisson",
                    "glmer(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION), family = poisson, data = df)",
                    ("YEAR", "BROOD", "LOCATION", "INDEX")),
    "cbpp": ("incidence ~ period + (1 | herd)", "binomial",
             "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = df)",
             ("herd", "period")),
}
SEEDS = (1, 2, 3)
R_CODE = """
suppressPackageStartupMessages(library(lme4))
df <- read.csv("{path}", colClasses = "character")
for (col in names(df)) if (!(col %in% c({labels}))) df[[col]] <- as.numeric(df[[col]])
for (col in c({labels})) df[[col]] <- factor(df[[col]])
st <- system.time(fit <- {call})
cat(sprintf("%.3f %s %s\\n", st[["elapsed"]], paste(sprintf("%.4f", fixef(fit)), collapse = ","),
            paste(sprintf("%.4f", as.data.frame(VarCorr(fit))$sdcor), collapse = ",")))
"""


def glmer_seconds(name: str) -> str:
    """glmer's seconds in Rscript and its estimates (fixed effects; SDs), or why there are none."""
    if shutil.which("Rscript") is None:
        return "not run (no Rscript)"
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, f"{name}.csv")
        bayesmlm.datasets.load(name).to_csv(path, index=False)
        _, _, call, labels = MODELS[name]
        script = os.path.join(folder, "fit.R")
        with open(script, "w") as f:
            f.write(R_CODE.format(path=path, labels=", ".join(f'"{c}"' for c in labels), call=call))
        out = subprocess.run(["Rscript", script], capture_output=True, text=True, check=True).stdout.split()
        return f"{float(out[0]):.2f} s; fixef {out[1]}; SDs {out[2]}"
    finally:
        shutil.rmtree(folder)


def bayes(name: str, seed: int) -> dict:
    formula, family, _, _ = MODELS[name]
    data = bayesmlm.datasets.load(name)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {"trials": "size"} if name == "cbpp" else {}
        fit = bayesmlm.MLM(formula, data, family=family, **options).fit(seed=seed, progressbar=False)
    wall = time.perf_counter() - start
    d, post = fit.diagnostics, fit.posterior
    steps = float(fit.idata["sample_stats"]["n_steps"].mean())
    sds = ", ".join(f"{v}={float(post[v].mean()):.3f}" for v in post.data_vars if v.startswith("sd_"))
    return {"wall": wall, "density": fit.record.density, "parameterization": fit.record.parameterization,
            "rhat": d.max_rhat, "ess_bulk": d.min_ess_bulk, "ess_tail": d.min_ess_tail, "divergences": d.divergences,
            "converged": fit.converged, "steps": steps, "sds": sds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = [f"load average before: {os.getloadavg()[0]:.1f} (2 cores, shared)", ""]
    bayes("cbpp", 0)  # Numba loads its cached kernels: not counted
    for name, (formula, family, _, _) in MODELS.items():
        lines += [f"## {name}: {formula} ({family})", f"glmer (Rscript, same run): {glmer_seconds(name)}"]
        for seed in SEEDS:
            b = bayes(name, seed)
            ok = b["converged"] and b["wall"] < 5.0
            lines.append(f"seed {seed}: {b['wall']:.1f} s (load {os.getloadavg()[0]:.1f}), density={b['density']}, "
                         f"{b['parameterization']}; max R-hat {b['rhat']:.4f}, min bulk ESS {b['ess_bulk']:.0f}, "
                         f"min tail ESS {b['ess_tail']:.0f}, divergences {b['divergences']}, "
                         f"{b['steps']:.1f} leapfrog steps per draw; {b['sds']}; target {'met' if ok else 'NOT met'}")
        lines.append("")
        print("\n".join(lines[-5:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()

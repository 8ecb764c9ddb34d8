"""The full model's first fit on empty compile caches, by sampler route, against glmer in the same run.

The full model (random effects sampled: generalized families, several
factors) is a PyTensor graph that the sampler compiles. Each row is a fresh
process at ``MLM.fit``'s defaults (4 chains x 1000 draws after the default
warm-up, 400 steps with nutpie, seed 1):

- ``empty caches``: NUMBA_CACHE_DIR, PyTensor's base_compiledir (its C and
  Numba caches) and BAYESMLM_CACHE point at new empty folders, as on a fresh
  machine, CI runner or new venv;
- ``warm caches``: a new process with the caches the previous row left;
- ``warm, same process, second fit``: the same, timing the process's second fit of the model (the
  first, with another seed, untimed): the issue's "warm" fit;
- ``warm caches, new data``: the same model on other data of the same shape
  (the rows resampled), where a cache keyed on the data would miss.

Routes: ``sampler="nutpie"`` (PyTensor compiled by Numba, nutpie's NUTS; the
default) and ``sampler="pymc"`` (PyTensor's C backend, PyMC's own NUTS). glmer
(lme4, Laplace) is timed with Rscript in the same run (``system.time`` around
``glmer()``; reading the CSV and loading lme4 not counted).

Times are wall seconds of ``MLM(...).fit(...)`` (imports excluded);
``sampling`` is the sampler's own time (``posterior.attrs["sampling_time"]``),
``compile`` the rest of the fit's sampling step (graph rewriting and
compiling). ESS/s is min bulk ESS over the sampling seconds.

    python benchmarks/first_fit_full.py [--models cbpp verbagg wvs_binary] [--routes nutpie pymc] [--out FILE]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    "cbpp": ("incidence ~ period + (1 | herd)", "binomial", "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
    "verbagg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "bernoulli",
                "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"),
    # the tutorial's m2 with a binary outcome (tech >= 8) on all 91,175 rows: a newcomer's first generalized fit
    "wvs_binary": ("hi ~ smu + (1 + smu | country)", "bernoulli", "hi ~ smu + (1 + smu | country)"),
}


def _data(name: str, resample: bool):
    import numpy as np

    import bayesmlm

    frame = bayesmlm.datasets.load("wvs7_sim" if name == "wvs_binary" else name)
    if name == "wvs_binary":
        frame = frame.assign(hi=lambda d: (d.tech >= 8).astype(int))
    if name == "verbagg":
        frame = frame.assign(r2=lambda d: (d.r2 == "Y").astype(int))
    if resample:  # other data of the same shape: a new outcome, the same predictors and groups
        rng = np.random.default_rng(3)
        if name == "cbpp":
            frame = frame.assign(incidence=rng.binomial(frame["size"], frame["incidence"].sum() / frame["size"].sum()))
        else:
            column = "hi" if name == "wvs_binary" else "r2"
            frame = frame.assign(**{column: rng.permutation(frame[column].to_numpy())})
    return frame


def worker(name: str, sampler: str, resample: bool, second: bool = False) -> dict:
    import warnings

    import bayesmlm

    formula, family, _ = MODELS[name]
    frame = _data(name, resample)
    options = {"trials": "size"} if name == "cbpp" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if second:  # the "warm (same process, second fit)": the first fit, untimed, loads what it needs
            bayesmlm.MLM(formula, frame, family=family, **options).fit(seed=2, sampler=sampler, progressbar=False)
        start = time.perf_counter()
        fit = bayesmlm.MLM(formula, frame, family=family, **options).fit(seed=1, sampler=sampler, progressbar=False)
    wall = time.perf_counter() - start
    d, r = fit.diagnostics, fit.record
    sampling = float(fit.posterior.attrs.get("sampling_time", float("nan")))
    return {"wall": wall, "sampling": sampling, "compile": r.seconds_sample - sampling, "build": r.seconds_build,
            "rhat": d.max_rhat, "ess": d.min_ess_bulk, "div": d.divergences, "converged": d.converged,
            "density": r.density, "load": os.getloadavg()[0]}


GLMER = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
t <- system.time(m <- glmer({formula}, family = binomial, data = d))[["elapsed"]]
cat(sprintf('{{"wall": %.3f}}\\n', t))
"""


def glmer(name: str) -> float | None:
    if shutil.which("Rscript") is None:
        return None
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        _data(name, False).to_csv(csv, index=False)
        (Path(tmp) / "g.R").write_text(GLMER.format(csv=csv, formula=MODELS[name][2]))
        run = subprocess.run(["Rscript", str(Path(tmp) / "g.R")], capture_output=True, text=True, timeout=1800)
    return json.loads(run.stdout.strip().splitlines()[-1])["wall"] if run.returncode == 0 else None


def _run(args: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--routes", nargs="+", default=["nutpie", "pymc"], choices=["nutpie", "pymc"])
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, sampler, resample, second = args.worker
        print(json.dumps(worker(name, sampler, resample == "1", second == "1")))
        return
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    lines = ["| model | route | caches | wall (s) | / glmer | compile (s) | sampling (s) | max R-hat | min bulk ESS | "
             "ESS/s | divergences | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.models:
        g = glmer(name)
        lines.append(f"| {name} | lme4 glmer (Laplace) | - | {g:.2f} | 1.00 | - | - | - | - | - | - | {os.getloadavg()[0]:.1f} |" if g else
                     f"| {name} | lme4 glmer | not run (no Rscript) | | | | | | | | | |")
        print(lines[-1], flush=True)
        for sampler in args.routes:
            folder = Path(tempfile.mkdtemp(prefix=f"bayesmlm-fresh-{name}-{sampler}-"))
            env = dict(os.environ, PYTHONPATH=path, NUMBA_CACHE_DIR=str(folder / "numba"),
                       BAYESMLM_CACHE=str(folder / "bayesmlm"), PYTENSOR_FLAGS=f"base_compiledir={folder / 'pytensor'}")
            rows = (("empty", "0", "0"), ("warm", "0", "0"), ("warm, same process, second fit", "0", "1"),
                    ("warm, new data", "1", "0"))
            for caches, resample, second in rows:
                r = _run([name, sampler, resample, second], env)
                ratio = f"{r['wall'] / g:.1f}" if g else "-"
                lines.append(f"| {name} | {sampler}, density {r['density']} | {caches} | {r['wall']:.1f} | {ratio} | "
                             f"{r['compile']:.1f} | {r['sampling']:.1f} | {r['rhat']:.3f} | {r['ess']:.0f} | "
                             f"{r['ess'] / r['sampling']:.0f} | {r['div']} | {r['load']:.1f} |")
                print(lines[-1], flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()
    text = "\n".join(lines) + (f"\n\n{os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
                               "(1 / 5 / 15 min) at the end; ratios within one model's rows hold, seconds across runs do not.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

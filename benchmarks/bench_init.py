"""Benchmark: NUTS started at the frequentist optimum (``init="frequentist"``) against the sampler's own start.

Three full models (``method="full"``), each fitted with both starts at a short
and a default warm-up, seed 1: the 1,934-row wvs7_sim binary subsample of
``benchmarks/bench_glmm.py``, contraception (bernoulli, correlated
intercept and urban slope by district) and sleepstudy's full model. Reported:
max R-hat, min bulk and tail ESS, divergences, sampling seconds (compile
included), min bulk ESS per second of sampling, and the seconds of the
frequentist fit that made the start. Run from the repository root:

    python benchmarks/bench_init.py [--out benchmarks/init_results.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bayesmlm, not an installed one

import bayesmlm  # noqa: E402


def models():
    wvs = bayesmlm.datasets.load("wvs7_sim").assign(hi=lambda d: (d.tech >= 8).astype(int))
    sub = wvs.sample(1934, random_state=7).reset_index(drop=True)
    yield ("wvs7_sim 1,934 rows", bayesmlm.MLM("hi ~ smu + (1 + smu | country)", sub, family="bernoulli"),
           dict(draws=500, chains=2), (200, 500))
    yield ("contraception", bayesmlm.MLM("use ~ age + urban + livch + (1 + urban | district)",
                                         bayesmlm.datasets.load("contraception"), family="bernoulli"),
           dict(draws=1000, chains=2), (300, 1000))
    yield ("sleepstudy (full)", bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy")),
           dict(draws=1000, chains=2), (200, 1000))


HEADER = ("| model | init | chains x draws | tune | parameterisation | max R-hat | min bulk ESS | min tail ESS | "
          "divergences | sampling (s) | start (s) | min bulk ESS / s | converged |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def run(name, model, settings, tune, init) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(**settings, tune=tune, seed=1, progressbar=False, method="full", init=init)
    d, r = fit.diagnostics, fit.record
    par = ", ".join(f"{k} {v}" for k, v in r.parameterization.items())
    used = r.init + (f" ({r.init_note})" if r.init_note else "")
    return (f"| {name} | {used} | {r.settings.chains} x {r.settings.draws} | {tune} | {par} | {d.max_rhat:.3f} | "
            f"{d.min_ess_bulk:.0f} | {d.min_ess_tail:.0f} | {d.divergences} | {r.seconds_sample:.1f} | "
            f"{r.seconds_init:.1f} | {d.min_ess_bulk / r.seconds_sample:.1f} | {'yes' if d.converged else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "init_results.md"))
    args = parser.parse_args()
    lines = [HEADER]
    for name, model, settings, tunes in models():
        model.fit(draws=20, tune=20, chains=1, seed=0, progressbar=False, method="full", init="sampler")  # compile caches warm
        for tune in tunes:
            for init in ("sampler", "frequentist"):
                lines.append(run(name, model, settings, tune, init))
                print(lines[-1], flush=True)
    lines.append(f"\nMachine: {os.cpu_count()} cores shared with other work; seed 1; {time.strftime('%Y-%m-%d')}.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The default warm-up: 400 tuning steps against 1000 on every nutpie route, same seeds.

``MLM.fit(tune=None)`` runs 400 warm-up steps with nutpie (``DEFAULT_TUNE``).
This script is the evidence for that number: each route's hard real or
survey-sized model, fitted at default settings except ``tune``, for the seeds
below, and judged by the package's own rule (R-hat <= 1.01, bulk and tail ESS
>= 400, no divergence). A warm-up that is too short shows up as a divergence,
a low ESS or a high R-hat of the SDs, so every row prints all three.

Every model is fitted once untimed first (Numba's kernels and PyTensor's graph
loaded from the disk cache); the seconds are ``fit.record.seconds_sample``
(sampling alone: the part the warm-up changes) and the wall seconds of
``MLM(...).fit(...)``.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tune.py [--only NAME ...] [--out benchmarks/tune_results.md]

``--rate NAME --seeds N [--tunes 400,700,1000]`` instead counts the fits of
one model that fail the rule over seeds 101 to 100 + N at each warm-up: the
test of whether a failure is the warm-up's or the model's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bayesmlm, not an installed one
sys.path.insert(0, str(ROOT / "benchmarks"))

import bayesmlm  # noqa: E402
from bayesmlm.datasets import load  # noqa: E402

TUNES = (400, 1000)
RATE_MODELS = ("penicillin", "pastes", "grouseticks", "cbpp")  # cheap enough to count failures over many seeds
RATE_SEEDS = range(1, 21)


def _binary_wvs(rows: int | None = None):
    wvs = load("wvs7_sim").assign(hi=lambda d: (d.tech >= 8).astype(int))
    return wvs if rows is None else wvs.sample(n=rows, random_state=1)


def _big_binary():
    import pandas as pd
    from bench_big_binary import simulate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.parquet"
        simulate(path, rows=200_000, groups=1_000)
        return pd.read_parquet(path)


MODELS = {  # name: (what it exercises, a function returning (formula, data, MLM options, fit options), seeds)
    "m2": ("collapsed, one factor, 91,175 rows",
           lambda: ("tech ~ 1 + smu + (1 + smu | country)", load("wvs7_sim"), {}, {}), (1, 2)),
    "sleepstudy-full": ("full gaussian, PyTensor graph",
                        lambda: ("Reaction ~ 1 + Days + (1 + Days | Subject)", load("sleepstudy"), {},
                                 {"method": "full"}), (1, 2)),
    "penicillin": ("crossed route", lambda: ("diameter ~ 1 + (1 | plate) + (1 | sample)", load("penicillin"), {}, {}),
                   (1, 2, 3)),
    "pastes": ("nested route", lambda: ("strength ~ 1 + (1 | batch/cask)", load("pastes"), {}, {}), (1, 2, 3)),
    "grouseticks": ("kernel, poisson, nested factors",
                    lambda: ("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", load("grouseticks"),
                             {"family": "poisson"}, {}), (1, 2, 3)),
    "cbpp": ("kernel, binomial", lambda: ("incidence ~ period + (1 | herd)", load("cbpp"),
                                          {"family": "binomial", "trials": "size"}, {}), (1, 2)),
    "binary-1934": ("kernel, bernoulli, 1,934 rows",
                    lambda: ("hi ~ smu + (1 + smu | country)", _binary_wvs(1934), {"family": "bernoulli"}, {}),
                    (1, 2, 3)),
    "binary-m2": ("kernel, bernoulli cells, 91,175 rows",
                  lambda: ("hi ~ smu + (1 + smu | country)", _binary_wvs(), {"family": "bernoulli"}, {}), (1, 2)),
    "verbagg": ("kernel, crossed bernoulli, 7,584 rows",
                lambda: ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                         load("verbagg").assign(r2=lambda d: (d.r2 == "Y").astype(int)), {"family": "bernoulli"}, {}),
                (1, 2)),
    "ordinal": ("kernel, cumulative, 91,175 rows",
                lambda: ("tech ~ smu + (1 + smu | country)", load("wvs7_sim"), {"family": "cumulative"}, {}), (1,)),
    "laplace-200k": ("laplace, 200,000 rows in 1,000 groups",
                     lambda: ("hi ~ smu + female + (1 + smu | country)", _big_binary(), {"family": "bernoulli"},
                              {"method": "laplace"}), (1, 2)),
    "insteval": ("crossed route, 73,421 ratings",
                 lambda: ("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", load("insteval"), {}, {}), (2024,)),
}


def fit_once(formula, data, options, fit_options, tune, seed):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmlm.MLM(formula, data, **options).fit(tune=tune, seed=seed, progressbar=False, **fit_options)
    return fit, time.perf_counter() - start


def seed_diagnostics(name: str, seeds, tunes):
    """(tune, the diagnostics of one fit per seed) for each warm-up, the model built once."""
    formula, data, options, fit_options = MODELS[name][1]()
    fit_once(formula, data, options, fit_options, 20, 0)  # caches warm
    for tune in tunes:
        yield tune, [fit_once(formula, data, options, fit_options, tune, s)[0].diagnostics for s in seeds]


def failure_rate(name: str, seeds: int, tunes: tuple[int, ...]) -> None:
    start = time.perf_counter()
    for tune, diags in seed_diagnostics(name, range(101, 101 + seeds), tunes):
        print(f"{name} tune {tune}: {seeds} seeds, not converged {sum(not d.converged for d in diags)}, with a divergence "
              f"{sum(d.divergences > 0 for d in diags)} ({sum(d.divergences for d in diags)} divergences in all), "
              f"min ESS {min(min(d.min_ess_bulk, d.min_ess_tail) for d in diags):.0f}, "
              f"max R-hat {max(d.max_rhat for d in diags):.3f}; {time.perf_counter() - start:.0f} s so far", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=list(MODELS), default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "tune_results.md")
    ap.add_argument("--rate", choices=list(MODELS), default=None)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tunes", default="400,1000")
    args = ap.parse_args()
    if args.rate:
        failure_rate(args.rate, args.seeds, tuple(int(t) for t in args.tunes.split(",")))
        return
    names = args.only or list(MODELS)
    lines = ["| model | route | tune | seed | sampling (s) | wall (s) | max R-hat | min bulk ESS | min tail ESS | "
             "divergences | converged | worst |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    load_start = os.getloadavg()[0]
    for name in names:
        what, make, seeds = MODELS[name]
        formula, data, options, fit_options = make()
        fit_once(formula, data, options, fit_options, 20, 0)  # caches warm
        for seed in seeds:
            for tune in TUNES:
                fit, wall = fit_once(formula, data, options, fit_options, tune, seed)
                d, r = fit.diagnostics, fit.record
                lines.append(f"| {name} | {what}; {r.route} | {r.settings.tune} | {seed} | {r.seconds_sample:.1f} | "
                             f"{wall:.1f} | {d.max_rhat:.3f} | {d.min_ess_bulk:.0f} | {d.min_ess_tail:.0f} | "
                             f"{d.divergences} | {'yes' if d.converged else 'NO'} | {', '.join(d.flagged[:2]) or '-'} |")
                print(lines[-1], flush=True)
    rates = [n for n in names if n in RATE_MODELS]
    if rates:
        lines += ["", f"Fits that fail the rule, over seeds {RATE_SEEDS.start}-{RATE_SEEDS.stop - 1} (a warm-up too "
                  "short shows as more failures at 400 than at 1000):", "",
                  "| model | tune | fits not converged | fits with a divergence | min ESS (bulk or tail) |", "|---|---|---|---|---|"]
        for name in rates:
            for tune, diags in seed_diagnostics(name, RATE_SEEDS, TUNES):
                lines.append(f"| {name} | {tune} | {sum(not d.converged for d in diags)} | "
                             f"{sum(d.divergences > 0 for d in diags)} | "
                             f"{min(min(d.min_ess_bulk, d.min_ess_tail) for d in diags):.0f} |")
                print(lines[-1], flush=True)
    load = os.getloadavg()
    lines.append(f"\n4 chains x 1000 draws, nutpie, defaults otherwise; {os.cpu_count()} cores, load average "
                 f"{load_start:.1f} at the start, {load[0]:.1f} at the end; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    text = "\n".join(lines)
    if args.only is None or args.out != ROOT / "benchmarks" / "tune_results.md":
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

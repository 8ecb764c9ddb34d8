"""The generalized full model's kernel on VerbAgg: one gradient's time, and compiling it on an empty Numba cache.

- ``gradient``: ``logp_grad`` in a loop (in CPU time) at one fixed point of VerbAgg's
  plan at the default parameterisation (microseconds per call, best of 5
  repeats of 200 calls), and on a 100,000-cell binomial model with a
  correlated two-term block over 10,000 groups (the 10,000,000-row target's
  cells, :mod:`benchmarks.bench_big_binary`'s design; best of 5 repeats of 20);
- ``--passes``: instead, VerbAgg's gradient and each pass of its unit loop (eta by gathers, the binomial
  units, the scatter) alone over all chunks, and the gradient without units (the blocks and priors),
  each the least of 3,000 single calls in wall time (``time.perf_counter_ns``): the least call is
  the one the machine's other work did not reach, which a mean on a noisy shared machine is not;
- ``compile``: a fresh process with NUMBA_CACHE_DIR at a new empty folder
  imports :mod:`bayesmlm.fastpath.glmm_kernel` (compiling nutpie's two C
  callbacks) and makes one call of ``logp_grad`` and one of ``expand``
  (seconds; importing bayesmlm excluded), median of 3 processes.

    python benchmarks/glmm_kernel_timing.py [--checkout DIR] [--out FILE] [--passes]

``--checkout`` times another checkout's kernel (e.g. main's, for a before/after).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"

_COMPILE = """
import time, numpy as np, numba
import bayesmlm.fastpath.prior_density  # the package's import, not counted
t = time.perf_counter()
from bayesmlm.fastpath import glmm_kernel as k
b = k.KernelBlock(k.CENTRED, False, [0, 1], np.ones((2, 1)), [[2, 1, 0, 0]], 1.0, 2, H=np.ones((2, 1, 1)))
d = k.pack_buffer(k.BINOMIAL, [1, 0], [1, 1], [1, 1], [0, 0], np.ones((2, 1)), [0.0], [[0, 0, 2.5, 0]], [b], 0.0, 0)
g = np.empty(int(d[1]))
k.logp_grad(np.zeros(int(d[1])), d, g)
k.expand(np.zeros(int(d[1])), d, np.empty(int(d[6])))
print(time.perf_counter() - t)
"""


def survey_cells(groups: int = 10_000, seed: int = 2026):
    """One cell per (country, smu, female): bench_big_binary's model, its 10,000,000 rows as 100,000 binomial cells."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    country, smu, female = (a.ravel() for a in np.meshgrid(np.arange(groups), np.arange(1, 6), [0, 1], indexing="ij"))
    u = rng.normal(size=(groups, 2)) * [0.5, 0.1]
    eta = -1.0 + 0.25 * smu - 0.3 * female + u[country, 0] + u[country, 1] * smu
    n = rng.integers(50, 150, len(country))
    hi = rng.binomial(n, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"hi": hi, "n": n, "smu": smu.astype(float), "female": female.astype(float),
                         "country": country.astype(str)})


def gradient_us(root: Path = ROOT, survey: bool = False) -> tuple[float, int]:
    sys.path.insert(0, str(root))  # that checkout's bayesmlm, not an installed one
    import bayesmlm
    from bayesmlm.fastpath.glmm_fit import glmm_plan
    from bayesmlm.fastpath.glmm_kernel import logp_grad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if survey:
            m = bayesmlm.MLM("hi ~ smu + female + (1 + smu | country)", survey_cells(), trials="n", family="binomial")
        else:
            frame = bayesmlm.datasets.load("verbagg").assign(r2=lambda d: (d.r2 == "Y").astype(int))
            m = bayesmlm.MLM(VERBAGG, frame, family="bernoulli")
        cells, choice = m._full_options(True, "auto")
    plan = glmm_plan(m.design, m.prior_dict, cells, choice)
    x = plan.initial_point(1)
    grad = np.empty(plan.n_dim)
    logp_grad(x, plan.buffer, grad)
    calls = 20 if survey else 200
    best = np.inf
    for _ in range(5):
        t = time.process_time()  # CPU time: what the other processes on a shared machine cannot stretch
        for _ in range(calls):
            logp_grad(x, plan.buffer, grad)
        best = min(best, (time.process_time() - t) / calls)
    return best * 1e6, int(plan.buffer[4])


def _verbagg_plan():
    import bayesmlm
    from bayesmlm.fastpath.glmm_fit import glmm_plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = bayesmlm.datasets.load("verbagg").assign(r2=lambda d: (d.r2 == "Y").astype(int))
        m = bayesmlm.MLM(VERBAGG, frame, family="bernoulli")
        cells, choice = m._full_options(True, "auto")
    return glmm_plan(m.design, m.prior_dict, cells, choice)


def _least_us(call, calls: int = 3000) -> float:
    call()
    best = np.inf
    for _ in range(calls):
        t = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - t)
    return best / 1000.0


def passes_us(root: Path = ROOT) -> dict[str, float]:
    """VerbAgg: the whole gradient, each unit pass over all chunks, and the gradient without units (least call, us)."""
    sys.path.insert(0, str(root))
    import numba

    from bayesmlm.fastpath import glmm_kernel as k

    plan = _verbagg_plan()
    d, x = plan.buffer, plan.initial_point(1)
    grad = np.empty(plan.n_dim)
    p, K, N, o_blocks, F = int(d[2]), int(d[3]), int(d[4]), int(d[9]), k.BLOCK_FIELDS
    rows = [o_blocks + F * b for b in range(K)]
    kq = np.array([int(d[r + 1]) for r in rows])
    kat = np.array([int(d[r + 4]) - p for r in rows])
    kix, kzs = np.array([int(d[r + 8]) for r in rows]), np.array([int(d[r + 9]) for r in rows])
    w = np.random.default_rng(1).normal(size=int(sum(int(d[r + 1]) * int(d[r + 2]) for r in rows))) * 0.3
    gu, b, gb, res = np.zeros(w.size), np.empty(0), np.empty(0), np.empty(1024)
    eta = np.random.default_rng(2).normal(size=1024)  # the units pass reads it: values as a linear predictor has

    # the arrays as arguments (globals would be compiled in as constants); a checkout before the Z-of-ones flags
    # (BLOCK_FIELDS 18) has the passes without their kones argument
    if F > 18:
        kones = np.array([int(d[r + 18]) != 0 for r in rows])

        @numba.njit
        def gathers(d, b, w, kq, kat, kix, kzs, kones, eta, N):
            for lo in range(0, N, 1024):
                k._linear_predictor(d, lo, min(1024, N - lo), b, w, kq, kat, kix, kzs, kones, eta)

        @numba.njit
        def scatter(d, res, gb, gu, kq, kat, kix, kzs, kones, N):
            for lo in range(0, N, 1024):
                k._scatter(d, lo, min(1024, N - lo), res, gb, gu, kq, kat, kix, kzs, kones)
    else:
        kones = np.zeros(K, dtype=bool)

        @numba.njit
        def gathers(d, b, w, kq, kat, kix, kzs, kones, eta, N):
            for lo in range(0, N, 1024):
                k._linear_predictor(d, lo, min(1024, N - lo), b, w, kq, kat, kix, kzs, eta)

        @numba.njit
        def scatter(d, res, gb, gu, kq, kat, kix, kzs, kones, N):
            for lo in range(0, N, 1024):
                k._scatter(d, lo, min(1024, N - lo), res, gb, gu, kq, kat, kix, kzs)

    @numba.njit
    def units(d, eta, res, N):
        s = 0.0
        for lo in range(0, N, 1024):
            s += k._binomial_units(d, lo, min(1024, N - lo), eta, res)
        return s

    empty = d.copy()
    empty[4] = 0  # no units: the blocks' densities and the priors alone
    return {"gradient": _least_us(lambda: k.logp_grad(x, d, grad)),
            "eta (gathers)": _least_us(lambda: gathers(d, b, w, kq, kat, kix, kzs, kones, eta, N)),
            "binomial units": _least_us(lambda: units(d, eta, res, N)),
            "scatter": _least_us(lambda: scatter(d, res, gb, gu, kq, kat, kix, kzs, kones, N)),
            "blocks and priors": _least_us(lambda: k.logp_grad(x, empty, grad))}


def compile_seconds(root: Path = ROOT, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(root))
            run = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, cwd=root)
            if run.returncode:
                raise RuntimeError(run.stderr)
            times.append(float(run.stdout.strip().splitlines()[-1]))
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default=str(ROOT))
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timing")
    parser.add_argument("--passes", action="store_true", help="VerbAgg's gradient by pass, least of 3,000 calls")
    args = parser.parse_args()
    if args.passes:
        us = passes_us(Path(args.checkout))
        load = os.getloadavg()
        text = ("| checkout | " + " | ".join(f"{name} (us)" for name in us) + " |\n|---|" + "---|" * len(us) + "\n"
                f"| {Path(args.checkout).name} | " + " | ".join(f"{v:.1f}" for v in us.values()) + " |\n"
                f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.")
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return
    us, units = gradient_us(Path(args.checkout))
    big_us, big_units = gradient_us(Path(args.checkout), survey=True)
    seconds = float("nan") if args.no_compile else compile_seconds(Path(args.checkout))
    load = os.getloadavg()
    text = (f"| checkout | VerbAgg units | one gradient (us) | survey cells | one gradient (us) | compile on an empty cache (s) |\n"
            f"|---|---|---|---|---|---|\n"
            f"| {Path(args.checkout).name} | {units} | {us:.0f} | {big_units} | {big_us:.0f} | {seconds:.1f} |\n"
            f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared).")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

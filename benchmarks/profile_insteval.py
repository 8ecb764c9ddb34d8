"""Where InstEval's default fit on the crossed route spends its time: wall and CPU seconds per stage, gradients.

Each stage of ``MLM(...).fit(seed=2024)`` is wrapped in a timer (wall seconds, and
``time.process_time`` of the whole process, all threads); then the gradient
count, tree depth and step size of the draws, and one kernel call's CPU time.
With ``--warmup`` nutpie keeps the tuning steps' statistics too
(``crossed_fit.NUTPIE_OPTIONS``), to count the gradients spent in tuning.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_insteval.py [--warmup]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

TIMES: dict[str, tuple[float, float]] = {}


def timed(name, f):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = f(*args, **kwargs)
        w, c = TIMES.get(name, (0.0, 0.0))
        TIMES[name] = (w + time.perf_counter() - wall, c + time.process_time() - cpu)
        return out
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    import nutpie

    import bayesmlm
    import bayesmlm.model as bm
    start = time.perf_counter()
    from bayesmlm.fastpath import crossed_fit as cf
    from bayesmlm.fastpath import crossed_kernel as kernel
    TIMES["Numba loading the cached kernel"] = (time.perf_counter() - start, 0.0)
    traces = []
    sample = nutpie.sample
    nutpie.sample = lambda *a, **k: traces.append(sample(*a, **k)) or traces[-1]
    if args.warmup:
        cf.NUTPIE_OPTIONS["save_warmup"] = True
    cf.crossed_plan = timed("statistics and the kernel's buffer", cf.crossed_plan)
    nutpie.sample = timed("nutpie.sample (tuning + draws)", nutpie.sample)
    cf.recover_collapsed = timed("draws of the collapsed factor's effects", cf.recover_collapsed)
    cf.recover_integrated = timed("draws of the integrated-out parents' effects", cf.recover_integrated)
    bm.diagnose = timed("diagnostics (R-hat, bulk and tail ESS)", bm.diagnose)
    data = bayesmlm.datasets.load("insteval")
    start = time.perf_counter()
    m = timed("MLM(): the design", bayesmlm.MLM)("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(seed=2024, progressbar=False)
    total = time.perf_counter() - start
    print(f"load average before {load:.1f}, after {os.getloadavg()[0]:.1f} (2 cores, shared)")
    for name, (wall, cpu) in TIMES.items():
        print(f"  {name:48s} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    print(f"  {'MLM() + fit(), as bench_crossed.py times it':48s} {total:7.2f} s wall")
    st = fit.idata["sample_stats"]
    n = int(st["n_steps"].sum())
    print(f"  draws: {n} gradients ({n / st['n_steps'].size:.1f} per draw), depth counts "
          f"{np.bincount(st['depth'].values.ravel()).tolist()}, final step sizes "
          f"{np.round(st['step_size'].values[:, -1], 3).tolist()}, divergences {int(st['diverging'].sum())}")
    plan = cf.CrossedPlan(m.design, m.prior_dict)
    x = np.random.default_rng(1).normal(size=plan.n_dim) * 0.1
    grad = np.empty(plan.n_dim)
    kernel.logp_grad(x, plan.buffer, grad)
    cpu = time.process_time()
    for _ in range(2000):
        kernel.logp_grad(x, plan.buffer, grad)
    print(f"  one kernel call: {(time.process_time() - cpu) / 2000 * 1e6:.0f} us CPU (n_dim {plan.n_dim}, "
          f"nnz(B) {plan.stats.b.nnz}, nnz(W'W) {plan.stats.wtw.nnz})")
    d = fit.diagnostics
    print(f"  max R-hat {d.max_rhat:.4f}, min bulk ESS {d.min_ess_bulk:.0f}, min tail ESS {d.min_ess_tail:.0f}, "
          f"parameterization {fit.record.parameterization}")
    if args.warmup:
        w = traces[-1]["warmup_sample_stats"]
        print(f"  tuning: {int(w['n_steps'].sum())} gradients, depth counts {np.bincount(w['depth'].values.ravel()).tolist()}")

if __name__ == "__main__":
    main()

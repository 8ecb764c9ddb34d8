"""The 10,000,000-row model of bench_big_binary.py with a short run (4 chains x 200 draws after 200 tuning).

Gradients per draw, step size and diagnostics of the default fit (the rule's
choice of ``precondition``) at the full size, where the default 4 x 2,000
iterations take longer than a shared 2-core machine allows. Not converged
at this length by design; it is the geometry at 20,006 dimensions that it measures.

    python benchmarks/big_binary_short.py
"""
import os, sys, time, tempfile, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, bayesmlm
from bench_big_binary import FORMULA, simulate
print("load", os.getloadavg(), flush=True)
with tempfile.TemporaryDirectory() as tmp:
    p = Path(tmp)/"r.parquet"; t = time.perf_counter(); simulate(p, 10_000_000, 10_000); print("sim", time.perf_counter()-t, flush=True)
    t = time.perf_counter(); m = bayesmlm.MLM.from_files(FORMULA, p, family="bernoulli"); print("read", time.perf_counter()-t, flush=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t = time.perf_counter(); f = m.fit(draws=200, tune=200, seed=1, progressbar=False); w = time.perf_counter()-t
r, d = f.record, f.record.diagnostics
st = f.idata["sample_stats"]
print(f"fit {w:.1f} s (build {r.seconds_build:.1f}, sample {r.seconds_sample:.1f}); precondition {r.precondition} {r.precondition_note!r}; "
      f"{r.parameterization}; cells {r.n_cells}; gradients/draw {float(st['n_steps'].mean()):.1f}; step {st['step_size'].values[:, -1]}; "
      f"max R-hat {d.max_rhat:.4f}, min bulk ESS {d.min_ess_bulk:.0f}, min tail ESS {d.min_ess_tail:.0f}, divergences {d.divergences}; load {os.getloadavg()}")
print(f.fixef()[["mean", "sd"]].to_string()); print(f.varcorr().to_string())

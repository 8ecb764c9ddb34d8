"""The 10,000,000-row model of bench_big_binary.py with a short run (4 chains x 200 draws after 200 tuning).

Gradients per draw, step size and diagnostics of the default fit (the rule's
choice of ``precondition``) at the full size, where the default 4 x 2,000
iterations take longer than a shared 2-core machine allows. Not converged at
this length by design: it measures the geometry at 20,006 dimensions.

    python benchmarks/big_binary_short.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bayesmlm  # noqa: E402
from bench_big_binary import FORMULA, simulate  # noqa: E402


def main() -> None:
    print("load", os.getloadavg(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        start = time.perf_counter()
        simulate(path, 10_000_000, 10_000)
        print(f"simulate {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        model = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli")
        print(f"read {time.perf_counter() - start:.1f} s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = model.fit(draws=200, tune=200, seed=1, progressbar=False)
        wall = time.perf_counter() - start
    r, d = fit.record, fit.record.diagnostics
    st = fit.idata["sample_stats"]
    print(f"fit {wall:.1f} s (build {r.seconds_build:.1f}, sample {r.seconds_sample:.1f}); precondition {r.precondition} "
          f"{r.precondition_note!r}; {r.parameterization}; cells {r.n_cells}; gradients/draw "
          f"{float(st['n_steps'].mean()):.1f}; step {st['step_size'].values[:, -1]}; max R-hat {d.max_rhat:.4f}, "
          f"min bulk ESS {d.min_ess_bulk:.0f}, min tail ESS {d.min_ess_tail:.0f}, divergences {d.divergences}; "
          f"load {os.getloadavg()}")
    print(fit.fixef()[["mean", "sd"]].to_string())
    print(fit.varcorr().to_string())


if __name__ == "__main__":
    main()

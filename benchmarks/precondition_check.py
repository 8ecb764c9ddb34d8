"""The Laplace map (``MLM.fit(precondition=)``) against the kernel's own coordinates on the kernel's shipped models.

At default fit settings, each model fitted with ``precondition="none"`` and
``"auto"`` in the same run: what the rule chose, wall seconds, gradients per
draw, the least bulk and tail ESS, max R-hat, divergences. Seconds move with
the load (printed); gradients and ESS do not.

    python benchmarks/precondition_check.py            # verbagg, cbpp
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bayesmlm  # noqa: E402

MODELS = {
    "verbagg": lambda: bayesmlm.MLM("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                                    bayesmlm.datasets.load("verbagg").assign(r2=lambda d: (d.r2 == "Y").astype(int)),
                                    family="bernoulli"),
    "cbpp": lambda: bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
                                 family="binomial"),
}


def main() -> None:
    print("| model | precondition | ran | parameterisation | wall (s) | gradients / draw | min bulk ESS | "
          "min tail ESS | max R-hat | divergences | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sys.argv[1:] or list(MODELS):
        m = MODELS[name]()
        for pre in ("none", "auto"):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = m.fit(seed=1, progressbar=False, precondition=pre)
            wall = time.perf_counter() - start
            r, d = fit.record, fit.record.diagnostics
            steps = float(fit.idata["sample_stats"]["n_steps"].mean())
            print(f"| {name} | {pre} | {r.precondition} {r.precondition_note} | {r.parameterization} | {wall:.1f} | "
                  f"{steps:.1f} | {d.min_ess_bulk:.0f} | {d.min_ess_tail:.0f} | {d.max_rhat:.4f} | {d.divergences} | "
                  f"{load:.1f} -> {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""What compiling and sampling the collapsed model costs with each backend (issue 4).

Each row runs in a fresh process on wvs7_sim's m2 (tech ~ smu + (1 + smu |
country)), 4 chains x 1000 draws after 1000 tuning steps:

- ``nutpie-compile_pymc_model``: nutpie's own ``compile_pymc_model`` (Numba
  backend), which wraps PyTensor's function in a ``numba.cfunc``;
- ``bayesmlm``: what ``MLM.fit`` does (``bayesmlm.fastpath.nutpie_driver``: PyTensor's
  Numba function called through ``nutpie.compiled_pyfunc``);
- ``pymc-sampler``: ``pm.sample(nuts_sampler="pymc")`` on the same model.

Each is run twice: with PyTensor's and Numba's on-disk caches as earlier runs
left them ("warm disk cache"), and with an empty cache folder ("empty cache").
Compile time is from the model to a sampler that can start; sampling time is
the rest.

    .venv/bin/python benchmarks/compile_collapsed.py [--out benchmarks/compile_collapsed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("nutpie-compile_pymc_model", "bayesmlm", "pymc-sampler")
DRAWS = {"draws": 1000, "tune": 1000, "chains": 4, "seed": 2024}


def _model():
    import bayesmlm
    from bayesmlm.fastpath.model import build_collapsed_model, collapsed_data, collapsed_structure
    from bayesmlm.fastpath.fit import x_centre
    from bayesmlm.fastpath.stats import group_stats

    m = bayesmlm.MLM("tech ~ smu + (1 + smu | country)", bayesmlm.datasets.load("wvs7_sim"))
    stats = group_stats(m.design)
    structure = collapsed_structure(m.design, m.prior_dict)
    data = collapsed_data(structure, stats, m.prior_dict, x_centre(stats))
    return m, structure, data, build_collapsed_model(structure, m.prior_dict, data)


def worker(kind: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import nutpie
    import pymc as pm

    from bayesmlm.fastpath.nutpie_driver import compile_collapsed, sample_collapsed
    from bayesmlm.sample.nuts import SamplerSettings

    m, structure, data, pmodel = _model()
    names = ["fixef", "sd_country", "cor_country", "sigma"]
    start = time.perf_counter()
    if kind == "nutpie-compile_pymc_model":
        compiled = nutpie.compile_pymc_model(pmodel, backend="numba", var_names=names)
        mid = time.perf_counter()
        nutpie.sample(compiled, draws=DRAWS["draws"], tune=DRAWS["tune"], chains=DRAWS["chains"], cores=2,
                      seed=DRAWS["seed"], progress_bar=False)
    elif kind == "bayesmlm":
        compiled, _ = compile_collapsed(structure, m.prior_dict, data)
        mid = time.perf_counter()
        sample_collapsed(compiled, data, SamplerSettings(**DRAWS, progressbar=False))
    else:
        with pmodel:
            step = pm.NUTS(target_accept=0.9)
        mid = time.perf_counter()
        pm.sample(draws=DRAWS["draws"], tune=DRAWS["tune"], chains=DRAWS["chains"], cores=2, random_seed=DRAWS["seed"],
                  step=step, model=pmodel, progressbar=False, compute_convergence_checks=False)
    end = time.perf_counter()
    return {"compile": mid - start, "sample": end - mid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    rows = ["| backend | cache | compile (s) | sampling (s) |", "|---|---|---|---|"]
    for kind in KINDS:
        for cache in ("warm disk cache", "empty cache"):
            env = dict(os.environ)
            if cache == "empty cache":
                folder = tempfile.mkdtemp(prefix="pytensor-empty-")
                env["PYTENSOR_FLAGS"] = f"base_compiledir={folder}"
                env["BAYESMLM_CACHE"] = folder
            done = subprocess.run([sys.executable, __file__, "--worker", kind], capture_output=True, text=True, env=env)
            if done.returncode:
                rows.append(f"| {kind} | {cache} | failed: {done.stderr.strip().splitlines()[-1][:80]} | |")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {kind} | {cache} | {r['compile']:.1f} | {r['sample']:.1f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join(rows) + (f"\n\nwvs7_sim m2, {DRAWS['chains']} chains x {DRAWS['draws']} draws (tune {DRAWS['tune']}); "
                              f"{os.cpu_count()} CPU cores.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

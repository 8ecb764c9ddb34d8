"""What compiling and sampling the collapsed model costs by each route (issue 4, then the first-fit issue).

Each row runs in a fresh process on wvs7_sim's m2 (tech ~ smu + (1 + smu |
country)), 4 chains x 1000 draws after 1000 tuning steps, cores=2. The same
posterior, handed to a sampler in different ways:

- ``nutpie-compile_pymc_model``: nutpie's own ``compile_pymc_model`` (Numba
  backend), which wraps PyTensor's function in a ``numba.cfunc``;
- ``pytensor-numba+pyfunc``: what ``MLM.fit`` did before: PyTensor's Numba
  function of logp and gradient, called through ``nutpie.compiled_pyfunc.from_pyfunc``;
- ``pytensor-c+pyfunc``: the same graph with PyTensor's C backend (the
  likelihood's q x q kernel through its Python ``perform``);
- ``kernel+pyfunc``: the generated density kernel (:mod:`bayesmlm.fastpath.kernels`)
  behind a Python callback;
- ``kernel+cfunc`` (``MLM.fit`` now, :mod:`bayesmlm.fastpath.nutpie_driver`): the kernel
  as a Numba C callback that nutpie's threads call without the GIL;
- ``pymc-sampler``: ``pm.sample(nuts_sampler="pymc")`` on the PyMC model.

Each is run with empty caches (NUMBA_CACHE_DIR, PyTensor's base_compiledir and
BAYESMLM_CACHE new folders, as on a fresh machine) and then again with the
caches that run left ("warm disk cache"). Compile time is from the model to a
sampler that can start; sampling time is the rest; ESS is the smallest bulk
ESS over what the route returns (the unconstrained vector for the Python
callbacks), per second of compile + sampling.

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

ROOT = Path(__file__).resolve().parents[1]  # this checkout's bayesmlm, not an installed one
KINDS = ("nutpie-compile_pymc_model", "pytensor-numba+pyfunc", "pytensor-c+pyfunc", "kernel+pyfunc", "kernel+cfunc",
         "pymc-sampler")
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


def _pytensor_logp(pmodel, mode: str):
    """logp and gradient of the flat unconstrained vector, compiled by PyTensor in ``mode``; and a start point."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph import clone_replace

    point = pmodel.initial_point()
    value_vars = pmodel.value_vars
    shapes = [point[v.name].shape for v in value_vars]
    offsets = np.cumsum([0, *[int(np.prod(s)) for s in shapes]])
    x = pt.dvector("x")
    logp = pmodel.logp()
    grad = pt.concatenate([g.ravel() for g in pt.grad(logp, value_vars)])
    replace = {v: x[offsets[i]:offsets[i + 1]].reshape(shapes[i]) for i, v in enumerate(value_vars)}
    fn = pytensor.function([x], clone_replace([logp, grad], replace), mode=mode)
    fn.trust_input = True
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    fn(x0)
    if mode != "NUMBA":
        return fn, x0
    jit_fn, shared = fn.vm.jit_fn, [s.data for s in fn.input_storage[1:]]  # the Numba function takes pm.Data as inputs
    return (lambda v: jit_fn(v, *shared)), x0


def _pyfunc_model(logp_grad, n_dim: int, x0):
    import numpy as np
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp_fn():
        def logp(x, **_):
            value, grad = logp_grad(x)
            return float(value), np.asarray(grad, dtype=np.float64)
        return logp

    def make_expand_fn(*_):
        def expand(x, **_):
            return {"x": np.array(x, dtype=np.float64)}
        return expand

    return from_pyfunc(n_dim, make_logp_fn, make_expand_fn, [np.dtype("float64")], [(n_dim,)], ["x"],
                       make_initial_point_fn=lambda seed: x0 + np.random.default_rng(seed).uniform(-1, 1, n_dim))


def _min_ess(dataset) -> float:
    import arviz as az

    ess = az.ess(dataset, method="bulk")
    return float(min(float(ess[v].min()) for v in ess.data_vars))


def worker(kind: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import nutpie
    import pymc as pm

    from bayesmlm.fastpath.nutpie_driver import compile_collapsed, density_plan, sample_collapsed
    from bayesmlm.fastpath.kernels import density_kernels, pack_data
    from bayesmlm.sample.nuts import SamplerSettings

    m, structure, data, pmodel = _model()
    names = ["fixef", "sd_country", "cor_country", "sigma"]
    sample_kw = dict(draws=DRAWS["draws"], tune=DRAWS["tune"], chains=DRAWS["chains"], cores=2, seed=DRAWS["seed"],
                     progress_bar=False)
    start = time.perf_counter()
    if kind == "nutpie-compile_pymc_model":
        compiled = nutpie.compile_pymc_model(pmodel, backend="numba", var_names=names)
        mid = time.perf_counter()
        posterior = nutpie.sample(compiled, **sample_kw)["posterior"].to_dataset()[names]
    elif kind in ("pytensor-numba+pyfunc", "pytensor-c+pyfunc"):
        fn, x0 = _pytensor_logp(pmodel, "NUMBA" if kind.startswith("pytensor-numba") else "FAST_RUN")
        model = _pyfunc_model(fn, x0.size, x0)
        mid = time.perf_counter()
        posterior = nutpie.sample(model, **sample_kw)["posterior"].to_dataset()
    elif kind == "kernel+pyfunc":
        plan = density_plan(structure, m.prior_dict)
        kernel, buffer = density_kernels(plan).logp_grad, pack_data(**data)
        x0 = np.zeros(plan.n_dim)
        x0[0] = m.prior_dict["(Intercept)"].kwargs["mu"]

        def logp_grad(x):
            grad = np.empty(plan.n_dim)
            return kernel(x, buffer, grad), grad

        model = _pyfunc_model(logp_grad, plan.n_dim, x0)
        mid = time.perf_counter()
        posterior = nutpie.sample(model, **sample_kw)["posterior"].to_dataset()
    elif kind == "kernel+cfunc":
        compiled, _ = compile_collapsed(structure, m.prior_dict, data)
        mid = time.perf_counter()
        tree, _ = sample_collapsed(compiled, data, SamplerSettings(**DRAWS, progressbar=False))
        posterior = tree["posterior"].to_dataset()
    else:
        with pmodel:
            step = pm.NUTS(target_accept=0.9)
        mid = time.perf_counter()
        idata = pm.sample(draws=DRAWS["draws"], tune=DRAWS["tune"], chains=DRAWS["chains"], cores=2,
                          random_seed=DRAWS["seed"], step=step, model=pmodel, progressbar=False,
                          compute_convergence_checks=False)
        posterior = idata["posterior"].to_dataset()[names]
    end = time.perf_counter()
    return {"compile": mid - start, "sample": end - mid, "ess": _min_ess(posterior)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    rows = ["| route | cache | compile (s) | sampling (s) | min bulk ESS | ESS/s |", "|---|---|---|---|---|---|"]
    for kind in args.kinds.split(","):
        folder = Path(tempfile.mkdtemp(prefix="bayesmlm-fresh-"))
        path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        env = dict(os.environ, PYTHONPATH=path, NUMBA_CACHE_DIR=str(folder / "numba"),
                   BAYESMLM_CACHE=str(folder / "bayesmlm"), PYTENSOR_FLAGS=f"base_compiledir={folder / 'pytensor'}")
        for cache in ("empty cache", "warm disk cache"):
            done = subprocess.run([sys.executable, __file__, "--worker", kind], capture_output=True, text=True, env=env)
            if done.returncode:
                rows.append(f"| {kind} | {cache} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | | |")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {kind} | {cache} | {r['compile']:.1f} | {r['sample']:.2f} | {r['ess']:.0f} | "
                        f"{r['ess'] / (r['compile'] + r['sample']):.0f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join(rows) + (f"\n\nwvs7_sim m2, {DRAWS['chains']} chains x {DRAWS['draws']} draws (tune {DRAWS['tune']}), "
                              f"cores=2; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

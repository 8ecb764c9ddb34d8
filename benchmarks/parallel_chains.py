"""Do chains run in parallel? chains=2 against chains=1 wall time, on the collapsed m2.

Three ways of handing the same log density (the generated kernel of
:mod:`bayesmlm.fastpath.kernels`) to nutpie, each timed with chains=1 and chains=2
(cores = chains), tune 1000, over ``--draws`` draws:

- ``C callback``: what ``MLM.fit`` does (:mod:`bayesmlm.fastpath.nutpie_driver`): nutpie's
  threads call the Numba C callback, no Python and no GIL per gradient;
- ``Python callback``: the same Numba kernel behind ``nutpie.compiled_pyfunc.from_pyfunc``,
  so every gradient goes through Python and takes the GIL (how the PyTensor
  route was called before);
- ``control``: a plain nogil Numba loop over the kernel in one and in two
  Python threads, no sampler: what the machine gives two threads at that
  moment (other processes on a shared 2-core machine show here, not in the GIL).

Runs alternate between chains=1 and chains=2 and each keeps its fastest of
``--repeats``, so that load from elsewhere hurts both alike. The issue's
target: chains=2 <= 1.2 x chains=1.

    .venv/bin/python benchmarks/parallel_chains.py [--draws 1000 5000] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bayesmlm

import bayesmlm  # noqa: E402
from bayesmlm.fastpath.model import collapsed_data, collapsed_structure  # noqa: E402
from bayesmlm.fastpath.fit import x_centre  # noqa: E402
from bayesmlm.fastpath.nutpie_driver import CompiledCollapsed, compile_collapsed, sample_collapsed  # noqa: E402
from bayesmlm.fastpath.kernels import density_kernels, pack_data  # noqa: E402
from bayesmlm.sample.nuts import SamplerSettings  # noqa: E402
from bayesmlm.fastpath.stats import group_stats  # noqa: E402


def _python_callback_model(compiled: CompiledCollapsed, buffer: np.ndarray, x0: np.ndarray):
    from nutpie.compiled_pyfunc import from_pyfunc

    kernel = density_kernels(compiled._plan).logp_grad

    def make_logp_fn():
        def logp(x, **_):
            grad = np.empty(compiled.n_dim)
            return float(kernel(x, buffer, grad)), grad
        return logp

    def make_expand_fn(*_):
        def expand(x, **_):
            return {"x": np.array(x, dtype=np.float64)}
        return expand

    rng = np.random.default_rng(0)
    return from_pyfunc(compiled.n_dim, make_logp_fn, make_expand_fn, [np.dtype("float64")], [(compiled.n_dim,)], ["x"],
                       make_initial_point_fn=lambda seed: x0 + rng.uniform(-0.1, 0.1, x0.size))


def _control(compiled: CompiledCollapsed, buffer: np.ndarray, x0: np.ndarray, threads: int, n: int) -> float:
    import numba

    kernel = density_kernels(compiled._plan).logp_grad

    @numba.njit(nogil=True)
    def loop(x, d, n):
        grad, total = np.empty(x.size), 0.0
        for _ in range(n):
            x[0] += 1e-12
            total += kernel(x, d, grad)
        return total

    loop(x0.copy(), buffer, 10)
    workers = [threading.Thread(target=loop, args=(x0.copy(), buffer, n)) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import nutpie

    m = bayesmlm.MLM("tech ~ 1 + smu + (1 + smu | country)", bayesmlm.datasets.load("wvs7_sim"))
    stats = group_stats(m.design)
    structure = collapsed_structure(m.design, m.prior_dict)
    data = collapsed_data(structure, stats, m.prior_dict, x_centre(stats))
    compiled, _ = compile_collapsed(structure, m.prior_dict, data)
    buffer = pack_data(data["constants"], data["group_stats"])
    x0 = np.zeros(compiled.n_dim)
    x0[0] = m.prior_dict["(Intercept)"].kwargs["mu"]  # the intercept at its prior's centre, the rest at 0
    py_model = _python_callback_model(compiled, buffer, x0)

    def c_callback(chains, draws):
        settings = SamplerSettings(draws=draws, tune=1000, chains=chains, seed=1, progressbar=False)
        start = time.perf_counter()
        sample_collapsed(compiled, data, settings)
        return time.perf_counter() - start

    def python_callback(chains, draws):
        start = time.perf_counter()
        nutpie.sample(py_model, draws=draws, tune=1000, chains=chains, cores=chains, seed=1, progress_bar=False)
        return time.perf_counter() - start

    def control(chains, draws):
        return _control(compiled, buffer, x0, chains, 40 * draws)

    rows = ["| route | draws | chains=1 (s) | chains=2 (s) | ratio |", "|---|---|---|---|---|"]
    for draws in args.draws:
        for label, run in (("C callback (MLM.fit)", c_callback), ("Python callback (GIL)", python_callback),
                           ("control: nogil loop, 1 vs 2 threads", control)):
            best = {1: np.inf, 2: np.inf}
            for _ in range(args.repeats):
                for chains in (1, 2):
                    best[chains] = min(best[chains], run(chains, draws))
            rows.append(f"| {label} | {draws} | {best[1]:.3f} | {best[2]:.3f} | {best[2] / best[1]:.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join(rows) + (f"\n\nm2 on wvs7_sim (64 groups), tune 1000, fastest of {args.repeats} alternating runs; "
                              f"the control runs 40 gradients per draw in each thread; {os.cpu_count()} CPU cores, "
                              f"load average {os.getloadavg()[0]:.1f} at the end.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Timing: CPU µs per call of the Laplace kernel's log density and gradient, this tree's kernel against a baseline's.

A bench_big_binary-like problem built directly as cells: ``groups`` groups, 10
cells each (smu 1..5 x female 0/1), binomial with ``trials`` per cell, ``hi ~
smu + female + (1 + smu | country)`` (p = 3, q = 2, correlated, LKJ). The
Newton starts' predictor is set at the Laplace posterior's mode as the fit does,
and the kernel is called at points drawn from N(mode, H^-1) (H by finite
differences of the gradient): where NUTS calls it. The baseline is the kernel
file at a git revision (``--base``), loaded from a temporary copy in the same
process; the values of the two are compared at every point.

    PYTHONPATH=. python benchmarks/laplace_kernel_timing.py                    # 100,000 and 10,000 cells
    PYTHONPATH=. python benchmarks/laplace_kernel_timing.py --base b6e1ccf --calls 200
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads spinning would count as CPU time
import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from bayesmlm.fastpath import laplace_kernel as current

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_base(rev):
    """The kernel module at git revision ``rev``, imported from a temporary copy inside bayesmlm.fastpath."""
    src = subprocess.run(["git", "show", f"{rev}:bayesmlm/fastpath/laplace_kernel.py"], capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(_HERE)).stdout
    path = os.path.join(tempfile.mkdtemp(), "laplace_kernel_base.py")
    with open(path, "w") as f:
        f.write(src)
    name = "bayesmlm.fastpath.laplace_kernel_base"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def cells(groups, trials, seed=1):
    """Columns of the cells: y, trials, X (intercept, smu, female), Z (1, smu), group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), 10)
    smu = np.tile(np.repeat(np.arange(1.0, 6.0), 2), groups)
    female = np.tile([0.0, 1.0], 5 * groups)
    cov = np.array([[0.5 ** 2, -0.3 * 0.5 * 0.2], [-0.3 * 0.5 * 0.2, 0.2 ** 2]])
    u = rng.multivariate_normal([0, 0], cov, size=groups)
    n = rng.poisson(trials, len(g)).astype(float) + 1.0
    eta = -1.0 + 0.3 * (smu - 3.0) - 0.2 * female + u[g, 0] + u[g, 1] * (smu - 3.0)
    y = rng.binomial(n.astype(int), expit(eta)).astype(float)
    X = np.column_stack([np.ones_like(smu), smu, female])
    Z = np.column_stack([np.ones_like(smu), smu])
    return y, n, X, Z, g


def buffer(kernel, groups, trials):
    y, n, X, Z, g = cells(groups, trials)
    fixed = [[0, 0, 2.5, 0]] * 3
    sd = [[2, 1, 0, 0]] * 2
    return kernel.pack_buffer(kernel.BINOMIAL, y, n, np.ones_like(y), np.zeros_like(y), X, X.mean(0), Z, g, groups,
                              fixed, sd, True, 1.0, 0.0, 0)


def logp(kernel, d, x):
    grad = np.empty(len(x))
    return kernel.laplace_logp_grad(np.ascontiguousarray(x), d, grad), grad


def reference(kernel, d, x_ref, h=1e-5):
    """As LaplacePlan.set_reference."""
    J, q, n_dim = int(d[4]), int(d[3]), int(d[1])
    modes, chol = np.empty((J, q)), np.empty((J, q, q))
    kernel.group_modes(x_ref, d, modes, chol)
    jac = np.empty((J, q, n_dim))
    up, down = np.empty((J, q)), np.empty((J, q))
    for k in range(n_dim):
        e = np.zeros(n_dim)
        e[k] = h
        kernel.group_modes(x_ref + e, d, up, chol)
        kernel.group_modes(x_ref - e, d, down, chol)
        jac[:, :, k] = (up - down) / (2 * h)
    kernel.set_reference(d, x_ref, modes, jac)


def points(kernel, d, count, seed=2):
    n_dim = int(d[1])
    res = minimize(lambda x: tuple(-v for v in logp(kernel, d, x)), np.zeros(n_dim), jac=True, method="L-BFGS-B")
    x0 = res.x
    h = 1e-5
    H = np.array([(logp(kernel, d, x0 + h * e)[1] - logp(kernel, d, x0 - h * e)[1]) / (2 * h) for e in np.eye(n_dim)])
    cov = np.linalg.inv(-0.5 * (H + H.T))
    return x0, np.random.default_rng(seed).multivariate_normal(x0, cov, size=count)


def cpu_us(kernel, d, xs, repeat=3):
    """The best of ``repeat`` rounds of CPU µs per call over the points xs, through the nutpie callback (ctypes)."""
    f = kernel.logp_cfunc.ctypes
    n = xs.shape[1]
    xs = np.ascontiguousarray(xs)
    grad, value = np.empty(n), np.empty(1)
    ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
    calls = [(n, ptr(x), ptr(grad), ptr(value), d.ctypes.data_as(ctypes.c_void_p)) for x in xs]
    best = np.inf
    for _ in range(repeat):
        t = time.process_time()
        for c in calls:
            f(*c)
        best = min(best, (time.process_time() - t) / len(xs) * 1e6)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="b6e1ccf", help="git revision of the baseline kernel")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--sizes", default="10000,1000", help="groups, comma-separated (10 cells each)")
    ap.add_argument("--trials", type=float, default=100.0, help="mean trials per cell (10M rows / 100,000 cells)")
    ap.add_argument("--draws", type=int, default=40, help="draws of conditional_draws to time (0: none)")
    a = ap.parse_args()
    base = load_base(a.base)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| cells | groups | base µs/grad | this µs/grad | ratio | max |Δlogp| | max |Δgrad| |")
    print("|---|---|---|---|---|---|---|")
    for groups in [int(s) for s in a.sizes.split(",")]:
        d_base, d_now = buffer(base, groups, a.trials), buffer(current, groups, a.trials)
        x0, xs = points(base, d_base, a.calls)
        reference(base, d_base, x0)
        reference(current, d_now, x0)
        dv = max(abs(logp(base, d_base, x)[0] - logp(current, d_now, x)[0]) for x in xs)
        dg = max(np.abs(logp(base, d_base, x)[1] - logp(current, d_now, x)[1]).max() for x in xs)
        t_base, t_now = cpu_us(base, d_base, xs), cpu_us(current, d_now, xs)
        print(f"| {10 * groups:,} | {groups:,} | {t_base:,.0f} | {t_now:,.0f} | {t_base / t_now:.2f} | {dv:.1e} | {dg:.1e} |")
    if a.draws:
        print()
        print(f"conditional_draws (the effects after sampling), {a.draws} draws, CPU µs per draw:")
        print("| cells | groups | base | this | ratio | max |Δu| |")
        print("|---|---|---|---|---|---|")
        for groups in [int(s) for s in a.sizes.split(",")]:
            d_base, d_now = buffer(base, groups, a.trials), buffer(current, groups, a.trials)
            x0, xs = points(base, d_base, a.draws)
            reference(base, d_base, x0)
            reference(current, d_now, x0)
            normals = np.random.default_rng(3).standard_normal((a.draws, groups, 2))
            out = [np.empty((a.draws, groups, 2)) for _ in range(2)]
            times = []
            for k, (kernel, d) in enumerate(((base, d_base), (current, d_now))):
                kernel.conditional_draws(xs[:1], d, normals[:1], out[k][:1])
                t = time.process_time()
                kernel.conditional_draws(xs, d, normals, out[k])
                times.append((time.process_time() - t) / a.draws * 1e6)
            du = np.abs(out[0] - out[1]).max()
            print(f"| {10 * groups:,} | {groups:,} | {times[0]:,.0f} | {times[1]:,.0f} | {times[0] / times[1]:.2f} | {du:.1e} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""The generated density kernel is the collapsed PyMC model's log density, value and gradient.

For a set of structures (q = 1, 2, 3; correlated and uncorrelated blocks;
with and without an intercept; shifted data; every prior family, and mixed
families within one vector), compares ``logp_grad`` of
:func:`bayesmlm.fastpath.kernels.density_kernels` with the PyMC model's
``compile_logp`` and ``compile_dlogp`` (PyTensor, jacobians included) at
random unconstrained points, and ``expand`` with the model's ``fixef``,
``sd_*``, ``cor_*`` and ``sigma``. Exits non-zero on any disagreement beyond
1e-9 (relative).

    .venv/bin/python benchmarks/check_density.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bayesmlm

import bayesmlm  # noqa: E402
from bayesmlm.fastpath.model import build_collapsed_model, collapsed_data, collapsed_structure  # noqa: E402
from bayesmlm.fastpath.fit import x_centre  # noqa: E402
from bayesmlm.fastpath.nutpie_driver import compile_collapsed, density_plan  # noqa: E402
from bayesmlm.fastpath.kernels import density_kernels, pack_data  # noqa: E402
from bayesmlm.fastpath.stats import group_stats  # noqa: E402


def simulated(seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 8, 13, 4, 9]
    g = np.repeat([f"g{j}" for j in range(len(sizes))], sizes)
    x = rng.normal(size=g.size) + shift / 10
    z = rng.uniform(-1, 2, size=g.size)
    y = 2.0 + 0.5 * x - z + rng.normal(size=g.size) * 1.5 + shift
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g})


CASES = [
    ("y ~ x + (1 | g)", 0.0, None),
    ("y ~ x + (1 + x | g)", 0.0, None),
    ("y ~ x + z + (1 + x + z | g)", 0.0, None),
    ("y ~ x + z + (1 + x + z | g)", 1e3, None),
    ("y ~ x + z + (1 + x | g) + (0 + z | g)", 0.0, None),
    ("y ~ 0 + x + (0 + x + z | g)", 0.0, None),
    ("y ~ x + z + (1 + x || g)", 0.0, None),
    ("y ~ x + offset(z) + (1 + x | g)", 0.0, None),
    ("y ~ x + z + (1 + x | g)", 0.0, {"x": "student_t(4, 0.5, 2)", "sd(g:(Intercept))": "half_student_t(3, 1.5)",
                                       "sd(g:x)": "half_student_t(3, 0.7)", "cor(g)": "lkj(2.5)",
                                       "sigma": "half_normal(2)"}),
    ("y ~ x + z + (1 + x || g)", 0.0, {"sd(g:(Intercept))": "exponential(1.3)", "sd(g.1:x)": "half_student_t(5, 1)",
                                        "z": "student_t(3, 0, 1)", "sigma": "half_student_t(4, 2)"}),
    ("y ~ x + (1 + x + z | g)", 0.0, {"sd(g:(Intercept))": "exponential(1.3)", "sd(g:x)": "exponential(2)",
                                       "sd(g:z)": "exponential(0.5)", "cor(g)": "lkj(0.7)"}),
]


def check(formula: str, shift: float, priors: dict | None, rng) -> float:
    m = bayesmlm.MLM(formula, simulated(len(formula), shift), priors=priors)
    stats = group_stats(m.design)
    structure = collapsed_structure(m.design, m.prior_dict)
    data = collapsed_data(structure, stats, m.prior_dict, x_centre(stats))
    model = build_collapsed_model(structure, m.prior_dict, data)
    compiled, _ = compile_collapsed(structure, m.prior_dict, data)
    plan = density_plan(structure, m.prior_dict)
    kernels, buffer = density_kernels(plan), pack_data(data["constants"], data["group_stats"])
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    outputs = model.compile_fn(model.replace_rvs_by_values([model[n] for n in compiled.output_names]),
                               inputs=model.value_vars, on_unused_input="ignore")
    point = model.initial_point()
    worst = 0.0
    for _ in range(5):
        x = rng.normal(size=compiled.n_dim) * 0.7
        values, k = {}, 0
        for name in compiled.value_names:
            size = int(np.prod(point[name].shape))
            values[name] = x[k:k + size].reshape(point[name].shape)
            k += size
        grad = np.empty(compiled.n_dim)
        got = kernels.logp_grad(x, buffer, grad)
        want, want_grad = float(logp(values)), np.asarray(dlogp(values))
        out = np.empty(plan.n_expanded)
        kernels.expand(x, buffer, out)
        want_out = np.concatenate([np.ravel(v) for v in outputs(values)])
        errors = [abs(got - want) / max(1.0, abs(want)),
                  np.max(np.abs(grad - want_grad) / np.maximum(1.0, np.abs(want_grad))),
                  np.max(np.abs(out - want_out) / np.maximum(1.0, np.abs(want_out)))]
        worst = max(worst, *errors)
    return worst


def main() -> int:
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(11)
    failed = 0
    for formula, shift, priors in CASES:
        worst = check(formula, shift, priors, rng)
        ok = worst < 1e-9
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {worst:.1e}  {formula}  shift={shift:g}  priors={priors or 'default'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

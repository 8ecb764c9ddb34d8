"""Diagnose the sampler's geometry on the big bernoulli model (issue #16): steps per draw, step size, worst mixing.

Simulates ``bench_big_binary``'s rows (``--rows``, ``--groups``), reads them with
``MLM.from_files`` into cells, and samples the generalized full model's kernel
with nutpie at the given settings, with one of several routes:

- ``kernel``: the kernel in its own coordinates (:mod:`bayesmlm.fastpath.glmm_fit`,
  the factor centred by the rule; ``precondition="none"``);
- ``preconditioned``: each group's effects through the map of
  :mod:`bayesmlm.fastpath.preconditioned` (``precondition="auto"``'s choice here).

``--adaptation low_rank`` takes nutpie's low-rank mass matrix instead of the diagonal one.

Reports gradients per draw (nutpie's ``n_steps``), tree depth, step size, the
least-mixed parameters, and from the unconstrained draws the posterior
correlation of each group's two effects (intercept, slope), and of the effects
with the fixed effects and the SD parameters.

    python benchmarks/geometry_big_binary.py --rows 200000 --groups 1000 --route kernel --chains 2 --draws 500
    python benchmarks/geometry_big_binary.py --route preconditioned --chains 4 --draws 1000   # default settings
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bayesmlm  # noqa: E402
from bench_big_binary import FORMULA, simulate  # noqa: E402


def main() -> None:
    import arviz as az
    import nutpie

    from bayesmlm.design.parameterization import choose_parameterization
    from bayesmlm.fastpath import glmm_fit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=1_000)
    ap.add_argument("--route", default="kernel", choices=["kernel", "preconditioned"])
    ap.add_argument("--adaptation", default="diag", choices=["diag", "low_rank"])
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        simulate(path, args.rows, args.groups)
        model = bayesmlm.MLM.from_files(FORMULA, path, family="bernoulli")
    design, priors, cells = model.design, model.prior_dict, model._cells
    choice = choose_parameterization(design, priors)
    start = time.perf_counter()
    if args.route == "preconditioned":
        from bayesmlm.fastpath import preconditioned

        plan = preconditioned.preconditioned_plan(glmm_fit.glmm_plan(design, priors, cells, choice))
        nmodel, _ = glmm_fit._nutpie_model(plan, preconditioned)
    else:
        plan = glmm_fit.glmm_plan(design, priors, cells, choice)
        from bayesmlm.fastpath import glmm_kernel

        nmodel, _ = glmm_fit._nutpie_model(plan, glmm_kernel)
    seconds_plan = time.perf_counter() - start
    start = time.perf_counter()
    trace = nutpie.sample(nmodel, draws=args.draws, tune=args.tune, chains=args.chains, cores=args.chains,
                          seed=args.seed, progress_bar=False, save_warmup=False, target_accept=0.9,
                          adaptation=args.adaptation, store_unconstrained=True)
    seconds = time.perf_counter() - start
    st = trace["sample_stats"]
    n_steps = st["n_steps"].values
    depth = st["depth"].values
    print(f"route {args.route} ({args.adaptation}): {args.rows:,} rows, {args.groups:,} groups, {cells.n_cells:,} cells, "
          f"n_dim {plan.n_dim}, parameterization {choice}, {args.chains} chains x {args.draws} (tune {args.tune})")
    print(f"plan {seconds_plan:.1f} s, sampling {seconds:.1f} s, load {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"gradients per draw: mean {n_steps.mean():.1f}, median {np.median(n_steps):.0f}; depth counts "
          f"{dict(zip(*np.unique(depth, return_counts=True)))}; step size per chain "
          f"{np.round(st['step_size'].values[:, -1], 4).tolist()}; divergences {int(st['diverging'].values.sum())}")
    post = trace["posterior"].to_dataset()
    summ = az.summary(post, kind="diagnostics")
    worst = summ.sort_values("ess_bulk").head(6)
    print("least mixed (bulk ESS):")
    print(worst.to_string())
    print("largest R-hat:")
    print(summ.sort_values("r_hat", ascending=False).head(4).to_string())
    total = args.chains * args.draws
    print(f"min bulk ESS {summ['ess_bulk'].min():.0f}, min tail ESS {summ['ess_tail'].min():.0f}, "
          f"max R-hat {summ['r_hat'].max():.4f}; min bulk ESS per second {summ['ess_bulk'].min() / seconds:.2f}; "
          f"gradients per min-ESS {n_steps.sum() / summ['ess_bulk'].min():.0f} (of {total} draws)")
    if "unconstrained_draw" in st:
        raw = st["unconstrained_draw"].values.reshape(-1, plan.n_dim)
        p = len(design.fixed_terms)
        J = design.factors["country"].n_levels
        v = raw[:, p:p + 2 * J].reshape(-1, J, 2)
        sdp = raw[:, p + 2 * J:]
        cors = np.array([np.corrcoef(v[:, j, 0], v[:, j, 1])[0, 1] for j in range(J)])
        print(f"per-group corr(effect 0, effect 1) of the sampled coordinates: median {np.median(cors):.3f}, "
              f"5%..95% {np.quantile(cors, 0.05):.3f}..{np.quantile(cors, 0.95):.3f}")
        allc = np.corrcoef(np.column_stack([raw[:, :p], sdp, v[:, :50, 0], v[:, :50, 1]]).T)
        k = p + sdp.shape[1]
        for i, name in enumerate([*[f"b[{t}]" for t in design.fixed_terms], *[f"sdpar[{i}]" for i in range(sdp.shape[1])]]):
            row = allc[i, k:]
            print(f"  corr({name}, first 50 groups' effects): median |r| {np.median(np.abs(row)):.3f}, max |r| "
                  f"{np.abs(row).max():.3f}")
        print("  corr among b and SD parameters:\n", np.round(allc[:k, :k], 2))
        sds = raw.std(axis=0)
        print(f"  posterior sd of sampled coordinates: b {np.round(sds[:p], 4).tolist()}, effects median "
              f"{np.median(sds[p:p + 2 * J]):.4f}, sd params {np.round(sds[p + 2 * J:], 4).tolist()}")


if __name__ == "__main__":
    main()

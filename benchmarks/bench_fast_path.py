"""Benchmark of the fast path (issue 4): statsmodels REML, bayesmlm auto, bayesmlm full, bambi.

Runs the tutorial's m2, ``tech ~ smu + (1 + smu | country)``, on wvs7_sim and
``y ~ x + (1 + x | g)`` on synthetic data of a size given on the command line
(written once to a Parquet file, which bayesmlm reads in chunks with
``MLM.from_files``; the other tools read it whole). Every tool runs in a fresh
process: its first fit is the *cold* time, a second fit of the same model in
that process the *warm* time. Times exclude importing the libraries (printed
apart) and, for in-memory tools, loading the data; they include building the
model, compiling, sampling, drawing u, and diagnostics.

Columns: cold and warm wall time (s), compile and sampling time of the cold
fit (s), min bulk ESS over every parameter (random effects included), max
R-hat, min ESS per second of cold wall time, peak resident memory of the
process (MB), and the ratios of cold wall time and of ESS/s to bayesmlm auto.

Examples
--------
    .venv/bin/python benchmarks/bench_fast_path.py                      # wvs7_sim only
    .venv/bin/python benchmarks/bench_fast_path.py --synthetic 10000000:10000
    .venv/bin/python benchmarks/bench_fast_path.py --synthetic 100000:500 --no-wvs --tools all
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("statsmodels", "auto", "auto_empty_cache", "full", "bambi")
LABELS = {"statsmodels": "statsmodels MixedLM REML (point estimates)", "auto": "bayesmlm auto (collapsed)",
          "auto_empty_cache": "bayesmlm auto, empty PyTensor/Numba cache", "full": "bayesmlm full (non-centred)",
          "bambi": "bambi"}
FORMULA = {"wvs7_sim": "tech ~ smu + (1 + smu | country)", "synthetic": "y ~ x + (1 + x | g)"}
SM_FORMULA = {"wvs7_sim": ("tech ~ smu", "country", "~smu"), "synthetic": ("y ~ x", "g", "~x")}
DRAWS = {"draws": 1000, "tune": 1000, "chains": 4, "seed": 2024}


# -- data -----------------------------------------------------------------------------------------
def synthetic_path(rows: int, groups: int, folder: Path) -> Path:
    """y = 5 + 0.3 x + u0 + u1 x + e, (u0, u1) correlated (sd 1, 0.3, cor 0.4), sigma 2; written once, 1M-row groups."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"synthetic_{rows}_{groups}.parquet"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    cov = np.array([[1.0, 0.4 * 0.3], [0.4 * 0.3, 0.09]])
    u = rng.multivariate_normal([0, 0], cov, size=groups)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([("y", pa.float64()), ("x", pa.float64()), ("g", pa.int32())])) as writer:
        done = 0
        while done < rows:
            n = min(1_000_000, rows - done)
            g = rng.integers(0, groups, n).astype(np.int32)
            x = rng.normal(2.0, 1.0, n)
            y = 5 + 0.3 * x + u[g, 0] + u[g, 1] * x + rng.normal(0, 2.0, n)
            writer.write_table(pa.table({"y": y, "x": x, "g": g}))
            done += n
    tmp.rename(path)
    return path


def _load(dataset: str, path: str | None):
    import bayesmlm

    if dataset == "wvs7_sim":
        return bayesmlm.datasets.load("wvs7_sim")
    import pandas as pd

    return pd.read_parquet(path)


# -- one tool in this process ------------------------------------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_bayesmlm(dataset: str, path: str | None, method: str):
    import warnings

    import bayesmlm

    formula = FORMULA[dataset]
    data = _load(dataset, path) if (dataset == "wvs7_sim" or method == "full") else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
        if data is None:
            model = bayesmlm.MLM.from_files(formula, path)
        else:
            model = bayesmlm.MLM(formula, data)
        fit = model.fit(**DRAWS, method=method, progressbar=False)
    wall = time.perf_counter() - start
    attrs = fit.posterior.attrs
    if method == "collapsed":
        compile_s, sample_s = attrs["compile_seconds"], attrs["sampling_seconds"]
    else:
        sample_s = float(attrs.get("sampling_time", float("nan")))
        compile_s = fit.record.seconds_sample - sample_s
    d = fit.diagnostics
    return {"wall": wall, "compile": compile_s, "sample": sample_s, "ess": d.min_ess_bulk, "rhat": d.max_rhat,
            "divergences": d.divergences, "n_obs": fit.record.n_obs,
            "fixef": {k: float(v) for k, v in fit.fixef()["mean"].items()}}


def _fit_statsmodels(dataset: str, path: str | None):
    import warnings

    import statsmodels.formula.api as smf

    data = _load(dataset, path)
    fixed, group, re = SM_FORMULA[dataset]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = smf.mixedlm(fixed, data, groups=data[group], re_formula=re).fit(reml=True)
    return {"wall": time.perf_counter() - start, "fixef": {k: float(v) for k, v in result.fe_params.items()}}


def _fit_bambi(dataset: str, path: str | None):
    import bambi as bmb
    import pandas as pd

    data = pd.read_csv(path, dtype={"country": str}) if str(path).endswith(".csv") else pd.read_parquet(path)
    start = time.perf_counter()
    model = bmb.Model(FORMULA[dataset], data)
    idata = model.fit(draws=DRAWS["draws"], tune=DRAWS["tune"], chains=DRAWS["chains"], random_seed=DRAWS["seed"],
                      progressbar=False)
    wall = time.perf_counter() - start
    import arviz as az

    summary = az.summary(idata)
    return {"wall": wall, "ess": float(summary["ess_bulk"].min()), "rhat": float(summary["r_hat"].max())}


def worker(tool: str, dataset: str, path: str | None, warm: bool) -> dict:
    """Import, fit (cold), optionally fit again (warm); report as a dict."""
    start = time.perf_counter()
    if tool == "bambi":
        try:
            import bambi  # noqa: F401
        except ImportError:
            return {"error": "not installed (bambi pins formulae < 0.7, bayesmlm needs >= 0.9: create benchmarks/.venv "
                             "with bambi to include it)"}
    elif tool == "statsmodels":
        import statsmodels.formula.api  # noqa: F401
    else:
        import bayesmlm  # noqa: F401
    imports = time.perf_counter() - start
    run = {"statsmodels": lambda: _fit_statsmodels(dataset, path), "bambi": lambda: _fit_bambi(dataset, path),
           "auto": lambda: _fit_bayesmlm(dataset, path, "collapsed"),
           "auto_empty_cache": lambda: _fit_bayesmlm(dataset, path, "collapsed"),
           "full": lambda: _fit_bayesmlm(dataset, path, "full")}[tool]
    out = {"imports": imports, "cold": run()}
    if warm:
        out["warm"] = run()
    out["peak_mb"] = _peak_mb()
    return out


# -- the table ------------------------------------------------------------------------------------
BAMBI_PYTHON = Path(__file__).parent / ".venv" / "bin" / "python"


def _run_worker(tool: str, dataset: str, path: Path | None, warm: bool, timeout: float) -> dict:
    env = dict(os.environ)
    python = sys.executable
    if tool == "auto_empty_cache":
        folder = tempfile.mkdtemp(prefix="pytensor-empty-")
        env["PYTENSOR_FLAGS"] = f"base_compiledir={folder}"
        env["BAYESMLM_CACHE"] = folder
    if tool == "bambi" and BAMBI_PYTHON.exists():  # bambi pins formulae < 0.7: its own environment
        python = str(BAMBI_PYTHON)
        env.pop("PYTHONPATH", None)
        if path is None:
            import bayesmlm

            path = Path(tempfile.mkdtemp(prefix="bench-")) / f"{dataset}.csv"
            bayesmlm.datasets.load(dataset).to_csv(path, index=False)
    cmd = [python, __file__, "--worker", tool, "--dataset", dataset] + (["--path", str(path)] if path else [])
    cmd += ["--warm"] if warm else []
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(x, digits=1):
    if x is None or x != x:
        return "-"
    return f"{x:,.{digits}f}"


def table(results: dict, title: str) -> str:
    auto = results.get("auto", {})
    auto_wall = auto.get("cold", {}).get("wall")
    auto_ess_s = auto.get("cold", {}).get("ess", 0) / auto_wall if auto_wall else None
    lines = [f"**{title}**", "",
             "| tool | cold wall (s) | warm wall (s) | compile (s) | sampling (s) | min bulk ESS | max R-hat | "
             "min ESS/s | peak memory (MB) | cold wall / auto | auto ESS/s / tool ESS/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for tool, res in results.items():
        if "error" in res:
            lines.append(f"| {LABELS[tool]} | {res['error']} |" + " |" * 10)
            continue
        cold, warm = res["cold"], res.get("warm", {})
        ess = cold.get("ess")
        ess_s = ess / cold["wall"] if ess else None
        lines.append("| " + " | ".join([
            LABELS[tool], _fmt(cold["wall"]), _fmt(warm.get("wall")), _fmt(cold.get("compile")), _fmt(cold.get("sample")),
            _fmt(ess, 0), _fmt(cold.get("rhat"), 3), _fmt(ess_s), _fmt(res["peak_mb"], 0),
            _fmt(cold["wall"] / auto_wall, 2) if auto_wall else "-",
            _fmt(auto_ess_s / ess_s, 1) if (ess_s and auto_ess_s) else "-"]) + " |")
    imports = ", ".join(f"{LABELS[t].split(' (')[0]} {r['imports']:.1f} s" for t, r in results.items()
                        if "imports" in r and t != "auto_empty_cache")
    lines += ["", f"Imports, not counted above: {imports}."]
    return "\n".join(lines)


def targets(results: dict, n_rows: int) -> list[str]:
    """The issue's targets, met or missed, for one data set."""
    out = []
    auto, sm, full, bambi = (results.get(k, {}) for k in ("auto", "statsmodels", "full", "bambi"))
    if "cold" not in auto:
        return ["bayesmlm auto did not run."]
    a = auto["cold"]
    out.append(f"max R-hat {a['rhat']:.3f} (target <= 1.01): {'met' if a['rhat'] <= 1.01 else 'MISSED'}; "
               f"min bulk ESS {a['ess']:.0f} (target >= 1,000): {'met' if a['ess'] >= 1000 else 'MISSED'}")
    empty = results.get("auto_empty_cache", {})
    if "cold" in sm:
        for name, res, kind, limit in (("cold", auto, "cold", 15), ("warm", auto, "warm", 4),
                                       ("cold, empty compile cache (first use on a machine),", empty, "cold", 15)):
            if kind in res:
                ratio = res[kind]["wall"] / sm["cold"]["wall"]
                out.append(f"{name} wall {res[kind]['wall']:.1f} s = {ratio:.1f} x statsmodels' {sm['cold']['wall']:.1f} s "
                           f"(target <= {limit} x): {'met' if ratio <= limit else f'MISSED by {ratio / limit:.2f} x'}")
    ess_s = a["ess"] / a["wall"]
    for name, res, limit in (("full", full, 50), ("bambi", bambi, 20)):
        if "cold" in res and res["cold"].get("ess"):
            ratio = ess_s / (res["cold"]["ess"] / res["cold"]["wall"])
            out.append(f"min-ESS/s {ratio:.0f} x {name}'s (target >= {limit} x): "
                       f"{'met' if ratio >= limit else f'MISSED by {limit / ratio:.2f} x'}")
    if n_rows >= 10_000_000:
        for name, res in (("", auto), (" (empty compile cache)", empty)):
            if "cold" in res:
                c = res["cold"]
                ok = c["wall"] <= 120 and res["peak_mb"] <= 4096 and c["rhat"] <= 1.01
                out.append(f"{n_rows:,} rows from Parquet{name}: {c['wall']:.0f} s, peak {res['peak_mb']:.0f} MB, "
                           f"R-hat {c['rhat']:.3f} (target <= 120 s, <= 4,096 MB, converged): {'met' if ok else 'MISSED'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", metavar="ROWS:GROUPS", help="also run on synthetic data of this size")
    parser.add_argument("--no-wvs", action="store_true", help="skip wvs7_sim")
    parser.add_argument("--tools", default="default", help="comma-separated subset of " + ", ".join(TOOLS)
                        + "; 'all'; default: all on wvs7_sim, auto and auto_empty_cache only above 1,000,000 rows")
    parser.add_argument("--data-dir", default=str(Path.home() / ".cache" / "bayesmlm-bench"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per tool")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dataset, args.path, args.warm)))
        return
    runs = [] if args.no_wvs else [("wvs7_sim", None, 91_175, "wvs7_sim: tech ~ smu + (1 + smu | country), 91,175 rows, 64 countries")]
    if args.synthetic:
        rows, groups = (int(v) for v in args.synthetic.split(":"))
        path = synthetic_path(rows, groups, Path(args.data_dir))
        runs.append(("synthetic", path, rows, f"synthetic: y ~ x + (1 + x | g), {rows:,} rows, {groups:,} groups, "
                                              "read from Parquet by bayesmlm"))
    sections = []
    for dataset, path, n_rows, title in runs:
        if args.tools == "all":
            tools = TOOLS
        elif args.tools == "default":
            tools = TOOLS if n_rows <= 1_000_000 else ("auto", "auto_empty_cache")
        else:
            tools = tuple(args.tools.split(","))
        results = {}
        for tool in tools:
            warm = tool in ("statsmodels", "auto")
            print(f"[{dataset}] {tool} ...", file=sys.stderr, flush=True)
            results[tool] = _run_worker(tool, dataset, path, warm, args.timeout)
            print(f"    {json.dumps(results[tool])[:300]}", file=sys.stderr, flush=True)
        sections.append(table(results, title) + "\n\nTargets:\n" + "\n".join(f"- {t}" for t in targets(results, n_rows)))
    settings = (f"NUTS: {DRAWS['chains']} chains x {DRAWS['draws']} draws after {DRAWS['tune']} tuning steps, seed "
                f"{DRAWS['seed']}, nutpie; {os.cpu_count()} CPU cores; Python {sys.version.split()[0]}.")
    text = "\n\n".join(sections) + "\n\n" + settings
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

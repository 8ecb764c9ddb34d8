"""Command line: ``bayesmlm run CONFIG --out DIR``, ``bayesmlm demo --out DIR`` and ``bayesmlm datasets``.

``run`` fits the model a YAML config describes (see :mod:`bayesmlm.app.config`)
and writes, into DIR: the summary (summary.txt, and every section as
summary.md), each table as CSV (fixef, varcorr, icc, priors, diagnostics,
coef, ranef, and the frequentist comparison), the plots (plots/*.png and
.svg), the posterior (fit.nc, read back with :func:`bayesmlm.load`), the
config as run (config.yaml) and report.html. ``demo`` runs the tutorial's
random-slopes model (configs/wvs7_m2.yaml) the same way.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
import time
import warnings
from dataclasses import replace
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..plots.save import PLOTS
from .config import RunConfig, build_model, load_config, load_data, parse_config

__all__ = ["main", "run_config", "DEMO_CONFIG"]

DEMO_CONFIG = {
    "name": "wvs7_m2",
    "title": "The tutorial's random-slopes model (m2) on wvs7_sim: does social media use go with attitudes to "
             "science and technology, and does that differ by country?",
    "data": "wvs7_sim",
    "formula": "tech ~ 1 + smu + (1 + smu | country)",
    "family": "gaussian",
    "fit": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 2024, "sampler": "nutpie", "target_accept": 0.9,
            "method": "auto"},
    "plots": {"which": list(PLOTS), "term": "smu"},
    "compare_frequentist": True,
}
"""The demo's config; configs/wvs7_m2.yaml holds the same (a test checks it)."""

_REPO_DEMO = Path(__file__).resolve().parents[1] / "configs" / "wvs7_m2.yaml"


def run_config(cfg: RunConfig, out, *, subsample: int | None = None, progressbar: bool = True, echo=print):
    """Fit a config's model and write all its outputs into ``out``; return the Fit.

    Parameters
    ----------
    cfg : RunConfig
        With any command-line overrides already applied (:meth:`RunConfig.with_fit`).
    out : str or Path
        Output folder (created if needed).
    subsample : int, optional
        Fit a random subsample of this many rows (quick runs, tests).
    progressbar : bool
        Show the sampler's progress bar.
    echo : callable
        Where progress messages go (``print`` by default).

    Examples
    --------
    >>> cfg = load_config("configs/sleepstudy.yaml").with_fit(draws=200, tune=200, chains=2)  # doctest: +SKIP
    >>> fit = run_config(cfg, "out/sleepstudy")  # doctest: +SKIP
    """
    from ..report.html import write_report
    from ..report.sections import equations_section, report_sections

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg, subsample=subsample, seed=int(cfg.fit.get("seed", 0)))
    model = build_model(cfg, data)
    _check_plot_term(cfg, model)
    echo(f"{cfg.name}: {model.formula}  ({len(data):,} rows{', a random subsample' if subsample and subsample <= len(data) else ''})")
    echo(equations_section(model).to_text())
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(**cfg.fit, progressbar=progressbar)
    for w in caught:
        if issubclass(w.category, UserWarning):
            echo(f"{w.category.__name__}: {w.message}")
    echo(f"Sampled in {time.perf_counter() - start:.1f} s.\n")
    echo(str(fit.summary()))
    sections = report_sections(fit, which=cfg.plots, term=cfg.plot_term,
                               compare=cfg.compare_frequentist, svg=True)
    written = _write_outputs(fit, cfg, sections, out)
    write_report(fit, out / "report.html", title=f"{cfg.name}: {cfg.title}" if cfg.title else cfg.name, sections=sections)
    written.append("report.html")
    echo("\n" + next(s for s in sections if s.key == "diagnostics").to_text())
    echo(f"\nWrote {out}/: " + ", ".join(written))
    return fit


def _check_plot_term(cfg: RunConfig, model) -> None:
    """A ``plots.term`` the model does not have is a config error before sampling (the plots were skipped, exit 0)."""
    from ..design.levels import level_structure

    if cfg.plot_term is None or not cfg.plots:
        return
    valid = level_structure(model.design).level1_terms
    if cfg.plot_term not in valid and not (cfg.plot_term == "Intercept" and "(Intercept)" in valid):
        raise ConfigError(f"Key 'plots.term'{' in ' + str(cfg.source) if cfg.source else ''} is '{cfg.plot_term}', which is "
                          f"not a group-specific coefficient of this model. Valid terms: {', '.join(valid)}.")


def _write_outputs(fit, cfg: RunConfig, sections, out: Path) -> list[str]:
    written = []
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (out / "summary.txt").write_text(str(fit.summary()) + "\n")
    md = [f"# {cfg.name}" + (f": {cfg.title}" if cfg.title else ""), *(s.to_markdown() for s in sections)]
    (out / "summary.md").write_text("\n\n".join(x for x in md if x) + "\n")
    written += ["config.yaml", "summary.txt", "summary.md"]
    for s in sections:
        for t in s.tables():
            name = t.name or _slug(f"{s.key}_{t.caption}")
            t.frame.to_csv(out / f"{name}.csv")
            written.append(f"{name}.csv")
        for im in s.images():
            path = out / im.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(im.png)
            written.append(im.filename)
            if im.svg is not None:
                path.with_suffix(".svg").write_text(im.svg)
                written.append(str(Path(im.filename).with_suffix(".svg")))
    for name in ("coef", "ranef"):
        getattr(fit, name)().to_csv(out / f"{name}.csv")
        written.append(f"{name}.csv")
    fit.save(out / "fit.nc")
    written.append("fit.nc")
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]


def _demo_config() -> RunConfig:
    if _REPO_DEMO.is_file():
        return load_config(_REPO_DEMO)
    return parse_config(DEMO_CONFIG)


def _datasets() -> int:
    from ..datasets import describe

    for row in describe().itertuples():
        sim = "  SIMULATED" if row.simulated else ""
        print(f"{row.name:<15} {row.rows:>7,} rows  {row.groups:>4} groups ({row.grouping}){sim}")
        print(textwrap.fill(f"source: {row.source}", width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--draws", type=int, help="draws per chain (overrides the config)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (overrides the config)")
    p.add_argument("--chains", type=int, help="chains (overrides the config)")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--subsample", type=int, help="fit a random subsample of this many rows (quick runs)")
    p.add_argument("--plots", help="comma-separated plots to draw instead of the config's (e.g. bar,forest), or none")
    p.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmlm`` command; returns the exit status.

    Examples
    --------
    >>> main(["datasets"])  # doctest: +ELLIPSIS
    wvs7_sim         91,175 rows    64 groups (country)  SIMULATED
    ...
    0
    """
    parser = argparse.ArgumentParser(prog="bayesmlm", description="Bayesian multilevel models from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fit the model a YAML config describes and write its tables, plots and report")
    run.add_argument("config", type=Path, help="a YAML config, e.g. configs/sleepstudy.yaml")
    _add_overrides(run)
    demo = sub.add_parser("demo", help="fit the tutorial's random-slopes model (m2) on wvs7_sim and write its outputs")
    _add_overrides(demo)
    sub.add_parser("datasets", help="list the bundled data sets with their sources")
    args = parser.parse_args(argv)
    if args.command == "datasets":
        return _datasets()
    try:
        cfg = load_config(args.config) if args.command == "run" else _demo_config()
        cfg = cfg.with_fit(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed)
        if args.plots is not None:
            cfg = replace(cfg, plots=tuple(p.strip() for p in args.plots.split(",") if p.strip() and p.strip() != "none"))
        parse_config(cfg.to_dict())  # the overrides are checked like the file
        run_config(cfg, args.out, subsample=args.subsample, progressbar=not args.no_progress)
    except ConfigError as err:
        print(f"bayesmlm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

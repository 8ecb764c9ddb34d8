"""Command line: ``bayesmlm demo --out DIR`` and ``bayesmlm datasets``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(out: Path, draws: int, seed: int) -> int:
    import bayesmlm

    out.mkdir(parents=True, exist_ok=True)
    data = bayesmlm.datasets.load("wvs7_sim")
    model = bayesmlm.MLM("tech ~ 1 + smu + (1 + smu | country)", data)
    print(model.equations(), "\n")
    fit = model.fit(draws=draws, tune=draws, seed=seed)
    print(fit.summary())
    fit.fixef().to_csv(out / "fixef.csv")
    fit.varcorr().to_csv(out / "varcorr.csv", index=False)
    fit.coef().to_csv(out / "coef.csv")
    fit.save(out / "fit.nc")
    print(f"\nWrote {out}/: fixef.csv, varcorr.csv, coef.csv, fit.nc")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmlm`` command.

    Examples
    --------
    >>> main(["datasets"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(prog="bayesmlm", description="Bayesian multilevel models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the tutorial's random-slopes model on wvs7_sim and write its outputs")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    demo.add_argument("--draws", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=2024)
    sub.add_parser("datasets", help="list the bundled data sets with their sources")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args.out, args.draws, args.seed)
    from .datasets import describe

    print(describe().to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

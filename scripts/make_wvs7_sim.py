#!/usr/bin/env python
"""Simulate ``wvs7_sim``: a stand-in for the tutorial's World Values Survey extract.

The tutorial ("Visualization of Multilevel Modeling") analyses an extract of
World Values Survey wave 7 (WVS-7): 91,175 respondents in 64 countries, with

* ``country`` -- ISO3 country code,
* ``smu``     -- social media use as an information source, 1..5,
* ``tech``    -- "Is the world better off, or worse off, because of science
  and technology?", 1..10,
* ``weight``  -- a design weight simulated like WVS's ``W_WEIGHT`` (see below).

The real extract cannot be redistributed, so this script SIMULATES a data set
of the same shape whose lme4/statsmodels REML fits land close to the numbers
printed in the tutorial (see ``TARGETS``).  It is not WVS data.

Design
------
* Countries and sizes: the 20 countries the tutorial lists (code, n, mean and
  SD of ``tech``) are used as printed; the other 44 are real WVS-7 countries
  with plausible sizes (roughly their WVS-7 sample sizes, capped at 3,000,
  less a few percent for missing answers), scaled so that the total is
  exactly 91,175, and with
  observed means at most 7.20, below the tutorial's 20th country (7.45), so
  that the same 20 countries top the simulated table (their order within it
  moves a little with sampling noise).  The 44 means were chosen so
  that the mean of country means is 7.04 and their variance about 0.53 (the
  tutorial's empty model has 7.04 and 0.536); their SDs so that the pooled
  within-country variance is 5.68.
* ``smu``: per country, a share of daily users (1) and of never-users (5)
  drawn from Beta distributions, the rest spread over 2..4, which gives the
  U-shaped distribution of the tutorial's ``glimpse()`` (many 1s and 5s).
* ``tech``: simulated on a latent normal scale and then rounded and clipped
  to 1..10::

      tech* = mu_j + b_j * (smu - E_j[smu]) + e,   e ~ N(0, sigma_j^2 - b_j^2 Var_j[smu])
      tech  = clip(round(tech*), 1, 10)

  Rounding and clipping at 10 compress both the mean and the spread, most in
  high-scoring countries.  ``mu_j`` and ``sigma_j`` (columns 5 and 6 of
  ``COUNTRIES``) were calibrated offline, once, by solving for the latent
  normal whose rounded-and-clipped version has exactly the observed mean and
  SD of columns 3 and 4 (closed-form category probabilities from the normal
  CDF).  The per-country smu slopes are designed on the observed scale
  (mean ``SLOPE_MEAN``, SD ``SLOPE_SD``, correlation ``SLOPE_MEAN_CORR`` with
  the country mean and ``SLOPE_SIZE_CORR`` with the part of country size
  unrelated to it; exact sample moments over the 64 countries) and divided by the analytic attenuation
  d E[tech] / d mu_j of the rounded-clipped normal to get the latent slope
  ``b_j``.  The slope constants were tuned by iterating with the REML fits of
  m1 and m2; nothing is searched for at run time.  With another ``--seed``
  the estimates scatter around the targets (slopes by up to ~20%).
* ``weight``: like WVS-7's ``W_WEIGHT``, mean 1 within each country (to
  rounding: three decimals), 1 for every respondent in a few self-weighting
  samples (``UNWEIGHTED_SHARE`` of the countries), otherwise lognormal with a
  country-specific spread (log-SD uniform in ``WEIGHT_LOG_SD``), a little
  larger for respondents who never use social media (smu 5: the older, harder
  to reach, ``WEIGHT_SMU5``), trimmed at ``WEIGHT_TRIM`` = 5 and rescaled to
  mean 1 again until no weight exceeds 5. Drawn from a random stream of its own
  (``default_rng([seed, 1])``) after the other columns, so ``country``, ``smu``
  and ``tech`` are exactly what they were before the column was added.

Run ``python scripts/make_wvs7_sim.py`` from the repository root.  It writes
``bayesmlm/data/wvs7_sim.csv.gz`` and prints the REML estimates of m0, m1 and
m2 (statsmodels ``MixedLM``) beside the tutorial's lme4 numbers;
``--reference-json PATH`` also stores those estimates as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240607

N_TOTAL = 91_175
N_COUNTRIES = 64

# (code, n, observed mean tech, observed SD tech, latent mean mu_j, latent SD sigma_j)
# Rows 1-20: the tutorial's table (n, mean, SD as printed).  Rows 21-64: other
# WVS-7 countries with made-up means and SDs (a left-skewed spread of means, so
# that none reaches the top 20; lower means have larger SDs).  Latent columns: calibrated offline so that
# clip(round(N(mu_j, sigma_j)), 1, 10) has the observed mean and SD.
COUNTRIES = [
    ("CHN", 2976, 8.64, 1.62, 9.201, 2.288),
    ("KGZ", 1169, 8.51, 2.37, 10.718, 4.667),
    ("BGD", 1119, 8.36, 1.73, 8.768, 2.255),
    ("VNM", 1200, 8.35, 1.58, 8.611, 1.933),
    ("UZB", 1201, 8.31, 2.19, 9.363, 3.410),
    ("TJK", 1200, 8.09, 1.96, 8.521, 2.531),
    ("LBY", 1098, 7.98, 2.51, 9.103, 3.914),
    ("IDN", 2973, 7.80, 2.37, 8.446, 3.242),
    ("MDV", 1032, 7.70, 2.09, 8.003, 2.530),
    ("RUS", 1741, 7.70, 1.94, 7.909, 2.252),
    ("UKR", 1207, 7.67, 2.05, 7.933, 2.437),
    ("ETH", 1070, 7.66, 2.99, 9.366, 5.390),
    ("DEU", 1509, 7.62, 2.24, 7.995, 2.785),
    ("NZL", 958, 7.62, 2.01, 7.840, 2.340),
    ("GBR", 2572, 7.60, 2.10, 7.865, 2.495),
    ("KAZ", 1202, 7.60, 1.98, 7.797, 2.279),
    ("USA", 2540, 7.57, 2.23, 7.910, 2.733),
    ("ZWE", 1170, 7.57, 3.07, 9.312, 5.627),
    ("MAR", 1200, 7.46, 2.22, 7.742, 2.652),
    ("PAK", 1882, 7.45, 2.75, 8.256, 3.969),
    ("AND", 949, 6.90, 2.64, 7.213, 3.239),
    ("ARG", 968, 7.02, 2.62, 7.373, 3.256),
    ("ARM", 1186, 5.45, 2.46, 5.445, 2.648),
    ("AUS", 1806, 6.74, 2.44, 6.906, 2.775),
    ("BOL", 2029, 7.03, 2.44, 7.277, 2.878),
    ("BRA", 1663, 6.68, 2.39, 6.816, 2.671),
    ("CAN", 2918, 6.65, 2.13, 6.718, 2.262),
    ("CHL", 957, 5.99, 2.50, 6.045, 2.736),
    ("COL", 1471, 7.13, 2.16, 7.280, 2.414),
    ("CYP", 971, 6.71, 2.54, 6.907, 2.952),
    ("CZE", 1189, 4.92, 2.50, 4.854, 2.745),
    ("ECU", 1129, 7.15, 2.45, 7.448, 2.953),
    ("EGY", 1184, 6.09, 2.51, 6.159, 2.763),
    ("GRC", 1140, 5.70, 2.63, 5.728, 2.938),
    ("GTM", 1187, 6.88, 2.56, 7.139, 3.056),
    ("HKG", 2023, 7.10, 2.38, 7.340, 2.791),
    ("IRN", 1451, 7.07, 2.58, 7.418, 3.192),
    ("IRQ", 1203, 6.98, 2.16, 7.100, 2.372),
    ("JOR", 1136, 7.17, 2.18, 7.337, 2.460),
    ("JPN", 1354, 7.12, 2.44, 7.400, 2.918),
    ("KEN", 1196, 6.76, 2.55, 6.975, 2.989),
    ("KOR", 1226, 6.92, 2.43, 7.128, 2.815),
    ("LBN", 1196, 6.58, 2.49, 6.727, 2.821),
    ("MAC", 1014, 7.00, 2.28, 7.166, 2.574),
    ("MEX", 1743, 6.79, 2.60, 7.039, 3.103),
    ("MMR", 1169, 6.51, 2.70, 6.716, 3.213),
    ("MNG", 1616, 6.37, 2.30, 6.439, 2.468),
    ("MYS", 1290, 6.42, 2.43, 6.521, 2.681),
    ("NGA", 1208, 6.84, 2.54, 7.075, 2.999),
    ("NIC", 1125, 6.25, 2.45, 6.331, 2.686),
    ("NLD", 2079, 6.46, 2.58, 6.610, 2.957),
    ("PER", 1380, 6.31, 2.49, 6.408, 2.763),
    ("PHL", 1160, 6.55, 2.80, 6.816, 3.455),
    ("PRI", 1082, 6.18, 2.62, 6.284, 2.972),
    ("ROU", 1199, 6.86, 2.78, 7.249, 3.556),
    ("SGP", 2009, 5.87, 2.74, 5.937, 3.161),
    ("SRB", 1026, 7.19, 2.50, 7.539, 3.081),
    ("SVK", 1174, 6.94, 2.46, 7.168, 2.880),
    ("THA", 1449, 6.96, 2.55, 7.243, 3.071),
    ("TUN", 1147, 7.20, 2.53, 7.576, 3.153),
    ("TUR", 2410, 6.81, 2.32, 6.949, 2.587),
    ("TWN", 1207, 7.05, 2.53, 7.357, 3.071),
    ("URY", 947, 7.09, 2.39, 7.331, 2.806),
    ("VEN", 1190, 6.62, 2.10, 6.679, 2.215),
]


# Design of the country slopes of smu on the observed (1..10) scale.  Tuned by
# iterating with the REML fits of m1 and m2 for SEED: they are the values that
# hit the targets, not the targets themselves (the REML slope of m2 comes out
# flatter than SLOPE_MEAN, at -0.054).
SLOPE_MEAN = -0.0615
SLOPE_SD = 0.073
SLOPE_MEAN_CORR = 0.465  # correlation of a country's slope with its mean tech
# Correlation of the slope with (the part of) country size (unrelated to the
# mean); makes the n-weighted
# within-country slope (what m1 estimates) flatter than the mean slope (m2),
# as in the tutorial (-0.045 vs -0.054).
SLOPE_SIZE_CORR = 0.25

# smu distribution per country: share of 1s ~ Beta, share of 5s among the rest
# ~ Beta, remaining share over 2, 3, 4 ~ Dirichlet.
SMU_DAILY_BETA = (0.42 * 12, 0.58 * 12)
SMU_NEVER_BETA = (0.47 * 10, 0.53 * 10)
SMU_MIDDLE_DIRICHLET = (5.0, 2.5, 2.5)

# The tutorial's lme4 REML estimates (tech on 1..10).
TARGETS = {
    "m0": {
        "formula": "tech ~ 1 + (1 | country)",
        "intercept": 7.03637,
        "var_intercept": 0.5361,
        "var_residual": 5.6805,
        "icc": 0.086,
    },
    "m1": {
        "formula": "tech ~ 1 + smu + (1 | country)",
        "intercept": 7.158,
        "smu": -0.04524,
        "var_intercept": 0.5391,
        "var_residual": 5.6747,
    },
    "m2": {
        "formula": "tech ~ 1 + smu + (1 + smu | country)",
        "intercept": 7.18065,
        "smu": -0.05403,
        "var_intercept": 0.446825,
        "var_smu": 0.005858,
        "cor_intercept_smu": 0.16,
        "var_residual": 5.656817,
    },
}

STATSMODELS_CALLS = {
    "m0": 'smf.mixedlm("tech ~ 1", data, groups=data["country"]).fit(reml=True)',
    "m1": 'smf.mixedlm("tech ~ smu", data, groups=data["country"]).fit(reml=True)',
    "m2": 'smf.mixedlm("tech ~ smu", data, groups=data["country"], re_formula="~smu").fit(reml=True)',
}

# Design weights (column ``weight``), simulated like WVS-7's W_WEIGHT.
UNWEIGHTED_SHARE = 0.15
WEIGHT_LOG_SD = (0.25, 0.75)
WEIGHT_SMU5 = 0.15
WEIGHT_TRIM = 5.0

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bayesmlm" / "data" / "wvs7_sim.csv.gz"


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def attenuation(mu: float, sigma: float) -> float:
    """d E[clip(round(N(mu, sigma)), 1, 10)] / d mu: the slope compression."""
    thresholds = np.arange(1.5, 10.0, 1.0)  # 1.5, ..., 9.5
    return float(_norm_pdf((thresholds - mu) / sigma).sum() / sigma)


def _standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Return the simulated data set (country, smu, tech), sorted by country."""
    table = sorted(COUNTRIES)  # alphabetical, as the tutorial's glimpse (AND first)
    assert len(table) == N_COUNTRIES and sum(r[1] for r in table) == N_TOTAL
    rng = np.random.default_rng(seed)

    # Country slopes on the observed scale, with exact design moments.
    obs_mean = np.array([r[2] for r in table])
    zm = _standardize(obs_mean)
    sizes = np.array([r[1] for r in table], dtype=float)
    zn = _standardize(sizes)
    zn = _standardize(zn - (zn @ zm) / (zm @ zm) * zm)  # size, orthogonal to zm
    w = rng.standard_normal(N_COUNTRIES)
    for v in (zm, zn):
        w = w - (w @ v) / (v @ v) * v  # noise, orthogonal to zm and zn
    w = _standardize(w)
    rho, kappa = SLOPE_MEAN_CORR, SLOPE_SIZE_CORR
    slopes_obs = SLOPE_MEAN + SLOPE_SD * (rho * zm + kappa * zn + math.sqrt(1.0 - rho**2 - kappa**2) * w)

    frames = []
    for (code, n, _m, _s, mu, sigma), slope in zip(table, slopes_obs):
        daily = rng.beta(*SMU_DAILY_BETA)
        never = (1.0 - daily) * rng.beta(*SMU_NEVER_BETA)
        middle = (1.0 - daily - never) * rng.dirichlet(SMU_MIDDLE_DIRICHLET)
        p = np.array([daily, *middle, never])
        levels = np.arange(1, 6)
        smu = rng.choice(levels, size=n, p=p)
        e_smu = float(p @ levels)
        v_smu = float(p @ (levels - e_smu) ** 2)

        b = slope / attenuation(mu, sigma)  # latent slope
        sd_e = math.sqrt(sigma**2 - b**2 * v_smu)
        latent = mu + b * (smu - e_smu) + sd_e * rng.standard_normal(n)
        tech = np.clip(np.rint(latent), 1, 10).astype(np.int64)
        frames.append(pd.DataFrame({"country": code, "smu": smu.astype(np.int64), "tech": tech}))
    data = pd.concat(frames, ignore_index=True)
    data["weight"] = design_weights(data, np.random.default_rng([seed, 1]))
    return data


def design_weights(data: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """WVS-like design weights: per country mean 1, lognormal spread, trimmed at WEIGHT_TRIM (three decimals)."""
    out = np.ones(len(data))
    codes = data["country"].to_numpy()
    for code in pd.unique(codes):
        rows = np.flatnonzero(codes == code)
        if rng.random() < UNWEIGHTED_SHARE:
            rng.standard_normal(len(rows))  # the same draws per country either way
            continue
        log_sd = rng.uniform(*WEIGHT_LOG_SD)
        w = np.exp(log_sd * rng.standard_normal(len(rows)) + WEIGHT_SMU5 * (data["smu"].to_numpy()[rows] == 5))
        w /= w.mean()
        while w.max() > WEIGHT_TRIM + 1e-12:
            w = np.minimum(w, WEIGHT_TRIM)
            w /= w.mean()
        out[rows] = w
    return np.round(out, 3)


def fit_models(data: pd.DataFrame) -> dict:
    """REML fits of m0, m1, m2 with statsmodels MixedLM; returns plain numbers."""
    import warnings

    import statsmodels.formula.api as smf

    # statsmodels warns "The MLE may be on the boundary of the parameter space"
    # whenever a random-effect variance is below 0.01 (a fixed threshold, see
    # MixedLM.fit); the smu slope variance (~0.006) trips it although the fit is
    # interior and converged.
    warnings.filterwarnings("ignore", message="The MLE may be on the boundary")

    out = {}
    r0 = smf.mixedlm("tech ~ 1", data, groups=data["country"]).fit(reml=True)
    v0 = float(r0.cov_re.iloc[0, 0])
    out["m0"] = {
        "formula": TARGETS["m0"]["formula"],
        "intercept": float(r0.fe_params["Intercept"]),
        "var_intercept": v0,
        "var_residual": float(r0.scale),
        "icc": v0 / (v0 + float(r0.scale)),
        "se": {"intercept": float(r0.bse_fe["Intercept"])},
        "reml_loglik": float(r0.llf),
        "converged": bool(r0.converged),
    }
    r1 = smf.mixedlm("tech ~ smu", data, groups=data["country"]).fit(reml=True)
    out["m1"] = {
        "formula": TARGETS["m1"]["formula"],
        "intercept": float(r1.fe_params["Intercept"]),
        "smu": float(r1.fe_params["smu"]),
        "var_intercept": float(r1.cov_re.iloc[0, 0]),
        "var_residual": float(r1.scale),
        "se": {"intercept": float(r1.bse_fe["Intercept"]), "smu": float(r1.bse_fe["smu"])},
        "reml_loglik": float(r1.llf),
        "converged": bool(r1.converged),
    }
    r2 = smf.mixedlm("tech ~ smu", data, groups=data["country"], re_formula="~smu").fit(reml=True)
    c = r2.cov_re.to_numpy()
    out["m2"] = {
        "formula": TARGETS["m2"]["formula"],
        "intercept": float(r2.fe_params["Intercept"]),
        "smu": float(r2.fe_params["smu"]),
        "var_intercept": float(c[0, 0]),
        "var_smu": float(c[1, 1]),
        "cor_intercept_smu": float(c[0, 1] / math.sqrt(c[0, 0] * c[1, 1])),
        "var_residual": float(r2.scale),
        "se": {"intercept": float(r2.bse_fe["Intercept"]), "smu": float(r2.bse_fe["smu"])},
        "reml_loglik": float(r2.llf),
        "converged": bool(r2.converged),
    }
    return out


def report(fits: dict) -> str:
    lines = [f"{'model':<5} {'quantity':<18} {'target (lme4)':>14} {'simulated (statsmodels)':>24} {'rel. diff':>10}"]
    for model, est in fits.items():
        for key, target in TARGETS[model].items():
            if key == "formula":
                continue
            got = est[key]
            rel = (got - target) / abs(target)
            lines.append(f"{model:<5} {key:<18} {target:>14.5g} {got:>24.5g} {rel:>+10.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .csv.gz (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--no-fit", action="store_true", help="only write the data")
    ap.add_argument("--reference-json", type=Path, help="also write the REML estimates to this JSON file")
    args = ap.parse_args(argv)

    data = simulate(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(args.out, index=False, compression={"method": "gzip", "mtime": 0, "compresslevel": 9})
    print(f"wrote {args.out} ({len(data):,} rows, {data['country'].nunique()} countries, "
          f"{args.out.stat().st_size / 1024:.0f} KiB)")
    print("smu shares 1..5:", np.round(data["smu"].value_counts(normalize=True).sort_index().to_numpy(), 3))
    print("tech shares 1..10:", np.round(data["tech"].value_counts(normalize=True).sort_index().to_numpy(), 3))
    by = data.groupby("country")["weight"]
    print(f"weight: country means {by.mean().min():.4f}..{by.mean().max():.4f}, {int((by.std() == 0).sum())} "
          f"countries unweighted, range {data.weight.min():.3f}..{data.weight.max():.3f}, "
          f"{int((data.weight >= WEIGHT_TRIM).sum())} at {WEIGHT_TRIM:g}")

    g = data.groupby("country")["tech"].agg(["mean", "std", "size"])
    top = sorted(COUNTRIES[:20], key=lambda r: -r[2])
    print("\ntutorial's top-20 countries: printed vs simulated mean (sd) of tech")
    for code, n, m, s, *_ in top:
        print(f"  {code}  n={n:5d}  mean {m:5.2f} vs {g.loc[code, 'mean']:5.2f}   sd {s:4.2f} vs {g.loc[code, 'std']:4.2f}")

    if args.no_fit:
        return 0
    fits = fit_models(data)
    print("\nREML estimates, tutorial (lme4) vs simulated data (statsmodels MixedLM):")
    print(report(fits))
    if args.reference_json:
        import statsmodels

        ref = {
            "dataset": "wvs7_sim",
            "note": "SIMULATED data (scripts/make_wvs7_sim.py); REML fits with statsmodels MixedLM",
            "seed": args.seed,
            "n_obs": int(len(data)),
            "n_groups": {"country": int(data["country"].nunique())},
            "statsmodels_version": statsmodels.__version__,
            "import": "import statsmodels.formula.api as smf",
            "data": 'data = bayesmlm.datasets.load("wvs7_sim")',
            "icc": "var_intercept / (var_intercept + var_residual) of m0; variances are "
            "result.cov_re (already multiplied by the scale) and result.scale",
            "calls": STATSMODELS_CALLS,
            "targets_lme4_tutorial": TARGETS,
            "estimates": fits,
        }
        args.reference_json.parent.mkdir(parents=True, exist_ok=True)
        args.reference_json.write_text(json.dumps(ref, indent=2) + "\n")
        print(f"wrote {args.reference_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

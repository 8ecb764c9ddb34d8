"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari and Gelman 2018) of every sampling route.

For each simulation of a route: simulate the covariates and the groups, build
the model on them, draw every parameter from the priors that model uses
(``model.prior_dict``), simulate the outcome, fit it, and rank each true value
among L = 99 thinned posterior draws. If the route's posterior is right, each
rank is uniform on 0..L; a chi-square test on binned ranks gives a verdict per
parameter. See ``benchmarks/sbc.md`` for the method, priors, layouts and results.

A route is one :class:`Route` entry in :data:`ROUTES`: a formula, a family, a
layout of groups and rows (:class:`Layout`), explicit priors, a fit method and
its sampler settings. New routes (several factors, aggregated rows, new
families) plug in as one more entry; the simulator reads the design the
package builds (X, each block's Z and group index, trials, offset), so it
needs no code of its own for them unless the family is new (:func:`simulate_outcome`).

Usage (from the checkout's root)::

    python benchmarks/sbc.py                         # every route, the N of DEFAULT_SIMS each, then the report
    python benchmarks/sbc.py --route gaussian_full --sims 20 --jobs 2
    python benchmarks/sbc.py --report                # table and figures from the CSVs already there

Simulation i of a route always has the same seeds, so a run resumes where the
CSV stops (``--fresh`` starts the route over).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "sbc_results"
L_DRAWS = 99          # thinned posterior draws a truth is ranked among: ranks 0..99, 100 values
ALPHA = 0.01          # a parameter fails when its chi-square p-value is below this
COLUMNS = ["route", "sim", "n_obs", "param", "truth", "rank", "L", "post_mean", "post_sd", "ess_bulk", "rhat",
           "divergences", "max_rhat", "min_ess_bulk", "seconds", "error"]


# -- routes ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How the covariates and groups of one simulated data set are drawn (before any parameter).

    Attributes
    ----------
    n_groups : int
        Levels of the grouping factor ``g`` (labelled g00, g01, ...).
    rows : (int, int)
        Rows per group, uniform on this closed range (drawn per group and simulation).
    trials : (int, int) or None
        Binomial trials per row, uniform on this range; column ``n``.
    log_exposure : (float, float) or None
        Poisson offset per row, uniform on this range; column ``log_e``.
    x_group_sd : float
        ``x`` is N(m_j, 1) with group means m_j ~ N(0, x_group_sd): x varies within and between groups.
    x_values : tuple of float or None
        Draw ``x`` uniformly from these values instead (a discrete predictor, whose rows aggregate into cells).
    crossed : int or None
        Levels of a second grouping factor ``h`` crossed with ``g`` (each row's level drawn uniformly; h00, h01, ...).
    w_group : bool
        Add ``w``, N(0, 1) per level of ``g`` and constant within it (a level-2 covariate).
    nested : int or None
        Levels of a factor ``c`` nested in ``g``: each row's drawn uniformly from c0, c1, ... within its ``g``
        (the same labels in every ``g``: ``g:c`` names the groups).
    nested_in_h : int or None
        Add ``p``, a factor of this many levels over ``h`` (level k of ``h`` in p0{k mod nested_in_h}): ``h`` nested in ``p``.
    """

    n_groups: int = 15
    rows: tuple[int, int] = (5, 15)
    trials: tuple[int, int] | None = None
    log_exposure: tuple[float, float] | None = None
    x_group_sd: float = 0.5
    x_values: tuple[float, ...] | None = None
    crossed: int | None = None
    w_group: bool = False
    nested: int | None = None
    nested_in_h: int | None = None

    def covariates(self, rng: np.random.Generator) -> pd.DataFrame:
        sizes = rng.integers(self.rows[0], self.rows[1] + 1, size=self.n_groups)
        g = np.repeat(np.arange(self.n_groups), sizes)
        x = rng.normal(rng.normal(0.0, self.x_group_sd, size=self.n_groups)[g], 1.0) if self.x_values is None \
            else rng.choice(np.asarray(self.x_values, dtype=float), size=g.size)
        df = pd.DataFrame({"g": [f"g{j:02d}" for j in g], "x": x})
        if self.w_group:
            df["w"] = rng.normal(size=self.n_groups)[g]
        if self.nested is not None:
            df["c"] = [f"c{k}" for k in rng.integers(0, self.nested, size=len(df))]
        if self.crossed is not None:
            h = rng.integers(0, self.crossed, size=len(df))
            df["h"] = [f"h{k:02d}" for k in h]
            if self.nested_in_h is not None:
                df["p"] = [f"p{k % self.nested_in_h:02d}" for k in h]
        if self.trials is not None:
            df["n"] = rng.integers(self.trials[0], self.trials[1] + 1, size=len(df))
        if self.log_exposure is not None:
            df["log_e"] = rng.uniform(*self.log_exposure, size=len(df))
        return df


@dataclass(frozen=True)
class Route:
    """One sampling route to calibrate.

    Attributes
    ----------
    name : str
    formula, family : str
        As for :class:`bayesmlm.MLM`.
    method : str
        ``MLM.fit(method=)``: ``"collapsed"``, ``"full"`` or ``"laplace"``.
    priors : dict
        Explicit priors for *every* parameter (checked): the package's defaults
        are scaled by the outcome, which SBC must not let depend on the simulated data.
    layout : Layout
    options : dict
        ``trials=`` / ``offset=`` of :class:`bayesmlm.MLM`.
    draws, tune, chains : int
        Per fit; chains x draws are thinned to ``L_DRAWS``.
    track_groups : int
        Random effects u_j of the first this-many levels of each block are ranked, every term.
    fit_options : dict
        More ``MLM.fit`` arguments (e.g. ``parameterization=``), checked against ``fit.record`` after the fit.
    expect_route : str or None
        ``fit.record.route`` the fit must have taken (checked), e.g. ``"nested"``.
    density : str
        The full model's log density the fit must have used (``fit.record.density``); empty: either.
    integrated : tuple of str
        Factors the fit must have integrated out of a child's prior (``fit.record.parameterization``
        ``"collapsed"``, :func:`bayesmlm.design.nested_centring.integrable_parents`; checked).
    """

    name: str
    formula: str
    family: str
    method: str
    priors: dict
    layout: Layout = field(default_factory=Layout)
    options: dict = field(default_factory=dict)
    draws: int = 1000
    tune: int = 400
    chains: int = 2
    track_groups: int = 1
    fit_options: dict = field(default_factory=dict)
    expect_route: str | None = None
    density: str = ""
    integrated: tuple = ()


_SLOPES = {"(Intercept)": "normal(0, 1)", "x": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(g:x)": "half_normal(0.5)", "cor(g)": "lkj(2)"}
_GAUSSIAN = {**_SLOPES, "(Intercept)": "normal(0, 2)", "sigma": "exponential(1)"}

ROUTES = {r.name: r for r in [
    Route("gaussian_collapsed", "y ~ x + (1 + x | g)", "gaussian", "collapsed", _GAUSSIAN),
    Route("gaussian_full", "y ~ x + (1 + x | g)", "gaussian", "full", _GAUSSIAN),
    Route("bernoulli_full", "y ~ x + (1 + x | g)", "bernoulli", "full", _SLOPES,
          Layout(n_groups=15, rows=(10, 20))),
    Route("binomial_full", "cbind(s, f) ~ x + (1 + x | g)", "binomial", "full", _SLOPES,
          Layout(n_groups=15, rows=(5, 10), trials=(1, 12))),
    Route("binomial_trials_full", "s ~ x + (1 + x | g)", "binomial", "full", _SLOPES,
          Layout(n_groups=15, rows=(5, 10), trials=(1, 12)), options={"trials": "n"}),
    Route("poisson_offset_full", "y ~ x + (1 + x | g)", "poisson", "full", _SLOPES,
          Layout(n_groups=15, rows=(5, 15), log_exposure=(-1.0, 1.0)), options={"offset": "log_e"}),
    # Two crossed grouping factors, the random effects sampled (the parameterisation chosen per factor).
    Route("gaussian_crossed_full", "y ~ x + (1 + x | g) + (1 | h)", "gaussian", "full",
          {**_GAUSSIAN, "sd(h:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(8, 14), crossed=8)),
    # Two crossed factors, both centred, with a covariate constant within g: the block means of
    # bayesmlm.design.block_means (the intercept on h, the factor with fewer levels; w on g).
    Route("bernoulli_crossed_centred", "y ~ x + w + (1 | g) + (1 | h)", "bernoulli", "full",
          {"(Intercept)": "normal(0, 1)", "x": "normal(0, 1)", "w": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(h:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(30, 40), crossed=8, w_group=True),
          fit_options={"parameterization": "centred"}),
    # Classes nested in schools, the nested collapsed route: every level's u integrated out, then drawn exactly.
    Route("gaussian_nested_collapsed", "y ~ x + (1 + x | g) + (1 | g:c)", "gaussian", "collapsed",
          {**_GAUSSIAN, "sd(g:c:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(12, 24), nested=3),
          expect_route="nested"),
    # The crossed route (bayesmlm.fastpath.crossed_fit): g (the most levels) integrated out, h sampled centred, and p
    # (h nested in it, centred) integrated out of h's prior; g's and p's effects drawn afterwards from their conditionals.
    Route("gaussian_crossed_collapsed", "y ~ x + (1 | g) + (1 | h) + (1 | p)", "gaussian", "collapsed",
          {"(Intercept)": "normal(0, 2)", "x": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(h:(Intercept))": "half_normal(1)", "sd(p:(Intercept))": "half_normal(1)", "sigma": "exponential(1)"},
          Layout(n_groups=20, rows=(4, 8), crossed=10, nested_in_h=3), fit_options={"parameterization": "centred"}),
    # Rows aggregated into binomial cells (x takes 3 values), the random effects sampled centred.
    Route("bernoulli_aggregated_centred", "y ~ x + (1 + x | g)", "bernoulli", "full", _SLOPES,
          Layout(n_groups=12, rows=(60, 100), x_values=(-1.0, 0.0, 1.0)), fit_options={"parameterization": "centred"}),
    # The generalized full model's Numba kernel (fit.record.density "kernel", bayesmlm.fastpath.glmm_kernel): two
    # crossed factors, one with a correlated (LKJ) block, rows aggregated into cells, the parameterisation by the rule.
    Route("bernoulli_crossed_kernel", "y ~ x + (1 + x | g) + (1 | h)", "bernoulli", "full",
          {**_SLOPES, "sd(h:(Intercept))": "half_normal(1)"},
          Layout(n_groups=12, rows=(20, 40), x_values=(-1.0, 0.0, 1.0), crossed=6), density="kernel"),
    # The kernel on bernoulli rows that share no cell (x continuous): one trial, unit weights, no offset and random
    # intercepts, so every unit-loop shortcut of glmm_kernel (its FLAGS_SLOT and Z-of-ones fields) and the sum of
    # log(1 + s) as the log of a product.
    Route("bernoulli_rows_kernel", "y ~ x + (1 | g) + (1 | h)", "bernoulli", "full",
          {"(Intercept)": "normal(0, 2)", "x": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(h:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(20, 40), crossed=6), density="kernel"),
    # Classes nested in schools on the kernel, both centred: the class effects centred on their school's
    # (bayesmlm.design.nested_centring), the school's intercept reaching the data through its classes' prior only.
    Route("poisson_nested_centred", "y ~ x + (1 | g) + (1 | g:c)", "poisson", "full",
          {"(Intercept)": "normal(0, 1)", "x": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(g:c:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(12, 24), nested=3),
          fit_options={"parameterization": "centred"}, density="kernel"),
    # The same on the kernel with only the classes' parameterisation fixed (centred): the school's effects, read by
    # nothing but the classes' prior, are integrated out of it exactly (fastpath.glmm_kernel's CENTRED_MARGINAL) and
    # drawn from their conditional after sampling (fastpath.parent_draws).
    Route("poisson_nested_integrated", "y ~ x + (1 | g) + (1 | g:c)", "poisson", "full",
          {"(Intercept)": "normal(0, 1)", "x": "normal(0, 1)", "sd(g:(Intercept))": "half_normal(1)",
           "sd(g:c:(Intercept))": "half_normal(1)"}, Layout(n_groups=12, rows=(12, 24), nested=3),
          fit_options={"parameterization": {"g:c": "centred"}}, density="kernel", integrated=("g",)),
    # The Laplace route (APPROXIMATE, bayesmlm.fastpath.laplace_fit): g's correlated block integrated out by a
    # Laplace approximation, rows aggregated into cells, each u_j drawn from its Laplace conditional afterwards.
    # Groups of 60-100 rows: where the route is meant to be used (much data per group); with few rows per group
    # the approximation's error is larger and SBC may see it.
    Route("bernoulli_laplace", "y ~ x + (1 + x | g)", "bernoulli", "laplace", _SLOPES,
          Layout(n_groups=12, rows=(60, 100), x_values=(-1.0, 0.0, 1.0)), expect_route="laplace"),
    # The kernel through the Laplace map of bayesmlm.fastpath.preconditioned (fit.record.precondition "laplace"): each
    # group's effects as mu_j(theta) + R_j(theta)^-T z_j, x uncentred on 1..5 as the survey item of bench_big_binary.
    Route("bernoulli_preconditioned_kernel", "y ~ x + (1 + x | g)", "bernoulli", "full", _SLOPES,
          Layout(n_groups=15, rows=(30, 60), x_values=(1.0, 2.0, 3.0, 4.0, 5.0)), fit_options={"precondition": "laplace"},
          density="kernel"),
]}
# What fitted in about 40 minutes of a 2-core machine shared with other work (a full-model fit is ~8 CPU s, most
# of it nutpie compiling the model, which embeds the data; a collapsed fit reuses its compiled model, ~0.6 s).
# 0: not run by default (binomial with trials= builds the same y and trials as cbind: see sbc.md).
DEFAULT_SIMS = {"gaussian_collapsed": 200, "gaussian_full": 40, "bernoulli_full": 40, "binomial_full": 40,
                "binomial_trials_full": 0, "poisson_offset_full": 40, "bernoulli_aggregated_centred": 40, "gaussian_crossed_full": 40,
                "bernoulli_crossed_centred": 40, "gaussian_nested_collapsed": 40, "bernoulli_crossed_kernel": 40,
                "bernoulli_rows_kernel": 40, "bernoulli_preconditioned_kernel": 40, "gaussian_crossed_collapsed": 40, "poisson_nested_centred": 40,
                "poisson_nested_integrated": 100, "bernoulli_laplace": 100}


# -- drawing from the priors ------------------------------------------------------------------------------
def draw_prior(prior, rng: np.random.Generator) -> float:
    """One draw of a scalar :class:`bayesmlm.Prior`, parameterised as PyMC's distribution of the same name."""
    k = prior.kwargs
    if prior.dist == "normal":
        return float(rng.normal(k["mu"], k["sigma"]))
    if prior.dist == "student_t":
        return float(k["mu"] + k["sigma"] * rng.standard_t(k["nu"]))
    if prior.dist == "half_normal":
        return float(abs(rng.normal(0.0, k["sigma"])))
    if prior.dist == "half_student_t":
        return float(abs(k["sigma"] * rng.standard_t(k["nu"])))
    if prior.dist == "exponential":
        return float(rng.exponential(1.0 / k["lam"]))
    raise ValueError(f"No sampler for prior {prior}.")


def lkj_corr(q: int, eta: float, rng: np.random.Generator) -> np.ndarray:
    """A q x q correlation matrix drawn exactly from LKJ(eta): the onion method (Lewandowski, Kurowicka and Joe 2009).

    For q = 2 this is r = 2 Beta(eta, eta) - 1.
    """
    if q == 1:
        return np.ones((1, 1))
    beta = eta + (q - 2) / 2.0
    r = 2.0 * rng.beta(beta, beta) - 1.0
    R = np.array([[1.0, r], [r, 1.0]])
    for k in range(2, q):
        beta -= 0.5
        y = rng.beta(k / 2.0, beta)
        w = rng.normal(size=k)
        z = np.sqrt(y) * w / np.linalg.norm(w)
        zz = np.linalg.cholesky(R) @ z
        R = np.block([[R, zz[:, None]], [zz[None, :], np.ones((1, 1))]])
    return R


# -- one simulation ---------------------------------------------------------------------------------------
def _placeholder_outcome(route: Route, df: pd.DataFrame) -> pd.DataFrame:
    """An outcome of the right kind, so the template model builds (every prior is explicit: its values do not matter)."""
    alternating = np.arange(len(df)) % 2
    return _write_outcome(route, df, alternating.astype(float))


def _write_outcome(route: Route, df: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    df = df.copy()
    lhs = route.formula.split("~")[0].strip()
    if lhs.startswith("cbind("):
        succ, fail = (c.strip() for c in lhs[len("cbind("):-1].split(","))
        df[succ] = y.astype(np.int64)
        df[fail] = (df["n"] - y).astype(np.int64)
        df = df.drop(columns="n")
    elif route.family in ("binomial", "poisson", "bernoulli"):
        df[lhs] = y.astype(np.int64)
    else:
        df[lhs] = y
    return df


def simulate_outcome(family: str, eta: np.ndarray, design, prior_dict, rng: np.random.Generator):
    """The outcome given the linear predictor (offset included) and the family's own parameters."""
    if family == "gaussian":
        sigma = draw_prior(prior_dict["sigma"], rng)
        return rng.normal(eta, sigma), {"sigma": sigma}
    if family == "bernoulli":
        return rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float), {}
    if family == "binomial":
        return rng.binomial(design.trials.astype(np.int64), 1.0 / (1.0 + np.exp(-eta))).astype(float), {}
    if family == "poisson":
        return rng.poisson(np.exp(eta)).astype(float), {}
    raise ValueError(f"No simulator for family '{family}'.")


def simulate(route: Route, rng: np.random.Generator):
    """Covariates, then parameters from the template model's priors, then the outcome.

    Returns the model to fit (built on the simulated data, checked to have the
    same priors and design as the template) and the true values by parameter name.
    """
    import bayesmlm
    from bayesmlm.design.priors import cor_name, sd_name
    from bayesmlm.schema import pair_names

    df = route.layout.covariates(rng)
    template = bayesmlm.MLM(route.formula, _placeholder_outcome(route, df), route.family, route.priors, **route.options)
    missing = [name for name in template.prior_dict if name not in route.priors]
    if missing:
        raise ValueError(f"Route {route.name}: every prior must be explicit; data-scaled defaults left: {missing}.")
    d, pri = template.design, template.prior_dict
    truth = {}
    b_c = np.array([draw_prior(pri[t], rng) for t in d.fixed_terms])  # priors are on the coefficients of centred X
    gamma = b_c.copy()
    if d.has_intercept:
        i0 = d.fixed_terms.index("(Intercept)")
        gamma[i0] = b_c[i0] - b_c @ d.x_centre
    eta = d.X @ gamma
    truth |= {f"fixef[{t}]": v for t, v in zip(d.fixed_terms, gamma)}
    for b in d.blocks:
        sds = np.array([draw_prior(pri[sd_name(b.label, t)], rng) for t in b.terms])
        R = lkj_corr(b.q, pri[cor_name(b.label)].kwargs["eta"], rng) if b.correlated else np.eye(b.q)
        chol = np.diag(sds) @ np.linalg.cholesky(R)
        factor = d.factors[b.group]
        u = rng.normal(size=(factor.n_levels, b.q)) @ chol.T
        eta = eta + (b.Z * u[factor.index]).sum(axis=1)
        truth |= {f"sd_{b.label}[{t}]": s for t, s in zip(b.terms, sds)}
        if b.correlated:
            iu = np.triu_indices(b.q, k=1)
            truth |= {f"cor_{b.label}[{p}]": r for p, r in zip(pair_names(b.terms), R[iu])}
        for j in range(route.track_groups):
            truth |= {f"u_{b.label}[{factor.levels[j]}, {t}]": u[j, k] for k, t in enumerate(b.terms)}
    if d.offset is not None:
        eta = eta + d.offset
    y, extra = simulate_outcome(route.family, eta, d, pri, rng)
    truth |= extra
    model = bayesmlm.MLM(route.formula, _write_outcome(route, df, y), route.family, route.priors, **route.options)
    if model.prior_dict != pri or not np.array_equal(model.design.X, d.X) or \
            not np.array_equal(model.design.x_centre, d.x_centre):
        raise RuntimeError(f"Route {route.name}: the fitted model's priors or design differ from the template's.")
    return model, truth


def _posterior_draws(post, name: str, design) -> np.ndarray:
    """(chain, draw) of one tracked parameter, by its truth name (``fixef[x]``, ``sd_g[x]``, ``u_g[g00, x]``...)."""
    from bayesmlm.schema import FIXED, FIXED_DIM, cor_var, level_dim, pair_dim, sd_var, term_dim, u_var

    if name == "sigma":
        return post["sigma"].transpose("chain", "draw").values
    var, _, inner = name.partition("[")
    inner = inner[:-1]
    if var == FIXED:
        return post[FIXED].sel({FIXED_DIM: inner}).transpose("chain", "draw").values
    label = var.split("_", 1)[1]
    block = next(b for b in design.blocks if b.label == label)
    if var.startswith("sd_"):
        return post[sd_var(label)].sel({term_dim(label): inner}).transpose("chain", "draw").values
    if var.startswith("cor_"):
        return post[cor_var(label)].sel({pair_dim(label): inner}).transpose("chain", "draw").values
    level, term = (s.strip() for s in inner.split(",", 1))
    return post[u_var(label)].sel({level_dim(block.group): level, term_dim(label): term}).transpose("chain", "draw").values


def thin(draws: np.ndarray, n: int = L_DRAWS) -> np.ndarray:
    """``n`` draws equally spaced through the chains (chain after chain): about independent when
    chains x draws / n exceeds the draws per effective draw (the ESS is recorded to check)."""
    flat = draws.reshape(-1)
    return flat[np.round(np.linspace(0, flat.size - 1, n)).astype(int)]


def run_one(route_name: str, sim: int) -> list[dict]:
    """Simulate, fit and rank simulation ``sim`` of a route; one row per tracked parameter."""
    import bayesmlm
    from bayesmlm.sample.convergence import diagnostics_of

    logging.getLogger("pymc").setLevel(logging.WARNING)
    route = ROUTES[route_name]
    seq = np.random.SeedSequence([zlib.crc32(route.name.encode()), sim])
    sim_seed, fit_seed = seq.generate_state(2)
    rng = np.random.default_rng(sim_seed)
    start = time.perf_counter()
    model, truth = simulate(route, rng)
    base = {"route": route.name, "sim": sim, "n_obs": model.design.n_obs}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayesmlm.ConvergenceWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            fit = model.fit(draws=route.draws, tune=route.tune, chains=route.chains, seed=int(fit_seed % (2**31 - 1)),
                            progressbar=False, method=route.method, **route.fit_options)
    except Exception as e:  # a failed fit is a result: it is reported, never dropped silently
        return [base | {"param": p, "truth": v, "error": f"{type(e).__name__}: {e}"[:300]} for p, v in truth.items()]
    seconds = time.perf_counter() - start
    diag = fit.record.diagnostics
    for key, value in route.fit_options.items():  # the route ran as it says, or its verdict would mean nothing
        recorded = getattr(fit.record, key)
        if isinstance(value, dict):  # per factor: "centred on g" is centred
            assert all(str(recorded[f]).split(" on ")[0] == v for f, v in value.items()), (key, recorded, value)
            continue
        forms = {str(v).split(" on ")[0] for v in dict(recorded).values()} if isinstance(recorded, dict) else set()
        assert recorded == value or forms - {"collapsed"} == {value}, (key, recorded, value)  # "centred on g": centred
    assert route.expect_route is None or fit.record.route == route.expect_route, (fit.record.route, route.expect_route)
    assert not route.density or fit.record.density == route.density, (fit.record.density, route.density)
    assert all(fit.record.parameterization.get(f) == "collapsed" for f in route.integrated), fit.record.parameterization
    base["n_cells"] = fit.record.n_cells
    post = fit.posterior
    rows = []
    for p, v in truth.items():
        draws = _posterior_draws(post, p, model.design)
        rhat, bulk, _ = (float(a[0]) for a in diagnostics_of(draws[:, :, None], tail=False))
        rows.append(base | {"param": p, "truth": v, "rank": int((thin(draws) < v).sum()), "L": L_DRAWS,
                            "post_mean": float(draws.mean()), "post_sd": float(draws.std()), "ess_bulk": bulk,
                            "rhat": rhat, "divergences": diag.divergences, "max_rhat": diag.max_rhat,
                            "min_ess_bulk": diag.min_ess_bulk, "seconds": seconds, "error": ""})
    return rows


def same_data(a: str, b: str, sims: int = 5) -> bool:
    """Whether two routes build the same outcome, trials, offset, X and priors from the same seeds
    (two spellings of one model, such as cbind(s, f) and trials=)."""
    for i in range(sims):
        ma, _ = simulate(ROUTES[a], np.random.default_rng(i))
        mb, _ = simulate(ROUTES[b], np.random.default_rng(i))
        da, db = ma.design, mb.design
        pairs = [(da.y, db.y), (da.trials, db.trials), (da.offset, db.offset), (da.X, db.X)]
        if any(not (x is None and y is None) and not np.array_equal(x, y) for x, y in pairs) or \
                ma.prior_dict != mb.prior_dict:
            return False
    return True


# -- running ------------------------------------------------------------------------------------------------
def _csv(route_name: str) -> Path:
    return OUT / f"ranks_{route_name}.csv"


def run_routes(sims: dict[str, int], jobs: int, fresh: bool) -> None:
    """Run simulations 0..N-1 of each route, resuming each route's CSV; the routes' sims interleaved
    (sim 0 of every route, then sim 1, ...), so a run stopped early leaves every route about the same N."""
    todo = []
    for name, n in sims.items():
        path = _csv(name)
        if path.exists() and fresh:
            path.unlink()
        done = set(pd.read_csv(path, usecols=["sim"])["sim"].unique()) if path.exists() else set()
        print(f"{name}: {len(done)} done, {n - len([i for i in done if i < n])} to run", flush=True)
        todo += [(i, name) for i in range(n) if i not in done]
    todo.sort()
    start = time.perf_counter()

    def save(rows):
        path = _csv(rows[0]["route"])
        pd.DataFrame(rows).reindex(columns=COLUMNS).to_csv(path, mode="a", header=not path.exists(), index=False)

    if jobs == 1:
        for k, (i, name) in enumerate(todo, 1):
            save(run_one(name, i))
            _progress(k, len(todo), start)
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_one, name, i) for i, name in todo]
            for k, fut in enumerate(as_completed(futures), 1):
                save(fut.result())
                _progress(k, len(todo), start)
    for name in sims:  # sims in order, whatever order the workers finished in
        if _csv(name).exists():
            pd.read_csv(_csv(name)).sort_values(["sim"], kind="stable").to_csv(_csv(name), index=False)


def _progress(k: int, n: int, start: float) -> None:
    if k == n or k % 10 == 0:
        el = time.perf_counter() - start
        print(f"  {k}/{n} sims, {el:.0f} s ({el / k:.1f} s per sim)", flush=True)


# -- report -------------------------------------------------------------------------------------------------
def _bins(n: int) -> int:
    """Bins of the 100 rank values: as many as keep at least 10 expected per bin (a divisor of 100)."""
    for b in (20, 10, 5, 4, 2):
        if n / b >= 10:
            return b
    return 2


def rank_counts(ranks: np.ndarray, bins: int) -> np.ndarray:
    return np.bincount(ranks * bins // (L_DRAWS + 1), minlength=bins)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (route, parameter): N, bins, chi-square statistic and p, verdict, and diagnostics."""
    from scipy import stats

    ok = frame[frame["error"].fillna("") == ""]
    rows = []
    for (route, param), grp in ok.groupby(["route", "param"], sort=False):
        ranks = grp["rank"].to_numpy(dtype=int)
        n, bins = len(ranks), _bins(len(ranks))
        counts = rank_counts(ranks, bins)
        chi2, p = stats.chisquare(counts)
        mean = ranks.mean() / L_DRAWS  # uniform on 0..L: mean 1/2, sd sqrt(((L + 1)^2 - 1) / 12) / L
        z = (mean - 0.5) / (np.sqrt(((L_DRAWS + 1) ** 2 - 1) / 12.0) / L_DRAWS / np.sqrt(n))
        rows.append({"route": route, "param": param, "N": n, "bins": bins, "chi2": chi2, "p": p,
                     "verdict": "pass" if p >= ALPHA else "FAIL", "mean_rank": mean, "z_mean": z,
                     "sims_ess_below_L": int((grp["ess_bulk"] < L_DRAWS).sum()),
                     "sims_with_divergences": int((grp["divergences"] > 0).sum())})
    return pd.DataFrame(rows)


def route_verdicts(summary: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for route, grp in summary.groupby("route", sort=False):
        f = frame[frame["route"] == route]
        per_sim = f.drop_duplicates("sim")
        k = len(grp)
        ok = per_sim[per_sim["error"].fillna("") == ""]
        rows.append({"route": route, "sims": len(per_sim), "failed_fits": int((per_sim["error"].fillna("") != "").sum()),
                     "params": k, "min_p": grp["p"].min(), "bonferroni_p": min(1.0, grp["p"].min() * k),
                     "params_failing": int((grp["verdict"] == "FAIL").sum()),
                     "sims_with_divergences": int((ok["divergences"] > 0).sum()),
                     "median_max_rhat": ok["max_rhat"].median(), "median_min_ess_bulk": ok["min_ess_bulk"].median(),
                     "seconds_per_sim": ok["seconds"].median(),
                     "verdict": "calibrated" if grp["p"].min() * k >= ALPHA and len(ok) == len(per_sim)
                     else "NOT calibrated"})
    return pd.DataFrame(rows)


def plot_route(route: str, frame: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    """Rank histograms, one panel per parameter, with the 99% band of each bin's binomial count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    rows = summary[summary["route"] == route]
    ok = frame[(frame["route"] == route) & (frame["error"].fillna("") == "")]
    k = len(rows)
    ncol = min(4, k)
    nrow = -(-k // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, (_, r) in zip(axes.flat, rows.iterrows()):
        ranks = ok.loc[ok["param"] == r["param"], "rank"].to_numpy(dtype=int)
        n, bins = len(ranks), int(r["bins"])
        counts = rank_counts(ranks, bins)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
        ax.axhspan(lo, hi, color="0.88", zorder=0)
        for level in (lo, hi):
            ax.axhline(level, color="0.35", lw=0.8, ls="--", zorder=3)
        ax.axhline(n / bins, color="0.35", lw=0.8, zorder=3)
        ax.bar(np.arange(bins) + 0.5, counts, width=1.0, color="C3" if r["verdict"] == "FAIL" else "C0",
               edgecolor="white", zorder=2)
        ax.set_xlim(0, bins)
        ax.set_xticks([0, bins / 2, bins], ["0", f"{(L_DRAWS + 1) // 2}", f"{L_DRAWS + 1}"])
        ax.set_title(f"{r['param']}\np = {r['p']:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    fig.suptitle(f"SBC rank histograms: {route} (N = {int(rows['N'].max())}; band: 99% of a uniform bin's count)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(routes: list[str]) -> None:
    frames = [pd.read_csv(_csv(r), dtype={"error": "object"}) for r in routes if _csv(r).exists()]
    if not frames:
        print("No results yet.")
        return
    frame = pd.concat(frames, ignore_index=True)
    frame["error"] = frame["error"].fillna("")
    summary = summarise(frame)
    verdicts = route_verdicts(summary, frame)
    summary.to_csv(OUT / "summary.csv", index=False)
    verdicts.to_csv(OUT / "routes.csv", index=False)
    for route in verdicts["route"]:
        plot_route(route, frame, summary, OUT / f"ranks_{route}.png")
    lines = ["| route | parameter | N | bins | chi-square | p | verdict | mean rank / L (z) | sims ESS < 99 |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for _, r in summary.iterrows():
        lines.append(f"| {r['route']} | `{r['param']}` | {r['N']} | {r['bins']} | {r['chi2']:.1f} | {r['p']:.3f} | "
                     f"{r['verdict']} | {r['mean_rank']:.3f} ({r['z_mean']:+.1f}) | {r['sims_ess_below_L']} |")
    lines += ["", "| route | sims | failed fits | parameters | min p | Bonferroni p | parameters with p < 0.01 | "
                  "sims with divergences | median max R-hat | median min bulk ESS | median wall s per sim | verdict |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in verdicts.iterrows():
        lines.append(f"| {r['route']} | {r['sims']} | {r['failed_fits']} | {r['params']} | {r['min_p']:.3f} | "
                     f"{r['bonferroni_p']:.3f} | {r['params_failing']} | {r['sims_with_divergences']} | "
                     f"{r['median_max_rhat']:.3f} | {r['median_min_ess_bulk']:.0f} | {r['seconds_per_sim']:.1f} | "
                     f"{r['verdict']} |")
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", action="append", choices=sorted(ROUTES),
                        help="a route to run (repeatable); all routes without it")
    parser.add_argument("--sims", type=int, help="simulations per route (default: DEFAULT_SIMS per route)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--fresh", action="store_true", help="discard a route's earlier results first")
    parser.add_argument("--report", action="store_true", help="only rebuild the table and figures")
    args = parser.parse_args(argv)
    routes = args.route or [r for r in ROUTES if DEFAULT_SIMS[r] > 0]
    OUT.mkdir(parents=True, exist_ok=True)
    if "binomial_trials_full" not in routes:
        print("binomial_trials_full (not run) builds the same data as binomial_full:",
              same_data("binomial_full", "binomial_trials_full"), flush=True)
    if not args.report:
        run_routes({r: args.sims or DEFAULT_SIMS[r] for r in routes}, args.jobs, args.fresh)
    report(list(ROUTES))


if __name__ == "__main__":
    main()

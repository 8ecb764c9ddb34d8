"""MLM: the public model object. It only composes the pipeline's stages:
spec -> design -> priors -> build -> sample -> results (STYLE: lmer() is only
the composition of lFormula, mkLmerDevfun, optimizeLmer and mkMerMod).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .design.aggregate import Cells, aggregate_rows
from .design.block_means import block_means
from .design.data_checks import check_level2_constant
from .design.equation_forms import Equations
from .design.equations import model_equations
from .design.matrices import Design, build_design, group_labels
from .design.nested_centring import INTEGRATED, centred_parents, integrable_parents
from .design.parameterization import choose_parameterization, fixed_factors, precondition_choice
from .design.priors import Prior, priors_table, resolve_priors
from .design.structure import FactorStructure, check_repeated_labels, factor_structure
from .errors import ArgumentError, SpecError, UnsupportedModelError
from .fastpath.crossed_stats import crossed_problem
from .fastpath.glmm_fit import PRECONDITIONERS, kernel_problem
from .fastpath.fit import fit_collapsed
from .fastpath.nested_fit import fit_nested
from .fastpath.stats import GroupStats, collapse_problem, collapsed_route
from .frequentist_engine.design_fit import fit_design
from .results.fit import Fit
from .results.record import FitRecord
from .sample.initial import INITS, frequentist_start, initial_values
from .sample.nuts import (
    FIT_METHODS,
    GRAPH_TUNE,
    START_SAMPLERS,
    SamplerSettings,
    check_convergence,
    diagnose,
    sample_model,
)
from .schema import is_parameter
from .spec.formula import ModelSpec, parse_formula, spec_from_levels
from .spec.levels3 import spec_from_three_levels

__all__ = ["MLM"]



class MLM:
    """A two-level (or multilevel) model: a spec, its data and its priors.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"tech ~ 1 + smu + (1 + smu | country)"``.
    data : DataFrame
    family : str
        ``"gaussian"`` (default), ``"student"`` (Student-t residuals),
        ``"bernoulli"``, ``"binomial"``, ``"poisson"``, ``"negbinomial"``
        (NB2, as glmer.nb) or ``"cumulative"`` (ordinal; its thresholds
        replace the intercept).
    priors : dict, optional
        Overrides of the default priors by name (see :meth:`priors`), as
        :class:`~bayesmlm.Prior` objects or strings like ``"normal(0, 1)"``.
    trials, offset : str, optional
        Columns with binomial trials, and an offset on the link scale.
    weights : str, optional
        A column of weights, 0 or more. Gaussian: lme4's precision weights,
        the residual variance of row i is sigma^2 / w_i (``lmer(weights=)``);
        other families: row i's log-likelihood times w_i (brms's
        ``weights()``), so integer weights are frequency weights there. A row
        of weight 0 drops out of the likelihood. Every route takes them: the
        collapsed fast path (weighted cross-products), the full model, the
        aggregated cells (weights summed) and the frequentist column. Survey
        weights: normalise them to the sample size first
        (:func:`bayesmlm.normalize_weights`); a weighted likelihood is not a
        design-based variance (README, "Weights").
    link : str, optional
        The link, where the family takes more than one
        (:data:`bayesmlm.spec.formula.LINKS`): ``"logit"`` (default) or
        ``"probit"`` for ``"cumulative"``.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> m.formula
    'Reaction ~ 1 + Days + (1 + Days | Subject)'
    """

    def __init__(self, formula: str, data: pd.DataFrame, family: str = "gaussian", priors: dict | None = None, *,
                 trials: str | None = None, offset: str | None = None, weights: str | None = None,
                 link: str | None = None):
        self._init(parse_formula(formula, family, link), data, priors, trials, offset, weights)

    def _init(self, spec: ModelSpec, data, priors, trials, offset, weights=None) -> None:
        self.spec: ModelSpec = spec
        self.design: Design = build_design(spec, data, trials=trials, offset=offset, weights=weights)
        self.prior_dict: dict[str, Prior] = resolve_priors(self.design, priors)
        self._options = {"trials": trials, "offset": offset, "weights": weights}
        self._stats: GroupStats | None = None
        self._cells: Cells | None = None  # cells read from files (MLM.from_files): the model keeps no rows
        check_repeated_labels(self.design)

    @classmethod
    def from_levels(cls, level1: str, level2: dict | None = None, *, group: str | tuple[str, str], data: pd.DataFrame,
                    level3: dict | None = None, fixed=(), family: str = "gaussian", priors: dict | None = None,
                    trials: str | None = None, offset: str | None = None, weights: str | None = None,
                    link: str | None = None) -> "MLM":
        """A model from level-1 and level-2 equations, or level-1, level-2 and level-3 equations.

        Two levels (``group="school"``): each level-1 term gets a random
        effect by ``group`` unless it is named in ``fixed``; see
        :func:`bayesmlm.spec.formula.spec_from_levels`. Three levels
        (``group=("school", "class")``, outermost first, as in
        ``(1 | school/class)``): ``level2`` holds class-level and ``level3``
        school-level predictors, ``fixed={"class": [...], "school": [...]}``
        the coefficients that do not vary at that level; see
        :mod:`bayesmlm.spec.levels3`. Group-level predictors must be constant
        within their groups. ``trials``, ``offset`` and ``weights`` as for
        :class:`MLM`.

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM.from_levels("mAch ~ 1 + cses", {"1": "~ 1 + meanses", "cses": "~ 1 + meanses"},
        ...                              group="school", data=bayesmlm.datasets.load("hsb82"))
        >>> m.formula
        'mAch ~ 1 + meanses + cses + cses:meanses + (1 + cses | school)'
        >>> m3 = bayesmlm.MLM.from_levels("strength ~ 1", group=("batch", "cask"), data=bayesmlm.datasets.load("pastes"))
        >>> m3.formula
        'strength ~ 1 + (1 | batch) + (1 | batch:cask)'
        """
        self = cls.__new__(cls)
        if isinstance(group, str):
            if level3:
                raise SpecError("level3 needs three levels: group=(school, class), outermost first; group is one "
                                f"column, {group!r}.")
            spec = spec_from_levels(level1, level2, group, fixed=fixed, family=family, link=link)
        else:
            spec = spec_from_three_levels(level1, level2, level3, group, fixed=fixed or None, family=family, link=link)
        self._init(spec, data, priors, trials, offset, weights)
        if isinstance(group, str):
            check_level2_constant(self.design.data, group_labels(self.design.data, group), group, dict(level2 or {}))
        else:
            school, klass = group
            check_level2_constant(self.design.data, group_labels(self.design.data, f"{school}:{klass}"),
                                  f"{school}:{klass}", dict(level2 or {}))
            check_level2_constant(self.design.data, group_labels(self.design.data, school), school, dict(level3 or {}),
                                  name="level3")
        return self

    @classmethod
    def from_files(cls, formula: str, paths, *, family: str = "gaussian", priors: dict | None = None,
                   trials: str | None = None, offset: str | None = None, weights: str | None = None,
                   chunksize: int = 1_000_000) -> "MLM":
        """A model of CSV or Parquet files too large for memory, read in chunks.

        Only the model's columns are read, ``chunksize`` rows at a time. A
        gaussian model's chunks are reduced to per-group sufficient
        statistics (:mod:`bayesmlm.fastpath.readers`) and the fit is always
        ``method="collapsed"``. A bernoulli, binomial or poisson model's rows
        are aggregated exactly into cells, groups x distinct model-matrix rows
        (:mod:`bayesmlm.fastpath.cell_readers`), and the fit is the full model
        over the cells: the predictors must be discrete (an error says so
        where they are not). The first chunk fixes the design (categorical
        levels), so it must vary in every predictor. Fit tables, ``coef`` and
        plots work as for an in-memory model; predictions without newdata,
        posterior predictive checks and LOO need the rows and refuse.

        Parameters
        ----------
        formula : str
            lme4 syntax; for a gaussian model one grouping factor, or nested ones
            (``(1 | school/class)``).
        paths : str, Path or list of them
            ``.csv`` (optionally ``.gz``) or ``.parquet`` files of one data set.
        family : str
            ``"gaussian"`` (default), ``"bernoulli"``, ``"binomial"`` or ``"poisson"``.
        priors : dict, optional
            Overrides of the default priors, as for :class:`MLM`.
        trials : str, optional
            Binomial trials per row.
        offset : str, optional
            A column subtracted from the outcome (gaussian), or added to the
            linear predictor on the link scale.
        weights : str, optional
            A column of precision weights, as for :class:`MLM`; each chunk is
            checked, and the weighted cross-products are summed (gaussian
            only: the cells of other families do not take weights yet).
        chunksize : int
            Rows per chunk.

        Examples
        --------
        >>> m = bayesmlm.MLM.from_files("y ~ x + (1 + x | g)", "big.parquet")  # doctest: +SKIP
        >>> fit = m.fit(seed=1)  # doctest: +SKIP
        >>> b = bayesmlm.MLM.from_files("hi ~ smu + (1 + smu | g)", "big.parquet", family="bernoulli")  # doctest: +SKIP
        """
        spec = parse_formula(formula, family)
        if family != "gaussian":
            _refuse_cell_weights(family, weights)
            from .fastpath.cell_readers import reduce_cell_files

            return cls._from_cells(reduce_cell_files(spec, paths, chunksize=chunksize, trials=trials, offset=offset),
                                   priors)
        from .fastpath.readers import reduce_files

        return cls._from_reduced(reduce_files(spec, paths, chunksize=chunksize, offset=offset, weights=weights),
                                 priors, offset, weights)

    @classmethod
    def from_dask(cls, formula: str, data, *, family: str = "gaussian", priors: dict | None = None,
                  trials: str | None = None, offset: str | None = None, weights: str | None = None) -> "MLM":
        """A model of a ``dask.dataframe``, reduced by Dask.

        Each partition is summed where Dask runs it and the partial sums are
        added in a tree; only those sums reach this process. Gaussian: per-group
        sufficient statistics (:func:`bayesmlm.fastpath.readers.reduce_dask`),
        fitted ``method="collapsed"``; bernoulli, binomial and poisson: cells
        (:func:`bayesmlm.fastpath.cell_readers.reduce_cell_dask`), as
        :meth:`from_files` says. ``weights`` as for :meth:`from_files`.

        Examples
        --------
        >>> import dask.dataframe as dd
        >>> m = bayesmlm.MLM.from_dask("y ~ x + (1 + x | g)", dd.read_parquet("big/"))  # doctest: +SKIP
        """
        spec = parse_formula(formula, family)
        if family != "gaussian":
            _refuse_cell_weights(family, weights)
            from .fastpath.cell_readers import reduce_cell_dask

            return cls._from_cells(reduce_cell_dask(spec, data, trials=trials, offset=offset), priors)
        from .fastpath.readers import reduce_dask

        return cls._from_reduced(reduce_dask(spec, data, offset=offset, weights=weights), priors, offset, weights)

    @classmethod
    def _from_reduced(cls, reduced, priors: dict | None, offset: str | None, weights: str | None = None) -> "MLM":
        self = cls.__new__(cls)
        self.spec = reduced.design.spec
        self.design = reduced.design
        self.prior_dict = resolve_priors(self.design, priors)
        self._options = {"trials": None, "offset": offset, "weights": weights}
        self._stats = reduced.stats
        self._cells = None
        return self

    @classmethod
    def _from_cells(cls, reduced, priors: dict | None) -> "MLM":
        self = cls.__new__(cls)
        self.spec = reduced.design.spec
        self.design = reduced.design
        self.prior_dict = resolve_priors(self.design, priors)
        self._options = dict(reduced.design.options)
        self._stats = None
        self._cells = reduced.cells
        return self

    @property
    def formula(self) -> str:
        """The combined mixed formula (lme4 syntax)."""
        return self.spec.formula

    @property
    def structure(self) -> FactorStructure:
        """How the grouping factors relate in the data: nested, crossed or partially crossed.

        See :mod:`bayesmlm.design.structure`; ``structure.hierarchy`` is the
        chain of nested factors, outermost first, of a multilevel model.

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
        >>> print(m.structure)
        batch:cask (30 levels) is nested in batch (10 levels)
        A 3-level model: batch > batch:cask > observations.
        """
        return factor_structure(self.design)

    def equations(self) -> Equations:
        """Level-1, level-2 and combined equations (LaTeX and text; renders in a notebook).

        Examples
        --------
        >>> print(m.equations())  # doctest: +SKIP
        """
        return model_equations(self.design)

    def priors(self) -> pd.DataFrame:
        """Every prior the fit will use, with its class and whether it is a default.

        Examples
        --------
        >>> m.priors().loc["sigma", "prior"]  # doctest: +SKIP
        'exponential(lam=0.01773)'
        """
        return priors_table(self.prior_dict, self.design)

    def build(self, *, aggregate: bool = True, parameterization: str | dict = "auto"):
        """The full PyMC model, the random effects sampled: what ``fit(method="full")`` samples.

        ``aggregate`` and ``parameterization`` as for :meth:`fit`.

        Examples
        --------
        >>> m.build().free_RVs  # doctest: +SKIP
        """
        from .build.full import build_full_model

        if self._cells is None:
            self.design.require_rows("The full model")
        cells, choice = self._full_options(aggregate, parameterization)
        return build_full_model(self.design, self.prior_dict, cells=cells, parameterization=choice)

    def _full_options(self, aggregate: bool, parameterization: str | dict) -> tuple[Cells | None, dict[str, str]]:
        """The cells (or None) and the parameterisation per factor of the full model."""
        if self._cells is not None and not aggregate:
            raise ArgumentError("aggregate=False needs the rows, and this model was read from files as cells "
                                "(MLM.from_files or MLM.from_dask). Drop aggregate=False, or build the model from a "
                                "DataFrame, MLM(formula, data).")
        cells = self._cells if self._cells is not None else (aggregate_rows(self.design) if aggregate else None)
        return cells, choose_parameterization(self.design, self.prior_dict, parameterization, nested=True)

    def fit_frequentist(self, method: str | None = None):
        """lme4's fit of this model: REML or ML (``lmer``) for gaussian models, the Laplace approximation (``glmer``) otherwise.

        bayesmlm's own engine (:mod:`bayesmlm.frequentist_engine`), for any
        number of grouping factors; no sampling. Its record says whether it
        converged and whether it is singular.

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
        >>> ff = m.fit_frequentist()
        >>> ff.method, ff.converged, round(ff.sigma, 2)
        ('REML', True, 25.59)
        """
        return fit_design(self.design, method)

    def prior_predictive(self, draws: int = 500, seed: int | None = None):
        """Outcomes simulated from the priors alone (see :func:`bayesmlm.predict.predictive.prior_predictive`).

        Examples
        --------
        >>> m.prior_predictive(draws=100, seed=1)["prior_predictive"]["y"].dims  # doctest: +SKIP
        ('chain', 'draw', 'obs')
        """
        from .predict.predictive import prior_predictive

        self.design.require_rows("A prior predictive simulation")
        return prior_predictive(self, draws=draws, seed=seed)

    def fit(self, draws: int = 1000, tune: int | None = None, chains: int = 4, seed: int | None = None, sampler: str = "nutpie",
            target_accept: float = 0.9, progressbar: bool = True, method: str = "auto", *, aggregate: bool = True,
            parameterization: str | dict = "auto", init: str = "sampler", precondition: str = "none") -> Fit:
        """Sample the posterior with NUTS and return a :class:`~bayesmlm.Fit`.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, tuning steps per chain, chains. ``tune=None``
            (default) is 400 with nutpie, whose mass-matrix adaptation settles
            sooner (``benchmarks/tune_results.md``), except on a compiled PyMC
            graph (``fit.record.density == "pytensor"``), and PyMC's 1000 with
            the other samplers; ``fit.record.settings.tune`` says what ran.
        seed : int, optional
            The same seed gives the same draws. Without one, a seed is drawn
            and recorded in ``fit.record.settings.seed``.
        sampler : str
            ``"nutpie"`` (default), ``"pymc"``, ``"numpyro"`` or ``"blackjax"``.
        target_accept : float
            NUTS's target acceptance rate; raise it if there are divergences.
        progressbar : bool
        method : str
            ``"collapsed"`` integrates the random effects out of a Gaussian
            model with one grouping factor or nested ones (README, "Routes";
            ``fit.record.route`` says which), samples on per-group sufficient
            statistics, and draws every u_j from its exact conditional
            afterwards (:mod:`bayesmlm.fastpath.fit`), or, for crossed factors
            whose blocks have one term each, the factor with the most levels
            (:mod:`bayesmlm.fastpath.crossed_fit`, nutpie only); ``"full"`` samples the
            u_j as parameters (centred or non-centred, see ``parameterization``); ``"auto"`` (default)
            is ``"collapsed"`` where it applies (with ``sampler="nutpie"`` or
            ``"pymc"``) and ``"full"`` otherwise. ``"laplace"`` (never chosen
            by ``"auto"``; APPROXIMATE) integrates the random effects of a
            bernoulli, binomial or poisson model with one grouping factor out
            by a Laplace approximation, samples the fixed effects and the
            block's SDs and correlations alone (nutpie only), and draws each
            u_j from its Laplace conditional afterwards
            (:mod:`bayesmlm.fastpath.laplace_fit`; README, "Routes", says how
            large its error was measured); for many groups with much data
            each, where sampling every u_j is slow.
            ``fit.record.method`` says which ran. A full fit of a bernoulli,
            binomial, poisson or cumulative model with ``sampler="nutpie"`` and
            ``init="sampler"`` computes the PyMC model's density with one
            Numba kernel (:mod:`bayesmlm.fastpath.glmm_fit`), the others
            compile the PyMC graph: ``fit.record.density`` says which.
        aggregate : bool
            For bernoulli, binomial and poisson models (``method="full"``):
            collapse rows that share their groups, model-matrix row and offset
            into cells before sampling (exact; :mod:`bayesmlm.design.aggregate`),
            where that at least halves the terms. Predictions, checks and LOO
            stay per row. ``fit.record.n_cells`` says how many cells there were
            (None: not aggregated).
        parameterization : str or dict
            For ``method="full"``: ``"auto"`` (default) chooses centred or
            non-centred random effects per grouping factor from the data
            (:mod:`bayesmlm.design.parameterization`); ``"centred"`` or
            ``"non-centred"`` for every factor, or a dict such as
            ``{"country": "centred"}`` (factors not named: ``"auto"``). The
            crossed route takes it for its sampled factors.
            ``fit.record.parameterization`` says what ran.
        init : str
            Where the chains of ``method="full"`` start. ``"frequentist"``: at
            lme4's optimum (:meth:`fit_frequentist`) mapped onto the model's
            variables, each chain with its own noise of about one standard
            error (:mod:`bayesmlm.sample.initial`); a singular or unconverged
            optimum is not used, and ``fit.record.init_note`` says why.
            ``"sampler"`` (default): the sampler's own start. nutpie or PyMC's
            sampler only. Not the default: measured on three models
            (``benchmarks/init_results.md``) it did not raise ESS per second
            at the default warm-up, and the frequentist fit costs seconds.
            ``fit.record.init`` says which ran.
        precondition : str
            For a full fit on the kernel (``fit.record.density == "kernel"``):
            ``"auto"`` samples each group's effects through a map
            built from the Laplace optimum's curvature that moves with the
            SDs (:mod:`bayesmlm.fastpath.preconditioned`: the same posterior,
            exactly; the factor built centred, which the map turns into a
            per-group partial centring) where that module's rule says it
            pays (bernoulli, binomial, poisson; factors whose parameterisation
            the call did not fix and whose groups are not data-dominated);
            ``"laplace"`` for every factor the call did not fix; ``"none"`` (default): never. Not the
            default yet: the map costs about 1.5 x a kernel gradient, which models whose ESS is ample
            (VerbAgg, cbpp) pay for nothing, and it builds every mapped factor centred, overriding the
            nested rule's choice for a parent factor (:mod:`bayesmlm.design.nested_centring`).
            ``fit.record.precondition`` says what ran and
            ``fit.record.precondition_note`` why not.

        Examples
        --------
        >>> fit = m.fit(draws=500, tune=500, seed=1)  # doctest: +SKIP
        >>> fit.record.method  # doctest: +SKIP
        'collapsed'
        """
        if not isinstance(method, str) or method not in FIT_METHODS:
            raise ArgumentError(f"Unknown method {method!r}. Valid methods: {', '.join(FIT_METHODS)}.")
        if not isinstance(precondition, str) or precondition not in PRECONDITIONERS:
            raise ArgumentError(f"Unknown precondition {precondition!r}. Valid values: {', '.join(PRECONDITIONERS)}.")
        if not isinstance(init, str) or init not in INITS:
            raise ArgumentError(f"Unknown init {init!r}. Valid values: {', '.join(INITS)}.")
        if init == "frequentist" and sampler not in START_SAMPLERS:
            raise ArgumentError(f"init='frequentist' works with the samplers {', '.join(START_SAMPLERS)}; this fit uses "
                                f"sampler={sampler!r}. Pass init='sampler'.")
        settings = SamplerSettings(draws, tune, chains, seed, sampler, target_accept, progressbar).resolved()
        problem = collapse_problem(self.design)
        crossed = problem is not None and crossed_problem(self.design) is None  # the crossed route (fastpath.crossed_fit)
        if method == "auto":
            samplers = ("nutpie",) if crossed else ("nutpie", "pymc")
            method = "full" if (problem and not crossed) or sampler not in samplers else "collapsed"
        if self._cells is not None and init == "frequentist":
            raise ArgumentError("init='frequentist' needs the rows for the frequentist fit, and this model was read from "
                                "files as cells (MLM.from_files or MLM.from_dask). Pass init='sampler'.")
        if method == "laplace":
            self._check_laplace(sampler, init, parameterization)
        if method == "full" and self._cells is None:
            self.design.require_rows("method='full'")
        elif init == "frequentist" and method != "laplace":
            raise ArgumentError("init='frequentist' is for method='full' (the random effects sampled); this fit is "
                                "collapsed, whose sampler starts on its own. Pass method='full' with it.")
        elif parameterization != "auto" and not crossed and method != "laplace":
            raise ArgumentError(f"parameterization={parameterization!r} is for method='full' (the random effects "
                                "sampled); this fit is collapsed (the random effects integrated out). Pass method='full' "
                                "with it.")
        cells, choice, begin, density = None, {}, _StartChoice("sampler", "", 0.0, None), ""  # where the chains start
        mapped, map_note = "none", "not a full fit on the kernel"
        route = "full" if method == "full" else collapsed_route(self.design) or "one-factor"
        if method == "collapsed" and crossed:
            # imported here: Numba loads its compiled callbacks on import
            from .fastpath.crossed_fit import ROUTE, fit_crossed

            idata, seconds_build, seconds_sample, plan = fit_crossed(self.design, self.prior_dict, settings, parameterization)
            choice, route = plan.parameterization, ROUTE
        elif method == "laplace":
            from .fastpath.laplace_fit import ROUTE, fit_laplace  # imported here: Numba loads its compiled callbacks

            start = time.perf_counter()
            cells = self._cells if self._cells is not None else (aggregate_rows(self.design) if aggregate else None)
            seconds_cells = time.perf_counter() - start
            idata, seconds_build, seconds_sample = fit_laplace(self.design, self.prior_dict, settings, cells)
            seconds_build += seconds_cells
            route, density = ROUTE, "laplace"
        elif route == "nested":
            idata, seconds_build, seconds_sample = fit_nested(self.design, self.prior_dict, settings, self._stats)
        elif method == "collapsed":
            idata, seconds_build, seconds_sample = fit_collapsed(self.design, self.prior_dict, settings, self._stats)
        else:
            from .build.full import build_full_model

            start = time.perf_counter()
            cells, choice = self._full_options(aggregate, parameterization)
            if settings.sampler == "nutpie" and init == "sampler" and kernel_problem(self.design, self.prior_dict) is None:
                from .fastpath.glmm_fit import fit_glmm  # imported here: Numba loads its compiled callbacks on import

                density, seconds_cells = "kernel", time.perf_counter() - start
                choice, map_note = precondition_choice(self.design, self.prior_dict, parameterization, choice,
                                                       precondition)
                mapped = "none" if map_note else "laplace"
                if mapped == "none":  # a parent read only by its child's prior: integrated out (design.nested_centring)
                    fixed = fixed_factors(parameterization, choice)
                    choice = {**choice, **dict.fromkeys(integrable_parents(self.design, choice, fixed), INTEGRATED)}
                idata, seconds_build, seconds_sample = fit_glmm(self.design, self.prior_dict, settings, cells, choice,
                                                                mapped)
                map_note = map_note or ""
                seconds_build += seconds_cells
            else:
                density = "pytensor"
                if tune is None:  # the graph keeps the longer default warm-up (sample.nuts.GRAPH_TUNE)
                    settings = replace(settings, tune=GRAPH_TUNE)
                pmodel = build_full_model(self.design, self.prior_dict, cells=cells, parameterization=choice)
                seconds_build = time.perf_counter() - start
                if init == "frequentist":
                    begin = self._frequentist_start(pmodel, choice)
                idata, seconds_sample = sample_model(pmodel, settings, begin.initvals)
        diag = diagnose(idata, _reported_vars(idata))
        check_convergence(diag, settings)
        n_obs = self._n_rows()
        centred_on = {} if method != "full" else {k: list(v.fixed_terms) for k, v in block_means(self.design, choice).items()}
        if method == "full":  # a child centred on its parent says so (design.nested_centring)
            links = centred_parents(self.design, choice)
            choice = {**choice, **{b.group: f"centred on {links[b.label].parent_group}" for b in self.design.blocks
                                   if b.label in links}}
        record = FitRecord(settings, method, diag, seconds_build, seconds_sample, n_obs, self.design.rows_dropped,
                           None if cells is None else cells.n_cells, choice, begin.init, begin.note, begin.seconds,
                           route=route, centred_on=centred_on, density=density, precondition=mapped,
                           precondition_note=map_note)
        return Fit(self.design, self.prior_dict, idata, record)

    def _check_laplace(self, sampler: str, init: str, parameterization) -> None:
        """Refuse, naming why, what ``method="laplace"`` cannot fit."""
        from .fastpath.laplace_fit import laplace_problem

        problem = laplace_problem(self.design, self.prior_dict)
        if problem:
            raise UnsupportedModelError(f"method='laplace' cannot fit this model: {problem}. Use method='full' (every "
                                        "random effect sampled, exact).")
        if sampler != "nutpie":
            raise ArgumentError(f"method='laplace' runs with sampler='nutpie' (its density is a Numba C callback); "
                                f"this fit asked for sampler={sampler!r}.")
        if init != "sampler" or parameterization != "auto":
            raise ArgumentError("method='laplace' samples no random effects, so it takes no init='frequentist' and no "
                                "parameterization=; drop them.")

    def _frequentist_start(self, pmodel, choice: dict[str, str]) -> "_StartChoice":
        """The chains' start at the frequentist optimum, or the sampler's own start and why."""
        begin = time.perf_counter()
        try:
            ff = fit_design(self.design)
        except (UnsupportedModelError, np.linalg.LinAlgError, FloatingPointError) as err:
            return _StartChoice("sampler", f"no frequentist fit: {err}", time.perf_counter() - begin, None)
        point, why = frequentist_start(self.design, ff, choice)
        seconds = time.perf_counter() - begin
        if point is None:
            return _StartChoice("sampler", why, seconds, None)
        return _StartChoice("frequentist", "", seconds, initial_values(pmodel, point))

    def _n_rows(self) -> int:
        """Rows of the data: the design's, or those the statistics or cells were reduced from."""
        if self._stats is not None:
            return self._stats.n_obs
        return self._cells.n_rows if self._cells is not None else self.design.n_obs

    def __repr__(self) -> str:
        n_obs = self._n_rows()
        return f"<bayesmlm.MLM {self.formula} | {self.spec.family.name}, {n_obs} obs>"


@dataclass(frozen=True)
class _StartChoice:
    """Where a full fit's chains start: ``init`` and ``note`` for the record, and the sampler's initvals (or None)."""

    init: str
    note: str
    seconds: float
    initvals: dict | None


def _reported_vars(idata) -> list[str]:
    """The posterior variables that diagnostics cover: every parameter users read."""
    names = list(idata["posterior"].data_vars)
    return [v for v in names if is_parameter(v)]


def _refuse_cell_weights(family: str, weights: str | None) -> None:
    """Cells read from files do not sum weights yet: refuse rather than fit unweighted."""
    if weights is not None:
        raise ArgumentError(f"weights={weights!r} with family={family!r} from files: the cells read from files do not "
                            "take weights yet. Load the rows into memory (bayesmlm.MLM(..., weights=...)) to fit them "
                            "weighted, or drop weights=.")

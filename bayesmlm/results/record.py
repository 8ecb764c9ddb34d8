"""The record of how a fit was made (MixedModels.jl's OptSummary, for a sampler)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sample.nuts import Diagnostics, SamplerSettings

__all__ = ["FitRecord"]


@dataclass(frozen=True)
class FitRecord:
    """How a fit was made: settings, method, timings and diagnostics.

    Attributes
    ----------
    settings : SamplerSettings
        With the seed actually used.
    method : str
        ``"full"`` (non-centred random effects sampled) or ``"collapsed"``
        (random effects integrated out, then drawn from their conditional).
    diagnostics : Diagnostics
    seconds_build, seconds_sample : float
        Wall time to build the PyMC model, and to compile and sample it.
    n_obs, rows_dropped : int
        Rows used, and rows dropped for missing values.
    n_cells : int or None
        The cells the rows became when the likelihood ran over aggregated
        rows (:mod:`bayesmlm.design.aggregate`); None when it ran over the rows.
    parameterization : dict of str to str
        ``"centred"`` or ``"non-centred"`` per grouping factor (full model), or
        ``"centred on <parent>"`` for a centred factor nested in another and centred
        on it (:mod:`bayesmlm.design.nested_centring`);
        empty for the collapsed route, which samples no random effects.
    init : str
        Where the chains started: ``"frequentist"`` (the frequentist optimum
        plus per-chain noise, :mod:`bayesmlm.sample.initial`) or ``"sampler"``
        (the sampler's own start).
    init_note : str
        Why the frequentist optimum was not used where it was asked for
        (singular, not converged, ...); else empty.
    seconds_init : float
        Wall time of the frequentist fit that made the start (0 without one).
    route : str
        The route the fit took, finer than ``method``: ``"one-factor"`` (the
        collapsed route of one grouping factor), ``"crossed"`` (crossed factors,
        the largest integrated out, :mod:`bayesmlm.fastpath.crossed_fit`),
        ``"full"`` (the random effects sampled); other collapsed routes add their own names. The README's
        section on routes says what each does and when it is chosen.
    centred_on : dict of str to list of str
        Per centred block (full model), the fixed effects its group
        coefficients are centred on (:mod:`bayesmlm.design.block_means`):
        the same-named terms, the intercept and group-level covariates.
    density : str
        How a full-model fit computed its log density: ``"kernel"`` (bernoulli, cumulative,
        binomial and poisson with nutpie: one Numba kernel compiled once per machine,
        :mod:`bayesmlm.fastpath.glmm_fit`) or ``"pytensor"`` (the PyMC model's graph,
        compiled per model); empty for the collapsed routes. The model is the same either way.
    """

    settings: SamplerSettings
    method: str
    diagnostics: Diagnostics
    seconds_build: float
    seconds_sample: float
    n_obs: int
    rows_dropped: int
    n_cells: int | None = None
    parameterization: dict = field(default_factory=dict)
    init: str = "sampler"
    init_note: str = ""
    seconds_init: float = 0.0
    route: str = ""
    centred_on: dict = field(default_factory=dict)
    density: str = ""

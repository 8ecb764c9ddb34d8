"""Priors: their description, the data-scaled defaults, and user overrides.

Defaults follow rstanarm and brms: on the scale of the data, so that changing
units does not change inferences. For a Gaussian outcome with sd s_y:

- ``(Intercept)``: normal(mean(y), 2.5 s_y), on the intercept at the
  predictors' means (as brms and rstanarm put it);
- a fixed term x: normal(0, 2.5 s_y / sd(x));
- the SD of a random intercept: half_normal(s_y); of a random slope on z:
  half_normal(s_y / sd(z));
- correlations of two or more correlated random terms: lkj(eta = 1), uniform
  over correlation matrices as in brms (a larger eta pulls weakly identified
  correlations towards 0: on hsb82, LKJ(2) moves the posterior mean of the
  intercept-cses correlation from near REML's 0.39 to 0.19);
- the residual SD: exponential(lam = 1 / s_y) (gaussian and student);
- student's degrees of freedom ``nu``: gamma(alpha = 2, beta = 0.1), brms's
  default (Juarez and Steel 2010): mean 20, 5% below 3.6, so heavy tails are
  possible and the data must show them;
- negbinomial's shape ``phi`` (var = mu + mu^2 / phi, NB2 as glmer.nb):
  inv_gamma(alpha = 0.4, beta = 0.3), brms's default since 2.21 (brms issue
  #1614): an inverse-gamma approximation of the penalised-complexity prior
  that shrinks towards the poisson limit (phi -> infinity) instead of
  brms's old gamma(0.01, 0.01), whose mass piles up near phi = 0 (extreme
  overdispersion) and lets the sampler wander;
- cumulative (ordinal) thresholds: student_t(nu = 3, mu = 0, sigma = 2.5) on
  each, as brms, kept ordered by the sampler's ordered transform. The
  thresholds take the place of the intercept (X has none), and are
  reported on the scale of the uncentred predictors.

Logit and log links use s_y = 1 (the link scale: a coefficient of 2.5 is a
large effect on log odds or log rates) and centre the intercept at the logit
of the overall proportion, or the log of the overall rate (counts over
exp(offset) where there is an offset). Nothing here imports PyMC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import SpecError
from ..schema import THRESHOLDS
from .matrices import Design

__all__ = ["Prior", "default_priors", "resolve_priors", "priors_table"]

_PARAMS = {
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "half_normal": ("sigma",),
    "half_student_t": ("nu", "sigma"),
    "exponential": ("lam",),
    "gamma": ("alpha", "beta"),
    "inv_gamma": ("alpha", "beta"),
    "lkj": ("eta",),
}
_POSITIVE_ONLY = {"half_normal", "half_student_t", "exponential", "gamma", "inv_gamma"}



@dataclass(frozen=True, init=False)
class Prior:
    """A prior distribution, by name and parameters.

    Examples
    --------
    >>> Prior("normal", mu=0, sigma=2.5)
    Prior('normal(mu=0, sigma=2.5)')
    >>> Prior.parse("half_normal(1)")
    Prior('half_normal(sigma=1)')
    """

    dist: str
    params: tuple

    def __init__(self, dist: str, **params):
        if dist not in _PARAMS:
            raise SpecError(f"Unknown prior distribution '{dist}'. Valid ones: {', '.join(_PARAMS)}.")
        names = _PARAMS[dist]
        if set(params) != set(names):
            raise SpecError(f"A {dist} prior takes the parameters {names}; got {tuple(params)}.")
        for k in names:
            try:
                v = float(params[k])
            except (TypeError, ValueError):
                raise SpecError(f"Prior {dist}: parameter {k} must be a number; got {params[k]!r}.") from None
            if not np.isfinite(v) or (k != "mu" and v <= 0):
                raise SpecError(f"Prior {dist}: parameter {k} must be {'finite' if k == 'mu' else 'positive'}; got {params[k]!r}.")
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple((k, float(params[k])) for k in names))

    @classmethod
    def parse(cls, text: str) -> "Prior":
        """Read ``"normal(0, 2.5)"`` or ``"normal(mu=0, sigma=2.5)"``."""
        m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", str(text))
        if not m:
            raise SpecError(f"Cannot read the prior {text!r}; write it as e.g. 'normal(0, 2.5)'.")
        dist, args = m.group(1), [a.strip() for a in m.group(2).split(",") if a.strip()]
        if dist not in _PARAMS:
            raise SpecError(f"Unknown prior distribution '{dist}'. Valid ones: {', '.join(_PARAMS)}.")
        kwargs = {}
        for i, a in enumerate(args):
            key, _, val = a.rpartition("=")
            key = key.strip() or (_PARAMS[dist][i] if i < len(_PARAMS[dist]) else f"arg{i}")
            try:
                kwargs[key] = float(val)
            except ValueError:
                raise SpecError(f"Prior {text!r}: '{val}' is not a number.") from None
        return cls(dist, **kwargs)

    @property
    def kwargs(self) -> dict:
        """The parameters as a dict."""
        return dict(self.params)

    def __str__(self) -> str:
        return f"{self.dist}(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params) + ")"

    def __repr__(self) -> str:
        return f"Prior('{self}')"


def _link_scale(design: Design) -> tuple[float, float]:
    """(location, scale) of the outcome on the link scale."""
    link = design.spec.family.link
    moments = None if design.has_rows else design.moments  # rows reduced to sums: bayesmlm.fastpath.readers
    if moments is not None and link == "identity":
        return moments.y_mean, moments.y_sd or 1.0
    y = design.y
    if link == "identity":
        return float(np.mean(y)), float(np.std(y, ddof=1)) or 1.0
    if design.spec.family.name == "cumulative":
        return 0.0, 1.0
    if link == "logit":
        n = design.trials if design.trials is not None else np.ones_like(y)
        p = np.clip(y.sum() / n.sum(), 0.01, 0.99)
        return float(np.log(p / (1 - p))), 1.0
    exposure = np.exp(design.offset) if design.offset is not None else np.ones_like(y)
    return float(np.log(max(y.sum() / exposure.sum(), 1e-2))), 1.0


def _sd(col: np.ndarray) -> float:
    s = float(np.std(col, ddof=1)) if len(col) > 1 else 0.0
    return s if s > 0 else 1.0


def _column_sd(design: Design, block, k: int) -> float:
    """SD of column k of X (``block`` None) or of a block's Z: from the rows, or from the
    moments of a design whose rows were reduced to sums (:class:`bayesmlm.fastpath.readers.SummaryDesign`)."""
    moments = None if design.has_rows else design.moments
    if moments is None:
        return _sd(design.X[:, k] if block is None else block.Z[:, k])
    s = moments.x_sd[k] if block is None else moments.z_sd[block.label][k]
    return s if s > 0 else 1.0


def sd_name(label: str, term: str) -> str:
    """Prior name of a random-effect SD, e.g. ``sd(country:smu)``."""
    return f"sd({label}:{term})"


def cor_name(label: str) -> str:
    """Prior name of a block's correlation matrix, e.g. ``cor(country)``."""
    return f"cor({label})"


def default_priors(design: Design) -> dict[str, Prior]:
    """The data-scaled default prior of every parameter, by name.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> sorted(default_priors(m.design))
    ['(Intercept)', 'Days', 'cor(Subject)', 'sd(Subject:(Intercept))', 'sd(Subject:Days)', 'sigma']
    """
    loc, s_y = _link_scale(design)
    priors = {}
    for j, term in enumerate(design.fixed_terms):
        if term == "(Intercept)":
            priors[term] = Prior("normal", mu=loc, sigma=_significant(2.5 * s_y))
        else:
            priors[term] = Prior("normal", mu=0.0, sigma=_significant(2.5 * s_y / _column_sd(design, None, j)))
    for b in design.blocks:
        for k, term in enumerate(b.terms):
            scale = s_y if term == "(Intercept)" else s_y / _column_sd(design, b, k)
            priors[sd_name(b.label, term)] = Prior("half_normal", sigma=_significant(scale))
        if b.correlated:
            priors[cor_name(b.label)] = Prior("lkj", eta=1.0)
    family = design.spec.family.name
    if design.spec.family.has_sigma:
        priors["sigma"] = Prior("exponential", lam=_significant(1 / s_y))
    if family == "student":
        priors["nu"] = Prior("gamma", alpha=2.0, beta=0.1)
    if family == "negbinomial":
        priors["phi"] = Prior("inv_gamma", alpha=0.4, beta=0.3)
    if family == "cumulative":
        priors[THRESHOLDS] = Prior("student_t", nu=3.0, mu=0.0, sigma=2.5)
    return priors


def _significant(scale: float) -> float:
    """A prior's scale to 4 significant digits (never to decimals, which would make 1e-7 zero).

    The intercept's location is not rounded at all: on data such as 1e6 +/- 0.001
    any rounding of it would move it by many prior SDs.
    """
    return float(f"{scale:.4g}")


def resolve_priors(design: Design, overrides: dict | None) -> dict[str, Prior]:
    """Defaults with the user's overrides applied; unknown names are errors.

    Values may be :class:`Prior` objects or strings such as ``"normal(0, 1)"``.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> str(resolve_priors(m.design, {"Days": "normal(10, 5)"})["Days"])
    'normal(mu=10, sigma=5)'
    """
    priors = default_priors(design)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise SpecError(f"priors must be a dict of parameter name to prior, e.g. {{'{next(iter(priors))}': 'normal(0, 1)'}}; "
                        f"got a {type(overrides).__name__}. Valid names for this model: {', '.join(priors)}.")
    for name, value in (overrides or {}).items():
        if name not in priors:
            raise SpecError(f"Unknown prior '{name}'. Valid names for this model: {', '.join(priors)}.")
        prior = value if isinstance(value, Prior) else Prior.parse(value)
        default = priors[name]
        if (default.dist == "lkj") != (prior.dist == "lkj"):
            raise SpecError(f"Prior '{name}' must be {'an lkj' if default.dist == 'lkj' else 'a scalar'} distribution; got {prior}.")
        if default.dist in _POSITIVE_ONLY and prior.dist not in _POSITIVE_ONLY:
            what = "a standard deviation" if name.startswith("sd(") or name == "sigma" else "a positive parameter"
            raise SpecError(f"Prior '{name}' is on {what}: use half_normal, half_student_t, exponential, gamma or "
                            f"inv_gamma; got {prior}.")
        if name == THRESHOLDS and prior.dist in _POSITIVE_ONLY:
            raise SpecError(f"Prior '{name}' is on the thresholds, which may be negative: use normal or student_t; got {prior}.")
        priors[name] = prior
    return priors


_FAMILY_CLASSES = {"nu": "degrees of freedom", "phi": "shape (negative binomial)", THRESHOLDS: "thresholds"}


def priors_table(priors: dict[str, Prior], design: Design) -> pd.DataFrame:
    """One row per parameter: its class, the prior, and whether it is a default.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> priors_table(m.prior_dict, m.design).loc["sigma", "class"]
    'residual sd'
    """
    defaults = default_priors(design)
    link = design.spec.family.link
    rows = []
    for name, prior in priors.items():
        if name in design.fixed_terms:
            cls = "fixed"
        elif name.startswith("sd("):
            cls = "group sd"
        elif name.startswith("cor("):
            cls = "correlation"
        else:
            cls = _FAMILY_CLASSES.get(name, "residual sd")
        note = "at the predictors' means" if name == "(Intercept)" else ""
        if name == "sigma" and design.spec.family.name == "student":
            note = "scale of the Student-t residuals (their SD is sigma sqrt(nu / (nu - 2)))"
        if name == THRESHOLDS:
            note = (f"each of the {len(design.categories) - 1} ordered thresholds, on the {link} latent scale; the "
                    f"categories in the order {' < '.join(design.categories)}; no intercept (the thresholds absorb it)")
        if design.spec.family.name == "cumulative" and cls in ("fixed", "group sd"):
            note = f"{link} latent scale"
        elif link != "identity" and cls in ("fixed", "group sd"):
            note = f"{link} scale" + (f", {note}" if note else "")
        rows.append({"parameter": name, "class": cls, "prior": str(prior), "source": "default" if prior == defaults[name] else "user",
                     "note": note})
    return pd.DataFrame(rows).set_index("parameter")

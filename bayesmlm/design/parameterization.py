"""Stage 2, design: centred or non-centred random effects, chosen per grouping factor from the data.

In the centred form u_j ~ N(0, T) is sampled directly; in the non-centred
form z_j ~ N(0, I) is, and u_j = L z_j. Which one samples well depends on how
much group j's data say about u_j next to what the prior says (Papaspiliopoulos,
Roberts and Skold 2007; Betancourt and Girolami 2015). With

    kappa_j = smallest eigenvalue of  T^1/2 (Z_j' W_j Z_j) T^1/2,

the ratio of the data's precision about u_j (in its least-informed
direction) to the prior's, the centred form's autocorrelation is about
1 / (1 + kappa_j) and the non-centred form's kappa_j / (1 + kappa_j): the data
pin u_j down (kappa_j >> 1) and the centred u_j barely moves with T, while the
non-centred z_j must move with L (the funnel turned inside out); the data
say little (kappa_j << 1) and the centred u_j is tied to T (the funnel).
W_j is the information per row: 1 / sigma^2 (gaussian), n_i p (1 - p) with
p the data's proportion (bernoulli, binomial: the logit's variance), and
exp(o_i) r with r the data's rate (poisson). T is diagonal with the *prior's*
median SD of each term, and sigma the prior median of the residual SD: values
the data cannot have tuned, so the rule cannot be fooled by an overfitted
estimate, and a tighter prior on an SD moves it towards non-centred.

A factor is centred when at least :data:`CENTRED_SHARE` (three quarters) of its
groups have kappa_j >= :data:`CENTRED_MIN_KAPPA` (1, where the two forms'
autocorrelations cross), and non-centred otherwise: one parameterisation per
factor, so its groups' effects share one form. In the full model a centred
factor nested in another is centred on it (:mod:`bayesmlm.design.nested_centring`);
the parent's shared terms then reach the data through its children only, and its
kappa_l counts its children, n_l / tau_child^2 against 1 / tau_parent^2
(:func:`parent_information`). Nothing here imports PyMC.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .matrices import Design
from .priors import Prior, sd_name

__all__ = ["PARAMETERIZATIONS", "CENTRED_MIN_KAPPA", "CENTRED_SHARE", "prior_median", "group_information",
           "parent_information", "choose_parameterization", "fixed_factors",
           "PRECONDITION_MAX_KAPPA", "precondition_choice"]

PARAMETERIZATIONS = ("centred", "non-centred")
CENTRED_MIN_KAPPA = 1.0
CENTRED_SHARE = 0.75


def prior_median(prior: Prior) -> float:
    """The median of a positive prior (an SD's): half_normal, half_student_t or exponential.

    Examples
    --------
    >>> round(prior_median(Prior("half_normal", sigma=1.0)), 4), round(prior_median(Prior("exponential", lam=2.0)), 4)
    (0.6745, 0.3466)
    """
    p = prior.kwargs
    if prior.dist == "half_normal":
        return float(p["sigma"] * stats.norm.ppf(0.75))
    if prior.dist == "half_student_t":
        return float(p["sigma"] * stats.t.ppf(0.75, p["nu"]))
    if prior.dist == "exponential":
        return float(np.log(2.0) / p["lam"])
    raise ValueError(f"prior_median takes the prior of an SD (half_normal, half_student_t, exponential); got {prior}.")


def _row_weights(design: Design, priors: dict[str, Prior]) -> np.ndarray:
    """Fisher information per row about the linear predictor, at prior-typical sigma or the data's mean."""
    family = design.spec.family.name
    y = design.y.astype(float)
    if family in ("gaussian", "student"):  # a Student-t row carries less, (nu + 1) / (nu + 3) of it: an upper bound
        return np.full(len(y), 1.0 / prior_median(priors["sigma"]) ** 2)
    if family == "cumulative":  # a logistic latent outcome cut near its middle: about p (1 - p) = 1/4 per row
        return np.full(len(y), 0.25)
    if family in ("poisson", "negbinomial"):  # negbinomial: mu / (1 + mu / phi), at most the poisson's mu
        exposure = np.exp(design.offset) if design.offset is not None else np.ones(len(y))
        return exposure * max(y.sum() / exposure.sum(), 1e-2)
    n = design.trials.astype(float) if design.trials is not None else np.ones(len(y))
    p = np.clip(y.sum() / n.sum(), 0.01, 0.99)
    return n * p * (1 - p)


def group_information(design: Design, priors: dict[str, Prior]) -> dict[str, np.ndarray]:
    """kappa_j of every group of every grouping factor: the data's precision about u_j over the prior's.

    For a factor with several blocks, each group's smallest kappa over its blocks.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> kappa = group_information(m.design, m.prior_dict)["Subject"]
    >>> kappa.shape, bool(kappa.min() > 1)
    ((18,), True)
    """
    w = _row_weights(design, priors)
    out = {}
    for b in design.blocks:
        kappa = np.linalg.eigvalsh(_block_information(design, priors, b, b.Z, w))[:, 0]
        out[b.group] = np.minimum(out[b.group], kappa) if b.group in out else kappa
    return out


def _block_information(design: Design, priors: dict[str, Prior], b, Z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """T^1/2 (Z_j' W_j Z_j) T^1/2 of every group of block b (J x q x q), T the prior medians' squares."""
    f = design.factors[b.group]
    Zs = Z * _prior_sds(priors, b)  # T^1/2 folded into the columns
    M = np.empty((f.n_levels, b.q, b.q))
    for a in range(b.q):
        for c in range(a, b.q):
            M[:, a, c] = M[:, c, a] = np.bincount(f.index, weights=w * Zs[:, a] * Zs[:, c], minlength=f.n_levels)
    return M


def _prior_sds(priors: dict[str, Prior], b) -> np.ndarray:
    return np.array([prior_median(priors[sd_name(b.label, t)]) for t in b.terms])


def parent_information(design: Design, priors: dict[str, Prior], parameterization: dict[str, str]) -> dict[str, np.ndarray]:
    """kappa_l of the factors that centred children are centred on (:mod:`bayesmlm.design.nested_centring`).

    Such a parent's shared terms reach the likelihood through its children's
    prior only: its "data" about them are its n_l children, each with precision
    1 / tau_child^2 (their own rows pin them down: they are centred), so

        kappa_l = smallest eigenvalue of  T^1/2 (Z_l' W_l Z_l [the terms the children lack] + n_l P' T_child^-1 P) T^1/2.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", bayesmlm.datasets.load("grouseticks"),
    ...                  family="poisson")
    >>> kappa = parent_information(m.design, m.prior_dict, {"BROOD": "centred", "LOCATION": "centred"})["LOCATION"]
    >>> kappa.shape, round(float(kappa.min()), 6), round(float(kappa.max()), 6)  # n_l: the two SDs' priors are equal
    ((63,), 1.0, 7.0)
    """
    from .nested_centring import centred_parents

    w = _row_weights(design, priors)
    by_label = {b.label: b for b in design.blocks}
    links = list(centred_parents(design, parameterization).values())
    out = {}
    for b in design.blocks:
        mine = [ln for ln in links if ln.parent == b.label]
        if not mine:
            continue
        shared = np.any([ln.shared for ln in mine], axis=0)
        M = _block_information(design, priors, b, np.where(shared, 0.0, b.Z), w)
        tau = _prior_sds(priors, b)
        for ln in mine:
            n = np.bincount(ln.levels, minlength=design.factors[b.group].n_levels).astype(float)
            child_precision = ln.P.T @ np.diag(1.0 / _prior_sds(priors, by_label[ln.child]) ** 2) @ ln.P
            M += n[:, None, None] * (tau[:, None] * child_precision * tau[None, :])
        kappa = np.linalg.eigvalsh(M)[:, 0]
        out[b.group] = np.minimum(out[b.group], kappa) if b.group in out else kappa
    return out


def choose_parameterization(design: Design, priors: dict[str, Prior], requested: str | dict = "auto", *,
                            nested: bool = False) -> dict[str, str]:
    """``"centred"`` or ``"non-centred"`` per grouping factor: the rule of this module, or the user's choice.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    requested : str or dict
        ``"auto"`` (the rule for every factor), ``"centred"`` or
        ``"non-centred"`` (every factor), or a dict from factor to one of
        those three (factors not named: ``"auto"``).
    nested : bool
        The full model's rule for a factor that a centred child is centred on
        (:mod:`bayesmlm.design.nested_centring`): its kappa from its children
        (:func:`parent_information`), not from its rows. False: every factor from its rows (the crossed route).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> choose_parameterization(m.design, m.prior_dict)
    {'Subject': 'centred'}
    >>> choose_parameterization(m.design, m.prior_dict, {"Subject": "non-centred"})
    {'Subject': 'non-centred'}
    """
    valid = ("auto", *PARAMETERIZATIONS)
    factors = list(dict.fromkeys(b.group for b in design.blocks))
    if isinstance(requested, str):
        requested = {f: requested for f in factors}
    elif not isinstance(requested, dict):
        raise ValueError(f"parameterization must be one of {', '.join(map(repr, valid))} or a dict from grouping factor "
                         f"to one of them; got {requested!r}.")
    unknown = [f for f in requested if f not in factors]
    if unknown:
        raise ValueError(f"parameterization names {unknown}, which are not grouping factors of this model. "
                         f"Its grouping factors: {', '.join(factors)}.")
    for f, v in requested.items():
        if v not in valid:
            raise ValueError(f"Unknown parameterization {v!r} for '{f}'. Valid ones: {', '.join(map(repr, valid))}.")
    if all(requested.get(f, "auto") != "auto" for f in factors):
        return {f: requested[f] for f in factors}
    kappa = group_information(design, priors)
    rule = {f: "centred" if np.mean(kappa[f] >= CENTRED_MIN_KAPPA) >= CENTRED_SHARE else "non-centred" for f in factors}
    choice = {f: rule[f] if requested.get(f, "auto") == "auto" else requested[f] for f in factors}
    if not nested:
        return choice
    for _ in factors:  # a parent's choice may make it a child's parent in turn (three levels): until it settles
        kappa = parent_information(design, priors, choice)
        new = {**choice, **{f: "centred" if np.mean(k >= CENTRED_MIN_KAPPA) >= CENTRED_SHARE else "non-centred"
                            for f, k in kappa.items() if requested.get(f, "auto") == "auto"}}
        if new == choice:
            break
        choice = new
    return choice


def fixed_factors(requested, factors) -> set[str]:
    """The factors whose parameterisation ``MLM.fit(parameterization=)`` fixed (not ``"auto"``).

    Examples
    --------
    >>> sorted(fixed_factors({"a": "centred", "b": "auto"}, ["a", "b"])), sorted(fixed_factors("auto", ["a", "b"]))
    (['a'], [])
    """
    if isinstance(requested, str):
        return set(factors) if requested != "auto" else set()
    return {f for f, v in (requested or {}).items() if v != "auto"} if isinstance(requested, dict) else set()


PRECONDITION_MAX_KAPPA = 50.0
"""The rule's threshold on the median kappa of a factor's groups (see :func:`precondition_choice`)."""


def precondition_choice(design, priors, requested, chosen: dict[str, str], precondition: str = "auto"):
    """Which factors the GLMM kernel samples through the Laplace map (:mod:`bayesmlm.fastpath.preconditioned`), built centred.

    A factor is mapped (and so built centred: the map turns the centred form
    into the partially centred one that suits each group) in a bernoulli,
    binomial or poisson model unless the user fixed its parameterisation
    (``requested`` names it) or, with ``precondition="auto"``, the median kappa
    of its groups (:func:`bayesmlm.design.parameterization.group_information`,
    the data's precision about u_j over the prior's, at the prior's median
    SDs) is above :data:`PRECONDITION_MAX_KAPPA`: there the data pin every
    v_j, the centred form is already uncoupled from the SDs, and the map
    would cost its per-gradient work for nothing. The prior's SDs are much
    wider than fitted ones, so kappa at the posterior's SDs is far smaller
    (about 0.7 for the slopes of ``bench_big_binary --quick``, 3.5 at the prior's).

    Parameters
    ----------
    design, priors :
        The model's.
    requested : str or dict
        ``MLM.fit(parameterization=)`` as the user gave it.
    chosen : dict of str to str
        The parameterisation :func:`~bayesmlm.design.parameterization.choose_parameterization` chose.
    precondition : {"auto", "laplace", "none"}

    Returns
    -------
    (dict of str to str, str or None)
        The parameterisation to build, and why nothing is mapped (None: the centred blocks are).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("incidence ~ period + (1 | herd)", bayesmlm.datasets.load("cbpp"), trials="size",
    ...                  family="binomial")
    >>> precondition_choice(m.design, m.prior_dict, "auto", {"herd": "non-centred"})
    ({'herd': 'centred'}, None)
    >>> precondition_choice(m.design, m.prior_dict, "non-centred", {"herd": "non-centred"})
    ({'herd': 'non-centred'}, 'the parameterisation of every factor was fixed by the call')
    """
    family = design.spec.family.name
    if precondition == "none":
        return chosen, "not asked for"
    if family not in ("bernoulli", "binomial", "poisson"):
        return chosen, f"family '{family}' (the map is for bernoulli, binomial and poisson)"
    fixed = fixed_factors(requested, chosen)
    free = [f for f in chosen if f not in fixed]
    if not free:
        return chosen, "the parameterisation of every factor was fixed by the call"
    if precondition == "auto":
        kappa = group_information(design, priors)
        free = [f for f in free if np.median(kappa[f]) <= PRECONDITION_MAX_KAPPA]
        if not free:
            return chosen, f"every factor's median kappa is above {PRECONDITION_MAX_KAPPA:g} (data-dominated)"
    return {f: "centred" if f in free else v for f, v in chosen.items()}, None

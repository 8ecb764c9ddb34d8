"""Where NUTS starts: the frequentist optimum mapped onto the full model's free variables.

lme4's optimum (:func:`bayesmlm.frequentist_engine.design_fit.fit_design`:
REML for a gaussian model, the Laplace approximation otherwise) gives the
fixed effects, the SDs and correlations of every random block, sigma and the
conditional modes u_j. :func:`frequentist_start` writes them as the values of
the PyMC variables that :func:`bayesmlm.build.full.build_full_model` samples:

=================== ===================================================================
variable            value at the optimum
=================== ===================================================================
``b_centred``       the fixed effects with the intercept at the predictors' means
``chol_<b>``        the packed lower Cholesky factor L of diag(sd) R diag(sd)
``sd_<b>``          the SDs of an uncorrelated block
``z_<b>``           non-centred: z_j = L^-1 u_j
``v_<b>``           centred: v_j = M_j + A^-1 u_j, A^-1 from :func:`~bayesmlm.build.full.centred_basis`, M_j = H_j b_centred from :func:`~bayesmlm.design.block_means.block_means`
``sigma``           the residual SD (gaussian)
=================== ===================================================================

Each chain starts at the optimum plus its own noise, drawn in the
unconstrained space where the sampler moves: one standard error for the fixed
effects and one conditional SD for u (a draw from the Laplace approximation,
so chains start apart and R-hat still compares independent starts), 0.1 on
the log scale of SDs and sigma. :func:`initial_values` turns a start into the
``initvals`` of :func:`pymc.sample`, whose noise is drawn by the seeded
initial-point function of each chain (nutpie's and PyMC's alike).

A fit whose optimum is singular (an SD at zero), did not converge, or has a
non-finite value is not a start: :func:`frequentist_start` then says why,
and the sampler starts where it would have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from ..build.full import centred_basis
from ..design.block_means import block_means
from ..design.matrices import Design
from ..design.nested_centring import centred_parents
from ..frequentist_engine.result import FrequentistFit
from ..schema import SIGMA, safe_name, sd_var

__all__ = ["INITS", "StartPoint", "frequentist_start", "initial_values"]

INITS = ("sampler", "frequentist")  # MLM.fit(init=): the sampler's own start (default), or the frequentist optimum
LOG_JITTER = 0.1  # noise SD on the log scale of SDs, sigma and the Cholesky diagonal


@dataclass(frozen=True)
class StartPoint:
    """Values of the full model's free variables at the frequentist optimum.

    Attributes
    ----------
    values : dict of str to ndarray
        On the constrained scale (SDs positive, ``chol_<b>`` the packed factor), by variable name.
    scales : dict of str to ndarray
        The SD of each value's starting noise, in the unconstrained space.
    method : str
        The frequentist fit's method (``"REML"``, ``"Laplace"``).
    """

    values: dict
    scales: dict
    method: str

    def lookup(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(value, scale) of a free variable, also of one element ``name[i]`` of a vector that PyMC split into scalars.

        Examples
        --------
        >>> s = StartPoint({"b": np.array([1.0, 2.0])}, {"b": np.array([0.1, 0.2])}, "REML")
        >>> [float(x) for x in s.lookup("b[1]")]
        [2.0, 0.2]
        """
        if name in self.values:
            return self.values[name], self.scales[name]
        match = re.fullmatch(r"(.+)\[(\d+)\]", name)
        if match and match.group(1) in self.values:
            i = int(match.group(2))
            return self.values[match.group(1)][i], self.scales[match.group(1)][i]
        raise KeyError(f"The frequentist start has no value for '{name}'; it has {', '.join(sorted(self.values))}.")


def _block_covariance(ff: FrequentistFit, factor: str, terms: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """SDs and correlation matrix of one block's terms from lme4's VarCorr table."""
    vc = ff.varcorr
    names = vc["grp"].astype(str)
    rows = vc[(names == factor) | names.str.fullmatch(re.escape(factor) + r"\.\d+")]
    sd = np.array([float(rows[(rows["var1"] == t) & rows["var2"].isna()]["sdcor"].iloc[0]) for t in terms])
    R = np.eye(len(terms))
    for i, a in enumerate(terms):
        for j, b in enumerate(terms[:i]):
            pair = rows[((rows["var1"] == a) & (rows["var2"] == b)) | ((rows["var1"] == b) & (rows["var2"] == a))]
            if len(pair):
                R[i, j] = R[j, i] = float(pair["sdcor"].iloc[0])
    return sd, R


def frequentist_start(design: Design, ff: FrequentistFit, parameterization: dict[str, str]) -> tuple[StartPoint | None, str]:
    """The full model's free variables at the frequentist optimum, or None and the reason it cannot start NUTS.

    Parameters
    ----------
    design : Design
    ff : FrequentistFit
        :func:`~bayesmlm.frequentist_engine.design_fit.fit_design` of the same design.
    parameterization : dict of str to str
        ``"centred"`` or ``"non-centred"`` per grouping factor, as the model was built.

    Returns
    -------
    (StartPoint or None, str)
        The reason is empty when there is a start.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> start, why = frequentist_start(m.design, m.fit_frequentist(), {"Subject": "centred"})
    >>> sorted(start.values), why
    (['b_centred', 'chol_Subject', 'sigma', 'v_Subject'], '')
    """
    if design.spec.family.name == "cumulative":  # the sampled thresholds are centred on X's means (build.full)
        return None, "the start does not map a cumulative model's thresholds onto its centred ones yet"
    if not ff.converged:
        return None, f"the {ff.method} fit did not converge"
    if ff.singular:
        return None, f"the {ff.method} fit is singular (an SD or correlation at its boundary)"
    values, scales = {}, {}
    fixed = ff.fixed.set_index("term")
    beta = fixed.loc[list(design.fixed_terms), "estimate"].to_numpy(float)
    vcov = ff.vcov.loc[list(design.fixed_terms), list(design.fixed_terms)].to_numpy(float)
    if beta.size:
        C = np.eye(beta.size)  # b_centred = C beta: the intercept moved to the predictors' means
        if design.has_intercept:
            i0 = design.fixed_terms.index("(Intercept)")
            C[i0] += np.where(np.arange(beta.size) == i0, 0.0, design.x_centre)
        values["b_centred"], scales["b_centred"] = C @ beta, np.sqrt(np.diag(C @ vcov @ C.T))
    means = block_means(design, parameterization)
    links = centred_parents(design, parameterization)
    beta_c = values.get("b_centred", np.zeros(0))
    reads = {}  # what each block's likelihood part reads at the optimum (a child centred on its parent adds it)
    for b in sorted(design.blocks, key=lambda b: design.factors[b.group].n_levels):  # parents before children
        name = safe_name(b.label)
        sd, R = _block_covariance(ff, b.group, b.terms)
        if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
            return None, f"an SD of block '{b.label}' is zero or not finite"
        cov = sd[:, None] * R * sd[None, :]
        try:
            L = np.linalg.cholesky(cov) if b.correlated else np.diag(sd)
        except np.linalg.LinAlgError:
            return None, f"the covariance of block '{b.label}' is not positive definite"
        table = ff.ranef[b.group]
        levels = list(design.factors[b.group].levels)
        u = np.column_stack([table.xs(t, level="term").loc[levels, "condval"].to_numpy(float) for t in b.terms])
        u_sd = np.column_stack([table.xs(t, level="term").loc[levels, "condsd"].to_numpy(float) for t in b.terms])
        if not (np.all(np.isfinite(u)) and np.all(np.isfinite(u_sd))):
            return None, f"the conditional modes of '{b.group}' are not finite"
        if b.correlated:
            tril = np.tril_indices(b.q)
            values[f"chol_{name}"] = L[tril]
            scales[f"chol_{name}"] = np.where(tril[0] == tril[1], LOG_JITTER, LOG_JITTER * np.diag(L)[tril[0]])
        else:
            values[sd_var(b.label)], scales[sd_var(b.label)] = sd, np.full(b.q, LOG_JITTER)
        if parameterization.get(b.group, "non-centred") == "centred":
            link = links.get(b.label)
            total = u if link is None else u + reads[link.parent][link.levels] @ link.P.T
            values[f"v_{name}"] = means[b.label].H @ beta_c + total @ centred_basis(b).T
            scales[f"v_{name}"] = u_sd
            reads[b.label] = values[f"v_{name}"] @ np.linalg.inv(centred_basis(b)).T
        else:
            values[f"z_{name}"] = np.linalg.solve(L, u.T).T
            scales[f"z_{name}"] = u_sd / sd
            reads[b.label] = u
    if design.spec.family.name == "gaussian":
        if not (ff.sigma and np.isfinite(ff.sigma) and ff.sigma > 0):
            return None, "the residual SD is zero or not finite"
        values[SIGMA], scales[SIGMA] = np.asarray(float(ff.sigma)), np.asarray(LOG_JITTER)
    if design.spec.family.name == "negbinomial":  # glmer.nb's shape
        if not (ff.phi and np.isfinite(ff.phi)):
            return None, "the negative binomial shape phi is not finite"
        values["phi"], scales["phi"] = np.asarray(float(ff.phi)), np.asarray(LOG_JITTER)
    return StartPoint(values, scales, ff.method), ""


def initial_values(model, start: StartPoint, *, jitter: bool = True) -> dict:
    """``initvals`` for :func:`pymc.sample`: each free variable at the start, with each chain's own noise.

    The noise is a seeded random draw inside the initial-point function, so
    every chain (and every retry) starts at its own point; ``jitter=False``
    gives the optimum itself (numbers, no noise).

    Parameters
    ----------
    model : pymc.Model
        The full model the start was made for.
    start : StartPoint
    jitter : bool

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> pmodel = m.build()
    >>> start, _ = frequentist_start(m.design, m.fit_frequentist(), {"Subject": "centred"})
    >>> round(float(initial_values(pmodel, start, jitter=False)["sigma"]), 2)
    25.59
    """
    out = {}
    for rv in model.free_RVs:
        value, scale = start.lookup(rv.name)
        value = np.asarray(value, dtype=float)
        if not jitter:
            out[rv.name] = value
            continue
        transform = model.rvs_to_transforms.get(rv)
        x = pt.constant(value)
        free = transform.forward(x, *rv.owner.inputs) if transform is not None else x
        noise = pt.random.normal(0.0, 1.0, size=free.shape, rng=pt.random.shared_rng(seed=None))
        free = free + pt.constant(np.asarray(scale, dtype=float)) * noise
        out[rv.name] = transform.backward(free, *rv.owner.inputs) if transform is not None else free
    return out

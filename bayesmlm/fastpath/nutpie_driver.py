"""Stage 4, sample (fast path): compile a collapsed model once, sample it with nutpie.

The log density of the collapsed model (:mod:`bayesmlm.fastpath.model`:
priors, transforms, LKJ Cholesky factor, collapsed likelihood) and its
gradient, as a function of the unconstrained vector, are one generated Numba
kernel (:func:`bayesmlm.fastpath.kernels.density_kernels`), compiled as a C callback
with Numba's disk cache: PyTensor compiles nothing. nutpie's compiled-model
interface calls that callback from its own threads, without the GIL, so chains
run in parallel; a second callback writes ``fixef``, ``sd_*``, ``cor_*`` and
``sigma`` for each draw.

Why not PyTensor's graph: with empty caches (a fresh machine, CI, a new venv)
Numba compiling PyTensor's graph of the same density took about 55 s on this
2-core machine, and calling it through ``nutpie.compiled_pyfunc.from_pyfunc``
holds the GIL, so two chains took twice the time of one
(``benchmarks/compile_collapsed.md``). The kernel is checked against the PyMC
model's own log density (``benchmarks/check_density.py``).

The kernel takes the data as arguments, so a second model of the same
structure (:class:`~bayesmlm.fastpath.model.CollapsedStructure`), with the
same data or new data of any size, reuses it from an in-process cache:
nothing is compiled again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pymc as pm
import xarray as xr

from ..design.priors import Prior, cor_name, sd_name
from ..sample.draws import nutpie_posterior
from ..sample.nuts import SamplerSettings
from ..schema import FIXED, FIXED_DIM, SIGMA, safe_name, u_var, variable_dims
from .kernels import DensityPlan, density_kernels, pack_data
from .model import CollapsedStructure, build_collapsed_model, data_layout
from .nested_model import NestedStructure, tree_loglik

__all__ = ["CompiledCollapsed", "compile_collapsed", "sample_collapsed", "clear_cache", "density_plan"]

_POSITIVE = ("half_normal", "half_student_t", "exponential")


@dataclass(frozen=True, eq=False)
class CompiledCollapsed:
    """A collapsed model compiled for one structure; data are passed at each call.

    Attributes
    ----------
    structure : CollapsedStructure
    model : pm.Model
        The PyMC model whose density the kernel computes (its ``pm.Data``
        hold the data of the latest call).
    n_dim : int
        Length of the unconstrained parameter vector.
    value_names : tuple of str
        The model's value variables, in the vector's order.
    output_names : tuple of str
        ``fixef``, ``sd_*``, ``cor_*``, ``sigma``: what each draw is expanded to.
    output_dims : dict of str to tuple
    seconds : float
        Wall time it took to compile (or load from Numba's disk cache).
    """

    structure: CollapsedStructure
    model: pm.Model
    n_dim: int
    value_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_dims: dict
    seconds: float
    _plan: DensityPlan
    _kernels: object


_CACHE: dict[CollapsedStructure, CompiledCollapsed] = {}


def clear_cache() -> None:
    """Forget every compiled collapsed model of this process (the next fit compiles again).

    Examples
    --------
    >>> clear_cache()
    """
    _CACHE.clear()


def density_plan(structure: CollapsedStructure, priors: dict[str, Prior]) -> DensityPlan:
    """The plan of the density kernel of a structure: prior families and where :func:`collapsed_data` puts each number.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.model import collapsed_structure
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> density_plan(collapsed_structure(m.design, m.prior_dict), m.prior_dict).n_dim
    6
    """
    slots, rows = data_layout(structure, priors)

    def prior(name):
        return priors[name].dist, tuple(slots[(name, param)][0] for param, _ in priors[name].params)

    blocks = []
    for label, terms, correlated in structure.blocks:
        eta = slots[(cor_name(label), "eta")][0] if correlated else -1
        blocks.append((len(terms), bool(correlated), tuple(prior(sd_name(label, t)) for t in terms), eta))
    p, q = len(structure.fixed_terms), structure.q
    expected_rows = {key: r for r, key in enumerate([("ztz", a, b) for a in range(q) for b in range(a, q)]
                                                     + [("zty", a) for a in range(q)])}
    expected_rows.update({("xtz", a): q * (q + 3) // 2 + a * p for a in range(q)})
    if rows != expected_rows:
        raise RuntimeError("The collapsed model's statistics are not in the order the density kernel reads; "
                           "report this as a bug.")
    names = ("x_centre", "x_shift", "y_shift", "n_obs", "xtx_total", "xty_total", "yty_total", "log_w_total")
    intercept = structure.fixed_terms.index("(Intercept)") if structure.has_intercept else -1
    return DensityPlan(tuple(prior(t) for t in structure.fixed_terms), intercept, tuple(blocks), prior("sigma"),
                       tuple(slots[n][0] for n in names), sum(length for _, length in slots.values()))


def _value_names(structure: CollapsedStructure, priors: dict[str, Prior]) -> list[str]:
    """The PyMC model's value variables, in the order the density kernel reads its vector."""
    def family(base, keys, log):
        if len({priors[k].dist for k in keys}) == 1:
            return [base + ("_log__" if log(priors[keys[0]].dist) else "")]
        return [f"{base}[{i}]" + ("_log__" if log(priors[k].dist) else "") for i, k in enumerate(keys)]

    names = family("b_centred", list(structure.fixed_terms), lambda d: d in _POSITIVE)
    for label, terms, correlated in structure.blocks:
        if correlated:
            names.append(f"chol_{safe_name(label)}_cholesky-cov-packed__")
        else:
            names += family(f"sd_{safe_name(label)}", [sd_name(label, t) for t in terms], lambda d: d in _POSITIVE)
    return names + family("sigma", ["sigma"], lambda d: d in _POSITIVE)


def compile_collapsed(structure: CollapsedStructure, priors: dict[str, Prior], data: dict[str, np.ndarray]):
    """The compiled collapsed model of a structure: from this process's cache, or compiled now.

    Parameters
    ----------
    structure : CollapsedStructure
        Or a :class:`~bayesmlm.fastpath.nested_model.NestedStructure` (nested factors).
    priors : dict of str to Prior
    data : dict
        :func:`~bayesmlm.fastpath.model.collapsed_data` (any data of this
        structure: only used to build the graph), or :func:`~bayesmlm.fastpath.nested_model.nested_data`.

    Returns
    -------
    compiled : CompiledCollapsed
    reused : bool
        Whether it came from the cache.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.fastpath.stats import group_stats
    >>> from bayesmlm.fastpath.model import collapsed_structure, collapsed_data
    >>> m = bayesmlm.MLM("Reaction ~ Days + (Days | Subject)", bayesmlm.datasets.load("sleepstudy"))
    >>> s = collapsed_structure(m.design, m.prior_dict)
    >>> c, reused = compile_collapsed(s, m.prior_dict, collapsed_data(s, group_stats(m.design), m.prior_dict, [0, 4.5]))
    >>> c.output_names
    ('fixef', 'sd_Subject', 'cor_Subject', 'sigma')
    """
    if structure in _CACHE:
        return _CACHE[structure], True
    start = time.perf_counter()
    tree = structure.tree if isinstance(structure, NestedStructure) else None
    model = build_collapsed_model(structure, priors, data, loglik=tree_loglik(structure) if tree else None)
    value_names = tuple(v.name for v in model.value_vars)
    if list(value_names) != _value_names(structure, priors):
        raise RuntimeError(f"The collapsed PyMC model's variables {value_names} are not those the density kernel reads "
                           f"({_value_names(structure, priors)}); report this as a bug.")
    plan = density_plan(structure, priors)
    kernels = density_kernels(plan, tree)
    dims = {FIXED: (FIXED_DIM,)}
    for label, _, correlated in structure.blocks:
        dims |= {k: v for k, v in variable_dims(label, label, correlated).items() if k != u_var(label)}
    dims[SIGMA] = ()
    names = list(dims)
    compiled = CompiledCollapsed(structure, model, plan.n_dim, value_names, tuple(names), dims,
                                 time.perf_counter() - start, plan, kernels)
    _CACHE[structure] = compiled
    return compiled, False


def _support_point(prior: tuple, const: np.ndarray) -> float:
    """PyMC's support point of a prior (its mean, or location, or scale for the half distributions)."""
    dist, offsets = prior
    if dist == "exponential":
        return 1.0 / const[offsets[0]]
    return const[offsets[{"normal": 0, "student_t": 1, "half_normal": 0, "half_student_t": 1}[dist]]]


def _initial_point(plan: DensityPlan, const: np.ndarray, seed) -> np.ndarray:
    """A starting point as PyMC draws one: each prior's support point, on the sampler's scale, jittered by U(-1, 1).

    Examples
    --------
    >>> plan = DensityPlan((("normal", (0, 1)),), 0, ((1, False, (("half_normal", (2,)),), -1),),
    ...                    ("exponential", (3,)), (4, 5, 6, 7, 8, 9, 10, 11), 12)
    >>> _initial_point(plan, np.array([5.0, 1.0, 2.0, 0.5] + [0.0] * 8), 1).shape
    (3,)
    """
    def scaled(prior):
        v = _support_point(prior, const)
        return np.log(v) if prior[0] in _POSITIVE else v

    x = [scaled(f) for f in plan.fixed]
    for n, correlated, sds, _ in plan.blocks:
        x += [0.0] * (n * (n + 1) // 2) if correlated else [scaled(s) for s in sds]  # correlated: L = I
    x.append(scaled(plan.sigma))
    return np.asarray(x, dtype=np.float64) + np.random.default_rng(seed).uniform(-1.0, 1.0, plan.n_dim)


def _nutpie_model(compiled: CompiledCollapsed, buffer: np.ndarray, const: np.ndarray):
    """nutpie's compiled model around the two C callbacks; ``buffer`` must outlive the sampler (the model holds it)."""
    from nutpie.compile_pymc import CompiledPyMCModel

    plan = compiled._plan
    coords = compiled.structure.coords()
    shapes = [(len(coords[d[0]]),) if d else () for d in (compiled.output_dims[n] for n in compiled.output_names)]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    slices = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(sizes))]
    return CompiledPyMCModel(
        dims={n: compiled.output_dims[n] for n in compiled.output_names}, _coords=coords,
        _n_dim=plan.n_dim, _shapes=dict(zip(compiled.output_names, shapes)),
        compiled_logp_func=compiled._kernels.logp_cfunc, compiled_expand_func=compiled._kernels.expand_cfunc,
        initial_point_func=lambda seed: _initial_point(plan, const, seed), shared_data={}, shared_var_keys={},
        user_data=buffer, n_expanded=plan.n_expanded, shape_info=(list(compiled.output_names), slices, shapes),
        logp_func=None, expand_func=None)


def sample_collapsed(compiled: CompiledCollapsed, data: dict[str, np.ndarray], settings: SamplerSettings):
    """Draw from a compiled collapsed model with nutpie; return the DataTree and the seconds it took.

    The DataTree has ``posterior`` (``fixef``, ``sd_*``, ``cor_*``, ``sigma``
    with their coordinates) and nutpie's ``sample_stats``.

    Examples
    --------
    >>> tree, seconds = sample_collapsed(c, data, SamplerSettings(draws=200, tune=200, seed=1))  # doctest: +SKIP
    """
    import nutpie

    s = settings.resolved()
    start = time.perf_counter()
    const = np.ascontiguousarray(data["constants"], dtype=float)
    stats = np.ascontiguousarray(data["group_stats"], dtype=float)
    with compiled.model:
        pm.set_data({"constants": const, "group_stats": stats})
    model = _nutpie_model(compiled, pack_data(const, stats), const)
    trace = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          seed=s.seed, progress_bar=s.progressbar, save_warmup=False, target_accept=s.target_accept)
    coords = compiled.structure.coords()
    posterior = nutpie_posterior(trace, {n: compiled.output_dims[n] for n in compiled.output_names}, coords)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})
    return tree, time.perf_counter() - start

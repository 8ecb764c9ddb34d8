"""Stage 4, sample (fast path): compile a collapsed model once, sample it with nutpie.

Why not ``nutpie.compile_pymc_model``: it wraps PyTensor's Numba function in
a ``numba.cfunc`` that Numba cannot cache, and compiling that wrapper took
about 30 s for the collapsed model of m2 on this 2-core machine (see
``benchmarks/compile_collapsed.py``). Here PyTensor compiles the log-density
and its gradient with its Numba backend, whose functions *are* cached on disk,
and nutpie calls it through :func:`nutpie.compiled_pyfunc.from_pyfunc`. The
compiled function takes the data as arguments, so a second model of the same
structure (:class:`~bayesmlm.fastpath.model.CollapsedStructure`), with the
same data or new data of any size, reuses it from an in-process cache:
nothing is compiled again.

The sampler draws the unconstrained parameter vector; ``fixef``, ``sd_*``,
``cor_*`` and ``sigma`` are computed from it afterwards, one compiled call
per draw.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pymc.initial_point import make_initial_point_fn
from pytensor.graph import clone_replace

from ..design.priors import Prior
from ..sample.nuts import SamplerSettings
from ..schema import FIXED, FIXED_DIM, SIGMA, u_var, variable_dims
from .model import CollapsedStructure, build_collapsed_model

__all__ = ["CompiledCollapsed", "compile_collapsed", "sample_collapsed", "clear_cache"]


@dataclass(frozen=True, eq=False)
class CompiledCollapsed:
    """A collapsed model compiled for one structure; data are passed at each call.

    Attributes
    ----------
    structure : CollapsedStructure
    model : pm.Model
        The PyMC model it was compiled from (its ``pm.Data`` hold the data of
        the latest call, for the initial points).
    n_dim : int
        Length of the unconstrained parameter vector.
    value_names : tuple of str
        The model's value variables, in the vector's order.
    output_names : tuple of str
        ``fixef``, ``sd_*``, ``cor_*``, ``sigma``: what each draw is expanded to.
    output_dims : dict of str to tuple
    seconds : float
        Wall time it took to compile.
    """

    structure: CollapsedStructure
    model: pm.Model
    n_dim: int
    value_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_dims: dict
    seconds: float
    _logp: object
    _outputs: object
    _initial_point: object
    _lock: object


_CACHE: dict[CollapsedStructure, CompiledCollapsed] = {}


def clear_cache() -> None:
    """Forget every compiled collapsed model of this process (the next fit compiles again).

    Examples
    --------
    >>> clear_cache()
    """
    _CACHE.clear()


def _jit(fn):
    """The Numba function behind a PyTensor function compiled in NUMBA mode.

    Calling it directly (rather than ``fn(...)``) is thread-safe, as nutpie's
    chains need, and saves the PyTensor call overhead on every gradient.
    """
    jit_fn = getattr(getattr(fn, "vm", None), "jit_fn", None)
    if jit_fn is None:
        raise RuntimeError("PyTensor's NUMBA function no longer exposes vm.jit_fn; the collapsed sampler needs it. "
                           "Use sampler='pymc' for method='collapsed' until this is updated.")
    return jit_fn


def compile_collapsed(structure: CollapsedStructure, priors: dict[str, Prior], data: dict[str, np.ndarray]):
    """The compiled collapsed model of a structure: from this process's cache, or compiled now.

    Parameters
    ----------
    structure : CollapsedStructure
    priors : dict of str to Prior
    data : dict
        :func:`~bayesmlm.fastpath.model.collapsed_data` (any data of this
        structure: only used to build the graph).

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
    model = build_collapsed_model(structure, priors, data)
    const_in = pt.dvector("constants")
    stats_in = pt.dmatrix("group_stats")
    replace = {model["constants"]: const_in, model["group_stats"]: stats_in}
    coords = structure.coords()
    replace.update({model.dim_lengths[d]: pt.constant(len(v), dtype=model.dim_lengths[d].dtype) for d, v in coords.items()})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        with pytensor.config.change_flags(mode="NUMBA"):
            init = make_initial_point_fn(model=model, jitter_rvs=set(model.free_RVs), return_transformed=True)
        value_vars = model.value_vars
        point = init(0)
    shapes = [tuple(point[v.name].shape) for v in value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    x = pt.dvector("x", shape=(int(offsets[-1]),))
    replace.update({v: x[offsets[i]:offsets[i + 1]].reshape(shapes[i]) for i, v in enumerate(value_vars)})
    logp = model.logp()
    grad = pt.concatenate([g.ravel() for g in pt.grad(logp, value_vars)])
    dims = {FIXED: (FIXED_DIM,)}
    for label, _, correlated in structure.blocks:
        dims |= {k: v for k, v in variable_dims(label, label, correlated).items() if k != u_var(label)}
    dims[SIGMA] = ()
    names = list(dims)
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    logp_graph = clone_replace([logp, grad], replace)
    out_graph = clone_replace(outputs, replace)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        logp_fn = pytensor.function([x, const_in, stats_in], logp_graph, mode="NUMBA", on_unused_input="ignore")
        out_fn = pytensor.function([x, const_in], out_graph, mode="NUMBA", on_unused_input="ignore")
    logp_jit, out_jit = _jit(logp_fn), _jit(out_fn)
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    check = logp_jit(x0, data["constants"], data["group_stats"])[0]
    if not np.isclose(float(check), float(logp_fn(x0, data["constants"], data["group_stats"])[0]), rtol=1e-10):
        raise RuntimeError("The Numba log-density disagrees with PyTensor's; report this as a bug.")
    out_jit(x0, data["constants"])
    compiled = CompiledCollapsed(structure, model, int(offsets[-1]), tuple(v.name for v in value_vars), tuple(names), dims,
                                 time.perf_counter() - start, logp_jit, out_jit, init, threading.Lock())
    _CACHE[structure] = compiled
    return compiled, False


def sample_collapsed(compiled: CompiledCollapsed, data: dict[str, np.ndarray], settings: SamplerSettings):
    """Draw from a compiled collapsed model with nutpie; return the DataTree and the seconds it took.

    The DataTree has ``posterior`` (``fixef``, ``sd_*``, ``cor_*``, ``sigma``
    with their coordinates) and nutpie's ``sample_stats``.

    Examples
    --------
    >>> tree, seconds = sample_collapsed(c, data, SamplerSettings(draws=200, tune=200, seed=1))  # doctest: +SKIP
    """
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    s = settings.resolved()
    start = time.perf_counter()
    const = np.ascontiguousarray(data["constants"], dtype=float)
    stats = np.ascontiguousarray(data["group_stats"], dtype=float)
    pm_data = {"constants": const, "group_stats": stats}
    with compiled.model:
        pm.set_data(pm_data)
    logp_jit, value_names = compiled._logp, compiled.value_names

    def make_logp_fn():
        def logp(x, **_):
            value, grad = logp_jit(x, const, stats)
            return float(value), grad
        return logp

    def make_expand_fn(*_):
        def expand(x, **_):
            return {"x": np.array(x, dtype=np.float64)}
        return expand

    def initial_point(seed):
        with compiled._lock:  # a PyTensor function is not thread-safe; nutpie starts chains in threads
            point = compiled._initial_point(seed)
        return np.concatenate([np.ravel(point[n]) for n in value_names])

    model = from_pyfunc(compiled.n_dim, make_logp_fn, make_expand_fn, [np.dtype("float64")], [(compiled.n_dim,)], ["x"],
                        make_initial_point_fn=initial_point)
    trace = nutpie.sample(model, draws=s.draws, tune=s.tune, chains=s.chains, cores=min(s.chains, os.cpu_count() or 1),
                          seed=s.seed, progress_bar=s.progressbar, save_warmup=False, target_accept=s.target_accept)
    posterior = _expand(compiled, trace["posterior"]["x"].values, const)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": trace["sample_stats"].to_dataset()})
    return tree, time.perf_counter() - start


def _expand(compiled: CompiledCollapsed, x: np.ndarray, const: np.ndarray) -> xr.Dataset:
    """fixef, sd_*, cor_*, sigma for every draw of the unconstrained vector x (chain, draw, n_dim)."""
    chains, draws, _ = x.shape
    flat = x.reshape(chains * draws, -1)
    values = [compiled._outputs(flat[i], const) for i in range(len(flat))]
    coords = compiled.structure.coords()
    out = {}
    for k, name in enumerate(compiled.output_names):
        arr = np.stack([np.asarray(v[k]) for v in values]).reshape(chains, draws, *np.shape(values[0][k]))
        dims = ("chain", "draw", *compiled.output_dims[name])
        out[name] = xr.DataArray(arr, dims=dims, coords={d: coords[d] for d in compiled.output_dims[name]})
    return xr.Dataset(out, coords={"chain": np.arange(chains), "draw": np.arange(draws)})

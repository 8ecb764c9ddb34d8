"""Rank-normalised split R-hat and bulk and tail ESS, for many parameters at once.

The same numbers as ArviZ's ``rhat`` (method "rank") and ``ess`` (methods
"bulk" and "tail"), following Vehtari, Gelman, Simpson, Carpenter and
Buerkner (2021), but computed for every parameter in one pass of array
operations: ArviZ loops over parameters in Python, which takes minutes for the
20,000 random effects of 10,000 groups. Geyer's initial positive and monotone
sequences advance all parameters together, one lag pair per step.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr
from scipy.fft import next_fast_len
from scipy.special import ndtri

__all__ = ["rhat_rank", "ess_bulk", "ess_tail", "tail_prob", "diagnostics_of", "dataset_diagnostics", "rhat_and_ess"]

_CELLS = 4_000_000  # parameters x draws handled at once


def tail_prob() -> float:
    """The interval probability whose quantiles ArviZ's tail ESS uses (its ``ci_prob`` setting).

    Examples
    --------
    >>> 0 < tail_prob() < 1
    True
    """
    from arviz_stats.validate import validate_ci_prob

    return float(validate_ci_prob(None))


def _split(x: np.ndarray) -> np.ndarray:
    """(P, chains, draws) -> (P, 2 chains, draws // 2): first halves, then second halves."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half:]], axis=1)


def _scores(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores of the ranks along each row (ties given their average rank, Blom's offset), and the sorted rows.

    Without ties every row's scores are the same N numbers in its own order, so
    they are computed once and placed by the sort; only tied entries (few:
    folded draws have one pair) take their own ``ndtri``. The numbers equal
    ``ndtri((rankdata(row) - 3/8) / (N + 1/4))`` exactly.
    """
    P, N = flat.shape
    order = np.argsort(flat, axis=1)
    s = np.take_along_axis(flat, order, axis=1)
    denominator = N - 2 * 3 / 8 + 1
    table = ndtri((np.arange(1.0, N + 1) - 3 / 8) / denominator)
    by_position = np.broadcast_to(table, (P, N))
    rows, cols = np.nonzero(s[:, 1:] == s[:, :-1])  # links: sorted element cols + 1 ties with cols
    if rows.size:  # average the ranks of each run of links only
        by_position = by_position.copy()
        new = np.ones(rows.size, dtype=bool)
        new[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1] + 1)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:] - 1, rows.size - 1)
        mean = (cols[starts] + cols[ends] + 1) / 2.0 + 1.0  # of the run's first and last sorted positions, 1-based
        score = ndtri((mean - 3 / 8) / denominator)[np.cumsum(new) - 1]
        by_position[rows, cols] = score
        by_position[rows, cols + 1] = score
    z = np.empty((P, N))
    np.put_along_axis(z, order, by_position, axis=1)
    return z, s


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks over each parameter's draws (ties averaged, Blom's offset)."""
    return _scores(x.reshape(x.shape[0], -1))[0].reshape(x.shape)


def _median_of_sorted(s: np.ndarray) -> np.ndarray:
    """np.median of each row, from rows already sorted."""
    N = s.shape[1]
    return s[:, N // 2] if N % 2 else (s[:, N // 2 - 1] + s[:, N // 2]) / 2.0


def _quantile_of_sorted(s: np.ndarray, p: float) -> np.ndarray:
    """np.quantile(row, p) (method "linear") of each row, from rows already sorted: numpy's own interpolation."""
    virtual = p * (s.shape[1] - 1)
    lo = int(np.floor(virtual))
    hi = min(lo + 1, s.shape[1] - 1)
    t = virtual - lo
    a, b = s[:, lo], s[:, hi]
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[2]
    between = n * np.var(x.mean(axis=2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant parameter has no R-hat (NaN, as ArviZ)
        return np.sqrt((between / within + n - 1) / n)


def _invalid(x: np.ndarray, min_chains: int) -> np.ndarray:
    bad = np.isnan(x).any(axis=(1, 2))
    if x.shape[1] < min_chains or x.shape[2] < 4:
        bad[:] = True
    return bad


def rhat_rank(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (the larger of bulk and folded) per parameter.

    Parameters
    ----------
    x : ndarray (P, chains, draws)

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 500))
    >>> bool((rhat_rank(x) < 1.01).all())
    True
    """
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[0], np.nan)
    ok = ~_invalid(x, 2)
    if ok.any():
        s = _split(x[ok])
        folded = np.abs(s - np.median(s.reshape(s.shape[0], -1), axis=1)[:, None, None])
        out[ok] = np.maximum(_rhat(_z_scale(s)), _rhat(_z_scale(folded)))
    return out


def _acov(centred: np.ndarray, lags: int) -> np.ndarray:
    """Autocovariances sum_t c_t c_{t+k} / n of centred (P, chains, n) for k < lags (all n: by FFT, as ArviZ)."""
    n = centred.shape[2]
    if lags >= n:
        size = next_fast_len(2 * n)
        f = np.fft.rfft(centred, n=size, axis=2)
        return np.fft.irfft(f * np.conjugate(f), n=size, axis=2)[:, :, :n] / n
    out = np.empty(centred.shape[:2] + (lags,))
    for k in range(lags):
        out[:, :, k] = np.vecdot(centred[:, :, :n - k], centred[:, :, k:]) / n
    return out


def _geyer(mean_acov: np.ndarray, mean_var: np.ndarray, var_plus: np.ndarray, m: int, n: int):
    """ESS by Geyer's initial positive and monotone sequences, every parameter at the same lag.

    ``mean_acov`` (P, K) holds the first K lags; parameters whose sequence needs
    more come back flagged in ``short`` (their ESS is not computed).
    """
    P, K = mean_acov.shape
    rho = np.zeros((P, K + 2))
    rho[:, 0] = 1.0
    even = np.ones(P)
    odd = 1.0 - (mean_var - mean_acov[:, 1]) / var_plus
    rho[:, 1] = odd
    t_end = np.ones(P, dtype=int)
    short = np.zeros(P, dtype=bool)
    t = 1
    active = (t < n - 3) & (even + odd > 0.0)
    while active.any():
        if t + 2 >= K:
            short |= active
            break
        even = np.where(active, 1.0 - (mean_var - mean_acov[:, t + 1]) / var_plus, even)
        odd = np.where(active, 1.0 - (mean_var - mean_acov[:, t + 2]) / var_plus, odd)
        keep = active & (even + odd >= 0)
        rho[keep, t + 1] = even[keep]
        rho[keep, t + 2] = odd[keep]
        t += 2
        t_end[active] = t
        active = active & (t < n - 3) & (even + odd > 0.0)
    max_t = t_end - 2
    rows = np.arange(P)
    improve = even > 0
    rho[rows[improve], max_t[improve] + 1] = even[improve]
    for t in range(1, int(max_t.max()) - 1, 2):
        go = (t <= max_t - 2) & (rho[:, t + 1] + rho[:, t + 2] > rho[:, t - 1] + rho[:, t])
        rho[go, t + 1] = (rho[go, t - 1] + rho[go, t]) / 2.0
        rho[go, t + 2] = rho[go, t + 1]
    csum = np.cumsum(rho, axis=1)
    nxt = np.where(max_t + 1 < n, rho[rows, max_t + 1], 0.0)
    lead = np.where(max_t >= 0, csum[rows, np.maximum(max_t, 0)], 0.0)
    tau = np.maximum(-1.0 + 2.0 * lead + nxt, 1 / np.log10(m * n))
    ess = m * n / tau
    ess[np.isnan(rho).any(axis=1)] = np.nan
    return ess, short


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of (P, chains, draws) arrays, as ArviZ's ``_ess``.

    The autocovariances of the first 8 lags are summed directly (enough for
    well-mixed draws), then of 64 for the parameters that need more, and all
    lags by FFT for the rest.
    """
    P, m, n = x.shape
    out = np.full(P, float(m * n))
    flat = x.reshape(P, -1)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    live = np.flatnonzero(~constant)
    if len(live) == 0:
        return out
    x = x[live]
    centred = x - x.mean(axis=2, keepdims=True)
    mean_var, var_plus = None, None
    todo = np.arange(len(live))
    for lags in (min(8, n), min(64, n), n):
        mean_acov = _acov(centred[todo], lags).mean(axis=1)
        mean_var = mean_acov[:, 0] * n / (n - 1.0)
        var_plus = mean_var * (n - 1.0) / n
        if m > 1:
            var_plus = var_plus + np.var(x[todo].mean(axis=2), axis=1, ddof=1)
        ess, short = _geyer(mean_acov, mean_var, var_plus, m, n)
        out[live[todo[~short]]] = ess[~short]
        todo = todo[short]
        if len(todo) == 0:
            break
    return out


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk ESS (rank-normalised split chains) per parameter of x (P, chains, draws).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 500))
    >>> bool((ess_bulk(x) > 1000).all())
    True
    """
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[0], np.nan)
    ok = ~_invalid(x, 1)
    if ok.any():
        out[ok] = _ess(_z_scale(_split(x[ok])))
    return out


def ess_tail(x: np.ndarray, prob: float | None = None) -> np.ndarray:
    """Tail ESS per parameter: the smaller ESS of the indicators of the two tail quantiles.

    Parameters
    ----------
    x : ndarray (P, chains, draws)
    prob : float, optional
        Quantiles at (1 - prob) / ... as ArviZ: ``sorted((prob, 1 - prob))``;
        by default ArviZ's ``ci_prob`` (:func:`tail_prob`).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 500))
    >>> bool((ess_tail(x) > 500).all())
    True
    """
    x = np.asarray(x, dtype=float)
    prob = tail_prob() if prob is None else float(prob)
    out = np.full(x.shape[0], np.nan)
    ok = ~_invalid(x, 1)
    if ok.any():
        y = x[ok]
        flat = y.reshape(y.shape[0], -1)
        result = None
        for p in sorted((prob, 1 - prob)):
            q = np.quantile(flat, p, axis=1)
            e = _ess(_split((y <= q[:, None, None]).astype(float)))
            result = e if result is None else np.minimum(result, e)
        out[ok] = result
    return out


def diagnostics_of(x: np.ndarray, tail: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat, bulk ESS and tail ESS (NaN unless ``tail``) of draws x (chains, draws, P), a slice of parameters at a time.

    The normal scores of the split chains are computed once for R-hat and bulk ESS.

    Examples
    --------
    >>> r, b, t = diagnostics_of(np.random.default_rng(0).normal(size=(4, 500, 3)))
    >>> r.shape, bool((b > 1000).all())
    ((3,), True)
    """
    chains, draws, P = x.shape
    out = np.full((3, P), np.nan)
    prob = tail_prob() if tail else 0.0
    step = max(1, _CELLS // max(chains * draws, 1))

    def one(a):  # writes columns a .. a + step of out only
        part = np.ascontiguousarray(np.moveaxis(x[:, :, a:a + step], 2, 0), dtype=float)
        ok = np.flatnonzero(~_invalid(part, 1))
        if len(ok) == 0:
            return
        cols = a + ok
        s = _split(part[ok])
        z, ordered = _scores(s.reshape(s.shape[0], -1))
        z = z.reshape(s.shape)
        out[1, cols] = _ess(z)
        if chains >= 2:
            folded = np.abs(s - _median_of_sorted(ordered)[:, None, None])
            out[0, cols] = np.maximum(_rhat(z), _rhat(_z_scale(folded)))
        if tail and draws % 2 == 0:  # the split chains hold every draw: their sorted rows give the quantiles
            e = [_ess(_split((part[ok] <= _quantile_of_sorted(ordered, p)[:, None, None]).astype(float)))
                 for p in sorted((prob, 1 - prob))]
            out[2, cols] = np.minimum(e[0], e[1])
        elif tail:
            out[2, cols] = ess_tail(part[ok])

    starts = range(0, P, step)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers > 1:  # numpy's sorts and ufuncs release the GIL: slices run side by side on the cores
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, starts))
    else:
        for a in starts:
            one(a)
    return out[0], out[1], out[2]


def dataset_diagnostics(post: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """R-hat, bulk ESS and tail ESS of every variable of a posterior, laid out as ArviZ's.

    Examples
    --------
    >>> post = xr.Dataset({"x": (("chain", "draw", "k"), np.random.default_rng(0).normal(size=(4, 500, 2)))})
    >>> rhat, bulk, tail = dataset_diagnostics(post)
    >>> rhat["x"].dims
    ('k',)
    """
    results = ({}, {}, {})
    for name, da in post.data_vars.items():
        da = da.transpose("chain", "draw", ...)
        other = da.dims[2:]
        values = da.values.reshape(da.sizes["chain"], da.sizes["draw"], -1)
        for store, arr in zip(results, diagnostics_of(values)):
            store[name] = xr.DataArray(arr.reshape([da.sizes[d] for d in other]), dims=other,
                                       coords={d: da[d] for d in other if d in da.coords})
    return tuple(xr.Dataset(r) for r in results)


def rhat_and_ess(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """R-hat and bulk ESS of one variable's draws (dims chain, draw, ...), as ``az.rhat`` and ``az.ess`` give them.

    Examples
    --------
    >>> da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 500, 2)), dims=("chain", "draw", "k"))
    >>> rhat, ess = rhat_and_ess(da)
    >>> ess.dims
    ('k',)
    """
    da = da.transpose("chain", "draw", ...)
    other = da.dims[2:]
    r, b, _ = diagnostics_of(da.values.reshape(da.sizes["chain"], da.sizes["draw"], -1), tail=False)
    shape = [da.sizes[d] for d in other]
    coords = {d: da[d] for d in other if d in da.coords}
    return xr.DataArray(r.reshape(shape), dims=other, coords=coords), xr.DataArray(b.reshape(shape), dims=other, coords=coords)

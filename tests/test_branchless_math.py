"""The vectorisable exp and log1p (bayesmlm.fastpath.branchless_math) and the GLMM kernel's chunked unit loop.

- exp_clamped is within 2 ulp of numpy's exp on [-708, 709], log1p_unit within 3 ulp of log1p on [0, 1];
- the kernel's likelihood over more units than one chunk (1,024), its value and its gradient in b and in the
  effects, equal a NumPy sum, for q = 1, 2 and 3 blocks, levels in runs and shuffled, binomial and poisson
  (poisson overflowing to -inf as math.exp does).
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesmlm.fastpath import glmm_kernel as gk
from bayesmlm.fastpath.branchless_math import exp_clamped, log1p_unit

ULP = np.finfo(float).eps


def test_exp_clamped_within_two_ulp():
    xs = np.concatenate([np.linspace(-708.0, 709.0, 20001), np.random.default_rng(0).normal(0.0, 3.0, 5000)])
    got = np.array([exp_clamped(x) for x in xs])
    assert np.max(np.abs(got / np.exp(xs) - 1.0)) < 2 * ULP
    assert exp_clamped(-1e4) == exp_clamped(-708.0) > 0.0


def test_log1p_unit_within_three_ulp():
    ss = np.concatenate([np.linspace(0.0, 1.0, 20001), np.exp(-np.linspace(0.0, 700.0, 2001))])
    want = np.log1p(ss)
    got = np.array([log1p_unit(s) for s in ss])
    assert np.max(np.abs(got - want) / np.maximum(want, 1e-300)) < 3 * ULP


def _problem(family, sorted_levels, N=2600, seed=1):
    """Non-centred uncorrelated blocks with q = 1, 2, 3 (J = 40, 15, 7) over N units, two fixed columns."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    blocks, levels = [], []
    for q, J in ((1, 40), (2, 15), (3, 7)):
        index = np.sort(rng.integers(0, J, N)) if sorted_levels else rng.integers(0, J, N)
        Z = np.column_stack([np.ones(N)] + [rng.normal(size=N) for _ in range(q - 1)])
        blocks.append(gk.KernelBlock(gk.NON_CENTRED, False, index, Z, [[2, 1, 0, 0]] * q, 1.0, J))
        levels.append(index)
    trials = rng.integers(1, 6, N).astype(float)
    y = rng.poisson(2.0, N).astype(float) if family == gk.POISSON else rng.binomial(trials.astype(int), 0.4).astype(float)
    offset = rng.choice([0.0, 0.2], N)

    def buffer(weights):
        return gk.pack_buffer(family, y, trials, weights, offset, X, [0.0, 0.0], [[0, 0, 2.5, 0]] * 2, blocks, 0.0, 0)

    return X, blocks, levels, y, trials, offset, buffer


def _numpy_loglik(family, x, X, blocks, levels, y, trials, offset, weights):
    """sum w (y eta - n softplus(eta)) (or - exp(eta)), its gradient in x (b and z); the SDs' part left out."""
    p = X.shape[1]
    eta, at, sd_at = offset + X @ x[:p], p, p + sum(b.n_levels * b.q for b in blocks)
    parts = []
    for b, index in zip(blocks, levels):
        z = x[at:at + b.n_levels * b.q].reshape(b.n_levels, b.q)
        sd = np.exp(x[sd_at:sd_at + b.q])
        eta = eta + np.sum(b.Z * (z * sd)[index], axis=1)
        parts.append((at, sd))
        at, sd_at = at + b.n_levels * b.q, sd_at + b.q
    if family == gk.POISSON:
        mu = np.exp(eta)
        ll, r = np.sum(weights * (y * eta - mu)), weights * (y - mu)
    else:
        ll = np.sum(weights * (y * eta - trials * np.logaddexp(0.0, eta)))
        r = weights * (y - trials / (1.0 + np.exp(-eta)))
    g = np.zeros(at)
    g[:p] = X.T @ r
    for b, index, (o, sd) in zip(blocks, levels, parts):
        gz = np.zeros((b.n_levels, b.q))
        np.add.at(gz, index, r[:, None] * b.Z)
        g[o:o + b.n_levels * b.q] = (gz * sd).ravel()
    return ll, g


@pytest.mark.parametrize("family", [gk.BINOMIAL, gk.POISSON])
@pytest.mark.parametrize("sorted_levels", [True, False])
def test_chunked_likelihood_equals_numpy(family, sorted_levels):
    X, blocks, levels, y, trials, offset, buffer = _problem(family, sorted_levels)
    N, rng = len(y), np.random.default_rng(2)
    weights = 0.5 + rng.random(N)
    with_units, without = buffer(weights), buffer(np.zeros(N))
    x = rng.normal(0.0, 0.3, int(with_units[1]))
    g1, g0 = np.empty(len(x)), np.empty(len(x))
    ll = gk.logp_grad(x, with_units, g1) - gk.logp_grad(x, without, g0)  # the priors cancel
    want, want_g = _numpy_loglik(family, x, X, blocks, levels, y, trials, offset, weights)
    assert ll == pytest.approx(want, rel=1e-12)
    n = len(want_g)
    np.testing.assert_allclose((g1 - g0)[:n], want_g, rtol=1e-10, atol=1e-10)


def test_poisson_overflow_is_minus_infinity():
    X, blocks, levels, y, trials, offset, buffer = _problem(gk.POISSON, True, N=1100)
    d = buffer(np.ones(len(y)))
    x = np.zeros(int(d[1]))
    x[0] = 710.0  # eta past math.exp's overflow
    assert gk.logp_grad(x, d, np.empty(len(x))) == -np.inf

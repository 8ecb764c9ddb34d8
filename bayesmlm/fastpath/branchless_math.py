"""Stage 4, sample: exp and log(1 + s) written without branches or library calls, so that LLVM vectorises the loops that call them.

Numba's ``math.exp`` and ``math.log`` are calls into the C library, one value
at a time (Numba vectorises them only with Intel's SVML, which is not
installed here), so a loop that calls them stays scalar. These are the usual
Cody-Waite reduction and a polynomial, with selects in place of branches:
within about 2 ulp of the exact values on their domains, and inlined into the
caller. They are compiled without ``reassoc``: reassociation would fold the
two-part ln 2 of the reduction into one and lose its precision, and fold the
rounding shifter's ``(v + S) - S`` into ``v``.

Examples
--------
>>> import math
>>> abs(exp_clamped(-3.7) / math.exp(-3.7) - 1.0) < 1e-15, abs(log1p_unit(0.5) - math.log1p(0.5)) < 1e-16
(True, True)
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["exp_clamped", "log1p_unit"]

_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"nsz", "arcp", "contract", "afn"}}
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (fdlibm's): n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_LN2 = 0.6931471805599453
_SQRT2_M1 = 0.41421356237309503
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds |v| < 2^51 to an integer, held in the low bits


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose bit pattern is the int64 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_float(typingctx, x):
    """The int64 bit pattern of the float64 ``x``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@numba.njit(**_OPTIONS)
def exp_clamped(x):
    """exp(x) for x in [-708, 709]; below, exp(-708) (3.3e-308), above, exp(709).

    Examples
    --------
    >>> exp_clamped(0.0), exp_clamped(-1000.0) > 0.0
    (1.0, True)
    """
    x = min(max(x, -708.0), 709.0)
    # n = round(x / ln 2) by the shifter, not int(): AVX2 has no vector float-to-int64 conversion, and one int()
    # kept the whole loop scalar there (twice the time); the shifter's bits hold n, as float and as integer
    t = x * _LOG2E + _SHIFTER
    n = t - _SHIFTER  # |r| <= ln 2 / 2
    r = (x - n * _LN2_HI) - n * _LN2_LO
    # Taylor to r^13: the remainder is below 2e-16 relative on |r| <= 0.347
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _float_from_bits((_bits_from_float(t) - _bits_from_float(_SHIFTER) + 1023) << 52)


@numba.njit(**_OPTIONS)
def log1p_unit(s):
    """log(1 + s) for s in [0, 1], without forming 1 + s: 2 atanh(s / (2 + s)), or ln 2 + 2 atanh((s - 1) / (s + 3)) above sqrt(2) - 1.

    Examples
    --------
    >>> log1p_unit(0.0), abs(log1p_unit(1.0) - 0.6931471805599453) < 1e-16
    (0.0, True)
    """
    big = s > _SQRT2_M1
    z = (s - 1.0 if big else s) / (s + 3.0 if big else s + 2.0)  # |z| <= 0.1716
    z2 = z * z
    # atanh(z) / z to z^20: the remainder is below 3e-17 relative
    p = 1.0 / 21.0
    p = p * z2 + 1.0 / 19.0
    p = p * z2 + 1.0 / 17.0
    p = p * z2 + 1.0 / 15.0
    p = p * z2 + 1.0 / 13.0
    p = p * z2 + 1.0 / 11.0
    p = p * z2 + 1.0 / 9.0
    p = p * z2 + 1.0 / 7.0
    p = p * z2 + 1.0 / 5.0
    p = p * z2 + 1.0 / 3.0
    p = p * z2 + 1.0
    return 2.0 * z * p + (_LN2 if big else 0.0)

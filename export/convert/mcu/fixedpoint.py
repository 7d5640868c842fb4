"""TFLite Micro's integer arithmetic, in Python, for the parameters the C code bakes in.

Everything here reproduces TFLM's reference kernels bit for bit (the
double-rounding ``MultiplyByQuantizedMultiplier`` that TFLM builds with by
default, gemmlowp's fixed-point ``tanh``), so that the generated C only has to
do the per-inference integer work. Python ints stand in for int32/int64; every
intermediate of the int32 routines stays inside int32 on the inputs used here
(asserted where C++ would overflow).

Units: a *quantized multiplier* is (m, shift) with m in [2^30, 2^31) a Q0.31
significand and real = m * 2^(shift - 31).
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class FixedPointError(ValueError):
    """A quantization parameter TFLM itself would reject or mishandle."""


def round_half_away(x: float) -> int:
    """C's round(): halves away from zero (TfLiteRound)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _trunc_div(n: int, d: int) -> int:
    """C integer division (truncates toward zero); d > 0."""
    q = abs(n) // d
    return q if n >= 0 else -q


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier(double): (m, shift) with real ~= m * 2^(shift-31); (0, 0) for 0."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    m = round_half_away(q * (1 << 31))
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if m > INT32_MAX:
        raise FixedPointError(f"multiplier {real!r} does not fit int32")
    return m, shift


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul (int32): round(a * b / 2^31)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def rdbp(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent, halves away from zero."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def srmbp(x: int, exponent: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32."""
    if exponent <= 0:
        return rdbp(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def _wrap32(x: int) -> int:
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def mbqm(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier(int32 x, m, shift), double rounding (TFLM's default)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbp(srdhm(_wrap32(x * (1 << left)), m), right)


# ------------------------------------------------------------ gemmlowp tanh (Q4.27 -> Q0.31)

def _exp_q0(exponent: float) -> int:
    """exp(exponent) as a Q0.31 constant (gemmlowp's barrel-shifter and Taylor constants)."""
    return round_half_away(math.exp(exponent) * (1 << 31))


_EXP_BARREL = [(e, _exp_q0(-(2.0 ** e))) for e in range(-2, 5)]  # exp(-1/4) .. exp(-16)
_EXP_MINUS_EIGHTH = _exp_q0(-1.0 / 8.0)
_ONE_THIRD_Q0 = round_half_away((1 << 31) / 3.0)
_48_OVER_17_Q2 = round_half_away(48.0 / 17.0 * (1 << 29))
_NEG_32_OVER_17_Q2 = round_half_away(-32.0 / 17.0 * (1 << 29))


def _exp_on_quarter_interval(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rdbp(srdhm(rdbp(x4, 2) + x3, _ONE_THIRD_Q0) + x2, 1)
    return _EXP_MINUS_EIGHTH + srdhm(_EXP_MINUS_EIGHTH, x + poly)


def _exp_on_negative_q5(a: int) -> int:
    """exp(a) for a <= 0 given in Q5.26; result Q0.31."""
    quarter = 1 << 24
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_on_quarter_interval(srmbp(a_mod, 5))
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if remainder & (1 << (26 + exponent)):
            result = srdhm(result, multiplier)
    return INT32_MAX if a == 0 else result


def _one_minus_x_over_one_plus_x(a: int) -> int:
    """(1 - a) / (1 + a) for a in (0, 1), Q0.31; Newton-Raphson in Q2.29."""
    half_denominator = _trunc_div(a + INT32_MAX + 1, 2)  # RoundingHalfSum(a, One), sum > 0
    x = _48_OVER_17_Q2 + srdhm(half_denominator, _NEG_32_OVER_17_Q2)
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_denominator, x)
        x = x + srmbp(srdhm(x, one_minus), 2)
    return srmbp(x - (1 << 29), 2)


def gemmlowp_tanh_q4(a: int) -> int:
    """gemmlowp::tanh of a Q4.27 raw value; Q0.31 result."""
    if a == 0:
        return 0
    t = _one_minus_x_over_one_plus_x(_exp_on_negative_q5(a if a < 0 else -a))
    return -t if a < 0 else t


# ------------------------------------------------------------ TANH kernels' parameters

def tanh_int8_lut(input_scale: float, input_zero_point: int) -> np.ndarray:
    """TFLM's int8 TANH as a table: int8 [256], entry k is the output for input int8 k - 128.

    Output quantization is fixed by the op (scale 1/128, zero point 0)."""
    real = float(np.float32(input_scale)) * float(1 << 27)
    q, shift = math.frexp(real)
    m = round_half_away(q * (1 << 31))
    if m > INT32_MAX or shift < 0:
        raise FixedPointError(f"TANH input scale {input_scale!r} is outside what TFLM handles")
    radius = math.floor(15.0 * (1 << 27) / (1 << shift))
    out = np.empty(256, np.int8)
    for k in range(256):
        x = (k - 128) - input_zero_point
        if x <= -radius:
            y = -128
        elif x >= radius:
            y = 127
        else:
            y = min(max(rdbp(gemmlowp_tanh_q4(mbqm(x, m, shift)), 24), -128), 127)
        out[k] = y
    return out


def _checked_log2(x: float) -> tuple[bool, int]:
    """TFLM CheckedLog2 in float32: (is a power of two, rounded log2)."""
    x_log2 = np.float32(np.log(np.float32(x))) * np.float32(1.0 / np.float32(np.log(np.float32(2.0))))
    rounded = np.float32(round_half_away(float(x_log2)))
    return bool(abs(np.float32(x_log2 - rounded)) < np.float32(1e-3)), int(rounded)


def tanh_int16_params(input_scale: float, output_scale: float, input_zero_point: int,
                      output_zero_point: int) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) of TFLM's int16 TANH, already resolved for the
    power-of-two case (the kernel then computes (x * multiplier + round) >> shift)."""
    if input_zero_point != 0 or output_zero_point != 0:
        raise FixedPointError("int16 TANH needs zero points 0 (TFLM refuses others)")
    out_pot, out_log2 = _checked_log2(output_scale)
    if not out_pot or out_log2 != -15:
        raise FixedPointError(f"int16 TANH output scale {output_scale!r} is not 2^-15")
    pot, log2 = _checked_log2(input_scale)
    shift = 12 + log2
    if pot and shift in (0, 1):
        return 3 << shift, 0
    multiplier = float(np.float32(input_scale)) * 4096.0 * 3.0
    shift = 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    if multiplier > 32767:
        raise FixedPointError(f"int16 TANH input scale {input_scale!r} is too large for TFLM")
    return int(multiplier), shift

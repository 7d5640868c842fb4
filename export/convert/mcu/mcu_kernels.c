/* TFLite Micro's reference arithmetic for the microcontroller path (see mcu_kernels.h).
 * Copied next to the generated model source by export/convert/mcu (do not edit there).
 * Build without -ffast-math and with -ffp-contract=off: the float ops must round
 * exactly like TFLM's (one IEEE single-precision rounding per operation). */
#include "mcu_kernels.h"

#include <math.h>

/* ---------------------------------------------------------------- fixed point */

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating. */
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded to nearest, halves away from zero. */
static int32_t rdbp(int32_t x, int e) {
  int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
  int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + ((x & mask) > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (int32), TFLM's default double rounding. */
static int32_t mbqm(int32_t x, int32_t m, int shift) {
  int left = shift > 0 ? shift : 0;
  int right = shift > 0 ? 0 : -shift;
  return rdbp(srdhm((int32_t)((uint32_t)x << left), m), right);
}

/* MultiplyByQuantizedMultiplier (int64 accumulator of the 16x8 kernels). */
static int32_t mbqm64(int64_t x, int32_t m, int shift) {
  int32_t reduced = m < 0x7FFF0000 ? ((m + (1 << 15)) >> 16) : 0x7FFF;
  int total_shift = 15 - shift;
  x = x * (int64_t)reduced + ((int64_t)1 << (total_shift - 1));
  return (int32_t)(x >> total_shift);
}

static int32_t clamp32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* ---------------------------------------------------------------- float ops */

/* std::min(std::max(x, lo), hi) with std::'s argument order (NaN passes through). */
static float clampf(float x, float lo, float hi) {
  float m = (x < lo) ? lo : x;
  return (hi < m) ? hi : m;
}

void mcu_sub_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out) {
  for (int i = 0; i < n; ++i) out[i] = clampf(a[i * a_step] - b[i * b_step], lo, hi);
}

void mcu_add_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out) {
  for (int i = 0; i < n; ++i) out[i] = clampf(a[i * a_step] + b[i * b_step], lo, hi);
}

void mcu_mul_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out) {
  for (int i = 0; i < n; ++i) out[i] = clampf(a[i * a_step] * b[i * b_step], lo, hi);
}

/* ---------------------------------------------------------------- (de)quantize */

static int32_t quantize_one(float x, float scale, int32_t zero_point, int32_t qmin,
                            int32_t qmax) {
  float r = roundf(x / scale);
  if (r != r) return zero_point;   /* NaN: undefined in TFLM; Arm's conversion gives 0 */
  if (r >= 1.0e6f) return qmax;    /* far beyond any int16 + zero point: saturates */
  if (r <= -1.0e6f) return qmin;
  return clamp32((int32_t)r + zero_point, qmin, qmax);
}

void mcu_quantize_i8(int n, const float *x, float scale, int32_t zero_point, int8_t *out) {
  for (int i = 0; i < n; ++i) out[i] = (int8_t)quantize_one(x[i], scale, zero_point, -128, 127);
}

void mcu_quantize_i16(int n, const float *x, float scale, int32_t zero_point, int16_t *out) {
  for (int i = 0; i < n; ++i)
    out[i] = (int16_t)quantize_one(x[i], scale, zero_point, -32768, 32767);
}

void mcu_dequantize_i8(int n, const int8_t *q, double scale, int32_t zero_point, float *out) {
  for (int i = 0; i < n; ++i) out[i] = (float)(scale * (double)((int32_t)q[i] - zero_point));
}

void mcu_dequantize_i16(int n, const int16_t *q, double scale, int32_t zero_point, float *out) {
  for (int i = 0; i < n; ++i) out[i] = (float)(scale * (double)((int32_t)q[i] - zero_point));
}

/* ---------------------------------------------------------------- int16 SUB / MUL */

static int32_t sub_one(int32_t a, int32_t b, const mcu_binary_params *p) {
  int32_t x1 = (int32_t)((uint32_t)(p->in1_offset + a) << p->left_shift);
  int32_t x2 = (int32_t)((uint32_t)(p->in2_offset + b) << p->left_shift);
  int32_t raw = mbqm(x1, p->in1_mult, p->in1_shift) - mbqm(x2, p->in2_mult, p->in2_shift);
  return clamp32(mbqm(raw, p->out_mult, p->out_shift) + p->out_offset, p->act_min, p->act_max);
}

static int32_t mul_one(int32_t a, int32_t b, const mcu_binary_params *p) {
  int32_t prod = (p->in1_offset + a) * (p->in2_offset + b);
  return clamp32(p->out_offset + mbqm(prod, p->out_mult, p->out_shift), p->act_min, p->act_max);
}

void mcu_sub_i16(int n, const int16_t *a, int a_step, const int16_t *b, int b_step,
                 const mcu_binary_params *p, int16_t *out) {
  for (int i = 0; i < n; ++i) out[i] = (int16_t)sub_one(a[i * a_step], b[i * b_step], p);
}

void mcu_mul_i16(int n, const int16_t *a, int a_step, const int16_t *b, int b_step,
                 const mcu_binary_params *p, int16_t *out) {
  for (int i = 0; i < n; ++i) out[i] = (int16_t)mul_one(a[i * a_step], b[i * b_step], p);
}

/* ---------------------------------------------------------------- FULLY_CONNECTED */

void mcu_fully_connected_i8(const mcu_fc_params *p, const int8_t *x, const int8_t *w,
                            const int32_t *bias, int8_t *y) {
  for (int o = 0; o < p->out_n; ++o) {
    const int8_t *row = w + (long)o * p->in_n;
    int32_t acc = 0;
    for (int k = 0; k < p->in_n; ++k) acc += (int32_t)row[k] * ((int32_t)x[k] + p->in_offset);
    if (bias) acc += bias[o];
    int c = p->per_channel ? o : 0;
    y[o] = (int8_t)clamp32(mbqm(acc, p->mult[c], p->shift[c]) + p->out_offset,
                           p->act_min, p->act_max);
  }
}

void mcu_fully_connected_i16(const mcu_fc_params *p, const int16_t *x, const int8_t *w,
                             const int64_t *bias, int16_t *y) {
  for (int o = 0; o < p->out_n; ++o) {
    const int8_t *row = w + (long)o * p->in_n;
    int64_t acc = 0;
    for (int k = 0; k < p->in_n; ++k) acc += (int32_t)row[k] * ((int32_t)x[k] + p->in_offset);
    if (bias) acc += bias[o];
    int c = p->per_channel ? o : 0;
    y[o] = (int16_t)clamp32(mbqm64(acc, p->mult[c], p->shift[c]) + p->out_offset,
                            p->act_min, p->act_max);
  }
}

/* ---------------------------------------------------------------- TANH */

void mcu_tanh_i8(int n, const int8_t *x, const int8_t lut[256], int8_t *y) {
  for (int i = 0; i < n; ++i) y[i] = lut[(uint8_t)((int32_t)x[i] + 128)];
}

/* sigmoid(i / 24) in unsigned 0.16 fixed point, as TFLM tabulates it (its rounding is
 * not round(65536 * sigmoid) in 44 entries, so this is data; tests/test_mcu_kernels.py
 * checks every entry against TFLM's int16 TANH). tanh(x) = 2 * sigmoid(2x) - 1. */
static const uint16_t sigmoid_table[256] = {
  32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
  40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
  47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
  53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
  57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
  60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
  62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
  63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
  64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
  64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
  65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
  65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
  65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
  65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
  65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
  65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
  65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
  65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
  65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
  65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
  65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
  65534, 65534, 65534, 65535
};

void mcu_tanh_i16(int n, const int16_t *x, int32_t mult, int32_t shift, int16_t *y) {
  int32_t round = shift > 0 ? (1 << (shift - 1)) : 0;
  for (int i = 0; i < n; ++i) {
    int32_t in = ((int32_t)x[i] * mult + round) >> shift;
    uint32_t abs_in = (uint32_t)(in < 0 ? -in : in);
    uint32_t uh = abs_in >> 8;
    int32_t r;
    if (uh >= 255) {
      r = 0xFFFF << 8;
    } else {
      uint32_t ua = sigmoid_table[uh], ub = sigmoid_table[uh + 1];
      r = (int32_t)((ua << 8) + (abs_in & 0xFF) * (ub - ua));
    }
    r = in >= 0 ? (r - (1 << 23) + (1 << 7)) : (-r + (1 << 23) + (1 << 7) - 1);
    y[i] = (int16_t)(r >> 8);
  }
}

/* Plain C99 kernels for the microcontroller path: TFLite Micro's reference
 * arithmetic for the few ops an exported actor uses, bit for bit.
 * Copied next to the generated model source by export/convert/mcu (do not edit there).
 *
 * Conventions: n = number of elements; a *quantized multiplier* is
 * (m, shift): real = m * 2^(shift - 31), m a Q0.31 significand. Elementwise
 * binary ops take a step per operand (1, or 0 to broadcast a single value).
 */
#ifndef MCU_KERNELS_H_
#define MCU_KERNELS_H_

#include <stdint.h>

/* Float elementwise ops, clamped to [lo, hi] like TFLM (a +-inf result becomes
 * the float range's end, NaN passes through). */
void mcu_sub_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out);
void mcu_add_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out);
void mcu_mul_f32(int n, const float *a, int a_step, const float *b, int b_step,
                 float lo, float hi, float *out);

/* QUANTIZE float32 -> int8 / int16: round(x / scale) + zero_point, clamped.
 * Where TFLM's conversion is undefined (|x / scale| >= 2^31, NaN) this saturates
 * (NaN -> zero_point). */
void mcu_quantize_i8(int n, const float *x, float scale, int32_t zero_point, int8_t *out);
void mcu_quantize_i16(int n, const float *x, float scale, int32_t zero_point, int16_t *out);

/* DEQUANTIZE: (float)((double)scale * (q - zero_point)). */
void mcu_dequantize_i8(int n, const int8_t *q, double scale, int32_t zero_point, float *out);
void mcu_dequantize_i16(int n, const int16_t *q, double scale, int32_t zero_point, float *out);

/* int16 SUB / MUL (the 16x8 normalisation), TFLM's general quantized path. */
typedef struct {
  int32_t in1_offset, in2_offset, out_offset; /* -zero_point (inputs), +zero_point (out) */
  int32_t left_shift;                         /* SUB only: 15 */
  int32_t in1_mult, in1_shift, in2_mult, in2_shift; /* SUB only */
  int32_t out_mult, out_shift;
  int32_t act_min, act_max;
} mcu_binary_params;
void mcu_sub_i16(int n, const int16_t *a, int a_step, const int16_t *b, int b_step,
                 const mcu_binary_params *p, int16_t *out);
void mcu_mul_i16(int n, const int16_t *a, int a_step, const int16_t *b, int b_step,
                 const mcu_binary_params *p, int16_t *out);

/* FULLY_CONNECTED, batch 1: y[o] = clamp(out_offset + requant(bias[o] +
 * sum_k w[o][k] * (x[k] + in_offset))). mult/shift hold one entry per output
 * channel (per_channel = 1) or one for all (0); bias may be NULL. int8 input
 * accumulates in int32, int16 input in int64 (int64 bias). */
typedef struct {
  int in_n, out_n, per_channel;
  int32_t in_offset, out_offset, act_min, act_max;
  const int32_t *mult;
  const int8_t *shift;
} mcu_fc_params;
void mcu_fully_connected_i8(const mcu_fc_params *p, const int8_t *x, const int8_t *w,
                            const int32_t *bias, int8_t *y);
void mcu_fully_connected_i16(const mcu_fc_params *p, const int16_t *x, const int8_t *w,
                             const int64_t *bias, int16_t *y);

/* TANH. int8: a 256-entry table indexed by (uint8_t)(x + 128), built by the generator
 * from TFLM's fixed-point tanh. int16: TFLM's interpolated sigmoid table; mult/shift
 * rescale the input to the table's 1/(3 * 4096) units. */
void mcu_tanh_i8(int n, const int8_t *x, const int8_t lut[256], int8_t *y);
void mcu_tanh_i16(int n, const int16_t *x, int32_t mult, int32_t shift, int16_t *y);

#endif /* MCU_KERNELS_H_ */

"""SavedModel -> int16x8 TFLite (int16 activations, int8 weights), for the C path's experiments.

TFLite's 16x8 mode goes through the converter's older quantizer, which has no
per-node deny-list: the float normalisation (SUB mean, MUL 1/std) is
quantized to int16 as well, so the graph is float32 -> QUANTIZE -> SUB/MUL
int16 -> FULLY_CONNECTED 16x8 -> TANH int16 -> ... -> DEQUANTIZE -> float32.
"""
from __future__ import annotations

import numpy as np


def convert_int16x8(saved_model_dir: str, representative_obs: np.ndarray) -> bytes:
    """The 16x8 flatbuffer; representative_obs float32 [N, obs_dim] calibrates every tensor."""
    import tensorflow as tf

    from export.convert import tflite
    if representative_obs is None or len(representative_obs) == 0:
        raise ValueError("int16x8 needs representative observations")
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = tflite._representative(representative_obs)
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()

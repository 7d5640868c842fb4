"""The int16x8 model of an actor: 16-bit activations, 8-bit weights, float normalisation.

TFLite's 16x8 mode (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``)
goes through the converter's older quantizer, which quantizes every op, the
normalisation included: the int16 MUL constant 1/std then spans the normaliser's six
decades (features that never move have std ~1e-6) with one scale, and most features
get multiplied by 0 (measured on a trained Ant policy: action MAE 0.26 vs fp32). The
selective quantizer that keeps the int8 model's normalisation in float does not
produce 16x8.

So the variant is built in two parts:

1. the actor WITHOUT its normaliser (input: normalised features z, float32) is
   converted in 16x8 mode (per-tensor weight scales, int64 biases), calibrated on the
   normalised, clipped calibration set with the clip's edges added:
   float z -> QUANTIZE int16 -> FULLY_CONNECTED 16x8 -> TANH int16 -> ... -> DEQUANTIZE;
2. the normalisation is put back in front, in float, by editing the flatbuffer:
   raw obs -> SUB mean -> MUL 1/std -> (the model of 1.). The normaliser's clip to
   [-CLIP, CLIP] is the QUANTIZE's saturation at the calibrated range, as in int8.

The result takes raw float32 observations like every other variant, and runs in
LiteRT, TFLite Micro and the generated C of ``export.convert.mcu`` (float SUB/MUL,
int16 QUANTIZE/FULLY_CONNECTED/TANH are all in their kernel sets).

On the test fixture policy (1,000 held-out observations): action MAE 0.0022, max
0.015, 16,296 B against int8's 16,200 (experiments/results/export_fidelity.md).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from export.convert import jax2tf_bridge
from jaxrl_lite.blocks import normalizer

_FILE_IDENTIFIER = b"TFL3"


def normalised(obs: np.ndarray, norm) -> np.ndarray:
    """Raw obs [N, obs_dim] -> the normaliser's features, clipped (float32)."""
    mean, inv_std = _mean_inv_std(norm)
    return np.clip((np.asarray(obs, np.float32) - mean) * inv_std,
                   -normalizer.CLIP, normalizer.CLIP).astype(np.float32)


def _mean_inv_std(norm) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(norm.mean, np.float32)
    std = np.sqrt(np.maximum(np.asarray(norm.var, np.float32), 0.0)) + normalizer.STD_EPS
    return mean, (1.0 / std).astype(np.float32)


def identity_normalizer(norm):
    """A normaliser of the same shape that (to float32 rounding) leaves z unchanged."""
    ones = (1.0 - normalizer.STD_EPS) ** 2  # sqrt(var) + STD_EPS == 1
    return norm.replace(mean=np.zeros_like(np.asarray(norm.mean)),
                        var=np.full_like(np.asarray(norm.var), ones))


def convert_16x8(saved_model_dir: str, representative: np.ndarray,
                 per_channel: bool = False) -> bytes:
    """SavedModel -> TFLite 16x8 (every op quantized; float32 input and output, int64
    biases). ``per_channel``: the converter's default (the MCU test fixtures)."""
    import tensorflow as tf

    from export.convert import tflite
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = tflite._representative(representative)
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    # Per-tensor weight scales: per-channel adds 3,728 B of scales and zero points
    # (1.27x int8's bytes) for 0.0005 of action MAE (export_fidelity.md, "int16x8").
    # int32 biases would save 544 B more, but TFLM then accumulates and rounds in
    # int32, which the generated C does not reproduce (216/300 observations differed).
    conv._experimental_disable_per_channel = not per_channel
    return conv.convert()


def calibration_features(calib_clipped: np.ndarray, norm) -> np.ndarray:
    """The normalised calibration set plus two rows whose first feature sits at
    -CLIP and +CLIP: the input QUANTIZE (one scale for all features) then saturates
    where the float actor's clip does, not at the calibration set's extremes (without
    them, held-out max error 0.36 instead of 0.015 on the test policy)."""
    z = normalised(calib_clipped, norm)
    edges = np.repeat(z[:1], 2, axis=0)
    edges[:, 0] = (-normalizer.CLIP, normalizer.CLIP)
    return np.concatenate([z, edges]).astype(np.float32)


def build(spec, params, norm, scratch_dir: str, calib_clipped: np.ndarray,
          per_channel: bool = False) -> bytes:
    """The int16x8 flatbuffer of the actor (spec, params, norm): raw obs in, actions out.

    calib_clipped: raw calibration observations [N, obs_dim] inside the normaliser's
    range (``jax2tf_bridge.clip_to_normalizer_range``); per_channel: weight scales per
    output channel (else per tensor)."""
    sm = jax2tf_bridge.save_saved_model(spec, params, identity_normalizer(norm), scratch_dir,
                                        clip_observations=False)
    inner = convert_16x8(sm, calibration_features(calib_clipped, norm), per_channel)
    mean, inv_std = _mean_inv_std(norm)
    return prepend_normalisation(inner, mean, inv_std)


def _opcode_index(model, builtin: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _const_tensor(model, graph, name: str, values: np.ndarray) -> int:
    buf = schema.BufferT()
    buf.data = np.frombuffer(values.astype("<f4").tobytes(), np.uint8)
    model.buffers.append(buf)
    return _tensor(graph, name, values.shape, len(model.buffers) - 1)


def _tensor(graph, name: str, shape, buffer: int) -> int:
    t = schema.TensorT()
    t.shape = np.asarray(shape, np.int32)
    t.type = schema.TensorType.FLOAT32
    t.buffer = buffer
    t.name = name.encode()
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _op(model, builtin: int, options_type: int, options, inputs, outputs):
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(model, builtin)
    op.inputs = np.asarray(inputs, np.int32)
    op.outputs = np.asarray(outputs, np.int32)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    return op


def prepend_normalisation(model_bytes: bytes, mean: np.ndarray, inv_std: np.ndarray) -> bytes:
    """Put float ``(x - mean) * inv_std`` in front of a one-input float32 model: the
    model's input becomes the raw observation; every consumer of the old input
    reads the normalised tensor instead."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].inputs) != 1:
        raise ValueError("expected one subgraph with one input")
    g = model.subgraphs[0]
    x = int(g.inputs[0])
    shape = [int(d) for d in g.tensors[x].shape]
    if g.tensors[x].type != schema.TensorType.FLOAT32 or shape[-1] != mean.shape[0]:
        raise ValueError(f"model input {shape} (type {g.tensors[x].type}) is not float32 "
                         f"[..., {mean.shape[0]}]")
    # The model's own buffers may be stored past the flatbuffer (large models); not here.
    m_t = _const_tensor(model, g, "normalise/mean", mean.reshape(shape[-1:]))
    s_t = _const_tensor(model, g, "normalise/inv_std", inv_std.reshape(shape[-1:]))
    centred = _tensor(g, "normalise/centred", shape, 0)
    z = _tensor(g, "normalise/z", shape, 0)
    for op in g.operators:  # consumers of the raw input now read z
        op.inputs = np.where(np.asarray(op.inputs) == x, z, op.inputs).astype(np.int32)
    sub_opts = schema.SubOptionsT()
    sub_opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
    mul_opts = schema.MulOptionsT()
    mul_opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
    g.operators = [
        _op(model, schema.BuiltinOperator.SUB, schema.BuiltinOptions.SubOptions, sub_opts,
            [x, m_t], [centred]),
        _op(model, schema.BuiltinOperator.MUL, schema.BuiltinOptions.MulOptions, mul_opts,
            [centred, s_t], [z]),
        *g.operators]
    builder = flatbuffers.Builder(len(model_bytes) + 4 * mean.size * 2 + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())

"""SavedModel -> TFLite variants, plus the tools to inspect and run them.

Variants (all take raw float32 [1, obs_dim] observations, return float32 [1, act_dim]):
  fp32          plain conversion
  fp16          float16 weights (dequantized at load)
  dynamic       int8 weights, float activations (dynamic-range quantization)
  int8          full-integer int8: int8 weights AND activations, calibrated on real
                observations; float32 input/output. The normalisation prefix
                (SUB/MUL/clip) stays float so each feature is standardised
                before the single per-tensor QUANTIZE (raw Ant features span
                std 0.01 .. 3: one int8 scale for the raw vector loses the
                small ones). ``normalize_in_int8=True`` gives the naive model
                for the before/after comparison.
  pruned_int8   the int8 recipe applied to the pruned actor's SavedModel
  int16x8       int16 activations, int8 weights (export/convert/int16x8.py builds it)
"""
from __future__ import annotations

import gzip
from typing import Iterable

import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tensorflow.lite.python import convert as tfl_convert

from export.convert import int8_recipe

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "pruned_int8")

# The ops the normalisation prefix lowers to (kept float in the int8 models).
NORMALIZE_OPS = ("SUB", "MUL", "ADD", "DIV", "MINIMUM", "MAXIMUM")
_MLP_OPS = {"FULLY_CONNECTED", "TANH", "RELU", "ELU", "LOGISTIC"}
_ALLOWED_FLOAT = _MLP_OPS | set(NORMALIZE_OPS)
# Per variant, every op the model may contain. No SHAPE/GATHER/RESHAPE/...
# (dynamic shapes), no CUSTOM/FLEX, no DENSIFY: TFLite Micro and XNNPACK must run them.
OP_ALLOW_LIST = {
    "fp32": _ALLOWED_FLOAT,
    "fp16": _ALLOWED_FLOAT | {"DEQUANTIZE"},
    "dynamic": _ALLOWED_FLOAT,
    "int8": _ALLOWED_FLOAT | {"QUANTIZE", "DEQUANTIZE"},
    "pruned_int8": _ALLOWED_FLOAT | {"QUANTIZE", "DEQUANTIZE"},
    "int16x8": _ALLOWED_FLOAT | {"QUANTIZE", "DEQUANTIZE"},
}
# LayerNorm in the actor lowers to these (static shapes; TFLM has kernels for them).
LAYER_NORM_OPS = {"SUM", "MEAN", "RSQRT", "RESHAPE", "SQUARED_DIFFERENCE"}
# Ops with a TFLite Micro kernel (subset relevant here; checked again by running TFLM).
TFLM_OPS = _ALLOWED_FLOAT | {"QUANTIZE", "DEQUANTIZE"} | LAYER_NORM_OPS


class ConversionError(RuntimeError):
    """The TFLite converter failed or produced a model outside the allow-list."""


def _converter(saved_model_dir: str):
    return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)


def _representative(obs: np.ndarray):
    obs = np.asarray(obs, np.float32)

    def gen():
        for o in obs:
            yield [o[None]]
    return gen


def convert(saved_model_dir: str, variant: str, representative_obs: np.ndarray | None = None,
            *, normalize_in_int8: bool = False, per_channel: bool = True,
            preact_clip: float | None = None) -> bytes:
    """One TFLite flatbuffer for ``variant`` (see module doc); int8 needs representative_obs.

    per_channel: int8 FULLY_CONNECTED weights get one scale per output channel
    (True) or one per tensor (False: ~12 bytes less per channel, often as accurate).
    preact_clip: the calibrated range of FULLY_CONNECTED outputs that only TANH reads
    is cut to [-preact_clip, preact_clip] (``int8_recipe.clip_tanh_inputs``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    conv = _converter(saved_model_dir)
    if variant == "fp32":
        return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        conv.target_spec.supported_types = [tf.float16]
        return conv.convert()
    if variant == "dynamic":
        return conv.convert()
    # full integer
    if representative_obs is None or len(representative_obs) == 0:
        raise ValueError(f"variant {variant} needs representative observations")
    conv.representative_dataset = _representative(representative_obs)
    conv.inference_input_type = tf.float32
    conv.inference_output_type = tf.float32
    if normalize_in_int8:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel
        return conv.convert()
    # Calibrate the whole graph, then quantize everything but the normalisation
    # prefix: float input -> float SUB/MUL/clip -> QUANTIZE -> int8 FC/TANH ...
    # -> DEQUANTIZE. This is the selective-quantization call that
    # tf.lite.experimental.QuantizationDebugger makes; fully_quantize=False keeps
    # the float32 model input (True would make it int8, quantizing raw obs).
    conv._experimental_calibrate_only = True
    calibrated = conv.convert()
    if preact_clip:
        calibrated = int8_recipe.clip_tanh_inputs(calibrated, preact_clip)
    model = tfl_convert.mlir_quantize(
        calibrated, fully_quantize=False, input_data_type=tf.float32,
        output_data_type=tf.float32, denylisted_nodes=normalization_prefix(calibrated),
        disable_per_channel_for_dense_layers=not per_channel)
    return model


# ---------------------------------------------------------------- inspection

def normalization_prefix(model: bytes) -> list[str]:
    """Output tensor names of the ops before the first FULLY_CONNECTED (the
    normalisation: SUB/MUL/MAXIMUM/MINIMUM); by node, so that MUL/ADD/SUB inside
    the network (SiLU, LayerNorm) are still quantized."""
    _, g, ops = _operators(model)
    out = []
    for name, op in ops:
        if name == "FULLY_CONNECTED":
            break
        if name not in NORMALIZE_OPS:
            raise ConversionError(f"unexpected op {name} before the first FULLY_CONNECTED")
        out += [g.Tensors(op.Outputs(k)).Name().decode() for k in range(op.OutputsLength())]
    return out


def _schema():
    return schema


def _op_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _operators(model: bytes):
    """(model, subgraph 0, [(op name, operator)] in execution order) of a flatbuffer;
    the one walk over the graph every inspection below uses."""
    m = _schema().Model.GetRootAs(model, 0)
    names = _op_names()
    g = m.Subgraphs(0)
    ops = []
    for j in range(g.OperatorsLength()):
        op = g.Operators(j)
        oc = m.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = names.get(code, f"UNKNOWN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM:{oc.CustomCode().decode()}"
        ops.append((name, op))
    return m, g, ops


def model_ops(model: bytes) -> list[str]:
    """Builtin op names used by the model, in first-use order (CUSTOM ops as CUSTOM:<name>)."""
    seen: list[str] = []
    for name, _ in _operators(model)[2]:
        if name not in seen:
            seen.append(name)
    return seen


def check_ops(model: bytes, variant: str, layer_norm: bool = False) -> list[str]:
    """Ops of the model; raises ConversionError if any is outside the variant's
    allow-list (plus LAYER_NORM_OPS for an actor with LayerNorm)."""
    ops = model_ops(model)
    bad = sorted(set(ops) - OP_ALLOW_LIST[variant] - (LAYER_NORM_OPS if layer_norm else set()))
    if bad:
        raise ConversionError(f"{variant} model contains ops outside its allow-list: {bad} "
                              f"(allowed: {sorted(OP_ALLOW_LIST[variant])})")
    return ops


def weight_sparsity(model: bytes) -> dict:
    """Zeros in the FULLY_CONNECTED weight tensors as stored in the flatbuffer.

    Returns {"zeros": int, "total": int, "sparsity": float, "per_layer": [float]}.
    Counts the stored values (int8 for quantized weights, float for float ones),
    so it verifies what the runtime actually multiplies.
    """
    schema = _schema()
    m, g, ops = _operators(model)
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
              schema.TensorType.INT8: np.int8}
    per_layer, zeros, total = [], 0, 0
    for name, op in ops:
        if name != "FULLY_CONNECTED":
            continue
        w = _const_tensor(m, g, op.Inputs(1), dtypes)
        if w is None:
            continue
        z = int(np.count_nonzero(w == 0))
        per_layer.append(z / w.size)
        zeros += z
        total += int(w.size)
    return {"zeros": zeros, "total": total, "sparsity": zeros / max(total, 1),
            "per_layer": per_layer}


def _const_tensor(m, g, index, dtypes):
    """The constant data of tensor ``index``, following one DEQUANTIZE (fp16 weights)."""
    t = g.Tensors(index)
    buf = m.Buffers(t.Buffer())
    if buf.DataLength() == 0 and buf.Offset() == 0:
        for j in range(g.OperatorsLength()):  # produced by DEQUANTIZE of a constant?
            op = g.Operators(j)
            if op.OutputsLength() and op.Outputs(0) == index:
                return _const_tensor(m, g, op.Inputs(0), dtypes)
        return None
    dtype = dtypes.get(t.Type())
    if dtype is None:
        return None
    return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype)


def integer_ops(model: bytes) -> dict[str, str]:
    """{op name: input dtype} for the MLP ops; int8 variants must have int8 there."""
    schema = _schema()
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    _, g, ops = _operators(model)
    out = {}
    for name, op in ops:
        if name in _MLP_OPS:
            t = types[g.Tensors(op.Inputs(0)).Type()]
            if out.get(name, t) != t:
                t = "mixed"
            out[name] = t
    return out


def op_counts(model: bytes) -> dict[str, int]:
    """How many times each builtin op occurs (e.g. one QUANTIZE and one DEQUANTIZE
    for an int8 model whose whole network runs in integers)."""
    out: dict[str, int] = {}
    for name, _ in _operators(model)[2]:
        out[name] = out.get(name, 0) + 1
    return out


def output_step(model: bytes) -> float | None:
    """Quantization step (scale) of the int8 tensor the model's final DEQUANTIZE reads:
    one output LSB in action units (1/128 after an int8 TANH); None for float models."""
    _, g, ops = _operators(model)
    step = None
    for name, op in ops:
        if name == "DEQUANTIZE":
            q = g.Tensors(op.Inputs(0)).Quantization()
            if q is not None and q.ScaleLength():
                step = float(q.Scale(0))
    return step


def gzip_bytes(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


# ---------------------------------------------------------------- running

def interpreter(model: bytes, num_threads: int = 1, delegates: bool = True,
                reference: bool = False):
    """A ready LiteRT interpreter; ``delegates=False`` runs the builtin (optimised)
    kernels only (no XNNPACK), the reference the sparse/TFLM comparisons use;
    ``reference=True`` runs LiteRT's reference kernels (the slow, readable ones)."""
    kwargs = {}
    if reference:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    elif not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=model, num_threads=num_threads, **kwargs)
    it.allocate_tensors()
    return it


def io_details(model: bytes) -> dict:
    """Input/output dtype, shape and (scale, zero_point) of the model."""
    it = interpreter(model)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    return {"input_dtype": np.dtype(i["dtype"]).name, "input_shape": i["shape"].tolist(),
            "input_quant": list(map(float, i["quantization"])),
            "output_dtype": np.dtype(o["dtype"]).name, "output_shape": o["shape"].tolist(),
            "output_quant": list(map(float, o["quantization"]))}


def run(model: bytes, obs: Iterable[np.ndarray], delegates: bool = True,
        reference: bool = False) -> np.ndarray:
    """LiteRT actions for obs [N, obs_dim] (one [1, obs_dim] invoke each) -> [N, act_dim]
    (kernels chosen as in :func:`interpreter`)."""
    it = interpreter(model, delegates=delegates, reference=reference)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for row in np.asarray(obs, np.float32):
        it.set_tensor(i["index"], row[None])
        it.invoke()
        out.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(out).astype(np.float32)

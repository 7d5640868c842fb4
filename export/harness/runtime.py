"""Policies behind one small interface, for the harness's episode loop.

A policy has ``input_shape``/``output_shape`` (tuples), and three calls the
loop times separately: ``set_input(obs)`` (float32 [1, obs_dim], quantized
here when the model's input is int8), ``invoke()`` (the inference alone, the
only thing inside the latency timer) and ``get_output()`` (float32
[1, act_dim], dequantized when the model's output is int8).

LiteRT (``ai_edge_litert``) and TFLite Micro (``tflite_micro``) are imported
lazily so the harness can measure the memory each adds.
"""
from __future__ import annotations

import os

import numpy as np

from export.harness.errors import HarnessError
from export.harness.shared import parse_c_array

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8


def read_model_bytes(path: str) -> bytes:
    """The flatbuffer of a ``.tflite`` file, or of a TFLM C array (``.cc``/``.h``)."""
    if not os.path.isfile(path):
        raise HarnessError(f"model file not found: {path}")
    if path.endswith(".h") and os.path.isfile(path[:-2] + ".cc"):
        path = path[:-2] + ".cc"  # the header declares the array, the .cc defines it
    if path.endswith((".cc", ".c", ".h")):
        data = parse_c_array(path)
    else:
        with open(path, "rb") as f:
            data = f.read()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise HarnessError(f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier)")
    return data


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def import_litert():
    """The LiteRT interpreter module, or a one-line error saying how to install it."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise HarnessError("LiteRT is not installed: pip install ai-edge-litert (wheels for "
                           "x86-64, aarch64 / 64-bit Raspberry Pi OS; none for 32-bit ARM)") \
            from None
    return interpreter


class LiteRTPolicy:
    """A ``.tflite`` model run by the LiteRT interpreter on the CPU."""

    runtime = "litert"

    def __init__(self, model_bytes: bytes, threads: int, name: str = "model"):
        litert = import_litert()

        try:
            self._interp = litert.Interpreter(model_content=model_bytes, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HarnessError(f"LiteRT cannot load {name}: {first[:200]}") from None
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise HarnessError(f"{name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                               f"expected 1 and 1")
        self._in, self._out = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self.output_shape = tuple(int(d) for d in self._out["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._in_q = self._in["quantization"]   # (scale, zero_point)
        self._out_q = self._out["quantization"]
        self._in_idx, self._out_idx = self._in["index"], self._out["index"]
        self.invoke = self._interp.invoke  # bound method: nothing but the inference

    def set_input(self, obs: np.ndarray) -> None:
        if self.input_dtype != np.float32:
            obs = _quantize(obs, self._in_q[0], self._in_q[1], self.input_dtype)
        self._interp.set_tensor(self._in_idx, obs)

    def get_output(self) -> np.ndarray:
        out = self._interp.get_tensor(self._out_idx)
        if self.output_dtype != np.float32:
            out = _dequantize(out, self._out_q[0], self._out_q[1])
        return out


class TFLMPolicy:
    """A full-integer model run by the TFLite Micro Python interpreter.

    quant: {"input_scale", "input_zero_point", "output_scale",
    "output_zero_point"} from the manifest; missing entries are read from the
    model's own tensor details. arena_bytes: TFLM tensor arena (default: 10x
    the model size, TFLM's own heuristic).
    """

    runtime = "tflm"

    def __init__(self, model_bytes: bytes, quant: dict | None = None,
                 arena_bytes: int | None = None, name: str = "model"):
        try:
            from tflite_micro.python.tflite_micro import runtime as tflm
        except ImportError:
            raise HarnessError("--runtime=tflm needs the tflite-micro package "
                               "(pip install tflite-micro)") from None
        arena = int(arena_bytes) if arena_bytes else max(len(model_bytes) * 10, 64 << 10)
        try:
            self._interp = tflm.Interpreter.from_bytes(model_bytes, arena_size=arena)
        except (ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HarnessError(f"TFLite Micro cannot load {name}: {first[:200]}") from None
        ind, outd = self._interp.get_input_details(0), self._interp.get_output_details(0)
        self.input_shape = tuple(int(d) for d in ind["shape"])
        self.output_shape = tuple(int(d) for d in outd["shape"])
        self.input_dtype = np.dtype(ind["dtype"])
        self.output_dtype = np.dtype(outd["dtype"])
        quant = dict(quant or {})

        def qparam(key, details, field, i):
            if key in quant and quant[key] is not None:
                return quant[key]
            qp = details.get("quantization_parameters") or {}
            vals = qp.get(field)
            return vals[0] if vals is not None and len(vals) else (1.0, 0)[i]

        self._in_scale = float(qparam("input_scale", ind, "scales", 0))
        self._in_zp = int(qparam("input_zero_point", ind, "zero_points", 1))
        self._out_scale = float(qparam("output_scale", outd, "scales", 0))
        self._out_zp = int(qparam("output_zero_point", outd, "zero_points", 1))
        self.quantization = {"input_scale": self._in_scale, "input_zero_point": self._in_zp,
                             "output_scale": self._out_scale,
                             "output_zero_point": self._out_zp}
        self.invoke = self._interp.invoke

    def set_input(self, obs: np.ndarray) -> None:
        if self.input_dtype != np.float32:
            obs = _quantize(obs, self._in_scale, self._in_zp, self.input_dtype)
        self._interp.set_input(obs, 0)

    def get_output(self) -> np.ndarray:
        out = self._interp.get_output(0)
        if self.output_dtype != np.float32:
            out = _dequantize(out, self._out_scale, self._out_zp)
        return out


def micro_quantization(entry: dict) -> dict:
    """Input/output int8 scale and zero point of a manifest's micro entry.

    Accepts flat keys (input_scale, input_zero_point, output_scale,
    output_zero_point) or nested {"quantization": {"input": {"scale",
    "zero_point"}, "output": {...}}} / {"input_quant": ..., "output_quant": ...}.
    """
    out = {}
    for side in ("input", "output"):
        nested = (entry.get("quantization") or {}).get(side) or entry.get(f"{side}_quant") \
            or entry.get(f"{side}_quantization") or {}
        scale = entry.get(f"{side}_scale", nested.get("scale"))
        zp = entry.get(f"{side}_zero_point", nested.get("zero_point"))
        if isinstance(scale, list):
            scale = scale[0]
        if isinstance(zp, list):
            zp = zp[0]
        if scale is not None:
            out[f"{side}_scale"] = float(scale)
        if zp is not None:
            out[f"{side}_zero_point"] = int(zp)
    return out


def check_shapes(policy, obs_dim: int, act_dim: int, name: str, env_id: str) -> None:
    """One-line HarnessError unless input is [1, obs_dim] and output [1, act_dim]."""
    if tuple(policy.input_shape) != (1, obs_dim):
        raise HarnessError(f"{name}: model input shape {list(policy.input_shape)} does not "
                           f"match {env_id}'s observation [1, {obs_dim}]")
    if tuple(policy.output_shape) != (1, act_dim):
        raise HarnessError(f"{name}: model output shape {list(policy.output_shape)} does not "
                           f"match {env_id}'s action [1, {act_dim}]")

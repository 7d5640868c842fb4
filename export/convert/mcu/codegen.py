"""The model's graph as one C99 function over static arrays, calling mcu_kernels.c.

``generate(model, name)`` returns the header and source text: constant
weights/biases/tables as ``static const`` arrays, one static buffer per
intermediate tensor, and ``void {name}_invoke(const float *input, float *output)``
that runs the ops in the flatbuffer's order. Every per-model constant TFLM
derives at Prepare time (multipliers, shifts, activation ranges, the int8 TANH
table) is computed here, in Python, exactly as TFLM computes it.
"""
from __future__ import annotations

import math

import numpy as np

from export.convert.mcu import fixedpoint as fp
from export.convert.mcu.graph import Op, Tensor, UnsupportedModelError, read_graph

# Op -> input dtypes it runs with on the microcontroller path.
SUPPORTED = {"SUB": ("float32", "int16"), "MUL": ("float32", "int16"),
             "ADD": ("float32",), "QUANTIZE": ("float32",), "DEQUANTIZE": ("int8", "int16"),
             "FULLY_CONNECTED": ("int8", "int16"), "TANH": ("int8", "int16")}
_CTYPE = {"float32": "float", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
          "int64": "int64_t"}
_QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}
_FLOAT_ACT = {"NONE": ("-FLT_MAX", "FLT_MAX"), "RELU": ("0.0f", "FLT_MAX"),
              "RELU6": ("0.0f", "6.0f"), "RELU_N1_TO_1": ("-1.0f", "1.0f")}


def _refuse(op: Op, why: str):
    raise UnsupportedModelError(f"op {op.name} {why} is not supported on the microcontroller "
                                f"path (supported: {', '.join(SUPPORTED)})")


def _c_float(x: float) -> str:
    """Exact C literal of a float32 value (hex float)."""
    x = float(np.float32(x))
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    return f"{x.hex()}f"


def _c_int(v: int, ctype: str) -> str:
    if ctype == "int64_t":
        return f"INT64_C({v})" if v != -(1 << 63) else "INT64_MIN"
    return str(v) if v != -(1 << 31) else "(-2147483647 - 1)"


def _c_array(ctype: str, name: str, values, per_line: int = 16) -> str:
    vals = np.asarray(values).reshape(-1)
    if ctype == "float":
        items = [_c_float(v) for v in vals]
        per_line = 6
    else:
        items = [_c_int(int(v), ctype) for v in vals]
    rows = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n  ".join(rows)
    return f"static const {ctype} {name}[{len(items)}] = {{\n  {body}\n}};"


class _Emitter:
    """Accumulates constant arrays, buffers and invoke() statements while walking the graph."""

    def __init__(self, graph):
        self.consts: list[str] = []
        self.buffers: dict[int, str] = {}
        self.body: list[str] = []
        self.const_bytes = 0
        self.buffer_bytes = 0
        self.symbols: dict[int, str] = {graph.inputs[0].index: "input",
                                        graph.outputs[0].index: "output"}

    def const(self, t: Tensor, values=None, ctype=None) -> str:
        """C name of a constant array (tensor data, or ``values`` derived from it)."""
        values = t.data if values is None else values
        ctype = ctype or _CTYPE[t.dtype]
        name = f"c{len(self.consts)}_{ctype[:-2] if ctype.endswith('_t') else ctype}"
        self.consts.append(_c_array(ctype, name, values))
        self.const_bytes += np.asarray(values).size * np.dtype(ctype.replace("_t", "")
                                                              if ctype != "float"
                                                              else "float32").itemsize
        return name

    def ref(self, t: Tensor) -> str:
        """C expression for tensor ``t``'s data: input/output pointer, constant or buffer."""
        if t.index in self.symbols:
            return self.symbols[t.index]
        if t.data is not None:
            self.symbols[t.index] = self.const(t)
            return self.symbols[t.index]
        if t.dtype not in _CTYPE:
            raise UnsupportedModelError(f"tensor {t.name!r} has dtype {t.dtype}, which the "
                                        "microcontroller path does not handle")
        name = f"b{t.index}"
        self.buffers[t.index] = f"static {_CTYPE[t.dtype]} {name}[{t.size}];"
        self.buffer_bytes += t.size * np.dtype(t.dtype).itemsize
        self.symbols[t.index] = name
        return name


def _qparams(t: Tensor, op: Op) -> tuple[float, int]:
    if t.scale.size != 1:
        _refuse(op, f"with {'per-channel' if t.scale.size else 'no'} quantization on "
                    f"tensor {t.name!r}")
    return float(t.scale[0]), int(t.zero_point[0]) if t.zero_point.size else 0


def _quant_act_range(op: Op, t: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the fused activation's bounds in output units."""
    qmin, qmax = _QRANGE[t.dtype]
    scale, zp = _qparams(t, op)

    def q(v: float) -> int:
        return zp + fp.round_half_away(float(np.float32(v) / np.float32(scale)))
    if op.activation in (None, "NONE"):
        return qmin, qmax
    if op.activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if op.activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if op.activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    _refuse(op, f"with fused activation {op.activation}")


def _steps(op: Op, a: Tensor, b: Tensor, out: Tensor) -> tuple[int, int]:
    if a.size == b.size == out.size:
        return 1, 1
    if a.size == 1 and b.size == out.size:
        return 0, 1
    if b.size == 1 and a.size == out.size:
        return 1, 0
    _refuse(op, f"broadcasting {a.shape} with {b.shape}")


def _binary(e: _Emitter, op: Op):
    a, b = op.inputs[:2]
    out = op.outputs[0]
    sa, sb = _steps(op, a, b, out)
    kind = op.name.lower()
    if a.dtype == "float32":
        lo, hi = _FLOAT_ACT.get(op.activation or "NONE", (None, None))
        if lo is None:
            _refuse(op, f"with fused activation {op.activation}")
        e.body.append(f"mcu_{kind}_f32({out.size}, {e.ref(a)}, {sa}, {e.ref(b)}, {sb}, "
                      f"{lo}, {hi}, {e.ref(out)});")
        return
    (s1, z1), (s2, z2), (so, zo) = _qparams(a, op), _qparams(b, op), _qparams(out, op)
    lo, hi = _quant_act_range(op, out)
    f32 = np.float32
    if op.name == "SUB":
        left = 15
        twice_max = f32(2) * max(f32(s1), f32(s2))
        m1, sh1 = fp.quantize_multiplier(float(f32(s1) / twice_max))
        m2, sh2 = fp.quantize_multiplier(float(f32(s2) / twice_max))
        mo, sho = fp.quantize_multiplier(float(twice_max / (f32(1 << left) * f32(so))))
    else:
        left, m1, sh1, m2, sh2 = 0, 0, 0, 0, 0
        mo, sho = fp.quantize_multiplier(float(s1) * float(s2) / float(so))
    name = f"p{len(e.consts)}"
    e.consts.append(f"static const mcu_binary_params {name} = {{{-z1}, {-z2}, {zo}, {left}, "
                    f"{m1}, {sh1}, {m2}, {sh2}, {mo}, {sho}, {lo}, {hi}}};")
    e.body.append(f"mcu_{kind}_i16({out.size}, {e.ref(a)}, {sa}, {e.ref(b)}, {sb}, "
                  f"&{name}, {e.ref(out)});")


def _quantize(e: _Emitter, op: Op):
    x, out = op.inputs[0], op.outputs[0]
    if out.dtype not in _QRANGE:
        _refuse(op, f"to {out.dtype}")
    scale, zp = _qparams(out, op)
    e.body.append(f"mcu_quantize_{'i16' if out.dtype == 'int16' else 'i8'}({out.size}, "
                  f"{e.ref(x)}, {_c_float(scale)}, {zp}, {e.ref(out)});")


def _dequantize(e: _Emitter, op: Op):
    q, out = op.inputs[0], op.outputs[0]
    if out.dtype != "float32":
        _refuse(op, f"to {out.dtype}")
    scale, zp = _qparams(q, op)
    e.body.append(f"mcu_dequantize_{'i16' if q.dtype == 'int16' else 'i8'}({out.size}, "
                  f"{e.ref(q)}, {float(np.float32(scale)).hex()}, {zp}, {e.ref(out)});")


def _fully_connected(e: _Emitter, op: Op):
    x, w = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    want_bias = "int64" if x.dtype == "int16" else "int32"
    if w.dtype != "int8" or w.data is None or len(w.shape) != 2:
        _refuse(op, f"with {w.dtype} weights of shape {w.shape} (needs constant int8 [out, in])")
    if bias is not None and (bias.dtype != want_bias or bias.data is None):
        _refuse(op, f"with {bias.dtype} bias on {x.dtype} input (needs constant {want_bias})")
    if getattr(op.options, "weightsFormat", 0) != 0:
        _refuse(op, "with shuffled weights")
    n_out, n_in = w.shape
    if x.size != n_in or out.size != n_out or out.dtype != x.dtype:
        _refuse(op, f"with input {x.shape} {x.dtype}, weights {w.shape}, output {out.shape} "
                    f"{out.dtype} (batch 1 only)")
    if np.any(w.zero_point != 0):
        _refuse(op, "with non-zero weight zero points")
    s_in, z_in = _qparams(x, op)
    s_out, z_out = _qparams(out, op)
    per_channel = w.scale.size > 1
    if per_channel:
        if w.scale.size != n_out or w.quantized_dimension != 0:
            _refuse(op, "with per-channel scales not along the output dimension")
        mults = [fp.quantize_multiplier(float(s_in) * float(s) / float(s_out))
                 for s in w.scale]
    else:
        s_w = float(w.scale[0])
        mults = [fp.quantize_multiplier(float(np.float32(s_in) * np.float32(s_w)) / float(s_out))]
    lo, hi = _quant_act_range(op, out)
    mult = e.const(w, [m for m, _ in mults], "int32_t")
    shift = e.const(w, [s for _, s in mults], "int8_t")
    name = f"p{len(e.consts)}"
    e.consts.append(f"static const mcu_fc_params {name} = {{{n_in}, {n_out}, {int(per_channel)}, "
                    f"{-z_in}, {z_out}, {lo}, {hi}, {mult}, {shift}}};")
    suffix = "i16" if x.dtype == "int16" else "i8"
    e.body.append(f"mcu_fully_connected_{suffix}(&{name}, {e.ref(x)}, {e.ref(w)}, "
                  f"{e.ref(bias) if bias is not None else 'NULL'}, {e.ref(out)});")


def _tanh(e: _Emitter, op: Op):
    x, out = op.inputs[0], op.outputs[0]
    s_in, z_in = _qparams(x, op)
    try:
        if x.dtype == "int8":
            lut = e.const(x, fp.tanh_int8_lut(s_in, z_in), "int8_t")
            e.body.append(f"mcu_tanh_i8({out.size}, {e.ref(x)}, {lut}, {e.ref(out)});")
            return
        s_out, z_out = _qparams(out, op)
        mult, shift = fp.tanh_int16_params(s_in, s_out, z_in, z_out)
    except fp.FixedPointError as err:
        _refuse(op, f"with these parameters ({err})")
    e.body.append(f"mcu_tanh_i16({out.size}, {e.ref(x)}, {mult}, {shift}, {e.ref(out)});")


_EMIT = {"SUB": _binary, "ADD": _binary, "MUL": _binary, "QUANTIZE": _quantize,
         "DEQUANTIZE": _dequantize, "FULLY_CONNECTED": _fully_connected, "TANH": _tanh}


def check_supported(graph) -> None:
    """UnsupportedModelError (one line, naming the op) for the first op the C path lacks."""
    for op in graph.ops:
        if op.name not in SUPPORTED:
            raise UnsupportedModelError(f"op {op.name} is not supported on the microcontroller "
                                        f"path (supported: {', '.join(SUPPORTED)})")
        dtype = op.inputs[0].dtype if op.inputs and op.inputs[0] is not None else "none"
        if dtype not in SUPPORTED[op.name]:
            _refuse(op, f"with {dtype} input")
    ins, outs = graph.inputs, graph.outputs
    if len(ins) != 1 or len(outs) != 1 or ins[0].dtype != "float32" or outs[0].dtype != "float32":
        raise UnsupportedModelError("the microcontroller path needs one float32 input and one "
                                    f"float32 output; the model has {[t.dtype for t in ins]} -> "
                                    f"{[t.dtype for t in outs]}")


def generate(model: bytes, name: str) -> tuple[str, str, dict]:
    """(header text, source text, info) for the model; info: ops, input_size, output_size,
    const_bytes (weights, biases, tables, parameters), buffer_bytes (static activations)."""
    if not name.isidentifier():
        raise ValueError(f"name {name!r} is not a C identifier")
    graph = read_graph(model)
    check_supported(graph)
    e = _Emitter(graph)
    for op in graph.ops:
        _EMIT[op.name](e, op)
    n_in, n_out = graph.inputs[0].size, graph.outputs[0].size
    macro = name.upper()
    ops = list(dict.fromkeys(op.name for op in graph.ops))
    header = f"""/* Generated by export/convert/mcu from a TFLite model: plain C99, no TFLM runtime.
 * Ops: {', '.join(ops)}. Bit-identical to TFLite Micro's reference kernels.
 * Input: float32 [{n_in}] (raw observation); output: float32 [{n_out}] (action). */
#ifndef {macro}_H_
#define {macro}_H_

#define {macro}_INPUT_SIZE {n_in}
#define {macro}_OUTPUT_SIZE {n_out}

void {name}_invoke(const float *input, float *output);

#endif /* {macro}_H_ */
"""
    source = "\n".join([
        f"/* Generated by export/convert/mcu. Do not edit. Build with mcu_kernels.c, "
        f"-ffp-contract=off. */",
        f'#include "{name}.h"', "", "#include <float.h>", "#include <math.h>",
        "#include <stddef.h>", "#include <stdint.h>", "", '#include "mcu_kernels.h"', "",
        *e.consts, "", *e.buffers.values(), "",
        f"void {name}_invoke(const float *input, float *output) {{",
        *[f"  {line}" for line in e.body], "}", ""])
    info = {"ops": ops, "input_size": n_in, "output_size": n_out,
            "const_bytes": int(e.const_bytes), "buffer_bytes": int(e.buffer_bytes)}
    return header, source, info

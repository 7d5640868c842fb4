"""TANH on every possible input: generated C (host gcc) against TFLite Micro.

Each case is a three-op model built here with the flatbuffer schema's object API,
float32 -> QUANTIZE -> TANH -> DEQUANTIZE -> float32, fed the float values that
quantize exactly to every int8 (256) or int16 (65,536) code. It covers scales
the exported actors do not happen to use: large and small, non-zero int8 zero
points, and int16's power-of-two fast path; the int16 cases read every entry of
the sigmoid table mcu_kernels.c carries.
"""
import numpy as np
import pytest

from tests.deps import require

require("tflite_micro")
schema = require("ai_edge_litert.schema_py_generated")
flatbuffers = require("flatbuffers")

from export.convert import micro, tflite  # noqa: E402
from export.convert.mcu import host  # noqa: E402


def _tensor(name: str, ttype: int, n: int, scale=None, zero_point=0):
    t = schema.TensorT()
    t.name, t.type, t.shape, t.buffer = name.encode(), ttype, [1, n], 0
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [int(zero_point)]
        t.quantization = q
    return t


def tanh_model(dtype: str, n: int, in_scale: float, in_zp: int, out_scale: float) -> bytes:
    """float32 [1, n] -> QUANTIZE -> TANH -> DEQUANTIZE -> float32 [1, n]."""
    q = schema.TensorType.INT8 if dtype == "int8" else schema.TensorType.INT16
    m = schema.ModelT()
    m.version = 3
    codes = []
    for op in ("QUANTIZE", "TANH", "DEQUANTIZE"):
        oc = schema.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, op)
        oc.version = 1
        codes.append(oc)
    m.operatorCodes = codes
    m.buffers = [schema.BufferT()]
    g = schema.SubGraphT()
    g.tensors = [_tensor("x", schema.TensorType.FLOAT32, n),
                 _tensor("xq", q, n, in_scale, in_zp),
                 _tensor("yq", q, n, out_scale, 0),
                 _tensor("y", schema.TensorType.FLOAT32, n)]
    g.inputs, g.outputs = [0], [3]
    g.operators = []
    for k in range(3):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = k, [k], [k + 1]
        g.operators.append(op)
    m.subgraphs = [g]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _all_codes(dtype: str, scale: float, zp: int, row: int) -> np.ndarray:
    """float32 [N / row, row]: every code of dtype, as floats that QUANTIZE maps back to it."""
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.float64)
    x = ((codes - zp) * np.float32(scale)).astype(np.float32)
    return x.reshape(-1, row)


def _check(dtype, in_scale, in_zp, out_scale, tmp_path, row):
    model = tanh_model(dtype, row, in_scale, in_zp, out_scale)
    x = _all_codes(dtype, in_scale, in_zp, row)
    got = host.run(host.build(model, str(tmp_path)), x, row)
    ref = micro.run(model, x, 256 * 1024, tflite.io_details(model))
    diff = np.nonzero(got.view(np.uint32) != ref.view(np.uint32))
    assert diff[0].size == 0, f"{diff[0].size} codes differ, e.g. input {x[diff][:3]}: " \
                              f"C {got[diff][:3]} TFLM {ref[diff][:3]}"
    return ref


@pytest.mark.parametrize("in_scale,in_zp", [(0.0456, 3), (0.0123, -7), (0.11, 0),
                                            (0.002, 127), (0.3, -128), (1 / 16, 0)])
def test_int8_tanh_every_code(in_scale, in_zp, tmp_path):
    ref = _check("int8", in_scale, in_zp, 1 / 128, tmp_path, 256)
    assert len(np.unique(ref)) >= 10  # even the coarsest scale here spans 10 outputs


@pytest.mark.parametrize("in_scale", [2.0 ** -12, 2.0 ** -11, 2.9590234e-4, 1.2675e-4,
                                      1 / 6144, 1e-3, 7.5e-5])
def test_int16_tanh_every_code(in_scale, tmp_path):
    ref = _check("int16", in_scale, 0, 2.0 ** -15, tmp_path, 1024)
    assert len(np.unique(ref)) > 1000

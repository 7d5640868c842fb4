"""A .tflite flatbuffer as plain Python: the tensors and ops the C generator walks.

Only what the microcontroller path needs is read: one subgraph, its tensors
(dtype, shape, quantization, constant data) and its builtin operators in
execution order with their fused activation. Anything the generator cannot
express is refused later, per op, by :mod:`export.convert.mcu.codegen`.
"""
from __future__ import annotations

import dataclasses

import numpy as np


class UnsupportedModelError(ValueError):
    """The model cannot run on the microcontroller path; the message is one line naming why."""


_NUMPY = {"FLOAT32": np.float32, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "UINT8": np.uint8, "FLOAT16": np.float16, "BOOL": np.bool_}


@dataclasses.dataclass
class Tensor:
    """One tensor. ``scale``/``zero_point``: per-tensor ([1]) or per-channel along
    ``quantized_dimension``; empty when not quantized. ``data``: the constant
    values (numpy, ``shape``) or None for an activation."""
    index: int
    name: str
    dtype: str  # lower-case TFLite type name: float32, int8, int16, int32, int64, ...
    shape: tuple[int, ...]
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def quantized(self) -> bool:
        return self.scale.size > 0


@dataclasses.dataclass
class Op:
    """One operator: builtin name (CUSTOM ops as 'CUSTOM:<code>'), inputs (None where
    the optional input is absent), outputs, and its fused activation name
    ('NONE', 'RELU', 'RELU6', 'RELU_N1_TO_1', ...) or None when it has none."""
    name: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    activation: str | None
    options: object


@dataclasses.dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[Tensor]
    outputs: list[Tensor]


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def read_graph(model: bytes) -> Graph:
    """Parse subgraph 0 of a TFLite flatbuffer; UnsupportedModelError if it is not one
    (or uses a feature the C path has no notion of: several subgraphs, external buffers)."""
    schema = _schema()
    if len(model) < 8 or bytes(model[4:8]) != b"TFL3":
        raise UnsupportedModelError("not a TFLite model (no 'TFL3' flatbuffer identifier)")
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if len(m.subgraphs or []) != 1:
        raise UnsupportedModelError(f"the model has {len(m.subgraphs or [])} subgraphs; "
                                    "the microcontroller path runs exactly one")
    g = m.subgraphs[0]
    types, ops_enum = _names(schema.TensorType), _names(schema.BuiltinOperator)
    acts = _names(schema.ActivationFunctionType)
    tensors = []
    for i, t in enumerate(g.tensors):
        dtype = types.get(t.type, f"type{t.type}")
        buf = m.buffers[t.buffer] if t.buffer < len(m.buffers or []) else None
        if buf is not None and (buf.offset or 0) > 0:
            raise UnsupportedModelError(f"tensor {t.name!r} keeps its data outside the flatbuffer")
        data = None
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if buf is not None and buf.data is not None and len(buf.data) and dtype in _NUMPY:
            raw = np.asarray(buf.data, np.uint8).tobytes()
            data = np.frombuffer(raw, _NUMPY[dtype]).reshape(shape)
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        tensors.append(Tensor(i, (t.name or b"").decode() if isinstance(t.name, bytes)
                              else str(t.name), dtype.lower(), shape, scale, zp,
                              int(q.quantizedDimension) if q is not None else 0, data))
    ops = []
    for op in g.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = ops_enum.get(code, f"UNKNOWN_{code}")
        if name == "CUSTOM":
            cc = oc.customCode
            name = f"CUSTOM:{cc.decode() if isinstance(cc, bytes) else cc}"
        opts = op.builtinOptions
        act = getattr(opts, "fusedActivationFunction", None)
        ops.append(Op(name, [tensors[k] if k >= 0 else None for k in op.inputs],
                      [tensors[k] for k in op.outputs],
                      None if act is None else acts.get(act, f"ACT{act}"), opts))
    return Graph(tensors, ops, [tensors[k] for k in g.inputs], [tensors[k] for k in g.outputs])

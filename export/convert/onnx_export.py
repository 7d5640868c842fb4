"""ONNX export with tf2onnx, from the fp32 ``.tflite``.

tf2onnx 1.17 cannot read the ``XlaCallModule`` op that current jax2tf
SavedModels contain, so the ONNX model is converted from the fp32 TFLite
flatbuffer (the same graph: SUB/MUL/clip, FULLY_CONNECTED, TANH). Input and
output are renamed ``obs`` float32 [1, obs_dim] and ``action`` float32 [1, act_dim].
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import tf2onnx

INPUT_NAME = "obs"
OUTPUT_NAME = "action"
OPSET = 17


def from_tflite(tflite_model: bytes, out_path: str, opset: int = OPSET) -> list[str]:
    """Write ``out_path`` (.onnx); returns the sorted ONNX op types it uses."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "model.tflite")
        with open(src, "wb") as f:
            f.write(tflite_model)
        model, _ = tf2onnx.convert.from_tflite(src, opset=opset)
    _rename(model.graph, model.graph.input[0].name, INPUT_NAME)
    _rename(model.graph, model.graph.output[0].name, OUTPUT_NAME)
    onnx.checker.check_model(model)
    onnx.save(model, out_path)
    return sorted({n.op_type for n in model.graph.node})


def _rename(graph, old: str, new: str):
    for vi in list(graph.input) + list(graph.output):
        if vi.name == old:
            vi.name = new
    for node in graph.node:
        for i, n in enumerate(node.input):
            if n == old:
                node.input[i] = new
        for i, n in enumerate(node.output):
            if n == old:
                node.output[i] = new


def run(path: str, obs: np.ndarray) -> np.ndarray:
    """onnxruntime (CPU) actions for obs [N, obs_dim], one [1, obs_dim] call each."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: o[None]})[0]
                           for o in np.asarray(obs, np.float32)], 0)

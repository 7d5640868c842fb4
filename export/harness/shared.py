"""What the exporter (``export/convert``, TensorFlow side) and the harness (the Pi
side) share: the names of an export directory's files, and the readers both use.
The standard library only, so the Pi imports it without JAX or TensorFlow.
"""
from __future__ import annotations

import os
import re

from export.harness.errors import HarnessError

MANIFEST = "manifest.json"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILES = {"fp32": "actor_fp32.tflite", "fp16": "actor_fp16.tflite",
                "dynamic": "actor_dynamic.tflite", "int8": "actor_int8.tflite",
                "pruned_int8": "actor_pruned_int8.tflite", "int16x8": "actor_int16x8.tflite"}
ONNX_FILE = "actor.onnx"
MICRO_DIR = "micro"
MCU_DIR = "mcu"


def dir_bytes(path: str) -> int:
    """Total bytes of the files under ``path`` (a SavedModel, a checkpoint item)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def parse_c_array(path: str) -> bytes:
    """Bytes of the first ``NAME[] = {0x.., ...}`` initialiser in a C/C++ source file.

    When the file also defines ``NAME_len = N;`` (as export/convert/micro.py writes it),
    N must equal the number of bytes read: a truncated or edited array is an
    error, not a silently different model.
    """
    with open(path, "r", errors="replace") as f:
        text = f.read()
    m = re.search(r"\{([^{}]*)\}", text)
    values = re.findall(r"0[xX][0-9a-fA-F]+|\b\d+\b", m.group(1)) if m else []
    if not values:
        raise HarnessError(f"{path} holds no C byte array")
    data = bytes(int(v, 0) & 0xFF for v in values)
    name = re.search(r"(\w+)\s*\[[^\]]*\]\s*=\s*$", text[:m.start()])
    length = re.search(rf"\b{name.group(1)}_len\s*=\s*(\d+)\s*;", text) if name else None
    if length and int(length.group(1)) != len(data):
        raise HarnessError(f"{path}: {name.group(1)}_len = {length.group(1)} but the array "
                           f"holds {len(data)} bytes (a truncated or edited file; export again)")
    return data

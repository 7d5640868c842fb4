"""The int8 / int16x8 actor as plain C for a microcontroller, bit-identical to TFLite Micro.

TFLM's C++ sources are not on the package registries this project may use
(the ``tflite-micro`` wheel ships only the compiled Python interpreter), so
instead of linking TFLM this package generates C99 for the model's graph: the
weights as ``static const`` arrays and calls into ``mcu_kernels.c``, which
reproduces TFLM's reference integer kernels for the ops the exported actors
use (float SUB/ADD/MUL normalisation, QUANTIZE, FULLY_CONNECTED int8 and
16x8, TANH int8 and int16, int16 SUB/MUL, DEQUANTIZE). A model with any
other op is refused with one line naming it.

    info = write_c_sources(model_bytes, out_dir)   # out_dir/actor_mcu.{h,c}, mcu_kernels.{h,c}

``export.convert.mcu.host`` compiles and runs the result on this machine;
``tools/mcu_emulation.sh`` cross-compiles it for an Arm Cortex-M board in QEMU.
"""
from __future__ import annotations

import os
import shutil

from export.convert.mcu.codegen import SUPPORTED, generate
from export.convert.mcu.graph import UnsupportedModelError

__all__ = ["KERNEL_FILES", "SUPPORTED", "UnsupportedModelError", "write_c_sources"]

_HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_FILES = ("mcu_kernels.h", "mcu_kernels.c")


def write_c_sources(model: bytes, out_dir: str, name: str = "actor_mcu") -> dict:
    """Write ``out_dir/{name}.h``, ``{name}.c`` and the kernel files for a TFLite model.

    Returns the generator's info (ops, input_size, output_size, const_bytes,
    buffer_bytes) plus ``files`` (the paths written, sources first). Raises
    UnsupportedModelError (one line, naming the op) before writing anything
    if the model uses an op or type the microcontroller path lacks.
    """
    header, source, info = generate(model, name)
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for fname, text in ((f"{name}.c", source), (f"{name}.h", header)):
        path = os.path.join(out_dir, fname)
        with open(path, "w") as f:
            f.write(text)
        files.append(path)
    for fname in KERNEL_FILES:
        files.append(shutil.copyfile(os.path.join(_HERE, fname), os.path.join(out_dir, fname)))
    return {**info, "files": files}

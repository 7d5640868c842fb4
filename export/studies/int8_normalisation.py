"""Study: where the observation normalisation runs in the int8 model.

Shipped: in float, before one QUANTIZE. Studied: inside the int8 graph, so the raw
observations go through one int8 scale (Ant-v5's features span very different
ranges, so most of them lose their resolution).
"""
from __future__ import annotations

import os

from export.convert import tflite
from export.convert.context import Context, errors
from export.harness.shared import SAVED_MODEL_DIR


def study(ctx: Context) -> dict:
    naive = ctx.clock("tflite_int8_normalize_in_int8", tflite.convert,
                      os.path.join(ctx.root, SAVED_MODEL_DIR), "int8", ctx.calib,
                      normalize_in_int8=True)
    return {"normalize_in_float (exported)": errors(ctx.done["int8"].actions, ctx.ref),
            "normalize_in_int8 (raw obs quantized)": {
                **errors(tflite.run(naive, ctx.heldout), ctx.ref),
                "ops": tflite.model_ops(naive)}}

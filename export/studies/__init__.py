"""Export studies: measurements kept next to what ships, never part of it.

``python -m export.convert --studies`` records them under ``studies`` in the manifest;
the shipped path (``export/convert``) never imports this package.

- ``int8_normalisation``: the int8 model with the observation normalisation quantized
  too (raw observations through one int8 scale) against the shipped float
  normalisation;
- ``unstructured_pruning``: 50 % magnitude pruning (zeros in full-size tensors) and
  the converter's sparse storage of it, against the shipped structured pruning.
"""
from __future__ import annotations

from export.convert.context import Context
from export.studies import int8_normalisation, unstructured_pruning


def run(ctx: Context) -> dict:
    """Every study that applies to the variants this export built."""
    out = {}
    if "int8" in ctx.done:
        out["int8_normalisation"] = int8_normalisation.study(ctx)
    if "pruned_int8" in ctx.done:
        out["unstructured_pruning"] = ctx.clock("unstructured_pruning_study",
                                                unstructured_pruning.study, ctx)
    return out

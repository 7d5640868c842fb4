"""Study: unstructured (magnitude) pruning and sparse weight storage.

50 % of the weights set to exact zeros keep every tensor its full shape: the file,
the TFLM arena and the latency a device sees stay the dense int8 model's, which is
why the shipped ``pruned_int8`` removes whole units instead. The converter's sparse
storage then shrinks the file but needs DENSIFY or sparse kernels to run.
"""
from __future__ import annotations

import os

from tensorflow.lite.python import convert as tfl_convert

from export.convert import jax2tf_bridge, micro, tflite
from export.convert.context import Context, errors
from export.studies import magnitude_pruning


def study(ctx: Context) -> dict:
    """The earlier recipe, kept for comparison: 50 % magnitude pruning (unstructured
    zeros, gradual cubic schedule + distillation) then int8. Zeros leave every tensor
    its shape, so the file, arena and latency stay the dense int8 model's."""
    opt, spec = ctx.options, ctx.spec
    cfg = magnitude_pruning.PruneConfig(sparsity=opt.prune_sparsity, steps=2 * opt.prune_steps,
                                        seed=opt.seed)
    pruned, prep = magnitude_pruning.prune_and_distill(spec, ctx.params, ctx.norm,
                                                       ctx.distill, cfg)
    sm = os.path.join(ctx.scratch, "unstructured_saved_model")
    jax2tf_bridge.save_saved_model(spec, pruned, ctx.norm, sm, clip_observations=False)
    model = tflite.convert(sm, "int8", ctx.calib_clipped, per_channel=False)
    ws = tflite.weight_sparsity(model)
    out = {"recipe": f"magnitude pruning to {opt.prune_sparsity} sparsity, per-tensor int8",
           "bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
           "sparsity": round(ws["sparsity"], 6),
           **errors(tflite.run(model, ctx.heldout), ctx.ref), "pruning": prep}
    try:
        out["tensor_arena_bytes"] = int(micro.min_arena_bytes(model, spec.obs_dim))
    except (ImportError, micro.MicroError) as e:
        out["tensor_arena_bytes"] = None
        out["tensor_arena_note"] = str(e).splitlines()[0][:200]
    out["sparse_storage"] = _sparse_storage(model, ctx.heldout, ctx.ref)
    return out


def _sparse_storage(pruned_model: bytes, heldout, ref) -> dict:
    """The converter's sparse weight storage applied to the exported pruned int8
    model (the pass TFLiteConverter runs for Optimize.EXPERIMENTAL_SPARSITY): its
    size, and which runtimes still run it (sparse tensors need DENSIFY or a
    sparse FULLY_CONNECTED kernel)."""
    try:
        model = tfl_convert.mlir_sparsify(pruned_model)
    except Exception as e:  # noqa: BLE001 - a study: record, don't fail the export
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    out: dict = {"bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
                 "ops": tflite.model_ops(model),
                 "recipe": "mlir_sparsify(actor_pruned_int8.tflite)"}
    n = min(50, len(heldout))
    for name, run in (("litert_xnnpack", lambda: tflite.run(model, heldout[:n])),
                      ("litert_no_delegate",
                       lambda: tflite.run(model, heldout[:n], delegates=False)),
                      ("tflite_micro", lambda: micro.run(model, heldout[:n], 1 << 20))):
        try:
            a = run()
            out[name] = {"runs": True,
                         "action_mae_vs_jax": errors(a, ref[:n])["action_mae_vs_jax"]}
        except Exception as e:  # noqa: BLE001
            out[name] = {"runs": False, "error": f"{type(e).__name__}: "
                                                  f"{(str(e).strip().splitlines() or [''])[0][:160]}"}
    return out

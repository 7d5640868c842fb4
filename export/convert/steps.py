"""One function per exported variant: ``step(ctx) -> Result`` (its manifest entry, its
model bytes, its actions on the held-out observations). The order they run in, and
what each needs from another, is the list in ``pipeline.STEPS``.

Every step takes only the :class:`~export.convert.context.Context` (the actor, the
options, the observation sets, the results of the steps it needs) and writes its own
file(s) into ``ctx.root``.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from export.convert import jax2tf_bridge, micro, onnx_export, structured, tflite
from export.convert.context import Context, Result, errors
from export.convert.quantize import int8_model
from export.harness.shared import (MICRO_DIR, ONNX_FILE, SAVED_MODEL_DIR, TFLITE_FILES,
                                   dir_bytes)

# The SavedModel must reproduce the JAX actor to float32 rounding.
SAVED_MODEL_TOL = 1e-5


class StepError(ValueError):
    """A variant that cannot be built as asked (one-line message)."""


def _tflite_result(ctx: Context, name: str, model: bytes, reference=None) -> Result:
    """Check, run and describe a TFLite model; write it as ``TFLITE_FILES[name]``."""
    actions = tflite.run(model, ctx.heldout)
    ws = tflite.weight_sparsity(model)
    entry = {"file": TFLITE_FILES[name], "bytes": len(model),
             "gzip_bytes": tflite.gzip_bytes(model), "sparsity": round(ws["sparsity"], 6),
             "weight_sparsity_per_layer": [round(s, 6) for s in ws["per_layer"]],
             "ops": tflite.check_ops(model, name, layer_norm=ctx.spec.layer_norm),
             **errors(actions, ctx.ref if reference is None else reference)}
    if name in ("int8", "pruned_int8"):
        entry["integer_ops"] = tflite.integer_ops(model)
        counts = tflite.op_counts(model)
        entry["quantize_ops"] = {k: counts.get(k, 0) for k in ("QUANTIZE", "DEQUANTIZE")}
        bad = {k: v for k, v in entry["integer_ops"].items() if v != "INT8"}
        if bad:
            raise StepError(f"{name}: ops not running in int8: {bad}")
    if name in ctx.options.variants:  # else built only for a later step (onnx, micro)
        ctx.write(TFLITE_FILES[name], model)
    return Result(entry, model, actions)


def _arena(entry: dict, model: bytes, obs_dim: int) -> None:
    """The TFLM tensor arena the model needs (or why it could not be measured)."""
    try:
        entry["tensor_arena_bytes"] = int(micro.min_arena_bytes(model, obs_dim))
    except (ImportError, micro.MicroError) as e:
        entry["tensor_arena_bytes"] = None
        entry["tensor_arena_note"] = str(e).splitlines()[0][:200]


def _saved_model_dir(ctx: Context) -> str:
    return os.path.join(ctx.root, SAVED_MODEL_DIR)


def saved_model(ctx: Context) -> Result:
    """The bridge: jax2tf -> TensorFlow SavedModel, which must reproduce the JAX actor
    to float32 rounding (every TFLite variant is converted from it)."""
    path = _saved_model_dir(ctx)
    ctx.clock("jax2tf_saved_model", jax2tf_bridge.save_saved_model, ctx.spec, ctx.params,
              ctx.norm, path)
    actions = ctx.clock("saved_model_check", jax2tf_bridge.saved_model_actions, path,
                        ctx.heldout)
    err = errors(actions, ctx.ref)
    if err["action_max_err_vs_jax"] > SAVED_MODEL_TOL:
        raise StepError(f"SavedModel differs from the JAX actor by "
                        f"{err['action_max_err_vs_jax']:.3g} > {SAVED_MODEL_TOL}")
    return Result({"file": SAVED_MODEL_DIR, "bytes": dir_bytes(path), "sparsity": 0.0,
                   "ops": ["XlaCallModule"], **err}, None, actions)


def fp32(ctx: Context) -> Result:
    model = ctx.clock("tflite_fp32", tflite.convert, _saved_model_dir(ctx), "fp32")
    return _tflite_result(ctx, "fp32", model)


def fp16(ctx: Context) -> Result:
    model = ctx.clock("tflite_fp16", tflite.convert, _saved_model_dir(ctx), "fp16")
    return _tflite_result(ctx, "fp16", model)


def dynamic(ctx: Context) -> Result:
    model = ctx.clock("tflite_dynamic", tflite.convert, _saved_model_dir(ctx), "dynamic")
    return _tflite_result(ctx, "dynamic", model)


def int8(ctx: Context) -> Result:
    model, recipe = int8_model(ctx, "int8", ctx.spec, ctx.params)
    result = _tflite_result(ctx, "int8", model)
    result.entry["quantization_recipe"] = recipe
    _arena(result.entry, model, ctx.spec.obs_dim)
    return result


def pruned_int8(ctx: Context) -> Result:
    """Whole hidden units removed (structured pruning + distillation + DAgger), then int8."""
    opt, spec = ctx.options, ctx.spec
    cfg = structured.StructuredConfig(keep=opt.prune_keep, rounds=opt.prune_rounds,
                                      steps=opt.prune_steps, dagger_rounds=opt.dagger_rounds,
                                      seed=opt.seed)

    def collect_student(policy_fn, n, seed):
        return ctx.collect(n, seed, cfg.dagger_noise, policy=policy_fn)

    p_spec, pruned, report = ctx.clock("structured_prune", structured.structured_prune, spec,
                                       ctx.params, ctx.norm, ctx.distill, cfg, collect_student)
    pruned_ref = ctx.actions(ctx.heldout, p_spec, pruned)
    report["heldout_mae_float_vs_jax"] = errors(pruned_ref, ctx.ref)["action_mae_vs_jax"]
    model, recipe = int8_model(ctx, "pruned_int8", p_spec, pruned)
    result = _tflite_result(ctx, "pruned_int8", model)
    entry = result.entry
    entry["action_mae_vs_pruned_jax"] = errors(result.actions, pruned_ref)["action_mae_vs_jax"]
    entry["architecture"] = {
        "before": [spec.obs_dim, *spec.hidden_sizes, spec.act_dim],
        "after": [p_spec.obs_dim, *p_spec.hidden_sizes, p_spec.act_dim],
        "kept_fraction": opt.prune_keep,
        "parameters_before": _num_params(ctx.params), "parameters_after": _num_params(pruned)}
    entry["policy_spec"] = p_spec.to_json()
    entry["pruning"] = report
    entry["quantization_recipe"] = recipe
    _arena(entry, model, spec.obs_dim)
    return result


def onnx(ctx: Context) -> Result:
    """ONNX from the fp32 TFLite model (tf2onnx)."""
    path = os.path.join(ctx.root, ONNX_FILE)
    ops = ctx.clock("onnx_from_tflite", onnx_export.from_tflite, ctx.done["fp32"].model, path)
    with open(path, "rb") as f:
        data = f.read()
    actions = onnx_export.run(path, ctx.heldout)
    return Result({"file": ONNX_FILE, "bytes": len(data), "gzip_bytes": tflite.gzip_bytes(data),
                   "sparsity": 0.0, "ops": ops, "source": TFLITE_FILES["fp32"],
                   **errors(actions, ctx.ref)}, None, actions)


def micro_c_array(ctx: Context) -> Result:
    """The int8 model as a TFLite-Micro C array, checked in the TFLM interpreter."""
    int8_result = ctx.done["int8"]
    model, spec = int8_result.model, ctx.spec
    ops = tflite.model_ops(model)
    unsupported = sorted(set(ops) - tflite.TFLM_OPS)
    if unsupported:
        raise StepError(f"int8 model uses ops TFLite Micro lacks: {unsupported}")
    io = tflite.io_details(model)
    arena = ctx.clock("micro_arena", micro.min_arena_bytes, model, spec.obs_dim)
    actions = micro.run(model, ctx.heldout, arena, io)
    recommended = arena + micro.ARENA_MARGIN
    _, cc = micro.write_c_array(model, os.path.join(ctx.root, MICRO_DIR),
                                arena_bytes=recommended, io=io, ops=ops)
    if micro.parse_c_array(cc) != model:
        raise StepError(f"{cc} does not round-trip to the int8 model")
    diff = np.abs(actions - int8_result.actions)
    step = tflite.output_step(model)
    # For scale: LiteRT's own two int8 kernel sets (XNNPACK vs builtin) also differ.
    litert_internal = np.abs(tflite.run(model, ctx.heldout, delegates=False)
                             - int8_result.actions)
    quant = {side: {"dtype": io[f"{side}_dtype"],
                    "scale": io[f"{side}_quant"][0] if io[f"{side}_dtype"] == "int8" else None,
                    "zero_point": int(io[f"{side}_quant"][1])
                    if io[f"{side}_dtype"] == "int8" else None} for side in ("input", "output")}
    entry = {
        "file": f"{MICRO_DIR}/actor_model.cc", "header": f"{MICRO_DIR}/actor_model.h",
        "bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
        "sparsity": round(tflite.weight_sparsity(model)["sparsity"], 6), "ops": ops,
        "tensor_arena_bytes": int(arena), "tensor_arena_bytes_recommended": int(recommended),
        "quantization": quant, "runtime": "tflite_micro (host Python interpreter)",
        "same_model_as": TFLITE_FILES["int8"],
        "max_abs_diff_vs_litert_int8": float(diff.max()), "output_step": step,
        "max_diff_vs_litert_int8_output_lsb": float(diff.max() / step) if step else None,
        "fraction_over_2_lsb_vs_litert_int8":
            float(np.mean(diff > 2.01 * step)) if step else None,
        "mean_abs_diff_vs_litert_int8": float(diff.mean()),
        "litert_builtin_vs_xnnpack_max_abs_diff": float(litert_internal.max()),
        **errors(actions, ctx.ref)}
    return Result(entry, model, actions)


def _num_params(params) -> int:
    return int(sum(np.asarray(x).size for x in jax.tree_util.tree_leaves(params)))

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

from export.convert import int16x8 as int16x8_model
from export.convert import gptq, jax2tf_bridge, micro, onnx_export, structured, tflite
from export.convert.context import Context, Result, errors
from export.convert.quantize import int8_model
from export.harness.shared import (MCU_DIR, MICRO_DIR, ONNX_FILE, SAVED_MODEL_DIR,
                                   TFLITE_FILES, dir_bytes)

# The SavedModel must reproduce the JAX actor to float32 rounding.
SAVED_MODEL_TOL = 1e-5
# int16x8 per-channel weights only while the file stays this close to int8's (#25).
INT16X8_MAX_VS_INT8 = 1.1


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
    if name in ("int8", "pruned_int8", "int16x8"):
        entry["integer_ops"] = tflite.integer_ops(model)
        counts = tflite.op_counts(model)
        entry["quantize_ops"] = {k: counts.get(k, 0) for k in ("QUANTIZE", "DEQUANTIZE")}
        want = "INT16" if name == "int16x8" else "INT8"
        bad = {k: v for k, v in entry["integer_ops"].items() if v != want}
        if bad:
            raise StepError(f"{name}: ops not running in {want.lower()}: {bad}")
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


def int16x8(ctx: Context) -> Result:
    """16-bit activations, 8-bit weights; the normalisation in float in front
    (export.convert.int16x8 says why). Candidates: weights rounded to nearest or by
    GPTQ (export.convert.gptq), per tensor, and per channel where that file stays
    within INT16X8_MAX_VS_INT8 x the int8 model's bytes (only when this export built
    int8). Ships the lowest calibration MAE among those whose calibration max error
    is no worse than per-tensor rounding to nearest's."""
    limit = INT16X8_MAX_VS_INT8 * len(ctx.done["int8"].model) if "int8" in ctx.done else 0
    granularities = (("per_tensor", False), ("per_channel", True)) if limit else (
        ("per_tensor", False),)  # without an int8 file to compare, per-channel never ships
    cands = {}
    for gran, per_channel in granularities:
        for how in ("nearest", "gptq"):
            if how == "gptq" and not gptq.supported(ctx.spec):
                continue
            params = ctx.params if how == "nearest" else ctx.clock(
                f"gptq_int16x8_{gran}", gptq.gptq_params, ctx.spec, ctx.params, ctx.norm,
                ctx.calib_clipped, per_channel)
            m = ctx.clock(f"tflite_int16x8_{how}_{gran}", int16x8_model.build, ctx.spec,
                          params, ctx.norm, os.path.join(ctx.scratch, f"int16x8_{how}_{gran}"),
                          ctx.calib_clipped, per_channel)
            cands[f"{how}_{gran}"] = (m, errors(tflite.run(m, ctx.calib), ctx.calib_ref))
    base_max = cands["nearest_per_tensor"][1]["action_max_err_vs_jax"]
    ok = [k for k, (m, e) in cands.items() if e["action_max_err_vs_jax"] <= base_max
          and (k.endswith("per_tensor") or len(m) <= limit)]
    chosen = min(ok, key=lambda k: cands[k][1]["action_mae_vs_jax"])
    result = _tflite_result(ctx, "int16x8", cands[chosen][0])
    result.entry["weight_recipe"] = {"chosen": chosen, "max_bytes": int(limit) or None,
                                     "candidates": {k: {**e, "bytes": len(m)}
                                                    for k, (m, e) in cands.items()}}
    _arena(result.entry, result.model, ctx.spec.obs_dim)
    return result


def _micro(ctx: Context, source: str, name: str) -> Result:
    """The ``source`` model (int8 or int16x8) as a TFLite-Micro C array
    ``micro/{name}.{h,cc}``, checked in the TFLM interpreter against LiteRT."""
    src, spec = ctx.done[source], ctx.spec
    model = src.model
    ops = tflite.model_ops(model)
    unsupported = sorted(set(ops) - tflite.TFLM_OPS)
    if unsupported:
        raise StepError(f"{source} model uses ops TFLite Micro lacks: {unsupported}")
    io = tflite.io_details(model)
    arena = ctx.clock(f"micro_arena_{source}", micro.min_arena_bytes, model, spec.obs_dim)
    actions = micro.run(model, ctx.heldout, arena, io)
    recommended = arena + micro.ARENA_MARGIN
    _, cc = micro.write_c_array(model, os.path.join(ctx.root, MICRO_DIR),
                                arena_bytes=recommended, io=io, ops=ops, name=name)
    if micro.parse_c_array(cc) != model:
        raise StepError(f"{cc} does not round-trip to the {source} model")
    diff = np.abs(actions - src.actions)
    step = tflite.output_step(model)
    # For scale: LiteRT's own two integer kernel sets (XNNPACK vs builtin) also differ.
    litert_internal = np.abs(tflite.run(model, ctx.heldout, delegates=False) - src.actions)
    quant = {side: {"dtype": io[f"{side}_dtype"],
                    "scale": io[f"{side}_quant"][0] if io[f"{side}_dtype"] == "int8" else None,
                    "zero_point": int(io[f"{side}_quant"][1])
                    if io[f"{side}_dtype"] == "int8" else None} for side in ("input", "output")}
    entry = {
        "file": f"{MICRO_DIR}/{name}.cc", "header": f"{MICRO_DIR}/{name}.h",
        "bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
        "sparsity": round(tflite.weight_sparsity(model)["sparsity"], 6), "ops": ops,
        "tensor_arena_bytes": int(arena), "tensor_arena_bytes_recommended": int(recommended),
        "quantization": quant, "runtime": "tflite_micro (host Python interpreter)",
        "same_model_as": TFLITE_FILES[source],
        "max_abs_diff_vs_litert": float(diff.max()), "output_step": step,
        "max_diff_vs_litert_output_lsb": float(diff.max() / step) if step else None,
        "fraction_over_2_lsb_vs_litert": float(np.mean(diff > 2.01 * step)) if step else None,
        "mean_abs_diff_vs_litert": float(diff.mean()),
        "litert_builtin_vs_xnnpack_max_abs_diff": float(litert_internal.max()),
        **errors(actions, ctx.ref)}
    return Result(entry, model, actions)


def micro_c_array(ctx: Context) -> Result:
    """The int8 model as a TFLite-Micro C array (``micro/actor_model.{h,cc}``)."""
    return _micro(ctx, "int8", "actor_model")


def micro_int16x8_c_array(ctx: Context) -> Result:
    """The int16x8 model as a TFLite-Micro C array (``micro/actor_int16x8_model.{h,cc}``)."""
    return _micro(ctx, "int16x8", "actor_int16x8_model")


def mcu_c_sources(ctx: Context) -> Result:
    """The int8 model (and the int16x8 one when it was built) as plain C for a
    microcontroller (``mcu/actor_mcu_<model>.{c,h}`` + ``mcu_kernels.{c,h}``, see
    export.convert.mcu), compiled with the host's C compiler and run on the held-out
    observations: its actions must be bit-identical to TFLite Micro's. A model with an
    op the generator lacks: one line naming it (an error when ``--variants`` asks for
    mcu, else the entry says why and the export goes on)."""
    from export.convert import mcu
    from export.convert.mcu import host
    models, files = {}, []
    for source in ("int8", "int16x8"):
        if source not in ctx.done:
            continue
        model = ctx.done[source].model
        name = f"actor_mcu_{source}"
        try:
            info = mcu.write_c_sources(model, os.path.join(ctx.root, MCU_DIR), name=name)
        except mcu.UnsupportedModelError as e:
            if not ctx.options.everything:  # --variants named mcu
                raise StepError(f"mcu: {e}") from None
            models[source] = {"refused": str(e)}
            continue
        files += [os.path.relpath(f, ctx.root) for f in info["files"] if f not in files]
        record = {k: info[k] for k in ("ops", "const_bytes", "buffer_bytes")}
        record["files"] = [f"{MCU_DIR}/{name}.c", f"{MCU_DIR}/{name}.h"]
        tflm = micro.run(model, ctx.heldout, micro.min_arena_bytes(model, ctx.spec.obs_dim)
                         + micro.ARENA_MARGIN, tflite.io_details(model))
        try:
            exe = host.build(model, os.path.join(ctx.scratch, name))
            got = host.run(exe, ctx.heldout, ctx.spec.act_dim)
            same = np.all(got.view(np.uint32) == tflm.view(np.uint32), axis=1)
            record["host_check"] = {"bit_identical_to_tflm": int(same.sum()),
                                    "observations": int(len(same))}
            if not same.all():
                raise StepError(f"mcu: the generated C for {source} differs from TFLite Micro "
                                f"on {int((~same).sum())} of {len(same)} held-out observations")
            record.update(errors(got, ctx.ref))
        except host.HostBuildError as e:
            record["host_check"] = {"skipped": str(e)}
        models[source] = record
    built = [m for m in models.values() if "refused" not in m]
    first = built[0] if built else {}
    entry = {"file": f"{MCU_DIR}/{os.path.basename(first['files'][0])}" if built else MCU_DIR,
             "files": sorted(set(files)), "models": models,
             "bytes": int(sum(m.get("const_bytes", 0) for m in built)), "sparsity": 0.0,
             "ops": first.get("ops", []),
             "action_mae_vs_jax": first.get("action_mae_vs_jax", float("nan")),
             "action_max_err_vs_jax": first.get("action_max_err_vs_jax", float("nan")),
             "runtime": "plain C99 (tools/mcu_emulation.sh runs it on emulated Cortex-M)"}
    return Result(entry, None, None)


def _num_params(params) -> int:
    return int(sum(np.asarray(x).size for x in jax.tree_util.tree_leaves(params)))

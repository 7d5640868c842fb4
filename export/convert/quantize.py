"""The full-int8 model of an actor: candidates, and which one ships.

Candidates: post-training quantization with per-tensor and with per-channel weights,
and, when neither meets the fidelity target (``--qat=auto``) or always
(``--qat=always``), quantization-aware fine-tuning at each granularity. Ships the
smallest candidate that meets the target (action MAE <= 0.01 and max error <= 0.1
against the ORIGINAL actor on the calibration observations), else the smallest
within 10 % of the most accurate.
"""
from __future__ import annotations

import os

from export.convert import jax2tf_bridge, qat, tflite
from export.convert.context import Context, errors

QAT_MODES = ("auto", "always", "never")
QAT_TARGET_MAE = 0.01
QAT_TARGET_MAX = 0.1
GRANULARITIES = (("per_tensor", False), ("per_channel", True))


def meets_target(err: dict) -> bool:
    return (err["action_mae_vs_jax"] <= QAT_TARGET_MAE
            and err["action_max_err_vs_jax"] <= QAT_TARGET_MAX)


def _convert(ctx: Context, label: str, spec, params, mode: str, per_channel: bool) -> bytes:
    """SavedModel of (spec, params) without the observation clip -> int8 TFLite."""
    sm = os.path.join(ctx.scratch, f"{label}_saved_model")
    jax2tf_bridge.save_saved_model(spec, params, ctx.norm, sm, clip_observations=False)
    return ctx.clock(f"tflite_{label}", tflite.convert, sm, mode, ctx.calib_clipped,
                     per_channel=per_channel)


def int8_model(ctx: Context, name: str, spec, params) -> tuple[bytes, dict]:
    """-> (the chosen int8 model of the actor (spec, params), the recipe record:
    target, every candidate's errors and bytes, the chosen one)."""
    opt = ctx.options
    sm = os.path.join(ctx.scratch, f"{name}_saved_model")
    ctx.clock(f"jax2tf_{name}_saved_model", jax2tf_bridge.save_saved_model, spec, params,
              ctx.norm, sm, clip_observations=False)
    cands: dict[str, tuple[bytes, dict]] = {}
    for gran, per_channel in GRANULARITIES:
        m = ctx.clock(f"tflite_{name}_{gran}", tflite.convert, sm, name, ctx.calib_clipped,
                      per_channel=per_channel)
        cands[f"post_training_{gran}"] = (m, errors(tflite.run(m, ctx.calib), ctx.calib_ref))
    info: dict = {"target": {"mae": QAT_TARGET_MAE, "max": QAT_TARGET_MAX}}
    missed = not any(meets_target(e) for _, e in cands.values())
    why_not = qat.supported(spec)
    if opt.qat == "always" or (opt.qat == "auto" and missed):
        if why_not:
            info["qat_skipped"] = why_not
        else:
            for gran, per_channel in GRANULARITIES:
                tuned, rep = ctx.clock(f"qat_{name}_{gran}", qat.finetune, spec, params,
                                       ctx.norm, ctx.distill, ctx.distill_ref,
                                       ctx.calib_clipped,
                                       qat.QATConfig(steps=opt.qat_steps,
                                                     per_channel=per_channel, seed=opt.seed))
                m = _convert(ctx, f"{name}_qat_{gran}", spec, tuned, name, per_channel)
                cands[f"quantization_aware_{gran}"] = (
                    m, {**errors(tflite.run(m, ctx.calib), ctx.calib_ref), "finetune": rep})
    good = [k for k, (_, e) in cands.items() if meets_target(e)]
    info["meets_target"] = bool(good)
    if not good:
        best = min(e["action_mae_vs_jax"] for _, e in cands.values())
        good = [k for k, (_, e) in cands.items() if e["action_mae_vs_jax"] <= 1.1 * best]
    chosen = min(good, key=lambda k: (len(cands[k][0]), cands[k][1]["action_mae_vs_jax"]))
    info["candidates"] = {k: {**e, "bytes": len(m)} for k, (m, e) in cands.items()}
    info["chosen"] = chosen
    return cands[chosen][0], info

"""The full-int8 model of an actor: candidates, and which one ships.

Candidates: post-training quantization with per-tensor and with per-channel weights
(each also with its biases corrected for the model's mean pre-activation error when
the recipe below applies), and, when none meets the fidelity target (``--qat=auto``)
or always (``--qat=always``), quantization-aware fine-tuning at each granularity.
Ships the smallest candidate that meets the target (action MAE <= 0.01 and max error <= 0.1
against the ORIGINAL actor on the calibration observations), else the smallest
within 10 % of the most accurate.

With ``--int8_equalise`` (the default), for tanh and ReLU actors, every candidate is
built from the equalised actor, calibrated with the input range held at +-CLIP and
with clipped pre-activation ranges (``export/convert/int8_recipe.py``): the same ops,
the same bytes, finer int8 steps where the error came from.
"""
from __future__ import annotations

import os

from export.convert import int8_recipe, jax2tf_bridge, qat, tflite
from export.convert.context import Context, errors

QAT_MODES = ("auto", "always", "never")
QAT_TARGET_MAE = 0.01
QAT_TARGET_MAX = 0.1
GRANULARITIES = (("per_tensor", False), ("per_channel", True))


def meets_target(err: dict) -> bool:
    return (err["action_mae_vs_jax"] <= QAT_TARGET_MAE
            and err["action_max_err_vs_jax"] <= QAT_TARGET_MAX)


def _convert(ctx: Context, label: str, spec, params, norm, rep, mode: str, per_channel: bool,
             clip: float | None) -> bytes:
    """SavedModel of (spec, params, norm) without the observation clip -> int8 TFLite
    calibrated on raw observations ``rep`` [N, obs_dim]."""
    sm = os.path.join(ctx.scratch, f"{label}_saved_model")
    jax2tf_bridge.save_saved_model(spec, params, norm, sm, clip_observations=False)
    return ctx.clock(f"tflite_{label}", tflite.convert, sm, mode, rep,
                     per_channel=per_channel, preact_clip=clip)


def int8_model(ctx: Context, name: str, spec, params) -> tuple[bytes, dict]:
    """-> (the chosen int8 model of the actor (spec, params), the recipe record:
    target, every candidate's errors and bytes, the chosen one)."""
    opt = ctx.options
    norm, clip, rep = ctx.norm, None, ctx.calib_clipped
    info: dict = {"target": {"mae": QAT_TARGET_MAE, "max": QAT_TARGET_MAX}}
    equalise = opt.int8_equalise and int8_recipe.applies_to(spec)
    if equalise:
        gain = int8_recipe.input_gain(ctx.calib_clipped, ctx.norm)
        params, norm = int8_recipe.equalise(params, ctx.norm, gain)
        clip, rep = int8_recipe.PREACT_CLIP, int8_recipe.with_edge_rows(ctx.calib_clipped, norm)
        info["equalised"] = {"input_gain_min": float(gain.min()),
                             "input_gain_max": float(gain.max()), "preact_clip": clip,
                             "gain_floor": int8_recipe.GAIN_FLOOR,
                             "gain_margin": int8_recipe.GAIN_MARGIN}
    sm = os.path.join(ctx.scratch, f"{name}_saved_model")
    ctx.clock(f"jax2tf_{name}_saved_model", jax2tf_bridge.save_saved_model, spec, params,
              norm, sm, clip_observations=False)
    cands: dict[str, tuple[bytes, dict]] = {}
    for gran, per_channel in GRANULARITIES:
        m = ctx.clock(f"tflite_{name}_{gran}", tflite.convert, sm, name, rep,
                      per_channel=per_channel, preact_clip=clip)
        cands[f"post_training_{gran}"] = (m, errors(tflite.run(m, ctx.calib), ctx.calib_ref))
        if equalise:
            fixed = int8_recipe.bias_corrected(spec, params, norm, m, ctx.calib_clipped)
            m = _convert(ctx, f"{name}_bias_corrected_{gran}", spec, fixed, norm, rep, name,
                         per_channel, clip)
            cands[f"bias_corrected_{gran}"] = (m, errors(tflite.run(m, ctx.calib),
                                                         ctx.calib_ref))
    missed = not any(meets_target(e) for _, e in cands.values())
    why_not = qat.supported(spec)
    if opt.qat == "always" or (opt.qat == "auto" and missed):
        if why_not:
            info["qat_skipped"] = why_not
        else:
            for gran, per_channel in GRANULARITIES:
                tuned, report = ctx.clock(f"qat_{name}_{gran}", qat.finetune, spec, params,
                                       norm, ctx.distill, ctx.distill_ref, rep,
                                       qat.QATConfig(steps=opt.qat_steps,
                                                     per_channel=per_channel, seed=opt.seed,
                                                     preact_clip=clip))
                m = _convert(ctx, f"{name}_qat_{gran}", spec, tuned, norm, rep, name,
                             per_channel, clip)
                cands[f"quantization_aware_{gran}"] = (
                    m, {**errors(tflite.run(m, ctx.calib), ctx.calib_ref), "finetune": report})
    good = [k for k, (_, e) in cands.items() if meets_target(e)]
    info["meets_target"] = bool(good)
    if not good:
        best = min(e["action_mae_vs_jax"] for _, e in cands.values())
        good = [k for k, (_, e) in cands.items() if e["action_mae_vs_jax"] <= 1.1 * best]
    chosen = min(good, key=lambda k: (len(cands[k][0]), cands[k][1]["action_mae_vs_jax"]))
    info["candidates"] = {k: {**e, "bytes": len(m)} for k, (m, e) in cands.items()}
    info["chosen"] = chosen
    return cands[chosen][0], info

"""A numpy model of the converter's int8 tanh actor, to screen int8 recipes quickly.

``simulate_recipe`` calibrates like the TFLite converter (min/max over the calibration
observations, widened to contain 0; asymmetric int8 activations; symmetric int8
weights per tensor or per output channel; TANH outputs at 1/128) and runs the actor
with every quantization site on. Knobs: a per-feature input gain folded into the
float normaliser and the first layer (``gain``), a fixed symmetric input range
(``input_range``), and a clip of every hidden pre-activation range (``preact_clip``).
With no knobs it reproduces the real post-training model (checked by
``python -m experiments.int8_sim --run_dir=RUN``, which also screens candidates).
"""
from __future__ import annotations

import sys
import tempfile

import numpy as np
from absl import app, flags

from experiments.int8_sites import fake_quant, float_layers, make_context
from export.convert.context import errors

FLAGS = flags.FLAGS  # --run_dir: defined by experiments.int8_sites


def act_qparams(lo: float, hi: float) -> tuple[float, int]:
    """The converter's asymmetric int8 (scale, zero point) for the range [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


def quant_weight(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """Symmetric int8 weights [in, out], dequantized."""
    m = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    s = np.maximum(m, 1e-12) / 127.0
    return np.clip(np.round(w / s), -127, 127) * s


def normalised(ctx, obs: np.ndarray) -> np.ndarray:
    mean = np.asarray(ctx.norm.mean, np.float64)
    std = np.sqrt(np.maximum(np.asarray(ctx.norm.var, np.float64), 0)) + 1e-6
    return (np.asarray(obs, np.float64) - mean) / std


def simulate_recipe(ctx, obs: np.ndarray, gain=None, input_range=None, preact_clip=None,
                    per_channel=False, layers=None, bias_correct=False) -> np.ndarray:
    """int8 actions [N, act_dim] for raw obs [N, obs_dim] (tanh actor).

    gain: per-feature multiplier [obs_dim] on the normalised features (the first
    layer's rows divided by it; exact in float). input_range: the input QUANTIZE's
    range is [-R, R] instead of the calibrated min/max. preact_clip: hidden
    FULLY_CONNECTED output ranges are clipped to [-C, C]. bias_correct: each layer's
    bias absorbs the mean over the calibration set of (float pre-activation - int8
    pre-activation), layer by layer (empirical bias correction)."""
    layers = layers or float_layers(ctx)
    g = np.ones(ctx.spec.obs_dim) if gain is None else np.asarray(gain, np.float64)
    layers = [{"w": layers[0]["w"] / g[:, None], "b": layers[0]["b"]}, *layers[1:]]
    zc = np.clip(normalised(ctx, ctx.calib_clipped), -10, 10) * g
    z = np.clip(normalised(ctx, obs), -10, 10) * g
    qin = act_qparams(-input_range, input_range) if input_range else act_qparams(zc.min(),
                                                                                  zc.max())
    xf, xc, x = zc, fake_quant(zc, *qin), fake_quant(z, *qin)
    n = len(layers)
    for i, layer in enumerate(layers):
        w = quant_weight(layer["w"], per_channel)
        b = layer["b"]
        if bias_correct:
            b = b + (xf @ layer["w"] - xc @ w).mean(axis=0)
        xf = np.tanh(xf @ layer["w"] + layer["b"])
        pc, p = xc @ w + b, x @ w + b
        lo, hi = pc.min(), pc.max()
        if preact_clip and i < n - 1:
            lo, hi = max(lo, -preact_clip), min(hi, preact_clip)
        q = act_qparams(lo, hi)
        xc, x = (fake_quant(np.tanh(fake_quant(v, *q)), 1 / 128, 0) for v in (pc, p))
    return x


def group_gain(ctx, groups, target: float | None = None) -> np.ndarray:
    """Per-feature gain putting each group's calibration max |z| at ``target`` (default:
    the largest group's): feature groups [(start, stop)]."""
    a = np.abs(np.clip(normalised(ctx, ctx.calib_clipped), -10, 10))
    peaks = [max(a[:, s:e].max(), 1e-3) for s, e in groups]
    target = target or max(peaks)
    g = np.ones(a.shape[1])
    for (s, e), pk in zip(groups, peaks):
        g[s:e] = target / pk
    return g


def main(argv):
    del argv
    ctx = make_context(FLAGS.run_dir, tempfile.mkdtemp())
    ref = ctx.ref
    obs_dim = ctx.spec.obs_dim
    ant = [(0, 13), (13, 27), (27, obs_dim)] if obs_dim == 105 else [(0, obs_dim)]
    cands = {"post-training per-tensor (converter)": {}}
    for c in (3.0, 4.0, 5.0):
        cands[f"preact clip {c}"] = {"preact_clip": c}
    for r in (6.0, 8.0):
        cands[f"input range {r}"] = {"input_range": r}
        cands[f"input range {r} + preact clip 4"] = {"input_range": r, "preact_clip": 4.0}
    cands["group gain + preact clip 4"] = {"gain": group_gain(ctx, ant), "preact_clip": 4.0}
    cands["per-channel + preact clip 4"] = {"per_channel": True, "preact_clip": 4.0}
    for name, kw in cands.items():
        e = errors(simulate_recipe(ctx, ctx.heldout, **kw), ref)
        print(f"| {name} | {e['action_mae_vs_jax']:.4f} | {e['action_max_err_vs_jax']:.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))

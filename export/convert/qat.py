"""Quantization-aware fine-tuning of the actor for the full-int8 TFLite model.

The forward pass below fake-quantizes exactly where the TFLite converter's int8
model quantizes (export/convert/tflite.py, ``int8``):

  z    = clip(normalize(obs))                       float (kept float in the model)
  QUANTIZE z                                        per tensor, asymmetric, range =
                                                    min/max of z over the calibration set
  FULLY_CONNECTED  int8 weights                     per output channel (or per tensor),
                                                    symmetric, scale = max|w| / 127;
                                                    int32 bias (scale s_in * s_w: exact
                                                    enough to leave in float)
  its output                                        per tensor, asymmetric, calibrated
  TANH                                              int8 output fixed at scale 1/128, zp 0
  ... last FULLY_CONNECTED, TANH, DEQUANTIZE

"Calibrated" ranges are the float network's min/max over the calibration
observations (what the converter measures), recomputed from the current weights
at every step without gradient. Rounding uses the straight-through estimator
(gradient 1 inside the representable range, 0 outside). Fine-tuning distils the
ORIGINAL float actor's actions (mean squared error) on real visited observations;
the converter then quantizes the fine-tuned float weights as usual.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from export.convert.finetune import FinetuneConfig
from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import ACTIVATIONS, PolicySpec

QMIN, QMAX = -128, 127
TANH_SCALE = 1.0 / 128.0


@dataclasses.dataclass(kw_only=True)
class QATConfig(FinetuneConfig):
    """per_channel: int8 weight scales per output column, else per tensor; preact_clip:
    the converter's FULLY_CONNECTED -> TANH ranges are cut to +-preact_clip (as
    ``tflite.convert(preact_clip=...)`` does); the rest: FinetuneConfig."""

    per_channel: bool = True
    preact_clip: float | None = None


def _ste(x, q):
    return x + jax.lax.stop_gradient(q - x)


def fake_quant_activation(x, lo, hi):
    """TFLite int8 activation quantization of ``x`` with calibrated range [lo, hi]
    (widened to contain 0), rounded with a straight-through gradient."""
    lo, hi = jnp.minimum(lo, 0.0), jnp.maximum(hi, 0.0)
    scale = jnp.maximum((hi - lo) / (QMAX - QMIN), 1e-12)
    zp = jnp.clip(jnp.round(QMIN - lo / scale), QMIN, QMAX)
    xc = jnp.clip(x, (QMIN - zp) * scale, (QMAX - zp) * scale)
    return _ste(xc, (jnp.round(xc / scale) + zp - zp) * scale)


def fake_quant_weight(w, per_channel: bool):
    """Symmetric int8 weights [in, out]: scale max|w| / 127 per output column (or tensor)."""
    m = jnp.max(jnp.abs(w), axis=0, keepdims=True) if per_channel else jnp.max(jnp.abs(w))
    scale = jnp.maximum(m, 1e-12) / 127.0
    return _ste(w, jnp.clip(jnp.round(w / scale), -127, 127) * scale)


def fake_quant_tanh(t):
    return _ste(t, jnp.clip(jnp.round(t / TANH_SCALE), QMIN, QMAX) * TANH_SCALE)


def _layer_list(spec: PolicySpec, params):
    p = params["params"] if "params" in params else params
    return [p[f"hidden_{i}"] for i in range(len(spec.hidden_sizes))] + [p["out"]]


def _fused(spec: PolicySpec) -> bool:
    """The converter fuses RELU into the FULLY_CONNECTED before it: that op's output is
    the activation, quantized over its own range (which starts at 0)."""
    return spec.activation == "relu"


def float_ranges(spec: PolicySpec, params, norm, obs, preact_clip: float | None = None):
    """Calibration ranges (lo, hi) of z and of every FULLY_CONNECTED output: the float
    network's min/max over ``obs`` [N, obs_dim] (what the converter records; after
    the activation where it is fused; cut to +-preact_clip where only TANH reads it)."""

    act = ACTIVATIONS[spec.activation]
    x = normalizer.normalize(norm, obs)
    ranges = [(x.min(), x.max())]
    layers = _layer_list(spec, params)
    for i, layer in enumerate(layers):
        hidden = i + 1 < len(layers)
        fused = hidden and _fused(spec)
        x = x @ layer["kernel"] + layer["bias"]
        if fused:
            x = act(x)
        lo, hi = x.min(), x.max()
        if preact_clip and (not hidden or spec.activation == "tanh"):
            lo, hi = jnp.maximum(lo, -preact_clip), jnp.minimum(hi, preact_clip)
        ranges.append((lo, hi))
        if not fused:
            x = act(x) if hidden else jnp.tanh(x)
    return ranges


def fake_quant_action(spec: PolicySpec, params, norm, obs, ranges, per_channel: bool):
    """The int8 model's action, simulated in float: obs [N, obs_dim] -> [N, act_dim]."""

    act = ACTIVATIONS[spec.activation]
    x = fake_quant_activation(normalizer.normalize(norm, obs), *ranges[0])
    layers = _layer_list(spec, params)
    for i, layer in enumerate(layers):
        hidden = i + 1 < len(layers)
        pre = x @ fake_quant_weight(layer["kernel"], per_channel) + layer["bias"]
        if hidden and _fused(spec):
            x = fake_quant_activation(act(pre), *ranges[i + 1])
            continue
        pre = fake_quant_activation(pre, *ranges[i + 1])
        if hidden and spec.activation != "tanh":
            x = act(pre)  # an op of its own, quantized with its batch range
            x = fake_quant_activation(x, x.min(), x.max())
        else:
            x = fake_quant_tanh(jnp.tanh(pre))
    return x


def supported(spec: PolicySpec) -> str | None:
    """None when the fake-quantized forward mirrors the converter for this actor,
    else why not (LayerNorm lowers to ops this simulation does not model)."""
    if spec.layer_norm:
        return "actors with LayerNorm are not simulated (their int8 graph has MEAN/RSQRT ops)"
    return None


def finetune(spec: PolicySpec, params, norm, obs: np.ndarray, targets: np.ndarray,
             calib: np.ndarray, config: QATConfig) -> tuple[dict, dict]:
    """Fine-tune ``params`` so the simulated int8 actor reproduces ``targets``.

    obs float32 [N, obs_dim] with teacher actions targets [N, act_dim]; calib: the
    converter's calibration observations. Returns (float params, report with the
    simulated int8 MAE on obs before and after)."""
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    norm = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), norm)
    obs_j, tgt_j = jnp.asarray(obs, jnp.float32), jnp.asarray(targets, jnp.float32)
    calib_j = jnp.asarray(calib, jnp.float32)
    pc = config.per_channel

    def simulated(p, o):
        ranges = jax.lax.stop_gradient(float_ranges(spec, p, norm, calib_j,
                                                    config.preact_clip))
        return fake_quant_action(spec, p, norm, o, ranges, pc)

    mae = jax.jit(lambda p: jnp.mean(jnp.abs(simulated(p, obs_j) - tgt_j)))
    before = float(mae(params))
    tx = optax.adam(optax.cosine_decay_schedule(config.lr, max(config.steps, 1), alpha=0.1))

    @jax.jit
    def run(p, key):
        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (config.batch,), 0, obs_j.shape[0])
            loss, g = jax.value_and_grad(
                lambda q: jnp.mean((simulated(q, obs_j[idx]) - tgt_j[idx]) ** 2))(p)
            upd, s = tx.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss
        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)),
                                      jax.random.split(key, config.steps))
        return p
    tuned = run(params, jax.random.PRNGKey(config.seed)) if config.steps else params
    report = {"steps": config.steps, "per_channel": pc, "lr": config.lr,
              "preact_clip": config.preact_clip,
              "simulated_int8_mae_before": before, "simulated_int8_mae_after":
              float(mae(tuned))}
    return jax.tree_util.tree_map(np.asarray, tuned), report

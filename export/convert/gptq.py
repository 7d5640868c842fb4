"""int8 weights rounded to minimise each layer's output error (GPTQ), for int16x8.

In the int16x8 model the 16-bit activations add almost nothing: its action error is
the int8 weights' (a numpy actor with only the weights rounded gives the model's
MAE to 4 digits on the Ant AC and HalfCheetah policies). Rounding each weight to
the nearest int8 step ignores that errors of one layer's weights can cancel on
the inputs it actually sees. GPTQ (Frantar et al. 2022; Optimal Brain Quantization)
rounds the rows of a kernel [in, out] one input at a time and moves the error of
each onto the rows not yet rounded, weighted by the inverse of the input second
moment H = X^T X / N over the calibration inputs X of that layer (those of the
already-rounded network, so later layers also absorb earlier layers' errors).

The rounded kernels lie on the converter's grid (symmetric, scale max|w| / 127 per
tensor or per output column, the element at the max kept at +-127 steps), so the
converter reproduces them exactly: same ops, same bytes.
"""
from __future__ import annotations

import numpy as np

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import ACTIVATIONS

DAMP = 0.01  # added to H's diagonal, as a fraction of its mean (keeps H invertible)


def _scales(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """The converter's symmetric int8 weight scale(s) of a kernel [in, out]: [1, out]
    or [1, 1]."""
    m = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max(keepdims=True)
    return np.maximum(m, 1e-12).reshape(1, -1) / 127.0


def round_kernel(w: np.ndarray, x: np.ndarray, per_channel: bool,
                 damp: float = DAMP) -> np.ndarray:
    """Kernel [in, out] rounded to its int8 grid by GPTQ on layer inputs x [N, in]
    (float64 values on the grid, same scales as ``w``)."""
    w = np.asarray(w, np.float64)
    s = _scales(w, per_channel)
    h = x.T @ x / len(x)
    h += damp * max(float(np.mean(np.diag(h))), 1e-12) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: inv(H) = u^T u
    out = w.copy()
    for i in range(out.shape[0]):
        q = np.clip(np.round(out[i] / s[0]), -127, 127) * s[0]
        err = (out[i] - q) / u[i, i]
        out[i + 1:] -= np.outer(u[i, i + 1:], err)
        out[i] = q
    # The element(s) setting each scale stay at +-127 steps, so the converter finds
    # the same scale (and therefore the same integers) in the rounded kernel.
    top = np.abs(w) >= np.abs(w).max(axis=0 if per_channel else None, keepdims=True)
    out[top] = np.sign(w[top]) * 127 * np.broadcast_to(s, w.shape)[top]
    return out


def supported(spec) -> bool:
    """MLP actors without LayerNorm (the forward below)."""
    return not spec.layer_norm


def gptq_params(spec, params, norm, calib_clipped: np.ndarray, per_channel: bool):
    """Actor params whose kernels are GPTQ-rounded to their int8 grid, layer by layer,
    on the raw calibration observations [N, obs_dim] (normalised by ``norm``)."""
    inner = params["params"] if "params" in params else params
    names = [f"hidden_{i}" for i in range(len(spec.hidden_sizes))] + ["out"]
    act = ACTIVATIONS[spec.activation]
    std = np.sqrt(np.maximum(np.asarray(norm.var, np.float64), 0.0)) + normalizer.STD_EPS
    x = np.clip((np.asarray(calib_clipped, np.float64) - np.asarray(norm.mean, np.float64))
                / std, -normalizer.CLIP, normalizer.CLIP)
    new = dict(inner)
    for i, name in enumerate(names):
        w = round_kernel(inner[name]["kernel"], x, per_channel)
        new[name] = {**inner[name], "kernel": w.astype(np.float32)}
        pre = x @ w + np.asarray(inner[name]["bias"], np.float64)
        x = np.asarray(act(pre), np.float64) if i + 1 < len(names) else np.tanh(pre)
    return {**params, "params": new} if "params" in params else new

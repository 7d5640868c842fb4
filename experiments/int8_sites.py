"""Where an int8 actor's action error comes from, one quantization site at a time.

``python -m experiments.int8_sites --run_dir=RUN [--model=actor_int8.tflite]`` reads
the int8 model's scales and zero points (the input QUANTIZE, every FULLY_CONNECTED's
weights and output, every TANH output) and re-runs the float actor in numpy with
quantization applied at ONE site at a time ("only"), and at every site but one
("all but"), on the exporter's held-out visited observations. Errors are against the
JAX actor (action MAE and max abs error). Without ``--model`` it converts the
post-training per-tensor int8 model itself. For tanh actors (the converter's int8
graph: QUANTIZE, then FULLY_CONNECTED -> TANH per layer, DEQUANTIZE).
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

from export.convert import pipeline, tflite
from export.convert.context import Clock, Context, errors
from export.convert.mcu.graph import read_graph

flags.DEFINE_string("run_dir", None, "training run directory")
flags.DEFINE_string("model", None, "int8 .tflite to analyse (default: post-training "
                    "per-tensor conversion)")
FLAGS = flags.FLAGS


def make_context(run_dir: str, scratch: str, **options) -> Context:
    """The exporter's Context for ``run_dir`` (observation sets made on first use)."""
    bundle = pipeline.load_bundle(run_dir, None)
    opt = pipeline.ExportOptions(verbose=False, **options)
    return Context(spec=bundle.spec, params=bundle.actor_params, norm=bundle.norm,
                   env_kwargs=bundle.meta.get("env_kwargs") or {}, root=scratch,
                   scratch=scratch, options=opt, clock=Clock(False))


def quant_sites(model: bytes) -> dict:
    """{"input": (scale, zp), "inv_std": the float MUL constant [obs_dim] (1/std times
    any input gain), "layers": [{"w": dequantized [in, out], "b": [out], "out": (scale,
    zp), "act": (scale, zp) or None}]} of an int8 tanh MLP model."""
    g = read_graph(model)
    sites: dict = {"layers": []}
    for op in g.ops:
        out = op.outputs[0]
        if op.name == "MUL" and out.dtype == "float32":
            sites["inv_std"] = np.asarray(op.inputs[1].data, np.float64).reshape(-1)
        elif op.name == "QUANTIZE":
            sites["input"] = (float(out.scale[0]), int(out.zero_point[0]))
        elif op.name == "FULLY_CONNECTED":
            w, b = op.inputs[1], op.inputs[2]
            ws = w.scale.reshape(-1, 1) if w.scale.size > 1 else w.scale[0]
            sites["layers"].append({
                "w": (w.data.astype(np.float64) * ws).T,
                "b": b.data.astype(np.float64) * b.scale.astype(np.float64),
                "out": (float(out.scale[0]), int(out.zero_point[0])), "act": None})
        elif op.name in ("TANH", "RELU", "LOGISTIC"):
            sites["layers"][-1]["act"] = (float(out.scale[0]), int(out.zero_point[0]))
    return sites


def fake_quant(x: np.ndarray, scale: float, zp: int, bits: int = 8) -> np.ndarray:
    """Quantize-dequantize with saturation (round half away like TFLite)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = np.clip(np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zp, lo, hi)
    return (q - zp) * scale


def float_layers(ctx: Context) -> list[dict]:
    p = ctx.params["params"] if "params" in ctx.params else ctx.params
    names = [f"hidden_{i}" for i in range(len(ctx.spec.hidden_sizes))] + ["out"]
    return [{"w": np.asarray(p[n]["kernel"], np.float64),
             "b": np.asarray(p[n]["bias"], np.float64)} for n in names]


def site_names(n_layers: int) -> list[str]:
    names = ["input"]
    for i in range(n_layers):
        tag = "out" if i == n_layers - 1 else f"h{i + 1}"
        names += [f"{tag}.weights", f"{tag}.fc_out", f"{tag}.tanh_out"]
    return names


def simulate(ctx: Context, sites: dict, obs: np.ndarray, on: set[str]) -> np.ndarray:
    """Float actor on raw obs [N, obs_dim] with quantization at the sites in ``on``
    (names from :func:`site_names`) -> actions [N, act_dim]."""
    mean = np.asarray(ctx.norm.mean, np.float64)
    std = np.sqrt(np.maximum(np.asarray(ctx.norm.var, np.float64), 0)) + 1e-6
    gain = sites["inv_std"] * std  # the model's input gain (1 without equalisation)
    x = np.clip((obs - mean) / std, -10, 10) * gain
    if "input" in on:
        x = fake_quant(x, *sites["input"])
    fl = float_layers(ctx)
    fl[0] = {"w": fl[0]["w"] / gain[:, None], "b": fl[0]["b"]}
    n = len(fl)
    for i, (f, q) in enumerate(zip(fl, sites["layers"])):
        tag = "out" if i == n - 1 else f"h{i + 1}"
        w = q["w"] if f"{tag}.weights" in on else f["w"]
        x = x @ w + (q["b"] if f"{tag}.weights" in on else f["b"])
        if f"{tag}.fc_out" in on:
            x = fake_quant(x, *q["out"])
        x = np.tanh(x)
        if f"{tag}.tanh_out" in on:
            x = fake_quant(x, *q["act"])
    return x


def breakdown(ctx: Context, model: bytes) -> str:
    """Markdown: per site, the action error with only that site quantized and with
    every site but that one; plus all sites and the real model (LiteRT)."""
    sites = quant_sites(model)
    names = site_names(len(sites["layers"]))
    obs, ref = ctx.heldout.astype(np.float64), ctx.ref
    rows = ["| site | scale | only this site: MAE | max | all but this site: MAE | max |",
            "|---|---:|---:|---:|---:|---:|"]
    for s in names:
        only = errors(simulate(ctx, sites, obs, {s}), ref)
        but = errors(simulate(ctx, sites, obs, set(names) - {s}), ref)
        rows.append(f"| {s} | {_scale_of(sites, s)} | {only['action_mae_vs_jax']:.4f} | "
                    f"{only['action_max_err_vs_jax']:.3f} | {but['action_mae_vs_jax']:.4f} | "
                    f"{but['action_max_err_vs_jax']:.3f} |")
    full = errors(simulate(ctx, sites, obs, set(names)), ref)
    real = errors(tflite.run(model, ctx.heldout), ref)
    rows.append(f"| every site (numpy) | | {full['action_mae_vs_jax']:.4f} | "
                f"{full['action_max_err_vs_jax']:.3f} | | |")
    rows.append(f"| the model (LiteRT) | | {real['action_mae_vs_jax']:.4f} | "
                f"{real['action_max_err_vs_jax']:.3f} | | |")
    return "\n".join(rows)


def _scale_of(sites: dict, s: str) -> str:
    if s == "input":
        sc, zp = sites["input"]
        return f"{sc:.4f} (range {(-128 - zp) * sc:.2f}..{(127 - zp) * sc:.2f})"
    tag, kind = s.split(".")
    i = len(sites["layers"]) - 1 if tag == "out" else int(tag[1:]) - 1
    if kind == "weights":
        return "int8 per-" + ("channel" if False else "tensor")
    sc, zp = sites["layers"][i]["out" if kind == "fc_out" else "act"]
    return f"{sc:.4f} (range {(-128 - zp) * sc:.2f}..{(127 - zp) * sc:.2f})"


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as scratch:
        ctx = make_context(FLAGS.run_dir, scratch)
        if FLAGS.model:
            with open(FLAGS.model, "rb") as f:
                model = f.read()
        else:
            from export.convert import jax2tf_bridge
            sm = os.path.join(scratch, "sm")
            jax2tf_bridge.save_saved_model(ctx.spec, ctx.params, ctx.norm, sm,
                                           clip_observations=False)
            model = tflite.convert(sm, "int8", ctx.calib_clipped, per_channel=False)
        print(breakdown(ctx, model))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))

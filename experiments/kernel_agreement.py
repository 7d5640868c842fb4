"""How far TFLite Micro and LiteRT's kernel sets disagree on an export's integer models
(``experiments.bench_export`` reports it). Output steps: 1/128 of the action range for
int8 outputs, 1/32768 for int16."""
from __future__ import annotations

import os

import numpy as np


def kernel_agreement(export_dir: str, manifest: dict, num_obs: int, seed: int) -> dict:
    """TFLM vs LiteRT (XNNPACK, builtin and reference kernels) on the export's integer
    models (int8, int16x8, pruned_int8: those it has), in output steps, over ``num_obs``
    observations of full-length deterministic fp32-policy episodes of the export's task."""
    from export.convert import micro, observations, tflite
    from jaxrl_lite.run.checkpoint import load_policy
    bundle = load_policy(manifest["source_checkpoint"])
    pol = observations.numpy_policy(bundle.spec, bundle.actor_params, bundle.norm)
    obs = observations.collect_observations(pol, num_obs, seed, env_id=manifest["env"],
                                            env_kwargs=manifest.get("env_kwargs") or {},
                                            action_noise=0.0, episode_steps=1000, stride=1)
    out = {"observations": int(len(obs)), "seed": seed}
    for name in [n for n in ("int8", "int16x8", "pruned_int8") if n in manifest["variants"]]:
        with open(os.path.join(export_dir, f"actor_{name}.tflite"), "rb") as f:
            model = f.read()
        step = tflite.output_step(model)
        arena = manifest["variants"][name].get("tensor_arena_bytes") or 16384
        runs = {"litert_xnnpack": tflite.run(model, obs),
                "litert_builtin": tflite.run(model, obs, delegates=False),
                "litert_reference": tflite.run(model, obs, reference=True),
                "tflm": micro.run(model, obs, arena + micro.ARENA_MARGIN,
                                  tflite.io_details(model))}
        pairs = {}
        for a, b in (("tflm", "litert_xnnpack"), ("tflm", "litert_builtin"),
                     ("tflm", "litert_reference"), ("litert_builtin", "litert_xnnpack"),
                     ("litert_reference", "litert_builtin")):
            lsb = np.abs(runs[a] - runs[b]) / step
            pairs[f"{a}_vs_{b}"] = {"max_lsb": float(lsb.max()),
                                    "fraction_nonzero": float(np.mean(lsb > 0.01)),
                                    "fraction_over_2_lsb": float(np.mean(lsb > 2.01)),
                                    "observations_over_2_lsb": int(np.sum((lsb > 2.01).any(1)))}
        out[name] = {"output_step": step, **pairs}
    return out

r"""Export fidelity benchmark: every variant of a trained policy, side by side.

    python -m experiments.bench_export --run_dir=RUN --out_dir=BENCH --episodes=100 --seed=1000

Exports RUN (``--studies`` on, so the unstructured-pruning figure is measured too),
runs the Pi harness on every variant over the same ``--episodes`` seeds, checks
TFLM against LiteRT int8 on observations the fp32 policy visits, and writes
``BENCH/bench_export.{json,md}``: per variant bytes, TFLM arena, p50 latency,
action MAE / max error vs the JAX actor, return ratio vs fp32 with its paired
bootstrap 95 % interval, falls, and the ratios to fp32. ``--export_dir`` reuses an
existing export instead of converting.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

from experiments.kernel_agreement import kernel_agreement

_RUN = flags.DEFINE_string("run_dir", None, "Training run to export.")
_EXPORT = flags.DEFINE_string("export_dir", None, "Existing export (skips the conversion).")
_OUT = flags.DEFINE_string("out_dir", "runs/bench_export", "Where results go.")
_EPISODES = flags.DEFINE_integer("episodes", 100, "Matched episodes per variant.")
_SEED = flags.DEFINE_integer("seed", 1000, "First episode seed.")
_REUSE = flags.DEFINE_boolean("reuse_evaluation", False, "Keep <out_dir>/evaluation.json "
                              "if it exists (e.g. after a later stage failed).")
_LSB_OBS = flags.DEFINE_integer("lsb_obs", 2000, "Visited observations for TFLM vs LiteRT.")
_CONVERT_ARGS = flags.DEFINE_multi_string("convert_arg", [], "An extra export.convert flag "
                                           "(repeatable), e.g. --convert_arg=--prune_keep=0.5")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(*args) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:1])} failed (exit {proc.returncode})")


def table(manifest: dict, evaluation: dict) -> str:
    rows = ["| variant | bytes | vs fp32 | TFLM arena B | p50 µs | vs fp32 | action MAE | max err "
            "| return (mean ± std) | return vs fp32 [95% CI] | falls |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, r in evaluation["variants"].items():
        if "returns" not in r:
            continue
        m = manifest["variants"].get(name, {})
        vs = r.get("vs_fp32") or {}
        ci = vs.get("return_ratio_ci95") or [float("nan")] * 2
        rows.append(
            f"| {name} | {r['model_bytes']:,} | {vs.get('bytes_ratio') or 1:.2f} | "
            f"{m.get('tensor_arena_bytes') or '–'} | {r['latency_us_p50']:.2f} | "
            f"{vs.get('p50_ratio') or 1:.2f} | {m.get('action_mae_vs_jax', float('nan')):.4f} | "
            f"{m.get('action_max_err_vs_jax', float('nan')):.3f} | {r['return_mean']:.0f} ± "
            f"{r['return_std']:.0f} | {vs.get('return_ratio', 1):.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
            f"{' ' + vs['return_verdict'] if name != 'fp32' and 'return_verdict' in vs else ''} "
            f"| {r['falls']}/{r['episodes']} |")
    return "\n".join(rows) + "\n"


def main(argv):
    del argv
    os.makedirs(_OUT.value, exist_ok=True)
    export_dir = _EXPORT.value or os.path.join(_OUT.value, "export")
    if not _EXPORT.value:
        if not _RUN.value:
            raise SystemExit("error: give --run_dir=RUN or --export_dir=EXPORT")
        _python("export.convert", f"--run_dir={_RUN.value}", f"--out_dir={export_dir}",
                "--studies", *_CONVERT_ARGS.value)
    with open(os.path.join(export_dir, "manifest.json")) as f:
        manifest = json.load(f)
    report = os.path.join(_OUT.value, "evaluation.json")
    if not (_REUSE.value and os.path.exists(report)):
        _python("export.evaluate", f"--export_dir={export_dir}",
                f"--episodes={_EPISODES.value}", f"--seed={_SEED.value}", "--threads=1",
                "--comparison_rows=false", f"--report={report}")
    with open(report) as f:
        evaluation = json.load(f)
    agreement = kernel_agreement(export_dir, manifest, _LSB_OBS.value, _SEED.value + 10_000)
    md = table(manifest, evaluation)
    out = {"export_dir": export_dir, "episodes": _EPISODES.value,
           "seed": _SEED.value, "table_markdown": md, "kernel_agreement": agreement,
           "studies": manifest.get("studies", {}),
           "pruned_architecture": manifest["variants"].get("pruned_int8", {}).get(
               "architecture"),
           "quantization_recipes": {k: v.get("quantization_recipe") for k, v in
                                    manifest["variants"].items() if "quantization_recipe" in v},
           "machine": evaluation.get("machine")}
    with open(os.path.join(_OUT.value, "bench_export.json"), "w") as f:
        json.dump(out, f, indent=2)
    with open(os.path.join(_OUT.value, "bench_export.md"), "w") as f:
        f.write(md)
    print(md)
    print(json.dumps(agreement, indent=1))


if __name__ == "__main__":
    app.run(main)

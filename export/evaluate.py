"""Evaluate exported actors on gymnasium's Ant-v5 with LiteRT alone (the Pi harness).

One model, measured in this process:
  python -m export.evaluate --model=EXPORT/actor_int8.tflite --episodes=5 --seed=0 \
      --threads=1 [--cpus=0] [--profile=pi4] [--report=OUT.json]
  python -m export.evaluate --model=EXPORT/micro/actor_model.cc --runtime=tflm

Every variant of an export directory, side by side, each in its own process
(so memory figures do not mix), plus TensorFlow SavedModel and JAX comparison
rows where those packages are installed; writes JSON (all variants, and one
file per variant in STEM_variants/), a Markdown table and a PNG chart
(``--report`` stem + .json/.md/.png, default EXPORT/evaluation.*):
  python -m export.evaluate --export_dir=EXPORT --episodes=5 --seed=0 --threads=1

Imports only numpy, gymnasium, mujoco, ai_edge_litert, psutil and absl
(matplotlib for the chart, tflite_micro for --runtime=tflm): no JAX, no
TensorFlow.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

from export.harness import errors, machine, profiles
from export.harness.errors import HarnessError
from export.harness.manifest import MANIFEST, arena_bytes, entry_for, is_micro, load_manifest
from export.harness import fidelity, loop, runtime
from export.harness.report import markdown_table, write_chart

profiles.define_common_flags()
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Export directory with manifest.json: "
                                  "evaluate every variant side by side.")
profiles.define_model_flags()
_MODEL, _RUNTIME = flags.FLAGS["model"], flags.FLAGS["runtime"]
_MANIFEST, _VIDEO, _NAME = flags.FLAGS["manifest"], flags.FLAGS["video"], flags.FLAGS["name"]
_COMPARISON = flags.DEFINE_bool("comparison_rows", True, "With --export_dir, add the "
                                "TensorFlow SavedModel and JAX actor rows.")


# --------------------------------------------------------------------------- one model
def evaluate_model(constraints: dict) -> dict:
    """Measure --model in this process; returns the report dict."""

    path = _MODEL.value
    data = runtime.read_model_bytes(path)
    manifest, entry = entry_for(path, _MANIFEST.value)
    env_id, env_kwargs = profiles.task(flags.FLAGS, manifest)
    name = _NAME.value or (entry or {}).get("name") or os.path.basename(path)
    extra = {}
    if (entry or {}).get("tensor_arena_bytes"):  # measured by the exporter with TFLM
        extra["arena_bytes"] = int(entry["tensor_arena_bytes"])
    if _RUNTIME.value == "tflm":
        quant = runtime.micro_quantization(entry or {})
        arena = arena_bytes(entry or {})

        def import_runtime():
            try:
                from tflite_micro.python.tflite_micro import runtime  # noqa: F401
            except ImportError:
                raise HarnessError("--runtime=tflm needs the tflite-micro package "
                                   "(pip install tflite-micro)") from None

        def load():
            pol = runtime.TFLMPolicy(data, quant, arena, name)
            extra["quantization"] = pol.quantization
            return pol
    else:
        def import_runtime():
            runtime.import_litert()

        def load():
            return runtime.LiteRTPolicy(data, constraints["threads"], name)
    return loop.measure(
        name, _RUNTIME.value, import_runtime, load, constraints,
        episodes=flags.FLAGS.episodes, seed=flags.FLAGS.seed,
        max_episode_steps=flags.FLAGS.max_episode_steps, warmup=flags.FLAGS.warmup,
        model_path=os.path.abspath(path), model_bytes=len(data), extra=extra, env_id=env_id,
        env_kwargs=env_kwargs)


def summary_line(r: dict) -> str:
    def f(key, fmt="{:.1f}", scale=1.0):  # "n/a" for figures this OS could not provide
        return "n/a" if r.get(key) is None else fmt.format(scale * r[key])

    return (f"{r['name']}: return {r['return_mean']:.1f} ± {r['return_std']:.1f} over "
            f"{r['episodes']} episodes (len {r['episode_length_mean']:.0f}); invoke p50 "
            f"{r['latency_us_p50']:.1f} µs p99 {r['latency_us_p99']:.1f} µs max "
            f"{r['latency_us_max']:.0f} µs; env step {r['env_step_us_mean']:.0f} µs; overhead "
            f"{r['harness_overhead_us_per_step']:.1f} µs/step "
            f"({100 * r['harness_overhead_fraction']:.1f}%); peak RSS {f('rss_mb_peak')} MB "
            f"(model {f('rss_mb_model')} MB); CPU {f('cpu_percent_mean', '{:.0f}%')}")


def run_single(constraints: dict) -> int:
    report = machine.measure_to_json(_REPORT_PATH(), lambda: evaluate_model(constraints))
    print(summary_line(report), flush=True)
    if _VIDEO.value:
        record_video(_MODEL.value, _RUNTIME.value,
                     _task_flags(report["env"], report["env_kwargs"]))
    return 0


def _REPORT_PATH() -> str | None:  # noqa: N802
    return flags.FLAGS.report


# --------------------------------------------------------------------------- video
def check_video_target(path: str) -> None:
    """One-line error now (before measuring) if no encoder can write ``path``."""
    if path.endswith(".gif"):
        if importlib.util.find_spec("PIL") is None:
            raise HarnessError(f"--video={path}: writing GIF needs Pillow (pip install pillow)")
    elif path.endswith(".mp4"):
        if shutil.which("ffmpeg") is None and importlib.util.find_spec("imageio_ffmpeg") is None:
            raise HarnessError(f"--video={path}: writing MP4 needs ffmpeg (apt install ffmpeg, "
                               f"or pip install imageio-ffmpeg); or use --video=FILE.gif")
    else:
        raise HarnessError(f"--video={path}: expected a .mp4 or .gif file name")
    proc = subprocess.run([sys.executable, "-m", "export.harness.video", "--probe_gl"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(_last_error_line(proc.stderr) or "offscreen rendering failed")


def record_video(model: str, runtime: str, task_flags: list[str]) -> None:
    """Record one episode in a child process (so GL memory never mixes into the figures)."""
    cmd = [sys.executable, "-m", "export.harness.video", f"--model={model}",
           f"--runtime={runtime}", f"--video={_VIDEO.value}", f"--seed={flags.FLAGS.seed}",
           *task_flags]
    if flags.FLAGS.max_episode_steps:
        cmd.append(f"--max_episode_steps={flags.FLAGS.max_episode_steps}")
    if _MANIFEST.value:
        cmd.append(f"--manifest={_MANIFEST.value}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(_last_error_line(proc.stderr) or f"video recording failed "
                           f"(exit {proc.returncode})")
    print(f"video: {_VIDEO.value}", flush=True)


# --------------------------------------------------------------------------- export dir
def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error: "):
            return ln[len("error: "):]
    return lines[-1][:300] if lines else ""


def _task_flags(env_id: str, env_kwargs: dict) -> list[str]:
    return [f"--env={env_id}", f"--env_kwargs={json.dumps(env_kwargs)}"]


def _run_child(name: str, runtime: str, cmd: list[str], tmp: str) -> dict:
    """Run one harness child process; its JSON report, or a row with its error."""
    report = os.path.join(tmp, f"{len(os.listdir(tmp)):02d}.json")
    cmd = cmd + profiles.forwarded_flags() + [f"--report={report}", f"--name={name}"]
    print(f"[evaluate] {name} ({runtime}) ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {}
    if os.path.isfile(report):
        with open(report) as f:
            row = json.load(f)
    row.setdefault("name", name)
    row.setdefault("runtime", runtime)
    if proc.returncode != 0:
        row["error"] = _last_error_line(proc.stderr) or f"exit code {proc.returncode}"
        row["exit_code"] = proc.returncode
        print(f"[evaluate] {name}: FAILED: {row['error']}", flush=True)
    else:
        print(f"[evaluate] {summary_line(row)}", flush=True)
    return row


def _resolve_checkpoint(manifest: dict, export_dir: str) -> str | None:
    src = manifest.get("source_checkpoint")
    if not src:
        return None
    for cand in (src, os.path.join(export_dir, src), os.path.join(export_dir, "..", src)):
        if os.path.exists(cand):
            return os.path.abspath(cand)
    return None


def run_export_dir(constraints: dict) -> int:
    export_dir = _EXPORT_DIR.value
    manifest = load_manifest(export_dir)
    env_id, env_kwargs = profiles.task(flags.FLAGS, manifest)
    task_flags = _task_flags(env_id, env_kwargs)  # last on each child's command line
    py = sys.executable
    rows = []
    video_model = None
    with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
        for name, entry in manifest["variants"].items():
            f = str(entry.get("file", ""))
            path = os.path.join(export_dir, f)
            if os.path.isdir(path) and os.path.basename(os.path.normpath(f)) == "saved_model":
                continue  # the "TensorFlow SavedModel" comparison row below
            if is_micro(name, entry):
                if importlib.util.find_spec("tflite_micro") is None:
                    rows.append({"name": name, "runtime": "tflm",
                                 "skipped": "tflite-micro is not installed"})
                    continue
                rows.append(_run_child(name, "tflm", [
                    py, "-m", "export.evaluate", f"--model={path}", "--runtime=tflm",
                    f"--manifest={os.path.join(export_dir, MANIFEST)}", *task_flags], tmp))
            elif f.endswith(".tflite"):
                rows.append(_run_child(name, "litert", [
                    py, "-m", "export.evaluate", f"--model={path}", *task_flags], tmp))
                if video_model is None or name.endswith("int8") and "pruned" not in name:
                    video_model = path
            elif name == "mcu":
                rows.append({"name": name, "runtime": "c", "skipped":
                             "plain C for a microcontroller; tools/mcu_emulation.sh runs it "
                             "on an emulated Cortex-M"})
            else:
                kind = os.path.splitext(f)[1].lstrip(".") or "other"
                rows.append({"name": name, "runtime": kind, "skipped":
                             f"{f} is not a TFLite model; the Pi harness runs LiteRT only"})
        if _COMPARISON.value:
            rows.extend(comparison_rows(manifest, export_dir, tmp, task_flags))
    fidelity.attach(rows, "fp32")
    desc = machine.machine_description(constraints)
    stem = os.path.splitext(_REPORT_PATH() or os.path.join(export_dir, "evaluation.json"))[0]
    table = markdown_table(rows, desc)
    out = {"export_dir": os.path.abspath(export_dir), "machine": desc, "env": env_id,
           "env_kwargs": env_kwargs,
           "episodes": flags.FLAGS.episodes, "seed": flags.FLAGS.seed,
           "max_episode_steps": flags.FLAGS.max_episode_steps,
           "variants": {r["name"]: r for r in rows}, "table_markdown": table}
    machine.write_json(stem + ".json", out)
    for r in rows:  # one JSON per variant too
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in r["name"])
        machine.write_json(os.path.join(stem + "_variants", safe + ".json"), r)
    with open(stem + ".md", "w") as fh:
        fh.write(table)
    chart = write_chart(rows, stem + ".png")
    print("\n" + table, flush=True)
    print(f"[evaluate] wrote {stem}.json, {stem}.md, {stem}_variants/*.json"
          + (f", {chart}" if chart else " (no chart: matplotlib is not installed)"))
    if _VIDEO.value and video_model:
        record_video(video_model, "litert", task_flags)
    failed = [r["name"] for r in rows if "error" in r and r["runtime"] in ("litert", "tflm")]
    if failed:
        print(f"error: variant(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def comparison_rows(manifest: dict, export_dir: str, tmp: str, task_flags: list[str]
                    ) -> list[dict]:
    """TensorFlow SavedModel and JAX actor rows, each in its own process, or skip notes."""
    py = sys.executable
    rows = []
    saved = os.path.join(export_dir, "saved_model")
    name = "TensorFlow SavedModel"
    if not os.path.isdir(saved):
        rows.append({"name": name, "runtime": "tensorflow",
                     "skipped": f"no saved_model/ in {export_dir}"})
    elif importlib.util.find_spec("tensorflow") is None:
        rows.append({"name": name, "runtime": "tensorflow",
                     "skipped": "TensorFlow is not installed here"})
    else:
        rows.append(_run_child(name, "tensorflow", [
            py, "-m", "export.harness.reference_tf", f"--saved_model={saved}", *task_flags],
            tmp))
    name = "JAX actor"
    ckpt = _resolve_checkpoint(manifest, export_dir)
    if ckpt is None:
        rows.append({"name": name, "runtime": "jax", "skipped":
                     f"source_checkpoint {manifest.get('source_checkpoint')!r} not found"})
    elif importlib.util.find_spec("jax") is None or \
            importlib.util.find_spec("jaxrl_lite") is None:
        rows.append({"name": name, "runtime": "jax",
                     "skipped": "JAX / jaxrl_lite is not installed here"})
    else:
        rows.append(_run_child(name, "jax", [
            py, "-m", "export.harness.reference_jax", f"--checkpoint={ckpt}", *task_flags],
            tmp))
    return rows


# --------------------------------------------------------------------------- main
def _main(argv) -> int:
    if len(argv) > 1:
        raise HarnessError(f"unexpected arguments: {' '.join(argv[1:])}")
    if bool(_MODEL.value) == bool(_EXPORT_DIR.value):
        raise HarnessError("give exactly one of --model=PATH.tflite or --export_dir=EXPORT")
    constraints = profiles.apply_constraints(flags.FLAGS)
    if _VIDEO.value:
        check_video_target(_VIDEO.value)
    if _EXPORT_DIR.value:
        return run_export_dir(constraints)
    return run_single(constraints)


def main(argv):
    errors.run_main(lambda: _main(argv))


if __name__ == "__main__":
    app.run(main)

"""Tests of the Pi-side evaluation harness (export/evaluate.py and export/harness/).

A session fixture (conftest ``harness_export_dir``, built by tests/harness_helpers.py)
builds a small real export directory: a 256x256 tanh
actor (jaxrl_lite.blocks.policy's network, random weights, normaliser fitted on real
Ant-v5 observations) saved as a jaxrl_lite checkpoint, and the same function
in TensorFlow exported as a SavedModel, an fp32 .tflite, a float-I/O int8
.tflite and a full-int8 TFLite-Micro C array, with a manifest.json in the
format WORKSPACE.md documents ("Public interfaces"). Every CLI run is a real subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.harness_helpers import (ACT_DIM, OBS_DIM, REPO, SHORT, ant_observations,
                                   rollout_returns, run_cli, run_report)


@pytest.fixture(scope="module")
def export_dir(harness_export_dir):
    return harness_export_dir


@pytest.fixture(scope="module")
def fp32_report(export_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fp32") / "fp32.json")
    proc = run_cli(f"--model={export_dir}/actor_fp32.tflite", "--threads=1", "--cpus=0",
                   f"--report={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return json.load(f)


def test_single_model_report_matches_reference_rollout(export_dir, fp32_report):
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_path=f"{export_dir}/actor_fp32.tflite", num_threads=1)
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def act(x):
        it.set_tensor(i_in, x)
        it.invoke()
        return it.get_tensor(i_out)

    rets, lens = rollout_returns(act)
    r = fp32_report
    assert r["returns"] == pytest.approx(rets, rel=1e-9, abs=1e-9)
    assert r["episode_lengths"] == lens and r["seeds"] == [3, 4]
    assert r["return_mean"] == pytest.approx(np.mean(rets))
    assert r["return_std"] == pytest.approx(np.std(rets))
    assert r["steps_total"] == sum(lens)
    assert 0 < r["latency_us_p50"] <= r["latency_us_p99"] <= r["latency_us_max"]
    # The step time splits into invoke + env.step + harness overhead.
    parts = r["latency_us_mean"] + r["env_step_us_mean"] + r["harness_overhead_us_per_step"]
    assert parts == pytest.approx(r["step_us_mean"], rel=1e-6)
    assert 0 < r["harness_overhead_fraction"] < 1
    assert r["model_bytes"] == os.path.getsize(f"{export_dir}/actor_fp32.tflite")
    assert r["rss_mb_peak"] >= r["rss_mb_start"] > 0 and r["rss_mb_model"] > 0
    assert r["cpu_percent_mean"] > 0
    m = r["machine"]
    assert m["cpus"] == [0] and m["threads"] == 1 and m["litert_version"]
    assert m["python"] and m["cpu_model"] and m["cpu_count_logical"] >= 1


def heavy_modules_after(script: str) -> tuple[list[str], str]:
    """Run ``script`` in a fresh Python: (the JAX/TF-family modules it left loaded, stdout)."""
    probe = script + (
        "import json, sys\n"
        "print('HEAVY=' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jax', 'jaxlib', 'tensorflow', 'flax', 'keras', 'torch', 'jaxrl_lite'))))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY="))
    return json.loads(line[len("HEAVY="):]), proc.stdout


def test_harness_loads_neither_jax_nor_tensorflow(export_dir, tmp_path):
    heavy, _ = heavy_modules_after(
        "from absl import app\n"
        "from export import evaluate\n"
        "try:\n"
        f"    app.run(evaluate.main, argv=['evaluate', '--model={export_dir}/actor_int8.tflite',"
        f" '--report={tmp_path}/r.json', {', '.join(repr(a) for a in SHORT)}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n")
    assert heavy == []
    assert os.path.isfile(tmp_path / "r.json")


def test_every_pi_side_module_imports_without_jax_or_tensorflow():
    """Each module of export/harness/ (and export.evaluate) imported in a fresh process,
    one after the other; the CLI modules' flags are cleared in between, as each one
    defines its own set when it runs alone."""
    heavy, stdout = heavy_modules_after(
        "import importlib, json, pkgutil\n"
        "from absl import flags\n"
        "import export.harness\n"
        "names = [m.name for m in pkgutil.iter_modules(export.harness.__path__, "
        "'export.harness.')] + ['export.evaluate']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "    for f in list(flags.FLAGS):\n"
        "        delattr(flags.FLAGS, f)\n"
        "print('IMPORTED=' + json.dumps(names))\n")
    line = next(ln for ln in stdout.splitlines() if ln.startswith("IMPORTED="))
    on_disk = {f"export.harness.{f[:-3]}" for f in os.listdir(os.path.join(REPO, "export",
                                                                          "harness"))
               if f.endswith(".py") and f != "__init__.py"}
    assert on_disk and set(json.loads(line[len("IMPORTED="):])) == on_disk | {"export.evaluate"}
    assert heavy == [], heavy


def test_int8_run_reports_memory_latency_and_overhead(export_dir, tmp_path):
    # The figures against the targets (RSS, µs latency, overhead) are benchmark
    # output (WORKSPACE.md), not assertions: they depend on the machine and its load.
    r = run_report(tmp_path, "int8", f"--model={export_dir}/actor_int8.tflite",
                   "--threads=1")
    assert r["rss_mb_peak"] > 0 and 0 < r["latency_us_p50"] <= r["latency_us_max"]
    assert 0 <= r["harness_overhead_fraction"] < 1
    assert r["model_bytes"] < os.path.getsize(f"{export_dir}/actor_fp32.tflite") / 2


def test_tflm_runtime_applies_manifest_quantization(export_dir, tmp_path):
    from ai_edge_litert import interpreter as litert

    r = run_report(tmp_path, "tflm", f"--model={export_dir}/micro/actor_model.cc",
                   "--runtime=tflm")
    q = json.load(open(f"{export_dir}/manifest.json"))["variants"]["micro"]["quantization"]
    assert q["input"]["dtype"] == "int8" == q["output"]["dtype"]
    man = {f"{side}_{k}": q[side][k] for side in q for k in ("scale", "zero_point")}
    assert r["runtime"] == "tflm" and r["name"] == "micro"
    assert r["quantization"] == pytest.approx(man)
    # Reference: LiteRT runs the same int8 flatbuffer, quantizing by hand.
    from export.harness.runtime import parse_c_array
    it = litert.Interpreter(model_content=parse_c_array(f"{export_dir}/micro/actor_model.cc"))
    it.allocate_tensors()
    d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]

    def act(x):
        q = np.clip(np.round(x / man["input_scale"]) + man["input_zero_point"], -128, 127)
        it.set_tensor(d_in["index"], q.astype(np.int8))
        it.invoke()
        y = it.get_tensor(d_out["index"]).astype(np.float32)
        return (y - man["output_zero_point"]) * man["output_scale"]

    rets, lens = rollout_returns(act)
    assert r["episode_lengths"] == lens
    # Integer kernels of TFLM and LiteRT may round differently by one step.
    assert r["returns"] == pytest.approx(rets, rel=0.05, abs=0.5)


def test_profile_sets_threads_budget_and_states_emulation(export_dir, tmp_path):
    r = run_report(tmp_path, "p", f"--model={export_dir}/actor_int8.tflite",
                   "--profile=pi_zero_2")
    m = r["machine"]
    assert m["profile"]["name"] == "pi_zero_2" and m["threads"] == 4 == r["threads"]
    assert r["memory_budget_mb"] == 384 and r["within_budget"] is True
    assert any("not the Pi's clock" in n for n in m["notes"])
    assert len(m["cpus"]) == min(4, len(os.sched_getaffinity(0)))


def test_export_dir_side_by_side(export_dir, fp32_report, tmp_path):
    report = tmp_path / "evaluation.json"
    proc = run_cli(f"--export_dir={export_dir}", "--threads=1", f"--report={report}", *SHORT,
                   timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(report.read_text())
    rows = out["variants"]
    assert set(rows) == {"fp32", "int8", "micro", "onnx", "TensorFlow SavedModel", "JAX actor"}
    assert "not a TFLite model" in rows.pop("onnx")["skipped"]
    for name, row in rows.items():
        assert "error" not in row and "skipped" not in row, (name, row)
        assert row["seeds"] == [3, 4] and row["rss_mb_peak"] > 0, name
    # Each variant ran in its own process: the same fp32 run as the single-model test.
    assert rows["fp32"]["returns"] == pytest.approx(fp32_report["returns"], rel=1e-9)
    # TF and JAX rows ran the same seeds and episodes (their returns drift apart from
    # LiteRT's through float rounding amplified by contacts: actions are compared below).
    for heavy in ("TensorFlow SavedModel", "JAX actor"):
        assert len(rows[heavy]["returns"]) == 2 and rows[heavy]["steps_total"] > 0
        assert np.all(np.isfinite(rows[heavy]["returns"]))
    # Full TensorFlow costs far more memory than LiteRT: the point of the comparison.
    assert rows["TensorFlow SavedModel"]["rss_mb_peak"] > 2 * rows["int8"]["rss_mb_peak"]
    table = (tmp_path / "evaluation.md").read_text()
    assert table == out["table_markdown"]
    per_variant = json.loads((tmp_path / "evaluation_variants" / "int8.json").read_text())
    assert per_variant == rows["int8"]
    for name in rows:
        assert f"| {name} |" in table
    assert (tmp_path / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_dir_budget_failures_are_rows_and_exit_nonzero(export_dir, tmp_path):
    report = tmp_path / "ev.json"
    proc = run_cli(f"--export_dir={export_dir}", "--memory_budget_mb=50",
                   "--nocomparison_rows", f"--report={report}", *SHORT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    rows = json.loads(report.read_text())["variants"]
    assert set(rows) == {"fp32", "int8", "micro", "onnx"}
    del rows["onnx"]
    for row in rows.values():
        assert "exceeds the memory budget 50 MB" in row["error"] and row["exit_code"] == 3
        assert row["rss_mb_peak"] > 50
    table = (tmp_path / "ev.md").read_text()
    assert "| int8 (failed) |" in table and "- int8: peak RSS" in table


def test_comparison_policies_compute_the_exported_actor(export_dir):
    """TF SavedModel and JAX checkpoint rows run the same function as the .tflite."""
    from export.harness.reference_jax import JaxPolicy
    from export.harness.runtime import LiteRTPolicy, read_model_bytes
    from export.harness.reference_tf import TFPolicy

    man = json.load(open(f"{export_dir}/manifest.json"))
    lite = LiteRTPolicy(read_model_bytes(f"{export_dir}/actor_fp32.tflite"), 1)
    policies = [TFPolicy(f"{export_dir}/saved_model", 1), JaxPolicy(man["source_checkpoint"])]
    obs = ant_observations(n=30, seed=7)
    for pol in policies:
        assert pol.input_shape == (1, OBS_DIM) and pol.output_shape == (1, ACT_DIM)
    for o in obs:
        acts = []
        for pol in [lite, *policies]:
            pol.set_input(o[None])
            pol.invoke()
            acts.append(np.asarray(pol.get_output()))
        assert np.abs(acts[0]).max() > 0.1  # a non-trivial action
        for a in acts[1:]:
            np.testing.assert_allclose(a, acts[0], atol=2e-4)


def test_video_records_an_episode(export_dir, tmp_path):
    gif = tmp_path / "ant.gif"
    proc = run_cli(f"--model={export_dir}/actor_int8.tflite", f"--video={gif}",
                   "--episodes=1", "--max_episode_steps=8", "--warmup=1",
                   env={"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    if proc.returncode != 0 and "no OpenGL backend" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    from PIL import Image
    with Image.open(gif) as im:
        assert im.n_frames == 9  # reset frame + 8 steps
        frame = np.asarray(im.convert("RGB"))
    assert frame.std() > 1.0  # not a blank frame


def test_end_to_end_with_the_real_exporter(export_dir, tmp_path):
    """export.convert on the fixture's checkpoint, then the harness on its output."""
    run_dir = json.load(open(f"{export_dir}/manifest.json"))["source_checkpoint"]
    out = tmp_path / "export"
    proc = run_cli(f"--run_dir={run_dir}", f"--out_dir={out}", "--variants=fp32,int8,micro",
                   "--num_calibration=200", "--num_heldout=100", module="export.convert",
                   timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli(f"--export_dir={out}", "--nocomparison_rows", "--threads=1", *SHORT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "evaluation.json").read_text())["variants"]
    assert set(rows) == {"fp32", "int8", "micro"}  # saved_model is the TF comparison row
    for name, row in rows.items():
        assert "error" not in row and row["steps_total"] > 0, (name, row)
    assert rows["micro"]["runtime"] == "tflm"

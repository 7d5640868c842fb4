"""Tests of the Pi-side evaluation harness (export/evaluate.py and export/harness/).

A module-scoped fixture builds a small real export directory: a 256x256 tanh
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACT_DIM = 105, 8
SHORT = ["--episodes=2", "--seed=3", "--max_episode_steps=40", "--warmup=5"]


# ----------------------------------------------------------------------------- builders
def ant_observations(n: int = 400, seed: int = 0) -> np.ndarray:
    """Real Ant-v5 observations from random-action rollouts, float32 [n, 105]."""
    import gymnasium as gym

    env = gym.make("Ant-v5")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
        if term or trunc:
            obs, _ = env.reset(seed=seed + len(out))
    env.close()
    return np.asarray(out, np.float32)


def tflite_quant(model_bytes: bytes) -> dict:
    """The manifest's "quantization" record of the micro entry (as export/convert/pipeline.py)."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_content=model_bytes)
    details = {"input": it.get_input_details()[0], "output": it.get_output_details()[0]}
    return {side: {"dtype": np.dtype(d["dtype"]).name, "scale": float(d["quantization"][0]),
                   "zero_point": int(d["quantization"][1])} for side, d in details.items()}


def build_export_dir(root: str, hidden=(256, 256), in_dim=OBS_DIM, out_dim=ACT_DIM) -> str:
    """Checkpoint + SavedModel + fp32/int8/micro TFLite + manifest under ``root``."""
    import jax
    import tensorflow as tf

    from jaxrl_lite.run import checkpoint
    from jaxrl_lite.blocks import normalizer
    from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params

    obs = ant_observations()
    spec = PolicySpec(env="Ant-v5", obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden_sizes=hidden)
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(0)))
    # Scale the (deliberately tiny) last layer so actions use the whole [-1, 1] range.
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 60.0
    norm = normalizer.NormalizerState(mean=obs.mean(0), var=obs.var(0),
                                      count=np.float32(len(obs)))
    run_dir = os.path.join(root, "run")
    ck = checkpoint.Checkpointer(run_dir)
    ck.save(0, {"dummy": np.zeros(1, np.float32)}, spec, params, norm, algo="ppo")
    ck.close()

    p = params["params"]
    layers = [(p[f"hidden_{i}"]["kernel"], p[f"hidden_{i}"]["bias"]) for i in range(len(hidden))]
    layers.append((p["out"]["kernel"], p["out"]["bias"]))
    inv_std = 1.0 / (np.sqrt(np.maximum(norm.var, 0.0)) + normalizer.STD_EPS)
    if in_dim != OBS_DIM:  # a deliberately wrong model
        layers[0] = (np.zeros((in_dim, hidden[0]), np.float32), layers[0][1])
    if out_dim != ACT_DIM:
        layers[-1] = (np.zeros((hidden[-1], out_dim), np.float32), np.zeros(out_dim, np.float32))

    class Actor(tf.Module):
        def __init__(self):
            super().__init__()
            self.ws = [tf.constant(w) for w, _ in layers]
            self.bs = [tf.constant(b) for _, b in layers]

        @tf.function(input_signature=[tf.TensorSpec([1, in_dim], tf.float32, name="obs")])
        def __call__(self, x):
            if in_dim == OBS_DIM:
                x = tf.clip_by_value((x - norm.mean) * inv_std, -normalizer.CLIP,
                                     normalizer.CLIP)
            for w, b in zip(self.ws[:-1], self.bs[:-1]):
                x = tf.tanh(tf.matmul(x, w) + b)
            return tf.tanh(tf.matmul(x, self.ws[-1]) + self.bs[-1])

    actor = Actor()
    export = os.path.join(root, "export")
    os.makedirs(os.path.join(export, "micro"), exist_ok=True)
    tf.saved_model.save(actor, os.path.join(export, "saved_model"),
                        signatures={"serving_default": actor.__call__})
    fn = actor.__call__.get_concrete_function()
    rep_obs = obs if in_dim == OBS_DIM else np.zeros((8, in_dim), np.float32)

    def convert(int8: bool, int_io: bool) -> bytes:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], actor)
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([o[None]] for o in rep_obs[::2])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int_io:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        return conv.convert()

    variants = {}
    for name, int8, int_io in (("fp32", False, False), ("int8", True, False)):
        data = convert(int8, int_io)
        fname = f"actor_{name}.tflite"
        with open(os.path.join(export, fname), "wb") as f:
            f.write(data)
        variants[name] = {"file": fname, "bytes": len(data), "sparsity": 0.0}
    micro = convert(True, True)
    with open(os.path.join(export, "micro", "actor_model.cc"), "w") as f:
        f.write('#include "actor_model.h"\nalignas(16) const unsigned char g_actor_model[] = {\n')
        for i in range(0, len(micro), 12):
            f.write("  " + ", ".join(f"0x{b:02x}" for b in micro[i:i + 12]) + ",\n")
        f.write(f"}};\nconst int g_actor_model_len = {len(micro)};\n")
    variants["micro"] = {"file": "micro/actor_model.cc", "header": "micro/actor_model.h",
                         "bytes": len(micro), "sparsity": 0.0, "tensor_arena_bytes": 8192,
                         "quantization": tflite_quant(micro)}
    variants["saved_model"] = {"file": "saved_model", "bytes": 0, "sparsity": 0.0}
    variants["onnx"] = {"file": "actor.onnx", "bytes": 0, "sparsity": 0.0}
    manifest = {"env": "Ant-v5", "obs_dim": in_dim, "act_dim": out_dim,
                "source_checkpoint": os.path.abspath(run_dir), "variants": variants}
    with open(os.path.join(export, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return export


# ----------------------------------------------------------------------------- helpers
def run_cli(*args, module="export.evaluate", env=None, timeout=240):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=e)


def run_report(tmp_path, name: str, *args) -> dict:
    """Run the harness CLI with ``--report``; assert success; -> the report JSON."""
    out = tmp_path / f"{name}.json"
    proc = run_cli(*args, f"--report={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return build_export_dir(str(tmp_path_factory.mktemp("harness")))


@pytest.fixture(scope="module")
def fp32_report(export_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fp32") / "fp32.json")
    proc = run_cli(f"--model={export_dir}/actor_fp32.tflite", "--threads=1", "--cpus=0",
                   f"--report={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return json.load(f)


def rollout_returns(policy_fn, episodes=2, seed=3, max_steps=40):
    """Reference: the same episodes with gymnasium in this process."""
    import gymnasium as gym

    env = gym.make("Ant-v5", max_episode_steps=max_steps)
    rets, lens = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        ret, n, done = 0.0, 0, False
        while not done:
            act = policy_fn(np.asarray(obs, np.float32)[None])[0]
            obs, r, term, trunc, _ = env.step(act)
            ret, n, done = ret + r, n + 1, term or trunc
        rets.append(ret)
        lens.append(n)
    return rets, lens


# ----------------------------------------------------------------------------- tests
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


@pytest.mark.parametrize("case", ["missing", "not_tflite", "bad_input", "bad_output",
                                  "no_manifest", "cpus", "budget", "both"])
def test_bad_input_one_line_error(case, export_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(case)
    model = f"--model={export_dir}/actor_fp32.tflite"
    if case == "missing":
        proc, needles = run_cli(f"--model={tmp}/nope.tflite", *SHORT), ["not found"]
    elif case == "not_tflite":
        (tmp / "x.tflite").write_bytes(b"this is not a flatbuffer at all")
        proc, needles = run_cli(f"--model={tmp}/x.tflite", *SHORT), ["not a TFLite model"]
    elif case in ("bad_input", "bad_output"):
        bad = wrong_models(tmp_path_factory)[case]
        proc = run_cli(f"--model={bad}", *SHORT)
        needles = ["[1, 105]"] if case == "bad_input" else ["[1, 8]"]
    elif case == "no_manifest":
        proc, needles = run_cli(f"--export_dir={tmp}", *SHORT), ["no manifest.json"]
    elif case == "cpus":
        proc, needles = run_cli(model, "--cpus=0,4096", *SHORT), ["--cpus", "4096"]
    elif case == "budget":
        proc, needles = run_cli(model, "--memory_budget_mb=20", *SHORT), ["memory budget 20"]
    else:
        proc = run_cli(model, f"--export_dir={export_dir}", *SHORT)
        needles = ["exactly one"]
    assert_one_line_error(proc, *needles)


_WRONG = {}


def wrong_models(tmp_path_factory):
    """Models with input [1, 10] and output [1, 3] (built once)."""
    if not _WRONG:
        import tensorflow as tf

        root = tmp_path_factory.mktemp("wrong")
        for case, shape_in, out in (("bad_input", 10, 8), ("bad_output", 105, 3)):
            class Wrong(tf.Module):
                def __init__(self, n_in=shape_in, n_out=out):
                    super().__init__()
                    self.w = tf.constant(np.ones((n_in, n_out), np.float32))

                @tf.function(input_signature=[tf.TensorSpec([1, shape_in], tf.float32)])
                def __call__(self, x):
                    return tf.tanh(tf.matmul(x, self.w))

            m = Wrong()
            data = tf.lite.TFLiteConverter.from_concrete_functions(
                [m.__call__.get_concrete_function()], m).convert()
            path = root / f"{case}.tflite"
            path.write_bytes(data)
            _WRONG[case] = str(path)
    return _WRONG


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


def _has_osmesa() -> bool:
    import ctypes.util
    return ctypes.util.find_library("OSMesa") is not None


def _has_mp4_encoder() -> bool:
    import importlib.util
    import shutil
    return shutil.which("ffmpeg") is not None or importlib.util.find_spec("imageio_ffmpeg")


@pytest.mark.parametrize("case", ["osmesa", "mp4"])
def test_video_without_backend_fails_before_measuring(case, export_dir, tmp_path):
    """Missing GL backend or MP4 encoder: one-line error and no measurement run."""
    if case == "osmesa" and _has_osmesa() or case == "mp4" and _has_mp4_encoder():
        pytest.skip(f"{case} is available here; the failure path cannot be exercised")
    video = tmp_path / ("ant.gif" if case == "osmesa" else "ant.mp4")
    env = {"MUJOCO_GL": "osmesa"} if case == "osmesa" else None
    proc = run_cli(f"--model={export_dir}/actor_int8.tflite", f"--video={video}",
                   f"--report={tmp_path}/r.json", *SHORT, env=env)
    assert_one_line_error(proc, "no OpenGL backend" if case == "osmesa" else "ffmpeg")
    assert not (tmp_path / "r.json").exists() and not video.exists()


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

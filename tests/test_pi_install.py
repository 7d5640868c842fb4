"""The lean Pi install and the console commands, as a user gets them from pip.

A fresh virtual environment gets ``pip install "<copy of this tree>[pi]"`` (the
packaging metadata alone decides what comes in), then the installed
``jaxrl-evaluate`` runs on a real export directory from outside the source tree
with JAX and TensorFlow not importable. Needs PyPI (or the machine's pip index)
like ``make test``'s own install. ``JAXRL_LITE_PI_EMULATION=1`` adds the same on
emulated 64-bit ARM Debian userlands (tools/pi_emulation.sh; root, ~30 min).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.harness_helpers import assert_one_line_error, build_export_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "mujoco_mjx", "tensorflow", "tf2onnx",
         "onnxruntime", "tflite_micro", "matplotlib", "rich")
_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info", "__pycache__",
                                 ".jax_cache", ".pytest_cache", "out")


def _pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return build_export_dir(str(tmp_path_factory.mktemp("pi_export")))


@pytest.fixture(scope="module")
def pi_venv(tmp_path_factory):
    """A venv holding exactly ``pip install ".[pi]"`` of a copy of this tree; its bin/."""
    root = tmp_path_factory.mktemp("pi_venv")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE, symlinks=False)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(root / "venv/bin/pip"), "install", "--quiet", f"{src}[pi]"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root / "venv/bin"


def _run(cmd: list[str], cwd, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.slow
def test_pi_extra_installs_the_harness_runtime_only(pi_venv, tmp_path):
    probe = ("import importlib.util as u, json, export\n"
             f"print(json.dumps({{m: u.find_spec(m) is not None for m in {HEAVY!r} + "
             "('ai_edge_litert', 'gymnasium', 'mujoco', 'psutil', 'absl', 'numpy')}))\n"
             "print(export.__file__)\n")
    proc = _run([str(pi_venv / "python"), "-c", probe], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found, where = proc.stdout.splitlines()
    found = json.loads(found)
    assert [m for m in HEAVY if found[m]] == [], found
    assert all(found[m] for m in ("ai_edge_litert", "gymnasium", "mujoco", "psutil")), found
    assert "site-packages" in where, where  # the installed package, not this checkout


@pytest.mark.slow
def test_installed_jaxrl_evaluate_runs_an_export_without_jax_or_tf(pi_venv, export_dir,
                                                                    tmp_path):
    report = tmp_path / "pi.json"
    proc = _run([str(pi_venv / "jaxrl-evaluate"), f"--export_dir={export_dir}",
                 "--episodes=1", "--seed=0", "--max_episode_steps=30", "--warmup=2",
                 f"--report={report}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(report.read_text())["variants"]
    for name in ("fp32", "int8"):
        assert rows[name]["runtime"] == "litert" and rows[name]["steps_total"] > 0, rows[name]
    assert "TensorFlow is not installed" in rows["TensorFlow SavedModel"]["skipped"]
    assert "not installed" in rows["JAX actor"]["skipped"]
    assert "tflite-micro is not installed" in rows["micro"]["skipped"]
    assert "no chart: matplotlib is not installed" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command, extra", [("jaxrl-train", "train"),
                                            ("jaxrl-export", "export")])
def test_training_commands_name_their_extra_on_a_pi_install(pi_venv, tmp_path, command,
                                                            extra):
    proc = _run([str(pi_venv / command), "--help"], cwd=tmp_path)
    assert_one_line_error(proc, f"[{extra}] extra", f'pip install "jaxrl_lite[{extra}]"')


def test_console_scripts_point_at_the_cli_modules():
    """Every [project.scripts] target imports; jaxrl-evaluate's flags are export.evaluate's."""
    import importlib

    scripts = _pyproject()["project"]["scripts"]
    assert set(scripts) == {"jaxrl-train", "jaxrl-export", "jaxrl-evaluate"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
    call = "import sys; sys.argv[0] = 'jaxrl-evaluate'; from experiments.entry_points import " \
           "evaluate; evaluate()"
    help_ = subprocess.run([sys.executable, "-c", call, "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    # absl exits 1 after --help; what matters is that the text is export.evaluate's.
    assert "Pi harness" in help_.stdout and "--export_dir" in help_.stdout, help_.stderr
    bad = subprocess.run([sys.executable, "-c", call, "--model=/nonexistent.tflite"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert_one_line_error(bad, "model file not found: /nonexistent.tflite")


def test_pi_extra_is_the_harness_runtime():
    """[pi] + base name LiteRT, gymnasium, MuJoCo, numpy, psutil, absl and nothing of JAX/TF."""
    project = _pyproject()["project"]
    names = {r.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
             for r in project["dependencies"] + project["optional-dependencies"]["pi"]}
    assert names == {"numpy", "gymnasium", "mujoco", "absl-py", "psutil", "ai-edge-litert"}
    extras = project["optional-dependencies"]
    assert "jaxrl_lite[train]" in extras["export"] and "jaxrl_lite[train]" in extras["gpu"]


@pytest.mark.skipif(os.environ.get("JAXRL_LITE_PI_EMULATION") != "1",
                    reason="emulated aarch64 check: set JAXRL_LITE_PI_EMULATION=1 (root, ~30 min)")
def test_pi_emulation_cross_architecture(export_dir, tmp_path):
    """tools/pi_emulation.sh on both Debian bases: installs [pi], runs, actions agree."""
    out = tmp_path / "crossarch"
    proc = subprocess.run(["bash", os.path.join(REPO, "tools/pi_emulation.sh"),
                           f"--export_dir={export_dir}", f"--out_dir={out}", "--episodes=1",
                           "--max_episode_steps=200"], capture_output=True, text=True,
                          timeout=5400, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = json.loads((out / "crossarch.json").read_text())
    assert set(table["platforms"]) >= {"x86", "aarch64-bookworm", "aarch64-trixie"}
    for name, row in table["variants"].items():
        assert row["agree"], (name, row)


# ----------------------------------------------------------------------------- Pi-side pieces
def test_one_c_array_reader_checks_the_declared_length(export_dir, tmp_path):
    from export.convert import micro
    from export.harness import runtime
    from tests.harness_helpers import run_cli

    assert micro.parse_c_array is runtime.parse_c_array  # one reader, TF-free
    cc = os.path.join(export_dir, "micro", "actor_model.cc")
    data = runtime.parse_c_array(cc)
    assert data[4:8] == b"TFL3"
    text = open(cc).read()
    last = text.rindex("0x")
    bad = tmp_path / "actor_model.cc"
    bad.write_text(text[:last] + text[last + 5:])  # one byte fewer than g_actor_model_len
    proc = run_cli(f"--model={bad}", "--runtime=tflm", "--episodes=1")
    assert_one_line_error(proc, f"g_actor_model_len = {len(data)}",
                          f"holds {len(data) - 1} bytes")


def test_manifest_entry_found_from_the_model_path(export_dir, tmp_path):
    from export.harness.errors import HarnessError
    from export.harness.manifest import arena_bytes, entry_for

    manifest, entry = entry_for(os.path.join(export_dir, "micro", "actor_model.h"))
    assert entry["name"] == "micro" and manifest["variants"]["micro"]["file"] == entry["file"]
    assert arena_bytes(entry) == 2 * entry["tensor_arena_bytes"]
    _, entry = entry_for(os.path.join(export_dir, "actor_int8.tflite"))
    assert entry["name"] == "int8"
    assert entry_for(str(tmp_path / "m.tflite")) == (None, None)
    with pytest.raises(HarnessError, match="does not exist"):
        entry_for(os.path.join(export_dir, "actor_int8.tflite"), str(tmp_path / "nope.json"))


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs a private mount namespace (root)")
def test_harness_without_proc_reports_na_instead_of_a_traceback(export_dir, tmp_path):
    """A chroot without /proc mounted: figures that need it are n/a, with a note."""
    report = tmp_path / "r.md"
    harness = (f"{sys.executable} -m export.evaluate --export_dir={export_dir} --episodes=1 "
               f"--max_episode_steps=20 --warmup=1 --comparison_rows=false --report={report}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs none /proc && {harness}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    out = json.loads((tmp_path / "r.json").read_text())
    assert any("/proc/meminfo" in n and "n/a" in n for n in out["machine"]["notes"])
    assert out["machine"]["memory_total_mb"] is None
    int8 = out["variants"]["int8"]
    assert int8["rss_mb_model"] is None and int8["return_mean"] is not None
    assert int8["cpu_percent_mean"] > 0  # getrusage needs no /proc
    assert "not readable (is /proc mounted?)" in (tmp_path / "r.md").read_text()


def test_emulated_runs_label_latency_and_na_cpu(export_dir, tmp_path):
    from export.harness.machine import cpu_percent
    from export.harness.report import markdown_table
    from tests.harness_helpers import run_cli

    out = tmp_path / "e.json"
    proc = run_cli(f"--model={export_dir}/actor_int8.tflite", "--episodes=1",
                   "--max_episode_steps=20", "--warmup=1", f"--report={out}",
                   env={"JAXRL_LITE_EMULATION": "qemu-user"})
    assert proc.returncode == 0, proc.stderr
    machine = json.loads(out.read_text())["machine"]
    assert machine["emulation"] == "qemu-user" and "(under qemu-user)" in machine["cpu_model"]
    assert any("latency" in n and "not meaningful" in n for n in machine["notes"])
    # qemu-user reports zero CPU time through /proc: that is "n/a", never "0%".
    assert cpu_percent(0.0, 2.0) is None and cpu_percent(None, 2.0) is None
    assert cpu_percent(1.0, 2.0) == 50.0
    row = {"name": "int8", "runtime": "litert", "steps_total": 20, "return_mean": 1.0,
           "cpu_percent_mean": None}
    lines = markdown_table([row]).splitlines()
    col = [h.strip() for h in lines[0].split("|")].index("CPU %")
    assert [c.strip() for c in lines[2].split("|")][col] == "n/a"


def test_agreement_records_actions_and_applies_the_tolerances(export_dir, tmp_path):
    """record -> actions on the real export; compare flags > 1 LSB (int8) and > 1e-6 (fp32)."""
    from tests.harness_helpers import run_cli

    obs = tmp_path / "observations.npy"
    args = [f"--export_dir={export_dir}", f"--observations={obs}"]
    proc = run_cli("record", *args, "--num_observations=64", "--steps_per_episode=16",
                   module="export.harness.agreement")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("actions", *args, f"--out={tmp_path}/x86/actions.npz",
                   module="export.harness.agreement")
    assert proc.returncode == 0, proc.stderr
    import numpy as np

    with np.load(tmp_path / "x86/actions.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    lsb = meta["variants"]["int8"]["output_lsb"]
    assert meta["variants"]["fp32"]["output_lsb"] is None and 0 < lsb < 0.1
    assert arrays["actions/int8"].shape == (64, 8)
    # A second "platform": int8 one LSB off (agrees), fp32 2e-6 off (does not).
    moved = dict(arrays)
    moved["actions/int8"] = arrays["actions/int8"] + np.float32(lsb) * (np.arange(64) % 2)[:, None]
    moved["actions/fp32"] = arrays["actions/fp32"] + np.float32(2e-6)
    replayed = arrays["replay_observations"]  # the recorded episode, replayed here
    assert replayed.shape[1] == 105 and len(replayed) > 1
    moved["replay_observations"] = replayed.copy()
    moved["replay_observations"][5:, 0] += 1e-9
    moved["replay_observations"][9:, 1] += 1e-2
    os.makedirs(tmp_path / "arm")
    np.savez(tmp_path / "arm/actions.npz", **moved)
    proc = run_cli("compare", f"--out_dir={tmp_path}", "x86", "arm",
                   module="export.harness.agreement")
    assert proc.returncode == 1 and "tolerance for: fp32" in proc.stderr, proc.stderr
    result = json.loads((tmp_path / "crossarch.json").read_text())["variants"]
    assert result["int8"]["agree"] and result["int8"]["max_diff_lsb"]["arm"] == \
        pytest.approx(1.0, rel=1e-3)
    assert result["int8"]["identical_fraction"]["arm"] == 0.5
    physics = json.loads((tmp_path / "crossarch.json").read_text())["physics_replay"]["arm"]
    assert physics["first_step_differing"] == 5 and physics["first_step_over_1e-3"] == 9
    assert not result["fp32"]["agree"] and result["fp32"]["max_abs_diff"]["arm"] > 1e-6
    moved["actions/int8"] = arrays["actions/int8"] + np.float32(2 * lsb)
    np.savez(tmp_path / "arm/actions.npz", **moved)
    run_cli("compare", f"--out_dir={tmp_path}", "x86", "arm", module="export.harness.agreement")
    assert not json.loads((tmp_path / "crossarch.json").read_text())["variants"]["int8"]["agree"]

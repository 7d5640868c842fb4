"""``experiments.bench_env`` on a toy size: the native backend and raw ``mujoco.rollout``
simulate the same workload (the final states agree bit for bit), the table has its
ratio columns, and bad flags get one line."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "experiments.bench_env", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_same_workload_as_rollout_and_ratio_columns(tmp_path):
    out = tmp_path / "bench.json"
    proc = _bench("--tasks=InvertedDoublePendulum-v5", "--batch_sizes=3", "--steps=20",
                  "--repeats=2", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["task"] == "InvertedDoublePendulum-v5" and row["num_envs"] == 3
    assert row["rounds"] == 2 and row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    # Identical physics on both sides: 20 steps x 5 substeps from the same noisy resets
    # with the same controls end in the same float64 state.
    assert row["max_abs_qpos_vs_rollout"] == 0.0
    methods = {c["method"] for c in report["ceiling"]}
    assert "mujoco.rollout" in methods
    assert "ratio" in proc.stdout and "max_abs_qpos_vs_rollout" in proc.stdout


def test_bad_flags_get_one_line(tmp_path):
    for args, message in ((["--batch_sizes=0"], "--batch_sizes must be integers >= 1"),
                          (["--tasks=NoSuchTask-v0"], "NoSuchTask-v0"),
                          (["--backends=gpu"], "unknown --backends gpu")):
        proc = _bench(*args, f"--out={tmp_path / 'x.json'}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)

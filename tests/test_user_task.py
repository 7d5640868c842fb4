"""A task that lives outside the package (tests/user_task.py: a small MJCF model and
one registration) goes through everything a suite task does: the native backend
reproduces its gymnasium env, and ``--env=tests.user_task:Slider-v0`` trains, exports
and runs in the Pi harness, each step in its own process as a user runs them."""
from __future__ import annotations

import json
import os

import numpy as np

from experiments.kernel_agreement import kernel_agreement
from jaxrl_lite import envs
from jaxrl_lite.envs import gym_reference
from tests import forkserver
from tests.cli_runs import ROOT, env, train

ENV = "tests.user_task:Slider-v0"


def test_native_backend_reproduces_the_users_gymnasium_env():
    ref = gym_reference.episodes(ENV, 150, seed=1, reset_every=50)
    ours = gym_reference.replay_episodes(
        envs.make(ENV, backend="mujoco", num_envs=1, auto_reset=False), ref)
    assert len(ref["resets"]) >= 3
    np.testing.assert_allclose(ours["obs"], ref["obs"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours["reward"], ref["reward"], rtol=1e-6, atol=1e-6)
    for k in ("x_velocity", "reward_ctrl"):
        np.testing.assert_allclose(ours["info"][k], ref["info"][k], rtol=1e-6, atol=1e-6)


def test_train_export_and_run_on_the_pi_harness(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    proc = train("--algo=ppo", f"--env={ENV}", "--backend=mujoco", "--num_envs=8",
                 "--unroll_length=10", "--num_minibatches=2", "--num_epochs=1",
                 "--total_steps=800", "--policy_hidden=8,8", "--value_hidden=8,8",
                 "--log_every_steps=400", "--eval_every_steps=800", "--eval_envs=2",
                 "--checkpoint_every_steps=800", "--noprogress", f"--out_dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = forkserver.run("export.convert", [
        f"--run_dir={run}", f"--out_dir={export}", "--variants=fp32,int8",
        "--num_calibration=100", "--num_heldout=50", "--num_distill=200", "--qat=never"],
        cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["env"] == ENV and (manifest["obs_dim"], manifest["act_dim"]) == (2, 1)
    # The policy acts within the motor's ctrlrange [-2, 2], not [-1, 1].
    assert manifest["policy_spec"]["action_low"] == [-2.0]
    # bench_export's kernel agreement rolls out the export's own task (not Ant-v5).
    agreement = kernel_agreement(str(export), manifest, 30, seed=0)
    assert agreement["observations"] == 30 and "pruned_int8" not in agreement
    assert agreement["int8"]["tflm_vs_litert_reference"]["max_lsb"] <= 16, agreement
    report = tmp_path / "eval.json"
    proc = forkserver.run("export.evaluate", [
        f"--export_dir={export}", "--episodes=1", "--seed=0", "--warmup=1",
        "--comparison_rows=false", f"--report={report}"], cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(report.read_text())["variants"]
    assert set(rows) == {"fp32", "int8"}
    for row in rows.values():
        assert row["env"] == ENV and row["episode_lengths"] == [100], row
    # A model run on a task of another size: one line naming both sizes.
    proc = forkserver.run("export.evaluate", [
        f"--model={export / 'actor_fp32.tflite'}", "--env=Hopper-v5", "--episodes=1"],
        cwd=ROOT, env=env(), timeout=300)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines[-1].startswith("error: "), proc.stderr[-1000:]
    assert "[1, 2]" in lines[-1] and "Hopper-v5's observation [1, 11]" in lines[-1]
    assert os.path.isdir(run / "checkpoints")

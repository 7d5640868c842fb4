"""bench_suite end to end on PointMass-v0 with a budget of a few seconds: the table's
JSON, Markdown and figure are written, a second invocation skips the finished entry,
a larger budget resumes the run with the trainer's --resume, and bad flags are one
line each.

PointMass-v0 is a pure-JAX task (its compile is cached, unlike the native MuJoCo
backend's host callbacks), so the test needs a gymnasium twin to be evaluated in: this
module registers one (``--import_modules=tests.test_bench_suite``), the same dynamics in
NumPy.
"""
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import psutil
import pytest

from experiments import suite_references as refs
from experiments.peers import suite_report
from tests import cli_runs, forkserver

_DT, _DAMPING = 0.1, 0.5  # jaxrl_lite/envs/point_mass.py


class GymPointMass(gym.Env):
    """gymnasium's view of jaxrl_lite's PointMass-v0 (float64, 50-step TimeLimit)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.vel = self.np_random.uniform(-1.0, 1.0, 2), np.zeros(2)
        return np.concatenate([self.pos, self.vel]), {}

    def step(self, action):
        a = np.clip(np.nan_to_num(np.asarray(action, np.float64)), -1.0, 1.0)
        self.vel = self.vel + _DT * (a - _DAMPING * self.vel)
        self.pos = self.pos + _DT * self.vel
        reward = -np.linalg.norm(self.pos) - 0.01 * np.sum(a ** 2)
        return np.concatenate([self.pos, self.vel]), float(reward), False, False, {}


if "PointMass-v0" not in gym.envs.registry:
    gym.register("PointMass-v0", entry_point=GymPointMass, max_episode_steps=50)

TINY_PPO = ["--algo=ppo", "--env=PointMass-v0", "--num_envs=8",
            "--unroll_length=8", "--num_minibatches=2", "--num_epochs=2",
            "--total_steps=1000000", "--log_every_steps=256", "--eval_every_steps=512",
            "--eval_envs=4", "--checkpoint_every_steps=512", "--keep_checkpoints=2",
            "--policy_hidden=16,16", "--value_hidden=16,16", "--plot_every_s=1000"]


def write_presets(preset_dir, agent="ppo", args=TINY_PPO):
    os.makedirs(preset_dir, exist_ok=True)
    with open(os.path.join(preset_dir, f"pointmass_{agent}_cpu.flags"), "w") as f:
        f.write("# tiny PointMass preset for tests\n" + "\n".join(args) + "\n")


def suite(tmp, *args, module="experiments.bench_suite"):
    """The suite CLI on PointMass (1 s budget at --budget_scale=1/300)."""
    base = [f"--preset_dir={tmp}/presets", f"--out={tmp}/out/suite", f"--runs_dir={tmp}/runs",
            "--import_modules=tests.test_bench_suite", "--tasks=PointMass-v0", "--episodes=3"]
    return forkserver.run(module, [*base, *args], cwd=cli_runs.ROOT, env=cli_runs.env(),
                          timeout=240)


def starts(run_dir):
    with open(os.path.join(run_dir, "runtime.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_table_written_resumed_and_extended(tmp_path):
    write_presets(tmp_path / "presets")
    r = suite(tmp_path, "--agents=ppo", "--seeds=0", "--budget_scale=0.004", "--in_process")
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    table = json.load(open(out / "suite.json"))
    (key,) = table["entries"]
    e = table["entries"][key]
    assert key.startswith("PointMass-v0/ppo/cpu/seed0") and e["seed"] == 0
    assert e["episodes"] == 3 and len(e["returns"]) == 3 and e["falls"] == 0
    assert e["gym_seeds"] == [1000, 1002] and e["env_steps"] > 0 and e["curve"]
    assert abs(e["budget_s"] - 1.2) < 1e-9 and e["exit"] == "time budget"
    # The run's best/ policy (the trainer's --keep_best) gets the same evaluation.
    b = e["best"]
    assert 0 < b["env_steps"] <= e["env_steps"] and len(b["returns"]) == 3
    assert b["eval_return_mean"] == max(c[2] for c in e["curve"] if c[2] is not None)
    md = open(out / "suite.md").read()
    assert "| PointMass-v0 | ppo | cpu | 0 |" in md and "## References" in md
    assert f"{b['falls']}/3 ({b['env_steps'] / 1e3:.0f} k) |" in md
    assert os.path.getsize(out / "suite.png") > 10_000
    run_dir = e["out_dir"]
    assert len(starts(run_dir)) == 1

    again = suite(tmp_path, "--agents=ppo", "--seeds=0", "--budget_scale=0.004", "--in_process")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done before, skipped" in again.stdout
    assert len(starts(run_dir)) == 1  # not retrained
    assert json.load(open(out / "suite.json"))["entries"][key] == e

    # A larger budget: the run continues (a `python -m experiments.train --resume` child).
    longer = suite(tmp_path, "--agents=ppo", "--seeds=0", "--budget_scale=0.01")
    assert longer.returncode == 0, longer.stderr[-3000:]
    runs = starts(run_dir)
    assert len(runs) == 2 and runs[1]["resumed_from_step"] is not None
    assert "--resume" in runs[1]["argv"] and runs[1]["argv"][0].endswith("train.py")
    e2 = json.load(open(out / "suite.json"))["entries"][key]
    assert e2["budget_s"] == pytest.approx(3.0) and e2["starts"] == 2
    assert e2["env_steps"] > e["env_steps"] and e2["train_wall_s"] >= 3.0

    # Another preset name with the same content (a candidate the cpu preset points at)
    # shares the run directory: evaluated, not trained again.
    os.makedirs(tmp_path / "presets" / "candidates")
    write_presets(tmp_path / "presets" / "candidates")
    os.rename(tmp_path / "presets" / "candidates" / "pointmass_ppo_cpu.flags",
              tmp_path / "presets" / "candidates" / "pointmass_ppo_same.flags")
    same = suite(tmp_path, "--agents=ppo", "--seeds=0", "--budget_scale=0.01", "--preset=same")
    assert same.returncode == 0, same.stderr[-3000:]
    assert "trained before, evaluating" in same.stdout and len(starts(run_dir)) == 2
    e3 = json.load(open(out / "suite.json"))["entries"]["PointMass-v0/ppo/same/seed0"]
    assert e3["out_dir"] == run_dir and e3["env_steps"] == e2["env_steps"]


def test_sigterm_stops_the_suite_and_its_training_child(tmp_path):
    """SIGTERM to bench_suite alone (``kill PID``, a scheduler that signals one
    process): the training child is stopped too, with its one-line 'interrupted'
    error and its checkpoints kept, and bench_suite ends with one line, exit 130."""
    write_presets(tmp_path / "presets")
    base = [f"--preset_dir={tmp_path}/presets", f"--out={tmp_path}/out/suite",
            f"--runs_dir={tmp_path}/runs", "--import_modules=tests.test_bench_suite",
            "--tasks=PointMass-v0", "--episodes=3", "--agents=ppo", "--seeds=0"]
    proc = forkserver.start("experiments.bench_suite", base, cwd=cli_runs.ROOT,
                            env=cli_runs.env())
    checkpoints = os.path.join(tmp_path, "runs", "*", "ppo_*", "seed0", "checkpoints", "*")
    children = []
    try:
        deadline = time.monotonic() + 180
        while not glob.glob(checkpoints) and time.monotonic() < deadline:
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert glob.glob(checkpoints) and children, "the training child never checkpointed"
        os.kill(proc.pid, signal.SIGTERM)
        r = proc.wait(timeout=120)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:  # a failed test leaves no training behind
        for p in children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if proc.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0)  # SIGKILLs the suite if it still runs
    assert r.returncode == 130, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].endswith(
        "interrupted; finished entries are in the table, run the same command to resume")
    (log,) = glob.glob(os.path.join(tmp_path, "runs", "*", "ppo_*", "seed0", "train.log"))
    last = [ln for ln in open(log).read().splitlines() if ln.strip()][-1]
    assert "interrupted; checkpoints in" in last and "--resume" in last, last


@pytest.mark.parametrize("args, message", [
    (["--tasks=NoSuchTask-v5"], "unknown task 'NoSuchTask-v5'"),
    (["--seeds=0,x"], "--seeds must be comma-separated integers"),
    (["--seeds=1,1"], "--seeds must be distinct non-negative integers"),
    (["--agents=dqn"], "unknown agent 'dqn'"),
    (["--budget_scale=0"], "--budget_scale must be > 0"),
    (["--agents=ac"], "no preset"),
    (["--preset=zoo", "--agents=ppo"], "no preset"),
    (["--nosuchflag"], "Unknown command line flag 'nosuchflag'"),
    (["--num_envs=4"], "training flags go into the preset, not here: --num_envs"),
])
def test_bad_flags_are_one_line(tmp_path, args, message):
    write_presets(tmp_path / "presets")
    r = suite(tmp_path, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench_suite: error: ")
    assert message in lines[0]
    assert not os.path.exists(tmp_path / "out")


def test_preset_for_another_task_is_refused(tmp_path):
    write_presets(tmp_path / "presets", args=[a.replace("PointMass-v0", "Ant-v5")
                                              for a in TINY_PPO])
    r = suite(tmp_path, "--agents=ppo")
    assert r.returncode == 2 and "sets --env=Ant-v5, not PointMass-v0" in r.stderr


def test_goals_and_bootstrap():
    ant = refs.check_goals("Ant-v5", "ppo", 5900.0, 1, 10)
    assert ant["met"] is False and "100 (2%) short of 6,000" in ant["text"]
    assert "1/10 falls" in ant["text"]
    assert refs.check_goals("Ant-v5", "ac", 5900.0, 3, 10)["met"] is True
    assert refs.check_goals("Humanoid-v5", "ppo", 5001.0, 0, 10)["text"] == "met"
    assert refs.check_goals("Pusher-v5", "ppo", -30.0, 0, 10)["text"] == \
        "missed: 7.55 (34%) short of reference -22.45"
    assert refs.check_goals("PointMass-v0", "ppo", 0.0, 0, 10)["met"] is None
    assert suite_report.bootstrap_ci([5.0]) is None
    lo, hi = suite_report.bootstrap_ci([1.0, 2.0, 4.0])
    assert 1.0 <= lo < 7 / 3 < hi <= 4.0


def test_every_suite_preset_is_a_valid_training_config():
    """Each task of the table has a CPU preset per agent and a GPU one (MJX where MJX
    accepts the task), and every preset and candidate parses into a TrainConfig the
    trainer accepts."""
    code = """
import glob
from absl import flags
from experiments import suite_references as refs, train
from experiments.bench_suite import preset_path, flag_value, expanded_flags
from jaxrl_lite import envs
from jaxrl_lite.run import trainer
d = "experiments/configs/suite"
for t in refs.SUITE_TASKS:
    for a, p in (("ppo", "cpu"), ("ac", "cpu"), ("ppo", "gpu")):
        assert flag_value(expanded_flags(preset_path(d, t, a, p)), "env") == t, (t, a, p)
paths = [p for p in glob.glob(d + "/**/*.flags", recursive=True) if "/base/" not in p]
for p in paths:
    flags.FLAGS.unparse_flags()
    c = trainer.validate(train.config_from_args(["--flagfile=" + p, "--out_dir=unused-out-dir"]))
    want = "mujoco"
    if p.endswith("_gpu.flags"):  # MJX unless it refuses the task (Humanoid: PGS solver)
        try:
            envs.make(c.env, backend="mjx", num_envs=1)
            want = "mjx"
        except ValueError:
            pass
    assert c.backend == want, (p, c.backend, want)
print(len(paths))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=cli_runs.ROOT, env=cli_runs.env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) >= 80

"""The GPU-day report at toy sizes on the CPU: every stage runs, the GPU presets train a
few iterations on the MJX backend, and the report has the shape WORKSPACE.md quotes."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _report(*args, timeout=1500):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.setdefault("JAXRL_LITE_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
    return subprocess.run([sys.executable, "-m", "experiments.device_report", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _measuring_stages(tmp_path, stages):
    proc = _report("--dry_run", "--budget_s=1400", f"--stages={','.join(stages)}",
                   f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.load(open(tmp_path / "device_report.json"))
    stages_out = report["stages"]
    assert list(stages_out) == stages
    assert all(s["status"] == "ok" for s in stages_out.values()), stages_out
    return stages_out


# The dry run's stages, one test each or two (all five in one test took 134 s cold, over
# the 60 s a test may take; each stage compiles MJX functions of its own).
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the report's own budget is 1400 s
def test_dry_run_environment_and_parity_stages(tmp_path):
    stages_out = _measuring_stages(tmp_path, ["environment", "parity"])
    assert stages_out["environment"]["result"]["backend"] == "cpu"
    parity = stages_out["parity"]["result"]
    assert parity["task"] == "InvertedPendulum-v5"  # the dry run's cheap task
    for precision in ("highest", "default"):
        rows = parity["precision"][precision]
        assert rows["obs_obs"]["p50"] <= rows["obs_obs"]["max"] < 1.0
        assert rows["terminated_mismatch"] == 0
    md = open(tmp_path / "device_report.md").read()
    assert "| highest | obs_obs |" in md


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dry_run_env_throughput_stage(tmp_path):
    stages_out = _measuring_stages(tmp_path, ["env_throughput"])
    (row,) = stages_out["env_throughput"]["result"]["rows"]
    assert row["backend"] == "mjx" and row["env_steps_per_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("algo", ["ppo", "ac"])
def test_dry_run_trains_the_gpu_preset_on_mjx(tmp_path, algo):
    stage = f"{algo}_learning"
    proc = _report("--dry_run", "--budget_s=1400", f"--stages={stage}", f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stages_out = json.load(open(tmp_path / "device_report.json"))["stages"]
    assert list(stages_out) == [stage] and stages_out[stage]["status"] == "ok", stages_out
    res = stages_out[stage]["result"]
    assert res["backend"] == "mjx" and res["algo"] == algo and res["env_steps"] > 0
    assert res["gymnasium"]["env"] == "InvertedPendulum-v5"
    assert math.isfinite(res["return_mean"])
    config = json.load(open(tmp_path / f"{algo}_run" / "config.json"))
    preset = {line.split("=")[0][2:]: line.strip().split("=", 1)[1]
              for line in open(os.path.join(ROOT, "experiments", "configs", f"{algo}_gpu.flags"))
              if line.startswith("--") and "=" in line}
    # The preset's network shapes were trained, not toy ones.
    for key in ("policy_hidden", "value_hidden", "hidden", "critic_hidden"):
        if key in preset:
            assert config[key] == [int(x) for x in preset[key].split(",")], key
    assert f"| {algo}_gpu |" in open(tmp_path / "device_report.md").read()
    # No in-training (MJX) evaluation in the dry runs (--eval_every_steps=-1): none
    # compiled, none recorded; the records still reach the last step.
    records = [json.loads(line) for line in open(tmp_path / f"{algo}_run" / "metrics.jsonl")]
    assert [r["step"] for r in records if "eval/return_mean" in r] == []
    assert records[-1]["step"] == res["env_steps"]


def test_bad_flags_get_one_line(tmp_path):
    for args, message in ((["--stages=parity,bogus"], "unknown --stages bogus"),
                          (["--budget_s=0"], "--budget_s must be positive"),
                          (["--env_batch_sizes=12,x"], "--env_batch_sizes must be positive")):
        proc = _report(f"--out_dir={tmp_path}", *args, timeout=120)
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert message in last and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


def test_default_stages_fit_the_default_budget():
    """The defaults are one call on a GPU box: every default stage's budget (set from the
    compile times measured on an H200) fits inside the default --budget_s, so the last
    stage is not cut by the stages before it. In a child process: the report's absl flags
    would clash with other modules' flags in this one."""
    code = (
        "from experiments import device_report as dr\n"
        "t = {'ppo_learning': dr._PPO_S.default, 'ac_learning': dr._AC_S.default}\n"
        "n = len(dr._ENV_SIZES.default)\n"
        "total = sum(dr.stage_budget_s(s, n, t.get(s, 0.0)) for s in dr._STAGES.default)\n"
        "print(dr._STAGES.default[-1], total, dr._BUDGET.default)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    last, total, budget = proc.stdout.split()
    assert last == "ppo_learning"
    assert 0.9 * float(budget) <= float(total) <= float(budget), (total, budget)

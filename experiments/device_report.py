"""Every GPU-box figure from one command, inside a wall budget it enforces.

    python -m experiments.device_report --out_dir=runs/device_report          # the GPU day
    python -m experiments.device_report --dry_run --out_dir=/tmp/device_report  # CPU, toy sizes

Stages, in order, each in its own process with its own time budget (killed when it
runs over; the report says so), the report rewritten as each stage ends so a cut
run still leaves every finished figure:

1. ``environment``: Python, JAX/jaxlib, CUDA libraries, device kind and memory.
2. ``parity``: MJX one step from gymnasium-visited states vs gymnasium itself
   (p50/p90/p99/max of the per-state errors), once with matmul precision
   ``highest`` and once with the backend's default (TF32 on recent NVIDIA GPUs).
3. ``env_throughput``: MJX Ant-v5 env steps/s, compile seconds and peak device
   memory at each ``--env_batch_sizes`` (default 1024, 4096, 8192).
4. ``ppo_learning`` / ``ac_learning``: ``experiments.bench_learning`` with
   ``ppo_gpu.flags`` / ``ac_gpu.flags`` for ``--ppo_train_s`` / ``--ac_train_s``
   seconds of training, then the deterministic policy in gymnasium's own Ant-v5.

Writes ``<out_dir>/device_report.json`` and ``device_report.md``. ``--dry_run`` runs
the same stages at toy sizes (a few envs, a few iterations of the GPU presets on the
MJX backend, one gymnasium episode) so CI can check the whole path on a CPU.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

from absl import app, flags

_OUT = flags.DEFINE_string("out_dir", "runs/device_report", "Where the report goes.")
_BUDGET = flags.DEFINE_float("budget_s", 540.0, "Wall budget of the whole report, seconds.")
_DRY = flags.DEFINE_boolean("dry_run", False, "Toy sizes (CPU, CI): checks the path, "
                            "not the figures.")
# The defaults fit one 540 s call on an H200 (compile times measured there, below);
# the actor-critic stage is a second call: --stages=ac_learning (175 + 80 s).
ALL_STAGES = ["environment", "parity", "env_throughput", "ppo_learning", "ac_learning"]
_STAGES = flags.DEFINE_list("stages", ALL_STAGES[:4], "Stages to run, of "
                            + ", ".join(ALL_STAGES) + ".")
_ENV_SIZES = flags.DEFINE_list("env_batch_sizes", ["1024", "4096"],
                               "MJX num_envs for env_throughput.")
_PARITY_STATES = flags.DEFINE_integer("parity_states", 256, "gymnasium states for parity.")
_PPO_S = flags.DEFINE_float("ppo_train_s", 130.0, "PPO training seconds (ppo_gpu.flags).")
_AC_S = flags.DEFINE_float("ac_train_s", 80.0, "Actor-critic training seconds (ac_gpu.flags).")
_EPISODES = flags.DEFINE_integer("episodes", 5, "gymnasium episodes per learning stage.")
_STAGE = flags.DEFINE_string("stage", None, "Internal: run one stage in this process.")
_STAGE_OUT = flags.DEFINE_string("stage_out", None, "Internal: JSON result path of --stage.")

# Stage budgets in seconds, from the first H200 run (JAX 0.11.2, commit 36abd94): parity
# took 63 s; one MJX Ant env_throughput size 45-55 s (a 30-32 s compile, the process's
# start, two timed repeats); the learning stages compile their train iteration in 117 s
# (PPO) and 86 s (actor-critic) before training starts, then evaluate on gymnasium.
# env_throughput gets ENV_SIZE_S per size; the learning stages add their training time.
# Defaults: 20 + 90 + (15 + 2 x 55) + (175 + 130) = 540 s.
STAGE_BUDGET_S = {"environment": 20.0, "parity": 90.0, "env_throughput": 15.0,
                  "ppo_learning": 175.0, "ac_learning": 175.0}
ENV_SIZE_S = 55.0


def stage_budget_s(name: str, n_env_sizes: int, train_s: float = 0.0) -> float:
    """Wall budget of one stage (s): its fixed part, ENV_SIZE_S per env_throughput size,
    plus the training seconds of a learning stage."""
    per_size = ENV_SIZE_S * n_env_sizes if name == "env_throughput" else 0.0
    return STAGE_BUDGET_S[name] + per_size + train_s


# Toy sizes of --dry_run: the GPU presets' network shapes, a handful of envs/steps, and
# InvertedPendulum-v5 (MJX compiles it several times faster than Ant-v5 on a CPU).
DRY = {
    "task": "InvertedPendulum-v5",
    "env_batch_sizes": [4], "parity_states": 4, "episodes": 1, "train_s": 5.0,
    # The dry runs evaluate on gymnasium only: no in-training MJX evaluator (a second MJX
    # compile, 13-16 s on a CPU, which took the actor-critic's test over 60 s on CI). The
    # evaluator is the same code on every backend (tested on the native and PointMass
    # ones), and MJX's reset/step it calls are the parity tests' subject.
    "ppo": ["--num_envs=8", "--total_steps=160", "--log_every_steps=80",
            "--eval_every_steps=-1", "--eval_envs=2", "--checkpoint_every_steps=160"],
    "ac": ["--num_envs=4", "--steps_per_iteration=5", "--total_steps=40",
           "--warmup_steps=20", "--buffer_size=400", "--batch_size=32",
           "--updates_per_step=2", "--log_every_steps=20", "--eval_every_steps=-1",
           "--eval_envs=2", "--checkpoint_every_steps=40", "--observation_features=0"],
}
PERCENTILES = (50, 90, 99, 100)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_TASK = "Ant-v5"


def _task(dry: bool) -> str:
    return DRY["task"] if dry else FULL_TASK


def _parity_groups(task: str) -> dict:
    """Observation blocks reported per task (Ant-v5: qpos / qvel / contact forces)."""
    from jaxrl_lite.envs import gym_reference  # in the stage's child process only
    return gym_reference.ANT_OBS_GROUPS if task == "Ant-v5" else {"obs": slice(None)}


def _parity_keys(task: str) -> tuple[str, ...]:
    return tuple(f"obs_{g}" for g in _parity_groups(task)) + ("reward",)


# ----------------------------------------------------------------------------
# Stages (each runs in a child process)
# ----------------------------------------------------------------------------
def stage_environment(dry: bool) -> dict:
    import jax
    import jaxlib

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "jax": jax.__version__, "jaxlib": jaxlib.__version__,
           "backend": jax.default_backend(), "devices": []}
    for d in jax.devices():
        stats = d.memory_stats() or {}
        out["devices"].append({"kind": d.device_kind, "platform": d.platform,
                               "memory_gb": round(stats.get("bytes_limit", 0) / 2 ** 30, 2)
                               or None})
    out["cuda"] = _cuda_versions()
    for var in ("JAX_DEFAULT_MATMUL_PRECISION", "XLA_PYTHON_CLIENT_PREALLOCATE",
                "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_FLAGS"):
        out.setdefault("env_vars", {})[var] = os.environ.get(var)
    return out


def _cuda_versions() -> dict | None:
    """CUDA runtime/driver/cuDNN/cuBLAS versions JAX was built with and found, or None
    when this jaxlib has no CUDA plugin (CPU builds)."""
    try:
        from jax._src.lib import cuda_versions
    except ImportError:
        return None
    if cuda_versions is None:
        return None
    out = {}
    for name in dir(cuda_versions):
        if name.endswith("_version"):
            try:
                out[name] = getattr(cuda_versions, name)()
            except Exception as e:  # noqa: BLE001 - one unreadable version is not fatal
                out[name] = f"unavailable ({type(e).__name__})"
    return out


def _percentiles(values) -> dict:
    import numpy as np
    return {f"p{p}" if p < 100 else "max": float(np.percentile(values, p)) for p in PERCENTILES}


def stage_parity(dry: bool) -> dict:
    import jax
    import numpy as np

    from jaxrl_lite import envs
    from jaxrl_lite.envs import gym_reference

    states = DRY["parity_states"] if dry else _PARITY_STATES.value
    task = _task(dry)
    ref = gym_reference.collect(task, states, seed=0,
                                perturb=gym_reference.ant_lift if task == "Ant-v5" else None)
    out = {"task": task, "states": states, "precision": {}}
    for precision in ("highest", "default"):
        t = time.perf_counter()
        with jax.default_matmul_precision(None if precision == "default" else precision):
            env = envs.make(task, backend="mjx", num_envs=states, auto_reset=False)
            errs = gym_reference.one_step_errors(env, ref, _parity_groups(task))
        out["precision"][precision] = {
            "seconds": round(time.perf_counter() - t, 1),
            "terminated_mismatch": int(np.sum(errs["terminated_mismatch"])),
            **{k: _percentiles(errs[k]) for k in _parity_keys(task)}}
    out["keys"] = list(_parity_keys(task))
    return out


def stage_env_throughput(dry: bool) -> dict:
    import jax

    from experiments.env_timing import time_backend

    sizes = DRY["env_batch_sizes"] if dry else [int(s) for s in _ENV_SIZES.value]
    device = jax.devices()[0]
    rows = []
    for n in sizes:
        row = time_backend("mjx", n, steps=10 if dry else 50, repeats=2, seed=0,
                           task=_task(dry))
        stats = device.memory_stats() or {}
        row["peak_device_memory_gb"] = (round(stats["peak_bytes_in_use"] / 2 ** 30, 2)
                                        if "peak_bytes_in_use" in stats else None)
        rows.append(row)
        _write_json(_STAGE_OUT.value, {"rows": rows, "partial": True})
    return {"rows": rows}


STAGE_FNS = {"environment": stage_environment, "parity": stage_parity,
             "env_throughput": stage_env_throughput}


def _learning_cmd(algo: str, dry: bool, out_dir: str) -> tuple[list[str], float]:
    """-> (bench_learning command line, training seconds) of a learning stage."""
    train_s = DRY["train_s"] if dry else (_PPO_S.value if algo == "ppo" else _AC_S.value)
    cmd = [sys.executable, "-m", "experiments.bench_learning",
           f"--flagfile=experiments/configs/{algo}_gpu.flags", f"--out_dir={out_dir}",
           f"--max_wall_s={train_s}", "--noprogress", "--seed=0",
           f"--episodes={DRY['episodes'] if dry else _EPISODES.value}"]
    if dry:
        cmd += DRY[algo] + [f"--env={DRY['task']}"]
    return cmd, train_s


# ----------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------
def _write_json(path: str | None, obj) -> None:
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _run_child(cmd: list[str], timeout_s: float, log_path: str,
               drop_env: tuple[str, ...] = ()) -> tuple[str, float]:
    """-> (status, seconds): 'ok', 'failed (exit N)' or 'timeout'."""
    t = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout_s, cwd=ROOT)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = "timeout"
    return status, round(time.perf_counter() - t, 1)


def run_report(out_dir: str, budget_s: float, dry: bool, stages: list[str]) -> dict:
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    report = {"dry_run": dry, "budget_s": budget_s, "started": time.strftime("%F %T"),
              "command": " ".join(sys.argv), "stages": {}}
    path = os.path.join(out_dir, "device_report.json")
    t0 = time.perf_counter()
    for name in stages:
        left = budget_s - (time.perf_counter() - t0)
        result_path = os.path.join(out_dir, f"{name}.json")
        if name in STAGE_FNS:
            cmd = [sys.executable, "-m", "experiments.device_report", f"--stage={name}",
                   f"--stage_out={result_path}", f"--parity_states={_PARITY_STATES.value}",
                   f"--env_batch_sizes={','.join(_ENV_SIZES.value)}"] + (
                       ["--dry_run"] if dry else [])
            budget = stage_budget_s(name, len(_ENV_SIZES.value))
        else:
            algo = name.split("_")[0]
            cmd, train_s = _learning_cmd(algo, dry, os.path.join(out_dir, f"{algo}_run"))
            cmd.append(f"--report={result_path}")
            budget = stage_budget_s(name, 0, train_s)
        if dry:
            budget = max(budget, 600.0)   # toy sizes: MJX compiles dominate on a CPU
        timeout = min(budget, left)
        entry = {"budget_s": round(budget, 1)}
        if timeout < 5:
            entry["status"] = "skipped (wall budget spent)"
        else:
            print(f"== {name} (up to {timeout:.0f} s)", flush=True)
            # parity sets each precision itself: the backend default must not be overridden
            drop = ("JAX_DEFAULT_MATMUL_PRECISION",) if name == "parity" else ()
            entry["status"], entry["seconds"] = _run_child(
                cmd, timeout, os.path.join(out_dir, f"{name}.log"), drop)
            if os.path.exists(result_path):
                with open(result_path) as f:
                    entry["result"] = json.load(f)
        report["stages"][name] = entry
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        _write_json(path, report)
        with open(os.path.join(out_dir, "device_report.md"), "w") as f:
            f.write(markdown(report))
        print(f"   {name}: {entry['status']}", flush=True)
    return report


def markdown(report: dict) -> str:
    """The report as Markdown tables WORKSPACE.md can quote."""
    st = report["stages"]
    lines = [f"# Device report ({'dry run, toy sizes' if report['dry_run'] else 'full'}), "
             f"{report['started']}, {report.get('elapsed_s', 0):.0f} s of "
             f"{report['budget_s']:.0f} s", "",
             "| stage | status | seconds |", "|---|---|---:|"]
    lines += [f"| {k} | {v['status']} | {v.get('seconds', '')} |" for k, v in st.items()]
    env = st.get("environment", {}).get("result")
    if env:
        devs = "; ".join(f"{d['kind']} ({d['memory_gb']} GB)" for d in env["devices"])
        lines += ["", f"JAX {env['jax']} / jaxlib {env['jaxlib']} on {env['backend']}: {devs}; "
                  f"CUDA: {env['cuda']}; Python {env['python']}"]
    par = st.get("parity", {}).get("result")
    if par:
        lines += ["", f"MJX vs gymnasium {par['task']}, one step from {par['states']} visited "
                  f"states:", "",
                  "| precision | quantity | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
        for prec, res in par["precision"].items():
            for k in par["keys"]:
                v = res[k]
                lines.append(f"| {prec} | {k} | {v['p50']:.2g} | {v['p90']:.2g} | "
                             f"{v['p99']:.2g} | {v['max']:.2g} |")
    thr = st.get("env_throughput", {}).get("result")
    if thr:
        lines += ["", "| MJX num_envs | env steps/s | compile s | peak device GB |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {r['num_envs']} | {r['env_steps_per_s']:,.0f} | {r['compile_s']} | "
                  f"{r['peak_device_memory_gb']} |" for r in thr["rows"]]
    learn = [(k, v["result"]) for k, v in st.items() if k.endswith("_learning")
             and v.get("result")]
    if learn:
        lines += ["", "| preset | gymnasium return | episodes | env steps | train s | "
                  "env steps/s | updates/s | compile s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for k, r in learn:
            ups = r.get("updates_per_s")
            lines.append(f"| {k.split('_')[0]}_gpu | {r['return_mean']:.0f} ± "
                         f"{r['return_std']:.0f} | {len(r['gymnasium']['returns'])} | "
                         f"{r['env_steps']:,} | {r['train_wall_s']:.0f} | "
                         f"{r['env_steps_per_s']:,.0f} | "
                         f"{'' if ups is None else f'{ups:.0f}'} | {r['compile_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        sys.exit(f"device_report: error: unexpected arguments: {' '.join(argv[1:])}")
    if _STAGE.value:
        if _STAGE.value not in STAGE_FNS:
            sys.exit(f"device_report: error: unknown --stage={_STAGE.value}")
        from jaxrl_lite.run import compile_cache  # (imports JAX only with a cache)
        compile_cache.configure()
        _write_json(_STAGE_OUT.value, STAGE_FNS[_STAGE.value](_DRY.value))
        return
    bad = [s for s in _STAGES.value if s not in ALL_STAGES]
    if bad:
        sys.exit(f"device_report: error: unknown --stages {','.join(bad)}; valid: "
                 f"{','.join(ALL_STAGES)}")
    if _BUDGET.value <= 0:
        sys.exit(f"device_report: error: --budget_s must be positive, got {_BUDGET.value}")
    try:
        sizes = [int(s) for s in _ENV_SIZES.value]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        sys.exit(f"device_report: error: --env_batch_sizes must be positive integers, got "
                 f"{','.join(_ENV_SIZES.value)}")
    report = run_report(_OUT.value, _BUDGET.value, _DRY.value, _STAGES.value)
    print(markdown(report))
    failed = [k for k, v in report["stages"].items() if v["status"] != "ok"]
    if failed:
        sys.exit(f"device_report: stages not ok: {', '.join(failed)} (report in {_OUT.value})")


if __name__ == "__main__":
    app.run(main)

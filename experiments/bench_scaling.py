"""Data-parallel scaling: training env steps/s with 1, 2, 4, ... devices in one run.

    python -m experiments.bench_scaling --algo=ppo --env=PointMass-v0 \
        --devices=1,2,4 --num_envs_per_device=64 --iterations=10 --out=scaling.json

Each device count runs in its own subprocess (on a CPU-only machine with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, so N host "devices"
share the machine's cores; on a GPU machine the first N GPUs). Each child
builds the agent with ``jaxrl_lite.blocks.sharding`` (env batch sharded over a
1-D mesh, parameters replicated), compiles, runs one warm-up iteration, then
times ``--iterations`` iterations. Reported per device count: global num_envs,
env steps/s, speedup over the smallest device count and efficiency =
speedup / (devices / smallest devices).

Scaling mode: weak by default (``--num_envs_per_device`` envs on each device,
the global batch grows with the device count); ``--num_envs=N`` fixes the
global batch instead (strong scaling). Agent hyper-parameters are the
algorithm's defaults, with ``--set=key=value,...`` overrides.
"""
from __future__ import annotations

import dataclasses
import typing
import os

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

_ALGO = flags.DEFINE_string("algo", "ppo", "ppo | ac")
_ENV = flags.DEFINE_string("env", "PointMass-v0", "Environment name.")
_BACKEND = flags.DEFINE_string("backend", "auto", "Physics backend: auto | mjx | mujoco.")
_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4"], "Device counts to measure.")
_PER_DEVICE = flags.DEFINE_integer("num_envs_per_device", 64,
                                   "Weak scaling: envs per device (global = this x devices).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 0, "Strong scaling: fixed global env batch "
                                 "(0 = weak scaling with --num_envs_per_device).")
_ITERS = flags.DEFINE_integer("iterations", 10, "Timed training iterations per device count.")
_SET = flags.DEFINE_list("set", [], "Agent Config overrides key=value (e.g. unroll_length=16).")
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_FORCE_HOST = flags.DEFINE_enum(
    "force_host_devices", "auto", ["auto", "yes", "no"],
    "Force N CPU devices with XLA_FLAGS in each child (auto: only when no GPU/TPU is present).")
_TIMEOUT = flags.DEFINE_integer("timeout_s", 1200, "Per device count, seconds.")
_CHILD = flags.DEFINE_integer("child_devices", 0, "(internal) run one measurement.")


class UsageError(ValueError):
    pass


def _overrides(agent, items) -> dict:
    hints = typing.get_type_hints(agent.Config)
    names = {f.name for f in dataclasses.fields(agent.Config)}
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        if k not in names:
            raise UsageError(f"--set: {k!r} is not a field of the {agent.NAME} Config")
        t = typing.get_origin(hints[k]) or hints[k]
        try:
            if t is bool:
                out[k] = v.lower() in ("1", "true", "yes")
            elif t is tuple:
                out[k] = tuple(int(x) for x in v.split(":"))
            else:
                out[k] = t(v)
        except ValueError:
            raise UsageError(f"--set: bad value for {k}: {v!r}") from None
    return out


def _global_envs(devices: int) -> int:
    return _NUM_ENVS.value or _PER_DEVICE.value * devices


def measure(devices: int) -> dict:
    """One device count, in this process (the child)."""
    import jax

    from jaxrl_lite import agents, envs
    from jaxrl_lite.blocks import sharding

    cache = os.environ.get("JAXRL_LITE_JAX_CACHE")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    agent = agents.get(_ALGO.value)
    num_envs = _global_envs(devices)
    config = agent.Config(**{**_overrides(agent, _SET.value), "num_envs": num_envs})
    config.validate()
    mesh = sharding.make_mesh(devices, num_envs=num_envs)
    env = envs.make(_ENV.value, backend=_BACKEND.value, num_envs=num_envs, auto_reset=True)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    state, shardings = sharding.sharded_init(lambda: agent.init(config, env, key), mesh,
                                                num_envs)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = sharding.data_parallel(agent.make_train_iteration(config, env), shardings,
                                     donate=True).lower(state).compile()
    compile_s = time.perf_counter() - t0
    state, m = step(state)  # warm-up
    jax.block_until_ready((state, m))
    t0 = time.perf_counter()
    for _ in range(_ITERS.value):
        state, m = step(state)
    jax.block_until_ready((state, m))
    run_s = time.perf_counter() - t0
    steps = _ITERS.value * agent.env_steps_per_iteration(config)
    return {"devices": devices, "num_envs": num_envs, "env_steps": steps, "run_s": run_s,
            "env_steps_per_s": steps / run_s, "compile_s": compile_s, "init_s": init_s,
            "platform": jax.devices()[0].platform,
            "device_kind": jax.devices()[0].device_kind,
            "finite": bool(all(float(v) == float(v) for v in m.values()))}


def _has_accelerator() -> bool:
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                         capture_output=True, text=True, timeout=300)
    return out.stdout.strip().splitlines()[-1:] not in (["cpu"], [])


def _child_env(devices: int, force: bool) -> dict:
    env = dict(os.environ)
    if force:
        flags_ = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                        env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags_} --xla_force_host_platform_device_count={devices}".strip()
        env.setdefault("JAX_PLATFORMS", "cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _table(rows: list[dict]) -> str:
    head = "| devices | num_envs | env steps/s | speedup | efficiency | compile s |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['devices']} | {r['num_envs']} | {r['env_steps_per_s']:,.0f} | "
                     f"{r['speedup']:.2f} | {r['efficiency']:.2f} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def run_all() -> dict:
    try:
        counts = sorted({int(d) for d in _DEVICES.value})
    except ValueError:
        raise UsageError(f"--devices must be comma-separated integers, got "
                         f"{','.join(_DEVICES.value)}") from None
    if not counts or counts[0] < 1:
        raise UsageError(f"--devices must be positive integers, got {counts}")
    for name, flag in (("iterations", _ITERS), ("num_envs_per_device", _PER_DEVICE)):
        if flag.value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {flag.value}")
    if _NUM_ENVS.value < 0:
        raise UsageError(f"--num_envs must be >= 0, got {_NUM_ENVS.value}")
    if _NUM_ENVS.value:
        bad = [n for n in counts if _NUM_ENVS.value % n]
        if bad:
            raise UsageError(f"--num_envs={_NUM_ENVS.value} is not divisible by device "
                             f"count(s) {bad}")
    from jaxrl_lite import agents, envs
    if _ALGO.value not in agents.names():
        raise UsageError(f"unknown --algo={_ALGO.value!r}; valid: {', '.join(agents.names())}")
    try:
        envs.task_spec(_ENV.value)
    except ValueError as e:
        raise UsageError(f"--env: {e}") from None
    agent = agents.get(_ALGO.value)
    try:
        agent.Config(**{**_overrides(agent, _SET.value), "num_envs": _global_envs(counts[0])}
                     ).validate()
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    force = {"yes": True, "no": False}.get(_FORCE_HOST.value)
    if force is None:
        force = not _has_accelerator()
    argv = [a for a in sys.argv[1:] if not a.startswith("--child_devices")]
    rows = []
    for n in counts:
        cmd = [sys.executable, "-m", "experiments.bench_scaling", *argv, f"--child_devices={n}"]
        print(f"[bench_scaling] {n} device(s), num_envs={_global_envs(n)} ...", flush=True)
        proc = subprocess.run(cmd, env=_child_env(n, force), capture_output=True, text=True,
                              timeout=_TIMEOUT.value)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(f"{n} device(s) failed (exit {proc.returncode}): "
                               f"{err[-1] if err else 'no output'}")
        rows.append(json.loads(lines[-1][len("RESULT "):]))
    base = rows[0]
    for r in rows:
        r["speedup"] = r["env_steps_per_s"] / base["env_steps_per_s"]
        r["efficiency"] = r["speedup"] / (r["devices"] / base["devices"])
    return {
        "algo": _ALGO.value, "env": _ENV.value, "backend": _BACKEND.value,
        "scaling": "strong" if _NUM_ENVS.value else "weak",
        "num_envs_per_device": None if _NUM_ENVS.value else _PER_DEVICE.value,
        "iterations": _ITERS.value, "overrides": list(_SET.value),
        "forced_host_devices": force, "cpu_count": os.cpu_count(),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()}".strip(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }


def main(argv):
    if len(argv) > 1:
        sys.stderr.write(f"bench_scaling: error: unexpected arguments {' '.join(argv[1:])}\n")
        sys.exit(2)
    if _CHILD.value:
        try:
            print("RESULT " + json.dumps(measure(_CHILD.value)), flush=True)
        except (UsageError, ValueError) as e:
            sys.stderr.write(f"bench_scaling: error: {e}\n")
            sys.exit(2)
        return
    try:
        result = run_all()
    except UsageError as e:
        sys.stderr.write(f"bench_scaling: error: {e}\n")
        sys.exit(2)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.stderr.write(f"bench_scaling: error: {e}\n")
        sys.exit(1)
    where = (f"forced host CPU devices sharing {result['cpu_count']} cores"
             if result["forced_host_devices"] else result["rows"][0]["device_kind"])
    print(f"\n{result['algo']} on {result['env']} ({result['scaling']} scaling, {where})")
    print(_table(result["rows"]))
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)

"""The measured episode loop: gymnasium's own Ant-v5 driven by one policy.

Imports numpy, psutil and (lazily) gymnasium only; every harness process,
LiteRT, TFLM, TensorFlow or JAX, measures with this same code.

Timing per env step (``time.perf_counter_ns``):
  invoke   around ``policy.invoke()`` alone   -> latency_us_p50/p99/max
  env      around ``env.step(action)``        -> env_step_us_mean
  overhead the rest of the loop (obs copy, (de)quantization, set/get tensor,
           bookkeeping, timers)                -> harness_overhead_us_per_step

Non-finite values (a sensor fault on a robot): an observation with a NaN/±inf
feature is passed to the model unchanged (what the model makes of it is the
model's behaviour, measured, not hidden) and counted; a non-finite action entry
is counted and replaced by 0 (that motor off) before ``env.step``, because
MuJoCo would otherwise integrate NaN into the state. Per episode the report has
``nonfinite_obs_steps`` and ``nonfinite_action_steps``; totals beside them.
"""
from __future__ import annotations

import math
import os
import resource
import sys
import time
from typing import Callable

import numpy as np

from export.harness import machine
from export.harness.errors import BudgetExceeded
from export.harness.machine import machine_description
from export.harness.errors import HarnessError
from export.harness.profiles import DEFAULT_ENV
from export.harness.runtime import check_shapes

_BUDGET_CHECK_EVERY = 256  # steps between peak-RSS checks against the budget


def rss_mb() -> float:
    """Current resident set size of this process, MiB (NaN where the OS hides it)."""
    return machine.rss_mb_now()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (kernel high-water mark).

    Linux: VmHWM of /proc/self/status, which belongs to this program's own
    address space (getrusage's ru_maxrss survives exec and would report the
    launching process's peak, e.g. pytest's). Elsewhere: ru_maxrss.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _import_mujoco_without_gl() -> None:
    """Import MuJoCo with MUJOCO_GL=disable: a measured run renders nothing, so it
    neither pays for a GL library nor fails on a broken GL setting."""
    if "mujoco" in sys.modules:
        return
    old = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = "disable"
    try:
        import mujoco  # noqa: F401
    finally:
        if old is None:
            del os.environ["MUJOCO_GL"]
        else:
            os.environ["MUJOCO_GL"] = old


def make_env(max_episode_steps: int | None, render_mode: str | None = None,
             env_id: str = DEFAULT_ENV, env_kwargs: dict | None = None):
    """gymnasium's task ``env_id`` with ``env_kwargs``, truncated at ``max_episode_steps``
    (None: its registered TimeLimit). One-line HarnessError for an unknown task or
    keyword."""
    if render_mode is None:
        _import_mujoco_without_gl()
    import gymnasium as gym

    try:
        return gym.make(env_id, max_episode_steps=max_episode_steps, render_mode=render_mode,
                        **(env_kwargs or {}))
    except (gym.error.Error, TypeError, ValueError) as e:
        raise HarnessError(f"cannot make {env_id} with {env_kwargs or {}}: "
                           f"{str(e).splitlines()[0]}") from None


def env_dims(env) -> tuple[int, int]:
    return int(env.observation_space.shape[0]), int(env.action_space.shape[0])


def _check_budget(budget_mb: float | None, where: str) -> None:
    if budget_mb is None:
        return
    peak = peak_rss_mb()
    if peak > budget_mb:
        raise BudgetExceeded(f"peak RSS {peak:.1f} MB {where} exceeds the memory budget "
                             f"{budget_mb:.0f} MB")


def run_episodes(policy, env, episodes: int, seed: int, warmup: int,
                 budget_mb: float | None = None) -> dict:
    """Run ``episodes`` episodes (seeds seed+i); return returns, lengths and timings."""
    obs_dim, _ = env_dims(env)
    obs_buf = np.zeros((1, obs_dim), np.float32)
    set_input, invoke, get_output = policy.set_input, policy.invoke, policy.get_output
    step = env.step
    pc = time.perf_counter_ns

    obs, _ = env.reset(seed=seed)
    obs_buf[0] = obs
    for _ in range(warmup):
        set_input(obs_buf)
        invoke()
        get_output()

    max_steps = env.spec.max_episode_steps or 1000
    lat = np.zeros(episodes * max_steps, np.int64)
    returns, lengths, terminated_eps = [], [], []
    bad_obs_eps, bad_act_eps = [], []
    isfinite = np.isfinite
    env_ns = loop_ns = reset_ns = 0
    k = 0
    cpu0, wall0 = machine.cpu_seconds(), time.perf_counter()
    for i in range(episodes):
        t_reset = pc()
        obs, _ = env.reset(seed=seed + i)
        ret, n, bad_obs, bad_act = 0.0, 0, 0, 0
        t_loop = pc()
        reset_ns += t_loop - t_reset
        while True:
            obs_buf[0] = obs
            if not isfinite(obs_buf).all():
                bad_obs += 1
            set_input(obs_buf)
            t1 = pc()
            invoke()
            t2 = pc()
            action = get_output()[0]
            if not isfinite(action).all():
                bad_act += 1
                action = np.where(isfinite(action), action, 0.0).astype(np.float32)
            t3 = pc()
            obs, reward, terminated, truncated, _ = step(action)
            t4 = pc()
            lat[k] = t2 - t1
            env_ns += t4 - t3
            ret += reward
            n += 1
            k += 1
            if k % _BUDGET_CHECK_EVERY == 0 and budget_mb is not None:
                _check_budget(budget_mb, "during the episodes")
            if terminated or truncated:
                break
        loop_ns += pc() - t_loop
        returns.append(float(ret))
        lengths.append(n)
        terminated_eps.append(bool(terminated))
        bad_obs_eps.append(bad_obs)
        bad_act_eps.append(bad_act)
    wall = time.perf_counter() - wall0
    cpu1 = machine.cpu_seconds()
    cpu_s = None if cpu0 is None or cpu1 is None else cpu1 - cpu0

    lat_us = lat[:k] / 1e3
    invoke_ns = int(lat[:k].sum())
    overhead_ns = loop_ns - invoke_ns - env_ns
    steps = max(k, 1)
    return {
        "returns": returns,
        "episode_lengths": lengths,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "episode_length_mean": float(np.mean(lengths)),
        "terminated": terminated_eps,
        "falls": int(sum(terminated_eps)),
        "nonfinite_obs_steps": bad_obs_eps,
        "nonfinite_action_steps": bad_act_eps,
        "nonfinite_obs_steps_total": int(sum(bad_obs_eps)),
        "nonfinite_action_steps_total": int(sum(bad_act_eps)),
        "steps_total": int(k),
        "latency_us_p50": float(np.percentile(lat_us, 50)),
        "latency_us_p99": float(np.percentile(lat_us, 99)),
        "latency_us_max": float(lat_us.max()),
        "latency_us_mean": float(lat_us.mean()),
        "env_step_us_mean": env_ns / steps / 1e3,
        "step_us_mean": loop_ns / steps / 1e3,
        "harness_overhead_us_per_step": overhead_ns / steps / 1e3,
        "harness_overhead_fraction": overhead_ns / max(loop_ns, 1),
        "reset_us_mean": reset_ns / max(episodes, 1) / 1e3,
        "cpu_percent_mean": machine.cpu_percent(cpu_s, wall),  # None: not measurable here
        "wall_s": wall,
    }


def measure(name: str, runtime: str, import_runtime: Callable[[], object],
            load_policy: Callable[[], object], constraints: dict, *, episodes: int,
            seed: int, max_episode_steps: int | None, warmup: int, model_path: str | None,
            model_bytes: int | None, extra: dict | None = None, env_id: str = DEFAULT_ENV,
            env_kwargs: dict | None = None) -> dict:
    """Measure one variant in this process and return its report dict.

    Memory is read in phases: process start -> env made -> runtime imported ->
    model loaded and warmed up -> episodes. Raises HarnessError on a shape
    mismatch and BudgetExceeded (with ``.report``) over the memory budget.
    """
    if episodes < 1:
        raise HarnessError(f"--episodes must be >= 1, got {episodes}")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise HarnessError(f"--max_episode_steps must be >= 1, got {max_episode_steps}")
    if warmup < 0:
        raise HarnessError(f"--warmup must be >= 0, got {warmup}")
    budget = constraints["memory_budget_mb"]
    rss_start = rss_mb()
    env = make_env(max_episode_steps, env_id=env_id, env_kwargs=env_kwargs)
    max_episode_steps = env.spec.max_episode_steps
    obs_dim, act_dim = env_dims(env)
    env.reset(seed=seed)
    rss_env = rss_mb()
    import_runtime()
    rss_runtime = rss_mb()
    policy = load_policy()
    check_shapes(policy, obs_dim, act_dim, name, env_id)
    policy.set_input(np.zeros((1, obs_dim), np.float32))
    policy.invoke()  # first inference: delegates and scratch buffers are set up here
    policy.get_output()
    rss_loaded = rss_mb()
    report = {
        "name": name,
        "runtime": runtime,
        "model": model_path,
        "model_bytes": model_bytes,
        "env": env_id,
        "env_kwargs": env_kwargs or {},
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "episodes": episodes,
        "seeds": [seed + i for i in range(episodes)],
        "max_episode_steps": max_episode_steps,
        "threads": constraints["threads"],
        "memory_budget_mb": budget,
        "rss_mb_start": rss_start,
        "rss_mb_env": rss_env - rss_start,
        "rss_mb_runtime": rss_runtime - rss_env,
        "rss_mb_model": rss_loaded - rss_runtime,
        **(extra or {}),
    }
    try:
        _check_budget(budget, "after loading the model")
        report.update(run_episodes(policy, env, episodes, seed, warmup, budget))
        env.close()
        report["rss_mb_end"] = rss_mb()
        report["rss_mb_peak"] = peak_rss_mb()
        _check_budget(budget, "at the end of the run")
    except BudgetExceeded as e:
        report["rss_mb_peak"] = peak_rss_mb()
        report["error"] = str(e)
        report["machine"] = machine_description(constraints)
        e.report = report
        raise
    report["machine"] = machine_description(constraints)
    report["within_budget"] = None if budget is None else bool(report["rss_mb_peak"] <= budget)
    for key, value in report.items():  # JSON has no NaN
        if isinstance(value, float) and not math.isfinite(value):
            report[key] = None
    return report

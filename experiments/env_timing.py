"""Timing of batched env stepping with auto-reset, for ``device_report``'s MJX throughput
(a module without flags, importable from the report's stage processes)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from jaxrl_lite import envs


def time_backend(backend, num_envs, steps, repeats, seed, task="Ant-v5", **kwargs):
    """Compile + steady-state timing of a jitted scan of env.step (random actions
    within the action bounds, auto-reset on)."""
    env = envs.make(task, backend=backend, num_envs=num_envs, auto_reset=True, **kwargs)
    low, high = env.action_low, env.action_high

    def rollout(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (num_envs, env.action_size), jnp.float32, low, high)
            s = env.step(s, a)
            return s, s.reward.mean()
        return jax.lax.scan(body, state, jax.random.split(key, steps))

    fn = jax.jit(rollout)
    key = jax.random.PRNGKey(seed)
    t = time.perf_counter()
    state = jax.block_until_ready(env.reset(key))
    reset_s = time.perf_counter() - t
    t = time.perf_counter()
    state, _ = jax.block_until_ready(fn(state, key))
    first_s = time.perf_counter() - t
    runs = []
    for r in range(repeats):
        t = time.perf_counter()
        state, _ = jax.block_until_ready(fn(state, jax.random.fold_in(key, r + 1)))
        runs.append(time.perf_counter() - t)
    steady = min(runs) if runs else first_s
    return {"task": task, "backend": backend, "num_envs": num_envs, "steps": steps,
            "first_reset_s": round(reset_s, 3), "compile_s": round(max(first_s - steady, 0), 2),
            "steady_s": round(steady, 4), "env_steps_per_s": round(num_envs * steps / steady, 1),
            **{k: v for k, v in kwargs.items()}}

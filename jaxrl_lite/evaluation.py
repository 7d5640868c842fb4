"""Deterministic-policy evaluation on separate environments, one jitted scan.

The evaluated action is ``policy.deterministic_action`` (= what export ships).
Each of the eval env's ``num_envs`` environments runs one episode of at most
``env.max_episode_steps`` steps from ``reset(key)`` (``auto_reset=False``);
rewards after an env's first ``done`` are masked out.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_lite import policy
from jaxrl_lite.envs.core import Env
from jaxrl_lite.policy import PolicySpec


def make_evaluator(env: Env, spec: PolicySpec):
    """-> jitted ``fn(actor_params, norm, key) -> {"eval/return_mean", "eval/return_std",
    "eval/length_mean"}`` (float32 scalars)."""
    if env.auto_reset:
        raise ValueError("evaluation needs an env built with auto_reset=False")

    def evaluate(actor_params, norm, key):
        state = env.reset(key)
        n = env.num_envs

        def step(carry, _):
            state, ret, length, alive = carry
            action = policy.deterministic_action(spec, actor_params, norm, state.obs)
            # Finished envs keep stepping (no auto-reset): feed them zeros.
            action = jnp.where(alive[:, None], action, 0.0)
            nxt = env.step(state, action)
            ret = ret + jnp.where(alive, nxt.reward, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & (nxt.done <= 0)
            return (nxt, ret, length, alive), None

        init = (state, jnp.zeros((n,), jnp.float32), jnp.zeros((n,), jnp.int32),
                jnp.ones((n,), bool))
        (_, ret, length, _), _ = jax.lax.scan(step, init, None, length=env.max_episode_steps)
        return {"eval/return_mean": jnp.mean(ret), "eval/return_std": jnp.std(ret),
                "eval/length_mean": jnp.mean(length.astype(jnp.float32))}

    return jax.jit(evaluate)

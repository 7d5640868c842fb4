"""Deterministic-policy evaluation on separate environments, one jitted scan.

The evaluated action is ``policy.deterministic_action`` (= what export ships).
Each of the eval env's ``num_envs`` environments runs one episode of at most
``env.max_episode_steps`` steps from ``reset(key)`` (``auto_reset=False``);
rewards after an env's first ``done`` are masked out.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.blocks import policy
from jaxrl_lite.blocks.policy import PolicySpec
from jaxrl_lite.envs.core import Env
from jaxrl_lite.run import checkpoint


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


_log = logging.getLogger(__name__)


def gymnasium_evaluate(run_dir: str, episodes: int, seed: int, env_id: str | None = None,
                       env_kwargs: dict | None = None) -> dict:
    """Deterministic policy of the newest checkpoint in gymnasium's own env.

    ``env_id``: the gymnasium task (default: the one the policy was trained on, from
    its checkpoint); ``env_kwargs`` its keywords. Episodes use seeds ``seed, seed+1,
    ...``; returns a JSON-ready dict of return mean/std, per-episode returns and
    lengths, ``falls`` (episodes that terminated before the time limit) and the
    checkpoint used.
    """
    bundle = checkpoint.load_policy(run_dir)
    env_id = env_id or bundle.spec.env
    act = jax.jit(lambda obs: policy.deterministic_action(
        bundle.spec, bundle.actor_params, bundle.norm, obs[None])[0])
    result = gymnasium_episodes(act, env_id, episodes, seed, env_kwargs)
    return {**result, "checkpoint": bundle.source, "checkpoint_env_steps": bundle.step}


def gymnasium_episodes(act: Callable[[np.ndarray], Any], env_id: str, episodes: int, seed: int,
                       env_kwargs: dict | None = None) -> dict:
    """``act`` (float32 observation [obs_dim] -> action [act_dim]) for ``episodes``
    episodes of gymnasium's own ``env_id``, seeded ``seed, seed+1, ...``: the one
    evaluation every learning figure uses (ours and the SB3 peer's). Returns return
    mean/std, per-episode returns and lengths, ``falls`` (terminated before the time
    limit), the seeds and ``gym_eval_s``."""
    env = gym.make(env_id, **(env_kwargs or {}))
    returns, lengths, falls = [], [], 0
    t0 = time.perf_counter()
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, steps, terminated, truncated = 0.0, 0, False, False
        while not (terminated or truncated):
            action = np.asarray(act(np.asarray(obs, np.float32)), np.float64)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
        returns.append(total)
        lengths.append(steps)
        falls += int(terminated)
        _log.info("gymnasium %s episode %d: return %.1f, length %d%s", env_id, ep, total,
                  steps, " (terminated)" if terminated else "")
    env.close()
    return {"env": env_id, "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)), "returns": returns,
            "episode_lengths": lengths, "falls": falls, "episodes": episodes,
            "seeds": [seed, seed + episodes - 1], "gym_eval_s": time.perf_counter() - t0}

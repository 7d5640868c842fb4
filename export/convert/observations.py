"""Real Ant-v5 observations for calibration and held-out fidelity checks.

Observations come from rollouts of the checkpoint's own deterministic policy
(plus Gaussian action noise, so that a barely trained policy still visits
varied, contact-rich states) in gymnasium's ``Ant-v5`` on the CPU. The policy
runs in NumPy (float32, the same formula as ``jaxrl_lite.blocks.policy``), so a
rollout costs one small matmul per step and no JAX dispatch.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import PolicySpec

PolicyFn = Callable[[np.ndarray], np.ndarray]


def numpy_policy(spec: PolicySpec, actor_params, norm, return_hidden: bool = False) -> PolicyFn:
    """obs float32 [N, obs_dim] -> tanh(torso(normalize(obs))) float32 [N, act_dim]
    (``return_hidden``: -> (actions, [hidden layer outputs [N, width_l]]))."""
    p = actor_params["params"] if "params" in actor_params else actor_params
    acts = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0),
            "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
            "silu": lambda x: x / (1.0 + np.exp(-x))}
    act = acts[spec.activation]
    mean = np.asarray(norm.mean, np.float32)
    std = np.sqrt(np.maximum(np.asarray(norm.var, np.float32), 0.0)) + normalizer.STD_EPS
    layers = [(np.asarray(p[f"hidden_{i}"]["kernel"], np.float32),
               np.asarray(p[f"hidden_{i}"]["bias"], np.float32),
               p.get(f"norm_{i}")) for i in range(len(spec.hidden_sizes))]
    out_w = np.asarray(p["out"]["kernel"], np.float32)
    out_b = np.asarray(p["out"]["bias"], np.float32)

    def policy(obs: np.ndarray) -> np.ndarray:
        x = np.clip((np.asarray(obs, np.float32) - mean) / std, -normalizer.CLIP, normalizer.CLIP)
        hidden = []
        for w, b, ln in layers:
            x = x @ w + b
            if ln is not None:  # flax LayerNorm: eps 1e-6, scale and bias
                mu = x.mean(-1, keepdims=True)
                var = x.var(-1, keepdims=True)
                x = (x - mu) / np.sqrt(var + 1e-6) * np.asarray(ln["scale"]) + np.asarray(ln["bias"])
            x = act(x)
            hidden.append(x)
        action = np.tanh(x @ out_w + out_b)
        if spec.action_low is not None:  # the task's bounds, as policy.to_bounds
            low = np.asarray(spec.action_low, np.float32)
            high = np.asarray(spec.action_high, np.float32)
            action = action * ((high - low) / 2) + (high + low) / 2
        action = action.astype(np.float32)
        return (action, hidden) if return_hidden else action

    return policy


def make_env(env_id: str = "Ant-v5", env_kwargs: dict | None = None, max_episode_steps=None):
    return gym.make(env_id, max_episode_steps=max_episode_steps, **(env_kwargs or {}))


def env_dims(env_id: str = "Ant-v5", env_kwargs: dict | None = None) -> tuple[int, int]:
    """(obs_dim, act_dim) of the gymnasium env with these keyword arguments."""
    env = make_env(env_id, env_kwargs)
    try:
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    finally:
        env.close()


def collect_observations(policy: PolicyFn, num_obs: int, seed: int, *, env_id: str = "Ant-v5",
                         env_kwargs: dict | None = None, action_noise: float = 0.3,
                         episode_steps: int = 250, stride: int = 2) -> np.ndarray:
    """Roll out ``policy`` (+ Gaussian noise of std ``action_noise`` x half the action
    range, clipped to the action bounds) and keep every ``stride``-th observation until
    ``num_obs`` are collected.

    Episodes are cut at ``episode_steps`` so the set mixes start-up and gait
    states. Returns float32 [num_obs, obs_dim]. Deterministic given ``seed``.
    """
    if num_obs < 1:
        raise ValueError(f"num_obs must be >= 1, got {num_obs}")
    if stride < 1 or episode_steps < 1:
        raise ValueError(f"stride and episode_steps must be >= 1, got {stride}, {episode_steps}")
    rng = np.random.default_rng(seed)
    env = make_env(env_id, env_kwargs, max_episode_steps=episode_steps)
    low, high = env.action_space.low, env.action_space.high
    half_range = (high - low) / 2
    out: list[np.ndarray] = []
    episode = 0
    try:
        while len(out) < num_obs:
            obs, _ = env.reset(seed=int(seed) * 100_003 + episode)
            episode += 1
            t = 0
            while len(out) < num_obs:
                if t % stride == 0:
                    out.append(np.asarray(obs, np.float32))
                a = policy(obs[None])[0]
                if action_noise > 0:
                    a = a + rng.normal(0.0, action_noise, a.shape) * half_range
                obs, _, terminated, truncated, _ = env.step(
                    np.clip(a, low, high).astype(np.float32))
                t += 1
                if terminated or truncated:
                    break
    finally:
        env.close()
    return np.stack(out[:num_obs])


def fit_normalizer(obs: np.ndarray) -> normalizer.NormalizerState:
    """Normaliser statistics of a batch of observations [N, obs_dim] (numpy)."""
    obs = np.asarray(obs, np.float32)
    return normalizer.NormalizerState(mean=obs.mean(0), var=obs.var(0),
                                      count=np.asarray(obs.shape[0], np.float32))

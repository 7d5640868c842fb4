"""PointMass-v0: a cheap continuous-control task written in JAX, for tests.

A unit point mass on a 2-D plane starts at a random position in [-1, 1]^2 and
must come to rest at the origin. Action: force in [-1, 1]^2 (clipped).
Observation (4): position (m) and velocity (m/s). Reward per step:
``-|pos| - 0.01 |action|^2``; episodes truncate after ``max_episode_steps``
(default 50) and never terminate early, so the task exercises bootstrapping
through time limits. A random policy scores about -55 per episode, a good one
about -12.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp

from jaxrl_lite.envs.core import Env

_DT = 0.1
_DAMPING = 0.5


class PointMass(Env):
    def __init__(self, num_envs: int = 1, auto_reset: bool = True,
                 max_episode_steps: int = 50):
        super().__init__(num_envs, auto_reset, max_episode_steps)

    @property
    def observation_size(self) -> int:
        return 4

    @property
    def action_size(self) -> int:
        return 2

    def _reset_batch(self, rng, needed=None):  # needed: every reset is cheap here
        pos = jax.vmap(lambda k: jax.random.uniform(k, (2,), minval=-1.0, maxval=1.0))(rng)
        vel = jnp.zeros_like(pos)
        physics = {"pos": pos, "vel": vel}
        return jnp.concatenate([pos, vel], -1), physics, {}

    def _step_batch(self, physics, action):
        action = jnp.clip(jnp.nan_to_num(action), -1.0, 1.0)
        vel = physics["vel"] + _DT * (action - _DAMPING * physics["vel"])
        pos = physics["pos"] + _DT * vel
        reward = -jnp.linalg.norm(pos, axis=-1) - 0.01 * jnp.sum(action ** 2, -1)
        terminated = jnp.zeros(pos.shape[:1], jnp.float32)
        obs = jnp.concatenate([pos, vel], -1)
        return obs, reward, terminated, {"pos": pos, "vel": vel}, {}



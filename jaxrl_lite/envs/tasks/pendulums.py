"""The pendulums on a cart: gymnasium ``InvertedPendulum-v5`` and
``InvertedDoublePendulum-v5``.

* InvertedPendulum: obs = (qpos, qvel); terminated when an observation entry is not
  finite or |qpos[1]| > 0.2; reward = 1 while not terminated. Reset: qpos + U(+-s),
  qvel + U(+-s).
* InvertedDoublePendulum: obs = (cart x, sin and cos of both link angles, qvel clipped
  to +-10, the cart's constraint force clipped to +-10); reward = alive bonus - (0.01
  x^2 + (y - 2)^2) - (1e-3 v1^2 + 5e-3 v2^2) with (x, y) the tip site's x and z;
  terminated when y <= 1. Reset: qpos + U(+-s), qvel + s * N(0, 1).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import task
from jaxrl_lite.envs.task import Position, Semantics, TaskConfig, TaskSpec


@dataclasses.dataclass(frozen=True)
class InvertedPendulumConfig(TaskConfig):
    """Every gymnasium InvertedPendulum-v5 keyword, same names and defaults."""

    TASK = "InvertedPendulum-v5"

    xml_file: str = "inverted_pendulum.xml"
    frame_skip: int = 2
    reset_noise_scale: float = 0.01


@dataclasses.dataclass(frozen=True)
class InvertedDoublePendulumConfig(TaskConfig):
    """Every gymnasium InvertedDoublePendulum-v5 keyword, same names and defaults."""

    TASK = "InvertedDoublePendulum-v5"

    xml_file: str = "inverted_double_pendulum.xml"
    frame_skip: int = 5
    healthy_reward: float = 10.0
    reset_noise_scale: float = 0.1


def _bind_single(model, config) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)

    def observation(qpos, qvel, fields):
        return jnp.concatenate([qpos, qvel])

    def transition(qpos, qvel, fields, dpos, action):
        obs = observation(qpos, qvel, fields)
        terminated = ~jnp.all(jnp.isfinite(obs)) | (jnp.abs(obs[1]) > 0.2)
        reward = (~terminated).astype(jnp.float32)
        return reward, terminated, {"reward_survive": reward}

    return Semantics(lambda key: task.noisy_state(key, init_qpos, init_qvel,
                                                  config.reset_noise_scale),
                     observation, transition, lambda qpos, qvel, fields: {})


def _bind_double(model, config) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)

    def observation(qpos, qvel, fields):
        return jnp.concatenate([qpos[:1], jnp.sin(qpos[1:]), jnp.cos(qpos[1:]),
                                jnp.clip(qvel, -10, 10),
                                jnp.clip(fields["qfrc_constraint"], -10, 10)[:1]])

    def transition(qpos, qvel, fields, dpos, action):
        x, _, y = fields["site_xpos"][0]
        terminated = y <= 1
        v1, v2 = qvel[1], qvel[2]
        dist_penalty = 0.01 * x ** 2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1 ** 2 + 5e-3 * v2 ** 2
        alive = config.healthy_reward * (~terminated).astype(jnp.float32)
        return (alive - dist_penalty - vel_penalty, terminated,
                {"reward_survive": alive, "distance_penalty": -dist_penalty,
                 "velocity_penalty": -vel_penalty})

    return Semantics(lambda key: task.noisy_state(key, init_qpos, init_qvel,
                                                  config.reset_noise_scale, "normal"),
                     observation, transition, lambda qpos, qvel, fields: {})


def _no_position(model, config) -> Position:
    return Position("none")


INVERTED_PENDULUM = TaskSpec("InvertedPendulum-v5", InvertedPendulumConfig, (), (),
                             _no_position, _bind_single)
INVERTED_DOUBLE_PENDULUM = TaskSpec(
    "InvertedDoublePendulum-v5", InvertedDoublePendulumConfig,
    ("qfrc_constraint", "site_xpos"), ("qfrc_constraint",), _no_position, _bind_double)

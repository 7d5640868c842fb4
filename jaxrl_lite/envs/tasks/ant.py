"""Gymnasium ``Ant-v5`` (``gymnasium/envs/mujoco/ant_v5.py``).

* observation = ``qpos[2:]`` (or all of qpos), ``qvel``, then
  ``clip(cfrc_ext[1:], *contact_force_range)`` flattened (13 bodies x 6):
  15 - 2 + 14 + 78 = 105 by default.
* reward = forward + healthy - ctrl_cost - contact_cost; forward is the x-velocity of
  ``main_body`` from its ``xpos`` before and after the substeps; ctrl_cost uses the
  action as given; contact_cost the clipped ``cfrc_ext`` of every body.
* healthy = every entry of (qpos, qvel) finite and ``qpos[2]`` inside
  ``healthy_z_range`` (inclusive); terminated = not healthy and
  ``terminate_when_unhealthy``.
* reset: qpos + U(+-s) on all 15 entries (quaternion included, not renormalised),
  qvel + s * N(0, 1); the first observation's contact forces are zero.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import task
from jaxrl_lite.envs.task import Position, Semantics, TaskConfig, TaskSpec


@dataclasses.dataclass(frozen=True)
class Config(TaskConfig):
    """Every gymnasium Ant-v5 keyword, same names and defaults."""

    TASK = "Ant-v5"

    xml_file: str = "ant.xml"
    frame_skip: int = 5
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.5
    contact_cost_weight: float = 5e-4
    healthy_reward: float = 1.0
    main_body: int | str = 1
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float] = (0.2, 1.0)
    contact_force_range: tuple[float, float] = (-1.0, 1.0)
    reset_noise_scale: float = 0.1
    exclude_current_positions_from_observation: bool = True
    include_cfrc_ext_in_observation: bool = True

    def _check(self, name, value, hint):
        if name == "main_body":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, str)):
                self._fail(name, "a body id (int) or body name (str)")
            return
        super()._check(name, value, hint)


def contact_forces(cfrc_ext, config: Config):
    """cfrc_ext [nbody, 6] -> clipped to contact_force_range, same shape."""
    lo, hi = config.contact_force_range
    return jnp.clip(cfrc_ext, lo, hi)


def observation(qpos, qvel, cfrc_ext, config: Config):
    """(qpos [15], qvel [14], cfrc_ext [nbody, 6]) -> obs [observation_size]."""
    parts = [qpos[2:] if config.exclude_current_positions_from_observation else qpos, qvel]
    if config.include_cfrc_ext_in_observation:
        parts.append(contact_forces(cfrc_ext, config)[1:].reshape(-1))
    return jnp.concatenate(parts)


def is_healthy(qpos, qvel, config: Config):
    """-> bool: all of (qpos, qvel) finite and z in healthy_z_range (inclusive)."""
    lo, hi = config.healthy_z_range
    finite = jnp.all(jnp.isfinite(qpos)) & jnp.all(jnp.isfinite(qvel))
    return finite & (qpos[2] >= lo) & (qpos[2] <= hi)


def step_reward(xy_displacement, step_dt: float, action, cfrc_ext, healthy, config: Config):
    """Reward of one env step and its terms (x/y velocity from the main body's xy
    displacement in m over ``step_dt`` s)."""
    velocity = xy_displacement / step_dt
    forward = config.forward_reward_weight * velocity[0]
    survive = jnp.asarray(healthy, velocity.dtype) * config.healthy_reward
    ctrl_cost = config.ctrl_cost_weight * jnp.sum(jnp.square(action))
    contact_cost = config.contact_cost_weight * jnp.sum(
        jnp.square(contact_forces(cfrc_ext, config)))
    reward = forward + survive - ctrl_cost - contact_cost
    return reward, {"x_velocity": velocity[0], "y_velocity": velocity[1],
                    "reward_forward": forward, "reward_ctrl": -ctrl_cost,
                    "reward_contact": -contact_cost, "reward_survive": survive}


def _position(model, config: Config) -> Position:
    return Position("body", 2, body=task.body_id(model, config.main_body, Config.TASK,
                                                  "main_body"))


def _bind(model, config: Config) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)
    nbody = model.nbody
    step_dt = float(model.opt.timestep) * config.frame_skip

    def reset(key):
        return task.noisy_state(key, init_qpos, init_qvel, config.reset_noise_scale, "normal")

    def obs(qpos, qvel, fields):
        cfrc = fields["cfrc_ext"] if "cfrc_ext" in fields else jnp.zeros((nbody, 6),
                                                                          jnp.float32)
        return observation(qpos, qvel, cfrc, config)

    def transition(qpos, qvel, fields, dxy, action):
        healthy = is_healthy(qpos, qvel, config)
        reward, terms = step_reward(dxy, step_dt, action, fields["cfrc_ext"], healthy,
                                    config)
        terms.update(task.xy_info(qpos))
        return reward, task.terminated_if_unhealthy(healthy,
                                                    config.terminate_when_unhealthy), terms

    return Semantics(reset, obs, transition, lambda qpos, qvel, fields: task.xy_info(qpos))


TASK = TaskSpec("Ant-v5", Config, fields=("cfrc_ext",), reset_fields=(),
                position=_position, bind=_bind)

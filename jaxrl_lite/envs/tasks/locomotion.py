"""The planar runners and the swimmer: gymnasium ``HalfCheetah-v5``, ``Hopper-v5``,
``Walker2d-v5`` and ``Swimmer-v5``.

All four reward the x-velocity of ``qpos[0]`` (Swimmer: of ``qpos[0:2]``) over the
frame_skip substeps, minus a control cost on the action as given; Hopper and
Walker2d add a healthy reward and terminate when unhealthy. Observations are qpos
(without the first 1, or 2 for Swimmer, positions by default) and qvel (clipped to
+-10 for Hopper and Walker2d).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import task
from jaxrl_lite.envs.task import Position, Semantics, TaskConfig, TaskSpec


@dataclasses.dataclass(frozen=True)
class HalfCheetahConfig(TaskConfig):
    """Every gymnasium HalfCheetah-v5 keyword, same names and defaults."""

    TASK = "HalfCheetah-v5"

    xml_file: str = "half_cheetah.xml"
    frame_skip: int = 5
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.1
    reset_noise_scale: float = 0.1
    exclude_current_positions_from_observation: bool = True


@dataclasses.dataclass(frozen=True)
class HopperConfig(TaskConfig):
    """Every gymnasium Hopper-v5 keyword, same names and defaults."""

    TASK = "Hopper-v5"

    xml_file: str = "hopper.xml"
    frame_skip: int = 4
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_state_range: tuple[float, float] = (-100.0, 100.0)
    healthy_z_range: tuple[float, float] = (0.7, float("inf"))
    healthy_angle_range: tuple[float, float] = (-0.2, 0.2)
    reset_noise_scale: float = 5e-3
    exclude_current_positions_from_observation: bool = True


@dataclasses.dataclass(frozen=True)
class Walker2dConfig(TaskConfig):
    """Every gymnasium Walker2d-v5 keyword, same names and defaults."""

    TASK = "Walker2d-v5"

    xml_file: str = "walker2d_v5.xml"
    frame_skip: int = 4
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float] = (0.8, 2.0)
    healthy_angle_range: tuple[float, float] = (-1.0, 1.0)
    reset_noise_scale: float = 5e-3
    exclude_current_positions_from_observation: bool = True


@dataclasses.dataclass(frozen=True)
class SwimmerConfig(TaskConfig):
    """Every gymnasium Swimmer-v5 keyword, same names and defaults."""

    TASK = "Swimmer-v5"

    xml_file: str = "swimmer.xml"
    frame_skip: int = 4
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-4
    reset_noise_scale: float = 0.1
    exclude_current_positions_from_observation: bool = True


def _healthy(qpos, qvel, config):
    """Hopper / Walker2d: z = qpos[1] and angle = qpos[2] strictly inside their ranges
    (Hopper: also every state entry after the first two inside healthy_state_range)."""
    z, angle = qpos[1], qpos[2]
    healthy = (task.inside(z, config.healthy_z_range)
               & task.inside(angle, config.healthy_angle_range))
    if isinstance(config, HopperConfig):
        state = jnp.concatenate([qpos, qvel])[2:]
        healthy = healthy & jnp.all(task.inside(state, config.healthy_state_range))
    return healthy


def _bind(model, config) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)
    step_dt = float(model.opt.timestep) * config.frame_skip
    swimmer = isinstance(config, SwimmerConfig)
    skip = (2 if swimmer else 1) * config.exclude_current_positions_from_observation
    clip_qvel = isinstance(config, (HopperConfig, Walker2dConfig))
    has_health = clip_qvel

    def reset(key):
        noise = "normal" if isinstance(config, HalfCheetahConfig) else "uniform"
        return task.noisy_state(key, init_qpos, init_qvel, config.reset_noise_scale, noise)

    def observation(qpos, qvel, fields):
        return jnp.concatenate([qpos[skip:], jnp.clip(qvel, -10, 10) if clip_qvel else qvel])

    def positions(qpos):
        if swimmer:
            return task.xy_info(qpos)
        info = {"x_position": qpos[0]}
        if has_health:
            info["z_distance_from_origin"] = qpos[1] - init_qpos[1]
        return info

    def transition(qpos, qvel, fields, dpos, action):
        velocity = dpos / step_dt
        forward = config.forward_reward_weight * velocity[0]
        ctrl = task.control_cost(config.ctrl_cost_weight, action)
        info = {**positions(qpos), "x_velocity": velocity[0], "reward_forward": forward,
                "reward_ctrl": -ctrl}
        if swimmer:
            info["y_velocity"] = velocity[1]
        if not has_health:
            return forward - ctrl, jnp.zeros((), bool), info
        healthy = _healthy(qpos, qvel, config)
        survive = task.survive_reward(healthy, config.healthy_reward)
        info["reward_survive"] = survive
        return (forward + survive - ctrl,
                task.terminated_if_unhealthy(healthy, config.terminate_when_unhealthy), info)

    return Semantics(reset, observation, transition,
                     lambda qpos, qvel, fields: positions(qpos))  # noqa: E731


def _position(model, config) -> Position:
    return Position("qpos", 2 if isinstance(config, SwimmerConfig) else 1, start=0)


HALF_CHEETAH = TaskSpec("HalfCheetah-v5", HalfCheetahConfig, (), (), _position, _bind)
HOPPER = TaskSpec("Hopper-v5", HopperConfig, (), (), _position, _bind)
WALKER2D = TaskSpec("Walker2d-v5", Walker2dConfig, (), (), _position, _bind)
SWIMMER = TaskSpec("Swimmer-v5", SwimmerConfig, (), (), _position, _bind)

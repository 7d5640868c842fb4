"""Gymnasium ``Humanoid-v5`` and ``HumanoidStandup-v5`` (same model family, same
observation: qpos (without x, y), qvel, and, by default, com inertia ``cinert[1:]``,
com velocity ``cvel[1:]``, actuator forces ``qfrc_actuator[6:]`` and external contact
forces ``cfrc_ext[1:]``: 45 + 130 + 78 + 17 + 78 = 348).

* Humanoid: reward = 1.25 x-velocity of the mass centre (mass-weighted ``xipos``)
  + healthy (5 while ``healthy_z_range[0] < qpos[2] < healthy_z_range[1]``)
  - 0.1 * |ctrl|^2 - clip(5e-7 * |cfrc_ext|^2, contact_cost_range); terminates when
  unhealthy.
* HumanoidStandup: reward = qpos[2] / timestep - 0.1 * |ctrl|^2
  - clip(0.5e-6 * |cfrc_ext|^2, impact_cost_range) + 1; never terminates.
* reset: qpos + U(+-s), qvel + U(+-s). gymnasium's control cost reads ``data.ctrl``,
  which MuJoCo keeps equal to the action as given (NaN included: the engine then
  applies zero force but leaves the NaN there), so the cost here reads the action:
  a NaN action gives a NaN reward, as in gymnasium.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import task
from jaxrl_lite.envs.task import Position, Semantics, TaskConfig, TaskSpec

_OBS_FIELDS = ("cinert", "cvel", "qfrc_actuator", "cfrc_ext")


@dataclasses.dataclass(frozen=True)
class HumanoidConfig(TaskConfig):
    """Every gymnasium Humanoid-v5 keyword, same names and defaults."""

    TASK = "Humanoid-v5"

    xml_file: str = "humanoid.xml"
    frame_skip: int = 5
    forward_reward_weight: float = 1.25
    ctrl_cost_weight: float = 0.1
    contact_cost_weight: float = 5e-7
    contact_cost_range: tuple[float, float] = (-float("inf"), 10.0)
    healthy_reward: float = 5.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float] = (1.0, 2.0)
    reset_noise_scale: float = 1e-2
    exclude_current_positions_from_observation: bool = True
    include_cinert_in_observation: bool = True
    include_cvel_in_observation: bool = True
    include_qfrc_actuator_in_observation: bool = True
    include_cfrc_ext_in_observation: bool = True


@dataclasses.dataclass(frozen=True)
class StandupConfig(TaskConfig):
    """Every gymnasium HumanoidStandup-v5 keyword, same names and defaults."""

    TASK = "HumanoidStandup-v5"

    xml_file: str = "humanoidstandup.xml"
    frame_skip: int = 5
    uph_cost_weight: float = 1.0
    ctrl_cost_weight: float = 0.1
    impact_cost_weight: float = 0.5e-6
    impact_cost_range: tuple[float, float] = (-float("inf"), 10.0)
    reset_noise_scale: float = 1e-2
    exclude_current_positions_from_observation: bool = True
    include_cinert_in_observation: bool = True
    include_cvel_in_observation: bool = True
    include_qfrc_actuator_in_observation: bool = True
    include_cfrc_ext_in_observation: bool = True


def _bind(model, config) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)
    step_dt = float(model.opt.timestep) * config.frame_skip
    timestep = float(model.opt.timestep)
    standup = isinstance(config, StandupConfig)
    skip = 2 * config.exclude_current_positions_from_observation
    include = {"cinert": config.include_cinert_in_observation,
               "cvel": config.include_cvel_in_observation,
               "qfrc_actuator": config.include_qfrc_actuator_in_observation,
               "cfrc_ext": config.include_cfrc_ext_in_observation}

    def reset(key):
        return task.noisy_state(key, init_qpos, init_qvel, config.reset_noise_scale)

    def observation(qpos, qvel, fields):
        parts = [qpos[skip:], qvel]
        for name in _OBS_FIELDS:
            if include[name]:
                value = fields.get(name)
                if value is None:  # cfrc_ext right after a reset: mj_forward leaves zeros
                    value = jnp.zeros((model.nbody, 6), jnp.float32)
                parts.append((value[6:] if name == "qfrc_actuator" else value[1:]).reshape(-1))
        return jnp.concatenate(parts)

    def positions(qpos, fields):
        info = {"x_position": qpos[0], "y_position": qpos[1],
                "tendon_length": fields["ten_length"],
                "tendon_velocity": fields["ten_velocity"]}
        if standup:
            info["z_distance_from_origin"] = qpos[2] - init_qpos[2]
        else:
            info["distance_from_origin"] = jnp.sqrt(qpos[0] ** 2 + qpos[1] ** 2)
        return info

    def quadratic(weight, x, bounds):
        return jnp.clip(weight * jnp.sum(jnp.square(x)), *bounds)

    def transition(qpos, qvel, fields, dpos, action):
        info = positions(qpos, fields)
        ctrl = task.control_cost(config.ctrl_cost_weight, action)
        if standup:
            uph = (qpos[2] - 0) / timestep
            impact = quadratic(config.impact_cost_weight, fields["cfrc_ext"],
                               config.impact_cost_range)
            info.update(reward_linup=uph, reward_quadctrl=-ctrl, reward_impact=-impact)
            return uph - ctrl - impact + 1, jnp.zeros((), bool), info
        velocity = dpos / step_dt
        healthy = task.inside(qpos[2], config.healthy_z_range)
        survive = task.survive_reward(healthy, config.healthy_reward)
        forward = config.forward_reward_weight * velocity[0]
        contact = quadratic(config.contact_cost_weight, fields["cfrc_ext"],
                            config.contact_cost_range)
        info.update(x_velocity=velocity[0], y_velocity=velocity[1], reward_survive=survive,
                    reward_forward=forward, reward_ctrl=-ctrl, reward_contact=-contact)
        return (forward + survive - (ctrl + contact),
                task.terminated_if_unhealthy(healthy, config.terminate_when_unhealthy), info)

    return Semantics(reset, observation, transition,
                     lambda qpos, qvel, fields: positions(qpos, fields))


def _position(model, config) -> Position:
    return Position("none") if isinstance(config, StandupConfig) else \
        Position("mass_center", 2)


_STEP_FIELDS = ("cinert", "cvel", "qfrc_actuator", "cfrc_ext", "ten_length", "ten_velocity")
_RESET_FIELDS = ("cinert", "cvel", "qfrc_actuator", "ten_length", "ten_velocity")
HUMANOID = TaskSpec("Humanoid-v5", HumanoidConfig, _STEP_FIELDS, _RESET_FIELDS, _position,
                    _bind)
STANDUP = TaskSpec("HumanoidStandup-v5", StandupConfig, _STEP_FIELDS, _RESET_FIELDS,
                   _position, _bind)

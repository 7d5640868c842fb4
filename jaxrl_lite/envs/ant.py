"""Gymnasium ``Ant-v5`` semantics, written once, for every physics backend.

A backend only steps physics; everything Ant-specific (model file, reset
noise, observation, reward terms, health, termination) lives here as pure
functions of a *single* environment's arrays (backends ``vmap`` them or call
them on host arrays).

The formulas follow gymnasium 1.x ``gymnasium/envs/mujoco/ant_v5.py``:

* observation = ``qpos[2:]`` (or all of ``qpos``), ``qvel``, then
  ``clip(cfrc_ext[1:], *contact_force_range)`` flattened (13 bodies x 6):
  15 - 2 + 14 + 78 = 105 by default.
* reward = forward + healthy - ctrl_cost - contact_cost, where forward is the
  x-velocity of ``main_body`` computed from its ``xpos`` before and after the
  ``frame_skip`` substeps (``xpos`` after an RK4 step belongs to the last RK4
  stage (WORKSPACE.md, "Physics facts"): take it from the physics data, never from qpos),
  ctrl_cost uses the action *as given* (not clipped), contact_cost uses the
  clipped ``cfrc_ext`` of every body (the world row is zero).
* healthy = every entry of (qpos, qvel) finite and ``z = qpos[2]`` inside
  ``healthy_z_range`` (inclusive); terminated = not healthy and
  ``terminate_when_unhealthy``.
* reset: ``qpos = init_qpos + U(-s, s)`` on all 15 entries (quaternion
  included, not renormalised), ``qvel = init_qvel + s * N(0, 1)``.

Units: positions m, angles rad, velocities m/s and rad/s, time s, cfrc_ext in
N and N*m (MuJoCo's spatial layout: torque then force, in the com frame).

Array functions accept NumPy arrays (then compute in NumPy, e.g. float64 on
the host) or JAX arrays (then compute in JAX and can be traced).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs.core import Env

NQ, NV, NU, NBODY = 15, 14, 8, 14


@dataclasses.dataclass(frozen=True)
class AntConfig:
    """Every gymnasium ``Ant-v5`` keyword (same names and defaults) + ours.

    Ours: ``max_episode_steps`` (gymnasium's TimeLimit for Ant-v5) and the
    solver settings ``iterations`` / ``ls_iterations`` (None: the model's own,
    100 / 50; fewer iterations are faster but change the physics, see the
    solver table in experiments/bench_env.py).
    """

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
    max_episode_steps: int = 1000
    iterations: int | None = None
    ls_iterations: int | None = None

    def __post_init__(self):
        def fail(name, want):
            raise ValueError(
                f"Ant-v5 {name}={getattr(self, name)!r} is invalid; expected {want}")

        if not isinstance(self.xml_file, str) or not self.xml_file:
            fail("xml_file", "a file name in gymnasium's assets or a path")
        for name in ("frame_skip", "max_episode_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                fail(name, "a positive int")
        for name in ("iterations", "ls_iterations"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                  or v < 1):
                fail(name, "None (the model's setting) or a positive int")
        for name in ("forward_reward_weight", "ctrl_cost_weight", "contact_cost_weight",
                     "healthy_reward", "reset_noise_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                fail(name, "a number")
        if self.reset_noise_scale < 0:
            fail("reset_noise_scale", "a number >= 0")
        for name in ("healthy_z_range", "contact_force_range"):
            v = getattr(self, name)
            try:
                lo, hi = (float(x) for x in v)
            except (TypeError, ValueError):
                fail(name, "a pair (low, high) of numbers")
            if not lo <= hi:
                fail(name, "a pair (low, high) with low <= high")
            object.__setattr__(self, name, (lo, hi))  # hashable, plain floats
        if isinstance(self.main_body, bool) or not isinstance(
                self.main_body, (int, np.integer, str)):
            fail("main_body", "a body id (int) or body name (str)")
        for name in ("terminate_when_unhealthy", "exclude_current_positions_from_observation",
                     "include_cfrc_ext_in_observation"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                fail(name, "a bool")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "AntConfig":
        """Build from gymnasium-style keywords; unknown ones raise ValueError."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"unknown Ant-v5 keyword(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(valid)}")
        return cls(**kwargs)

    @property
    def observation_size(self) -> int:
        size = NQ - (2 if self.exclude_current_positions_from_observation else 0) + NV
        return size + (NBODY - 1) * 6 * int(self.include_cfrc_ext_in_observation)


# -- model ------------------------------------------------------------------
def xml_path(xml_file: str = "ant.xml") -> str:
    """Resolve like gymnasium: '/', '.' or '~' paths as given, else a file in
    gymnasium's installed ``envs/mujoco/assets`` (located without importing
    gymnasium's renderer)."""
    if xml_file.startswith(("/", ".")):
        path = xml_file
    elif xml_file.startswith("~"):
        path = os.path.expanduser(xml_file)
    else:
        spec = importlib.util.find_spec("gymnasium")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("gymnasium is not installed; it provides Ant-v5's ant.xml")
        path = os.path.join(list(spec.submodule_search_locations)[0], "envs", "mujoco",
                            "assets", xml_file)
    if not os.path.exists(path):
        raise ValueError(f"Ant-v5 xml_file {xml_file!r} not found (looked at {path})")
    return path


def load_model(config: AntConfig):
    """-> ``mujoco.MjModel`` of the Ant with the config's solver settings."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(xml_path(config.xml_file))
    if config.iterations is not None:
        model.opt.iterations = int(config.iterations)
    if config.ls_iterations is not None:
        model.opt.ls_iterations = int(config.ls_iterations)
    if (model.nq, model.nv, model.nu, model.nbody) != (NQ, NV, NU, NBODY):
        raise ValueError(
            f"{config.xml_file!r} has nq={model.nq}, nv={model.nv}, nu={model.nu}, "
            f"nbody={model.nbody}; expected an Ant with {NQ}, {NV}, {NU}, {NBODY}")
    return model


def main_body_id(model, config: AntConfig) -> int:
    """Body index of ``config.main_body`` (int id or body name)."""
    import mujoco

    if isinstance(config.main_body, str):
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, config.main_body)
    else:
        bid = int(config.main_body)
    if not 0 <= bid < model.nbody:
        raise ValueError(f"Ant-v5 main_body={config.main_body!r} is not a body of the model "
                         f"(ids 0..{model.nbody - 1})")
    return bid


def dt(model, config: AntConfig) -> float:
    """Environment step length in s: timestep * frame_skip (0.05 by default)."""
    return float(model.opt.timestep) * config.frame_skip


# -- pure functions of one environment's arrays ------------------------------
def _xp(*arrays):
    return np if all(isinstance(a, (np.ndarray, np.generic, float, int)) for a in arrays) \
        else jnp


def reset_noise(key: jax.Array, init_qpos, init_qvel, scale: float):
    """key -> (qpos [15], qvel [14]) with gymnasium's reset distribution.

    qpos = init_qpos + U[-scale, scale) on every entry (quaternion included),
    qvel = init_qvel + scale * N(0, 1). float32.
    """
    kq, kv = jax.random.split(key)
    init_qpos = jnp.asarray(init_qpos, jnp.float32)
    init_qvel = jnp.asarray(init_qvel, jnp.float32)
    qpos = init_qpos + jax.random.uniform(kq, init_qpos.shape, jnp.float32, -scale, scale)
    qvel = init_qvel + scale * jax.random.normal(kv, init_qvel.shape, jnp.float32)
    return qpos, qvel


def contact_forces(cfrc_ext, config: AntConfig):
    """cfrc_ext [nbody, 6] -> clipped to contact_force_range, same shape."""
    xp = _xp(cfrc_ext)
    lo, hi = config.contact_force_range
    return xp.clip(cfrc_ext, lo, hi)


def observation(qpos, qvel, cfrc_ext, config: AntConfig):
    """(qpos [15], qvel [14], cfrc_ext [nbody, 6]) -> obs [observation_size].

    Pass ``cfrc_ext`` of zeros right after a reset (gymnasium's reset runs only
    ``mj_forward``, which leaves cfrc_ext at zero).
    """
    xp = _xp(qpos, qvel, cfrc_ext)
    parts = [qpos[2:] if config.exclude_current_positions_from_observation else qpos, qvel]
    if config.include_cfrc_ext_in_observation:
        parts.append(contact_forces(cfrc_ext, config)[1:].reshape(-1))
    return xp.concatenate(parts)


def is_healthy(qpos, qvel, config: AntConfig):
    """-> bool scalar: all of (qpos, qvel) finite and z in healthy_z_range."""
    xp = _xp(qpos, qvel)
    lo, hi = config.healthy_z_range
    finite = xp.all(xp.isfinite(qpos)) & xp.all(xp.isfinite(qvel))
    return finite & (qpos[2] >= lo) & (qpos[2] <= hi)


def terminated(healthy, config: AntConfig):
    """-> bool scalar: unhealthy and terminate_when_unhealthy."""
    return ~healthy if config.terminate_when_unhealthy else healthy & False


def step_reward(xy_displacement, step_dt: float, action, cfrc_ext, healthy,
                config: AntConfig):
    """Reward of one env step and its terms.

    xy_displacement [2]: main_body ``xpos[:2]`` after minus before the
        frame_skip substeps, in m (a backend may compute it in float64).
    step_dt: env step in s (``dt(model, config)``).
    action [8]: the action as given (NaN/out-of-range included: gymnasium's
        ctrl cost sees it unclipped). cfrc_ext [nbody, 6]: after the step.
    healthy: bool scalar from :func:`is_healthy` on the post-step state.
    -> (reward scalar, dict x_velocity, y_velocity, reward_forward,
        reward_ctrl (<= 0), reward_contact (<= 0), reward_survive).
    """
    xp = _xp(xy_displacement, action, cfrc_ext)
    velocity = xy_displacement / step_dt
    forward = config.forward_reward_weight * velocity[0]
    survive = xp.asarray(healthy, velocity.dtype) * config.healthy_reward
    ctrl_cost = config.ctrl_cost_weight * xp.sum(xp.square(action))
    contact_cost = config.contact_cost_weight * xp.sum(
        xp.square(contact_forces(cfrc_ext, config)))
    reward = forward + survive - ctrl_cost - contact_cost
    terms = {
        "x_velocity": velocity[0], "y_velocity": velocity[1],
        "reward_forward": forward, "reward_ctrl": -ctrl_cost,
        "reward_contact": -contact_cost, "reward_survive": survive,
    }
    return reward, terms


def position_info(qpos) -> Mapping[str, Any]:
    """gymnasium's x_position, y_position, distance_from_origin (from qpos, m)."""
    xp = _xp(qpos)
    return {"x_position": qpos[0], "y_position": qpos[1],
            "distance_from_origin": xp.sqrt(qpos[0] ** 2 + qpos[1] ** 2)}


def sanitize_ctrl(action):
    """The control to hand the physics engine for ``action`` [8].

    Measured on native MuJoCo 4.0 (through gymnasium): entries are clamped to
    ``ctrlrange`` by the engine (so +-inf and 1e11 act as +-1; MJX clamps the
    same way), and if any entry is NaN, MuJoCo warns ``mjWARN_BADCTRL`` and
    applies zero to *all* actuators for that step: the physics stays finite,
    while gymnasium's reward is NaN because its ctrl cost sees the raw action.
    MJX would propagate the NaN into the state, so backends pass the action
    through this first (NaN anywhere -> all zeros; clamping left to the engine).
    """
    xp = _xp(action)
    return xp.where(xp.any(xp.isnan(action)), xp.zeros_like(action), action)


class AntEnv(Env):
    """What every Ant backend shares: sizes come from its :class:`AntConfig`
    (``self.config``, set by the backend's ``__init__``)."""

    config: AntConfig

    @property
    def observation_size(self) -> int:
        return self.config.observation_size

    @property
    def action_size(self) -> int:
        return NU

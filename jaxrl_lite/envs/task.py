"""What a task is, and what tasks share: a gymnasium MuJoCo task written once for every
physics backend.

A task module (``envs/tasks/*.py``) defines a ``Config`` (every gymnasium keyword of the
task, same names and defaults; see :class:`TaskConfig`) and a :class:`TaskSpec`: the
MuJoCo data fields its observation and reward read, the position its forward reward
differentiates, and ``bind(model, config) -> Semantics``, the pure functions of ONE
environment's arrays that make it the task (reset distribution, observation, reward,
termination, info). Backends only step physics and hand those functions the fields:

* ``mujoco`` (native, float64): one C call per batched step fills exactly the declared
  fields (``envs/native``); the position's change over the step is taken in float64.
* ``mjx``: the same fields read from ``mjx.Data``.

The functions take JAX arrays (traced under ``vmap``) and return float32 results.
Units: positions m, angles rad, velocities m/s and rad/s, forces N and N m.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# The MuJoCo data fields a task may read after a step (and, for its first
# observation, after gymnasium's reset: mj_resetData + mj_forward), flattened per env.
# name -> number of float64 values, from the model.
FIELD_SIZES: dict[str, Callable[[Any], int]] = {
    "cfrc_ext": lambda m: m.nbody * 6,       # after mj_rnePostConstraint; zero after reset
    "cinert": lambda m: m.nbody * 10,
    "cvel": lambda m: m.nbody * 6,
    "qfrc_actuator": lambda m: m.nv,
    "qfrc_constraint": lambda m: m.nv,
    "xpos": lambda m: m.nbody * 3,
    "xipos": lambda m: m.nbody * 3,
    "site_xpos": lambda m: m.nsite * 3,
    "ten_length": lambda m: m.ntendon,
    "ten_velocity": lambda m: m.ntendon,
    "ctrl": lambda m: m.nu,                  # as the backend handed it (model.sanitize_ctrl)
}
FIELD_SHAPES: dict[str, Callable[[Any], tuple[int, ...]]] = {
    "cfrc_ext": lambda m: (m.nbody, 6), "cinert": lambda m: (m.nbody, 10),
    "cvel": lambda m: (m.nbody, 6), "xpos": lambda m: (m.nbody, 3),
    "xipos": lambda m: (m.nbody, 3), "site_xpos": lambda m: (m.nsite, 3),
}


class Position(NamedTuple):
    """What the forward reward differentiates, measured on the host in float64 from the
    physics data before and after the substeps (velocity = change / dt).

    kind: "none" | "qpos" (qpos[start:start+dim]) | "body" (xpos[body][:dim], the last
    RK4 stage's, as gymnasium reads it) | "mass_center" (mass-weighted xipos, xy)."""

    kind: str = "none"
    dim: int = 0
    start: int = 0
    body: int = 0


class Semantics(NamedTuple):
    """The task's pure functions of one env, bound to a model and a config.

    reset(key) -> (qpos [nq], qvel [nv]) float32: gymnasium's reset distribution.
    observation(qpos, qvel, fields) -> obs [obs_dim].
    transition(qpos, qvel, fields, dpos [dim], action [nu]) -> (reward [], terminated
        bool [], info {name: [] or [k]}): dpos is the Position's change over the step
        (float32 rounding of a float64 difference); action as given (unclipped).
    reset_info(qpos, qvel, fields) -> {name: value}: the info entries gymnasium's reset
        reports (the others start at zero).
    """

    reset: Callable
    observation: Callable
    transition: Callable
    reset_info: Callable


class TaskSpec(NamedTuple):
    """name: the gymnasium id. config: the task's Config class. fields / reset_fields:
    the data fields transition and observation read after a step / after a reset.
    position(model, config) -> Position. bind(model, config) -> Semantics."""

    name: str
    config: type
    fields: tuple[str, ...]
    reset_fields: tuple[str, ...]
    position: Callable[[Any, Any], Position]
    bind: Callable[[Any, Any], Semantics]


# -- configs ----------------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Base of every task's Config: the keywords all gymnasium MuJoCo v5 tasks take,
    plus ours: ``max_episode_steps`` (the TimeLimit of the registration) and the solver
    budget ``iterations`` / ``ls_iterations`` (None: the model's own).

    Subclasses add the task's keywords as fields with gymnasium's defaults; every field
    is validated by its annotation (bool, int > 0, number, pair of numbers lo <= hi,
    str, or None-able), with one-line ValueErrors naming the keyword."""

    TASK: typing.ClassVar[str] = "task"

    xml_file: str = ""
    frame_skip: int = 1
    max_episode_steps: int = 1000
    iterations: int | None = None
    ls_iterations: int | None = None

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            self._check(f.name, getattr(self, f.name), hints[f.name])

    def _fail(self, name, want):
        raise ValueError(f"{self.TASK} {name}={getattr(self, name)!r} is invalid; "
                         f"expected {want}")

    def _check(self, name, value, hint):
        args = typing.get_args(hint)
        if type(None) in args:
            if value is None:
                return
            hint = next(a for a in args if a is not type(None))
            args = typing.get_args(hint)
        origin = typing.get_origin(hint) or hint
        if hint is bool:
            if not isinstance(value, (bool, np.bool_)):
                self._fail(name, "a bool")
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                self._fail(name, "a positive int")
        elif hint is float:
            if not _is_number(value) or math.isnan(value):
                self._fail(name, "a number")
            if name == "reset_noise_scale" and value < 0:
                self._fail(name, "a number >= 0")
        elif hint is str:
            if not isinstance(value, str) or not value:
                self._fail(name, "a non-empty string")
        elif origin is tuple:
            try:
                lo, hi = (float(x) for x in value)
            except (TypeError, ValueError):
                self._fail(name, "a pair (low, high) of numbers")
            if not lo <= hi:
                self._fail(name, "a pair (low, high) with low <= high")
            object.__setattr__(self, name, (lo, hi))

    @classmethod
    def from_kwargs(cls, **kwargs) -> "TaskConfig":
        """Build from gymnasium-style keywords; unknown ones raise a one-line ValueError."""
        valid = [f.name for f in dataclasses.fields(cls)]
        rendering = sorted(set(kwargs) & _RENDERING_KEYWORDS)
        if rendering:
            raise ValueError(f"{cls.TASK} keyword(s) {', '.join(rendering)} configure "
                             "gymnasium's viewer; jaxrl_lite's envs do not render (render "
                             "with gymnasium.make on the same task)")
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"unknown {cls.TASK} keyword(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(valid)}")
        return cls(**kwargs)


# gymnasium MujocoEnv's rendering keywords (no physics meaning).
_RENDERING_KEYWORDS = {"render_mode", "width", "height", "camera_id", "camera_name",
                       "default_camera_config", "max_geom", "visual_options"}


# -- what tasks share ---------------------------------------------------------------------

def uniform(key, center, scale: float):
    """center + U[-scale, scale) per entry (float32), as np_random.uniform."""
    center = jnp.asarray(center, jnp.float32)
    return center + jax.random.uniform(key, center.shape, jnp.float32, -scale, scale)


def normal(key, center, scale: float):
    """center + scale * N(0, 1) per entry (float32), as np_random.standard_normal."""
    center = jnp.asarray(center, jnp.float32)
    return center + scale * jax.random.normal(key, center.shape, jnp.float32)


def noisy_state(key, init_qpos, init_qvel, scale: float, qvel_noise: str = "uniform"):
    """The usual reset: qpos + U(+-scale), qvel + U(+-scale) or + scale * N(0, 1)."""
    kq, kv = jax.random.split(key)
    qvel = (uniform if qvel_noise == "uniform" else normal)(kv, init_qvel, scale)
    return uniform(kq, init_qpos, scale), qvel


def control_cost(weight: float, action):
    """weight * sum(action ** 2): the action as given (NaN and out-of-range included)."""
    return weight * jnp.sum(jnp.square(action))


def inside(x, bounds, inclusive: bool = False):
    """lo < x < hi (or <=), elementwise."""
    lo, hi = bounds
    return (x >= lo) & (x <= hi) if inclusive else (x > lo) & (x < hi)


def survive_reward(healthy, weight: float):
    return jnp.asarray(healthy, jnp.float32) * weight


def terminated_if_unhealthy(healthy, terminate: bool):
    return ~healthy if terminate else jnp.zeros_like(healthy)


def body_id(model, name_or_id, task: str, keyword: str) -> int:
    """A body's index from its name or id; one-line ValueError if the model lacks it."""
    import mujoco

    bid = (mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name_or_id)
           if isinstance(name_or_id, str) else int(name_or_id))
    if not 0 <= bid < model.nbody:
        raise ValueError(f"{task} {keyword}={name_or_id!r} is not a body of the model "
                         f"(ids 0..{model.nbody - 1})")
    return bid


def xy_info(qpos) -> dict:
    """gymnasium's x_position, y_position, distance_from_origin (from qpos, m)."""
    return {"x_position": qpos[0], "y_position": qpos[1],
            "distance_from_origin": jnp.sqrt(qpos[0] ** 2 + qpos[1] ** 2)}

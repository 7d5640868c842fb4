"""The arms: gymnasium ``Reacher-v5`` and ``Pusher-v5``. Both reward negative
distances between body positions (``data.body(name).xpos`` after the step) and a
control cost on the action as given; neither terminates.

* Reacher (TimeLimit 50): obs = cos and sin of the two joint angles, qpos[2:] (the
  target), the first two qvel, fingertip - target (xy); reward = -|fingertip - target|
  - |action|^2 (each weighted). Reset: qpos + U(+-0.1), the target uniform in the disc
  of radius 0.2; qvel + U(+-0.005), the target's zero.
* Pusher (TimeLimit 100): obs = qpos[:7], qvel[:7], tips_arm, object, goal xyz;
  reward = -0.5 |object - tips_arm| - |object - goal| - 0.1 |action|^2. Reset: the arm
  at qpos0, the object uniform in [-0.3, 0] x [-0.2, 0.2] at least 0.17 from the goal
  at the origin; qvel + U(+-0.005), the object's and goal's zero.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import task
from jaxrl_lite.envs.task import Position, Semantics, TaskConfig, TaskSpec


@dataclasses.dataclass(frozen=True)
class ReacherConfig(TaskConfig):
    """Every gymnasium Reacher-v5 keyword, same names and defaults."""

    TASK = "Reacher-v5"

    xml_file: str = "reacher.xml"
    frame_skip: int = 2
    max_episode_steps: int = 50
    reward_dist_weight: float = 1.0
    reward_control_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class PusherConfig(TaskConfig):
    """Every gymnasium Pusher-v5 keyword, same names and defaults."""

    TASK = "Pusher-v5"

    xml_file: str = "pusher_v5.xml"
    frame_skip: int = 5
    max_episode_steps: int = 100
    reward_near_weight: float = 0.5
    reward_dist_weight: float = 1.0
    reward_control_weight: float = 0.1


def rejection_sample(key, draw, accept):
    """The first ``draw(key_i)`` that ``accept`` takes, as gymnasium's ``while True``
    loops do (the same distribution; a different stream of numbers)."""
    def cond(carry):
        return ~accept(carry[1])

    def body(carry):
        key, _ = carry
        key, sub = jax.random.split(key)
        return key, draw(sub)

    key, sub = jax.random.split(key)
    return jax.lax.while_loop(cond, body, (key, draw(sub)))[1]


def _bodies(model, names, task_name):
    return [task.body_id(model, n, task_name, "body") for n in names]


def _bind_reacher(model, config: ReacherConfig) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)
    tip, target = _bodies(model, ("fingertip", "target"), ReacherConfig.TASK)

    def reset(key):
        kq, kg, kv = jax.random.split(key, 3)
        goal = rejection_sample(kg, lambda k: jax.random.uniform(k, (2,), jnp.float32,
                                                                 -0.2, 0.2),
                                lambda g: jnp.linalg.norm(g) < 0.2)
        qpos = task.uniform(kq, init_qpos, 0.1).at[-2:].set(goal)
        qvel = task.uniform(kv, init_qvel, 0.005).at[-2:].set(0.0)
        return qpos, qvel

    def observation(qpos, qvel, fields):
        xpos = fields["xpos"]
        return jnp.concatenate([jnp.cos(qpos[:2]), jnp.sin(qpos[:2]), qpos[2:], qvel[:2],
                                (xpos[tip] - xpos[target])[:2]])

    def transition(qpos, qvel, fields, dpos, action):
        xpos = fields["xpos"]
        dist = -jnp.linalg.norm(xpos[tip] - xpos[target]) * config.reward_dist_weight
        ctrl = -jnp.sum(jnp.square(action)) * config.reward_control_weight
        return dist + ctrl, jnp.zeros((), bool), {"reward_dist": dist, "reward_ctrl": ctrl}

    return Semantics(reset, observation, transition, lambda qpos, qvel, fields: {})


def _bind_pusher(model, config: PusherConfig) -> Semantics:
    init_qpos = np.asarray(model.qpos0, np.float32)
    init_qvel = np.zeros(model.nv, np.float32)
    arm, obj, goal = _bodies(model, ("tips_arm", "object", "goal"), PusherConfig.TASK)

    def reset(key):
        kc, kv = jax.random.split(key)
        lo, hi = jnp.array([-0.3, -0.2], jnp.float32), jnp.array([0.0, 0.2], jnp.float32)
        cylinder = rejection_sample(
            kc, lambda k: jax.random.uniform(k, (2,), jnp.float32, lo, hi),
            lambda c: jnp.linalg.norm(c) > 0.17)
        qpos = jnp.asarray(init_qpos).at[-4:-2].set(cylinder).at[-2:].set(0.0)
        qvel = task.uniform(kv, init_qvel, 0.005).at[-4:].set(0.0)
        return qpos, qvel

    def observation(qpos, qvel, fields):
        xpos = fields["xpos"]
        return jnp.concatenate([qpos[:7], qvel[:7], xpos[arm], xpos[obj], xpos[goal]])

    def transition(qpos, qvel, fields, dpos, action):
        xpos = fields["xpos"]
        near = -jnp.linalg.norm(xpos[obj] - xpos[arm]) * config.reward_near_weight
        dist = -jnp.linalg.norm(xpos[obj] - xpos[goal]) * config.reward_dist_weight
        ctrl = -jnp.sum(jnp.square(action)) * config.reward_control_weight
        return (dist + ctrl + near, jnp.zeros((), bool),
                {"reward_dist": dist, "reward_ctrl": ctrl, "reward_near": near})

    return Semantics(reset, observation, transition, lambda qpos, qvel, fields: {})


def _no_position(model, config) -> Position:
    return Position("none")


REACHER = TaskSpec("Reacher-v5", ReacherConfig, ("xpos",), ("xpos",), _no_position,
                   _bind_reacher)
PUSHER = TaskSpec("Pusher-v5", PusherConfig, ("xpos",), ("xpos",), _no_position,
                  _bind_pusher)

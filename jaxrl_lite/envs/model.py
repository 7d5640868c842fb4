"""What every backend of every task shares: the task's model file and config, its
bound semantics, its sizes and action bounds, and the batched application of its
pure functions to the fields a backend read."""
from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs.core import Env
from jaxrl_lite.envs.task import FIELD_SHAPES, FIELD_SIZES, TaskSpec


def xml_path(xml_file: str, task: str) -> str:
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
            raise ValueError(f"gymnasium is not installed; it provides {task}'s {xml_file}")
        path = os.path.join(list(spec.submodule_search_locations)[0], "envs", "mujoco",
                            "assets", xml_file)
    if not os.path.exists(path):
        raise ValueError(f"{task} xml_file {xml_file!r} not found (looked at {path})")
    return path


def load_model(spec: TaskSpec, config):
    """-> ``mujoco.MjModel`` of the task with the config's solver settings."""
    import mujoco

    try:
        model = mujoco.MjModel.from_xml_path(xml_path(config.xml_file, spec.name))
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0]) from None
    if config.iterations is not None:
        model.opt.iterations = int(config.iterations)
    if config.ls_iterations is not None:
        model.opt.ls_iterations = int(config.ls_iterations)
    return model


def sanitize_ctrl(action):
    """The control to hand the physics engine for ``action`` [nu].

    Measured on native MuJoCo 4.0 (through gymnasium): entries are clamped to
    ``ctrlrange`` by the engine (MJX clamps the same way), and if any entry is NaN,
    MuJoCo warns ``mjWARN_BADCTRL`` and applies zero to *all* actuators for that
    step (``data.ctrl`` keeps the NaN: gymnasium's Humanoid cost, which reads it, is
    NaN, like every cost that reads the action): the physics stays finite. MJX
    would propagate the NaN into the state, so backends pass the action through
    this first; costs read the raw action.
    """
    return jnp.where(jnp.any(jnp.isnan(action)), jnp.zeros_like(action), action)


class TaskEnv(Env):
    """A task's model, config and semantics, for one backend.

    ``spec``: the task's TaskSpec; keywords: its gymnasium keywords (validated, with
    one-line errors naming the keyword and the valid ones). Attributes: ``model``,
    ``config``, ``position``, ``semantics``, ``action_low`` / ``action_high``
    (float32 [action_size]: the actuators' ctrlrange, which the physics clamps to).
    """

    sanitize_ctrl = staticmethod(sanitize_ctrl)

    def __init__(self, spec: TaskSpec, num_envs: int, auto_reset: bool, **kwargs):
        self.spec = spec
        self.config = spec.config.from_kwargs(**kwargs)
        super().__init__(num_envs, auto_reset, self.config.max_episode_steps)
        self.model = load_model(spec, self.config)
        self.position = spec.position(self.model, self.config)
        self.semantics = spec.bind(self.model, self.config)
        m = self.model
        limited = np.asarray(m.actuator_ctrllimited, bool)
        rng = np.asarray(m.actuator_ctrlrange, np.float32)
        self.action_low = np.where(limited, rng[:, 0], -np.inf).astype(np.float32)
        self.action_high = np.where(limited, rng[:, 1], np.inf).astype(np.float32)
        qpos = jnp.zeros((m.nq,), jnp.float32)
        qvel = jnp.zeros((m.nv,), jnp.float32)
        fields = self._field_shapes(spec.fields)
        self._obs_size = int(jax.eval_shape(self.semantics.observation, qpos, qvel,
                                            fields).shape[0])
        _, _, info = jax.eval_shape(self.semantics.transition, qpos, qvel, fields,
                                    jnp.zeros((self.position.dim,), jnp.float32),
                                    jnp.zeros((m.nu,), jnp.float32))
        self._info_shapes = {k: v.shape for k, v in info.items()}

    @property
    def observation_size(self) -> int:
        return self._obs_size

    @property
    def action_size(self) -> int:
        return self.model.nu

    def _field_shapes(self, names) -> dict:
        return {f: jnp.zeros(FIELD_SHAPES[f](self.model) if f in FIELD_SHAPES
                             else (FIELD_SIZES[f](self.model),), jnp.float32) for f in names}

    def unpack_fields(self, flat, names) -> dict:
        """float32 [N, width] (fields flattened and concatenated) -> {name: [N, ...]}."""
        out, i = {}, 0
        for f in names:
            size = FIELD_SIZES[f](self.model)
            shape = FIELD_SHAPES[f](self.model) if f in FIELD_SHAPES else (size,)
            out[f] = flat[:, i:i + size].reshape((-1,) + tuple(shape))
            i += size
        return out

    def first_observation(self, qpos, qvel, fields):
        """Batched first observation and info (the step's info keys at zero, then what
        gymnasium's reset reports)."""
        obs = jax.vmap(self.semantics.observation)(qpos, qvel, fields)
        n = qpos.shape[0]
        info = {k: jnp.zeros((n,) + s, jnp.float32) for k, s in self._info_shapes.items()}
        for k, v in jax.vmap(self.semantics.reset_info)(qpos, qvel, fields).items():
            info[k] = jnp.asarray(v, jnp.float32)
        return obs.astype(jnp.float32), info

    def semantics_batch(self, qpos, qvel, fields, dpos, action):
        """-> (obs [N, obs], reward [N], terminated [N] float32, info) of a step."""
        def one(q, v, f, dp, a):
            reward, terminated, info = self.semantics.transition(q, v, f, dp, a)
            return self.semantics.observation(q, v, f), reward, terminated, info

        obs, reward, term, info = jax.vmap(one)(qpos, qvel, fields, dpos, action)
        info = {k: jnp.asarray(v, jnp.float32) for k, v in info.items()}
        return (obs.astype(jnp.float32), reward.astype(jnp.float32),
                term.astype(jnp.float32), info)

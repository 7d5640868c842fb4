"""Ant-v5 on MuJoCo XLA (``mujoco.mjx``, ``impl='jax'``): pure JAX, any device.

Physics only: the Ant-v5 semantics come from :mod:`jaxrl_lite.envs.ant`.
One env step = ``frame_skip`` ``mjx.step`` calls (the model's RK4 integrator)
in a ``lax.fori_loop``, then ``mjx.rne_postconstraint`` for ``cfrc_ext`` (what
gymnasium gets from ``mj_rnePostConstraint``). Everything is
``jit(vmap(...))`` per env; the compiled functions are shared by every
instance with the same :class:`~jaxrl_lite.envs.ant.AntConfig`.

The per-env physics state is small: ``qpos [15]``, ``qvel [14]``,
``qacc_warmstart [14]`` (the solver's warm start, carried as MuJoCo C
does) and ``xy_main [2]``: ``main_body`` ``xpos[:2]`` as the physics data
left it (after an RK4 step that is the last RK4 stage's, not the final
qpos's; gymnasium's forward reward reads exactly that value as "before").
``data.time`` is not carried: Ant's dynamics do not depend on it, and a
fresh strongly typed float32 zero avoids compiling the step twice.

MJX runs in float32 while gymnasium runs MuJoCo C in float64, and at
plane-capsule contacts MJX builds a different friction-pyramid frame, so
parity with gymnasium is statistical (see tests/test_ant_mjx_parity.py).

Actions: clamped to ctrlrange [-1, 1] by the physics (as MuJoCo C does); an
action with any NaN applies zero control to every actuator for that step,
exactly what native MuJoCo 4.0 does (``mjWARN_BADCTRL``), and the reward is
NaN as in gymnasium (its ctrl cost sees the raw action).
"""
from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import ant
from jaxrl_lite.envs.core import State, check_state_array

_INFO_KEYS = ("x_position", "y_position", "distance_from_origin", "x_velocity",
              "y_velocity", "reward_forward", "reward_ctrl", "reward_contact",
              "reward_survive")


def _import_mjx():
    # mujoco.mjx logs "Failed to import warp" at import when warp is absent.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from mujoco import mjx
    finally:
        logger.setLevel(level)
    return mjx


class _Fns(NamedTuple):
    from_state: callable  # (qpos [N,15], qvel [N,14]) -> (obs, physics, info)
    noise: callable       # keys [N,2] -> (qpos [N,15], qvel [N,14])
    step: callable        # (physics, action [N,8]) -> (obs, reward, term, physics, info)


@functools.lru_cache(maxsize=16)
def _compiled(config: ant.AntConfig) -> _Fns:
    """Build the jitted, vmapped per-env functions for one config."""
    mjx = _import_mjx()
    mj_model = ant.load_model(config)
    model = mjx.put_model(mj_model, impl="jax")
    body = ant.main_body_id(mj_model, config)
    step_dt = ant.dt(mj_model, config)
    init_qpos = np.asarray(mj_model.qpos0, np.float32)
    init_qvel = np.zeros(mj_model.nv, np.float32)
    nbody = mj_model.nbody
    template = mjx.make_data(mj_model, impl="jax")

    def data(qpos, qvel, warm):
        return template.replace(qpos=qpos, qvel=qvel, qacc_warmstart=warm,
                                time=jnp.zeros((), jnp.float32))

    def from_state(qpos, qvel):
        # Only xpos is needed (gymnasium's reset: mj_forward, which leaves the
        # warm start at zero): kinematics, without collision and solver, so
        # auto-reset inside every step stays cheap.
        d = mjx.kinematics(model, data(qpos, qvel, jnp.zeros_like(qvel)))
        physics = {"qpos": qpos, "qvel": qvel, "qacc_warmstart": jnp.zeros_like(qvel),
                   "xy_main": d.xpos[body, :2]}
        # gymnasium's reset runs only mj_forward: cfrc_ext is all zeros.
        obs = ant.observation(qpos, qvel, jnp.zeros((nbody, 6), jnp.float32), config)
        info = {k: jnp.zeros((), jnp.float32) for k in _INFO_KEYS}
        info.update(ant.position_info(qpos))
        return obs, physics, info

    def noise(key):
        return ant.reset_noise(key, init_qpos, init_qvel, config.reset_noise_scale)

    def step(physics, action):
        d = data(physics["qpos"], physics["qvel"], physics["qacc_warmstart"])
        d = d.replace(ctrl=ant.sanitize_ctrl(action))
        d = jax.lax.fori_loop(0, config.frame_skip, lambda _, d: mjx.step(model, d), d)
        d = mjx.rne_postconstraint(model, d)
        cfrc_ext = d._impl.cfrc_ext
        xy_after = d.xpos[body, :2]
        healthy = ant.is_healthy(d.qpos, d.qvel, config)
        reward, terms = ant.step_reward(xy_after - physics["xy_main"], step_dt, action,
                                        cfrc_ext, healthy, config)
        obs = ant.observation(d.qpos, d.qvel, cfrc_ext, config)
        info = dict(terms)
        info.update(ant.position_info(d.qpos))
        new = {"qpos": d.qpos, "qvel": d.qvel, "qacc_warmstart": d.qacc_warmstart,
               "xy_main": xy_after}
        term = ant.terminated(healthy, config).astype(jnp.float32)
        return obs, reward.astype(jnp.float32), term, new, info

    return _Fns(from_state=jax.jit(jax.vmap(from_state)), noise=jax.jit(jax.vmap(noise)),
                step=jax.jit(jax.vmap(step)))


# MJX's default solver budget: on gymnasium-visited states, iterations=10 /
# ls_iterations=10 give results bit-identical to the model's 100 / 50 at a
# fraction of the cost (WORKSPACE.md, "Solver settings", has the table and its
# command): in float32 the Newton solver has converged after a few iterations,
# but the model's tolerance (1e-8) is never met, so the model's budget runs every
# iteration for nothing; fewer iterations change the states. Pass
# iterations=None, ls_iterations=None for the model's own settings.
DEFAULT_ITERATIONS = 10
DEFAULT_LS_ITERATIONS = 10


class MjxAnt(ant.AntEnv):
    """Batched gymnasium Ant-v5 on MJX (WORKSPACE.md, "Public interfaces").

    Keyword arguments: every gymnasium Ant-v5 keyword plus ``max_episode_steps``
    (1000), ``iterations`` and ``ls_iterations`` (solver budget; default 10 / 10,
    see DEFAULT_ITERATIONS; None keeps the model's 100 / 50): see
    :class:`jaxrl_lite.envs.ant.AntConfig`.
    """

    def __init__(self, num_envs: int = 1, auto_reset: bool = True, **kwargs):
        kwargs.setdefault("iterations", DEFAULT_ITERATIONS)
        kwargs.setdefault("ls_iterations", DEFAULT_LS_ITERATIONS)
        self.config = ant.AntConfig.from_kwargs(**kwargs)
        super().__init__(num_envs, auto_reset, self.config.max_episode_steps)
        self._fns = _compiled(self.config)

    def _reset_batch(self, rng):
        qpos, qvel = self._fns.noise(rng)
        return self._fns.from_state(qpos, qvel)

    def _step_batch(self, physics, action):
        return self._fns.step(physics, action)

    def reset_to(self, qpos, qvel, key=None) -> State:
        """Start every env at the given state exactly (no noise).

        qpos float [N, 15], qvel float [N, 14] (cast to float32); key: optional
        PRNG key seeding later auto-resets (default PRNGKey(0)). The first
        observation has zero cfrc_ext, as after a reset.
        """
        n = self.num_envs
        qpos = jnp.asarray(check_state_array("qpos", qpos, (n, ant.NQ), "nq"), jnp.float32)
        qvel = jnp.asarray(check_state_array("qvel", qvel, (n, ant.NV), "nv"), jnp.float32)
        key = jax.random.PRNGKey(0) if key is None else key
        rng = jax.random.split(key, n)
        obs, physics, info = self._fns.from_state(qpos, qvel)
        return self._initial_state(obs, physics, info, rng)

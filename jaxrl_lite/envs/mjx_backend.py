"""Any task on MuJoCo XLA (``mujoco.mjx``, ``impl='jax'``): pure JAX, any device.

Physics only: the task's semantics come from its module. One env step =
``frame_skip`` ``mjx.step`` calls (the model's integrator) in a ``lax.fori_loop``,
then ``mjx.rne_postconstraint`` (what gymnasium gets from ``mj_rnePostConstraint``);
the task's data fields are read from ``mjx.Data``. A reset runs ``mjx.forward`` only
when the first observation reads fields (as gymnasium's reset runs ``mj_forward``).
Everything is ``jit(vmap(...))`` per env; the compiled functions are shared by every
instance with the same task and config.

The per-env physics state is small: qpos, qvel, qacc_warmstart (the solver's warm
start, carried as MuJoCo C does) and the task's Position as the data left it.
``data.time`` is not carried: no task depends on it, and a fresh strongly typed
float32 zero avoids compiling the step twice.

MJX runs in float32 while gymnasium runs MuJoCo C in float64, and at plane-capsule
contacts MJX builds a different friction-pyramid frame, so parity with gymnasium is
statistical (tests/test_mjx_parity.py). A model with a feature MJX lacks (e.g.
Humanoid's PGS solver) is refused with one line naming it.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_lite.envs.core import State, check_state_array
from jaxrl_lite.envs.model import TaskEnv

# MJX's default solver budget: on gymnasium-visited Ant states, iterations=10 /
# ls_iterations=10 give results bit-identical to the model's 100 / 50 at a fraction
# of the cost (experiments/results/envs.md, "Solver settings"): in float32 the Newton
# solver has converged after a few iterations, but the model's tolerance (1e-8) is
# never met, so the model's budget runs every iteration for nothing. Pass
# iterations=None, ls_iterations=None for the model's own settings.
DEFAULT_ITERATIONS = 10
DEFAULT_LS_ITERATIONS = 10


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


# Where mjx.Data keeps each field the tasks read.
_PRIVATE = ("cfrc_ext", "cinert", "ten_velocity")


def _field(d, name):
    return getattr(d._impl, name) if name in _PRIVATE else getattr(d, name)


class _Fns(NamedTuple):
    from_state: callable  # (qpos [N,nq], qvel [N,nv]) -> (obs, physics, info)
    reset: callable       # keys [N,2] -> (qpos, qvel)
    step: callable        # (physics, action [N,nu]) -> (obs, reward, term, physics, info)


def unsupported(model) -> str | None:
    """Why MJX cannot simulate ``model`` as MuJoCo C does (None if it can)."""
    mjx = _import_mjx()
    try:
        mjx.put_model(model, impl="jax")
    except NotImplementedError as e:
        what = str(e).strip() or type(e).__name__
        return f"MJX does not implement {what}"
    return None


_COMPILED: dict[tuple, _Fns] = {}


def _compiled(env: "MjxEnv") -> _Fns:
    """The jitted, vmapped per-env functions of ``env``'s (task, config), shared by
    every env with the same two."""
    key = (env.spec.name, env.config)
    if key not in _COMPILED:
        _COMPILED[key] = _build(env)
    return _COMPILED[key]


def _build(env: "MjxEnv") -> _Fns:
    mjx = _import_mjx()
    model = mjx.put_model(env.model, impl="jax")
    template = mjx.make_data(env.model, impl="jax")
    sem, pos, spec = env.semantics, env.position, env.spec
    frame_skip, body_mass = env.config.frame_skip, jnp.asarray(env.model.body_mass,
                                                                jnp.float32)

    def data(qpos, qvel, warm):
        return template.replace(qpos=qpos, qvel=qvel, qacc_warmstart=warm,
                                time=jnp.zeros((), jnp.float32))

    def position(d):
        if pos.kind == "qpos":
            return d.qpos[pos.start:pos.start + pos.dim]
        if pos.kind == "body":
            return d.xpos[pos.body, :pos.dim]
        if pos.kind == "mass_center":
            return (body_mass @ d.xipos / jnp.sum(body_mass))[:2]
        return jnp.zeros((0,), jnp.float32)

    def fields_of(d, names):
        return {f: _field(d, f) for f in names}

    def from_state(qpos, qvel):
        warm = jnp.zeros_like(qvel)
        d = data(qpos, qvel, warm)
        # gymnasium's reset runs mj_forward: what the first observation reads, and the
        # position (kinematics suffices when no field is read; cfrc_ext stays zero).
        d = mjx.forward(model, d) if spec.reset_fields else mjx.kinematics(model, d)
        fields = fields_of(d, spec.reset_fields)
        physics = {"qpos": qpos, "qvel": qvel, "qacc_warmstart": warm}
        if pos.dim:  # (checkpoints cannot hold zero-size arrays)
            physics["pos"] = position(d)
        return sem.observation(qpos, qvel, fields), physics, sem.reset_info(qpos, qvel, fields)

    def step(physics, action):
        d = data(physics["qpos"], physics["qvel"], physics["qacc_warmstart"])
        d = d.replace(ctrl=env.sanitize_ctrl(action))
        d = jax.lax.fori_loop(0, frame_skip, lambda _, d: mjx.step(model, d), d)
        d = mjx.rne_postconstraint(model, d)
        after = position(d)
        fields = fields_of(d, spec.fields)
        dpos = after - physics["pos"] if pos.dim else after
        reward, terminated, info = sem.transition(d.qpos, d.qvel, fields, dpos, action)
        obs = sem.observation(d.qpos, d.qvel, fields)
        new = {"qpos": d.qpos, "qvel": d.qvel, "qacc_warmstart": d.qacc_warmstart}
        if pos.dim:
            new["pos"] = after
        return (obs, reward.astype(jnp.float32), terminated.astype(jnp.float32), new,
                {k: jnp.asarray(v, jnp.float32) for k, v in info.items()})

    return _Fns(from_state=jax.jit(jax.vmap(from_state)), reset=jax.jit(jax.vmap(sem.reset)),
                step=jax.jit(jax.vmap(step)))


class MjxEnv(TaskEnv):
    """A batched gymnasium MuJoCo task on MJX.

    Keywords: the task's gymnasium keywords, plus ``max_episode_steps`` and the
    solver budget ``iterations`` / ``ls_iterations`` (default 10 / 10, see
    DEFAULT_ITERATIONS; None keeps the model's own).
    """

    def __init__(self, spec, num_envs: int = 1, auto_reset: bool = True, **kwargs):
        kwargs.setdefault("iterations", DEFAULT_ITERATIONS)
        kwargs.setdefault("ls_iterations", DEFAULT_LS_ITERATIONS)
        super().__init__(spec, num_envs, auto_reset, **kwargs)
        why = unsupported(self.model)
        if why:
            raise ValueError(f"{spec.name} cannot run on backend='mjx': {why} (mujoco-mjx "
                             f"{_mjx_version()}); use backend='mujoco' (native MuJoCo)")
        self._fns = _compiled(self)

    def _reset_batch(self, rng, needed=None):  # needed: all envs computed on device
        qpos, qvel = self._fns.reset(rng)
        obs, physics, info = self._fns.from_state(qpos, qvel)
        return obs, physics, self._full_info(info, qpos.shape[0])

    def _full_info(self, reset_info, n):
        info = {k: jnp.zeros((n,) + s, jnp.float32) for k, s in self._info_shapes.items()}
        info.update({k: jnp.asarray(v, jnp.float32) for k, v in reset_info.items()})
        return info

    def _step_batch(self, physics, action):
        return self._fns.step(physics, action)

    def reset_to(self, qpos, qvel, key=None) -> State:
        """Start every env at the given state exactly (no noise).

        qpos float [N, nq], qvel float [N, nv] (cast to float32); key: optional PRNG
        key seeding later auto-resets (default PRNGKey(0)).
        """
        n, m = self.num_envs, self.model
        qpos = jnp.asarray(check_state_array("qpos", qpos, (n, m.nq), "nq"), jnp.float32)
        qvel = jnp.asarray(check_state_array("qvel", qvel, (n, m.nv), "nv"), jnp.float32)
        key = jax.random.PRNGKey(0) if key is None else key
        obs, physics, info = self._fns.from_state(qpos, qvel)
        return self._initial_state(obs.astype(jnp.float32), physics,
                                   self._full_info(info, n), jax.random.split(key, n))


def _mjx_version() -> str:
    import importlib.metadata
    try:
        return importlib.metadata.version("mujoco-mjx")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "?"

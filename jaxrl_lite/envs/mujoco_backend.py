"""Ant-v5 on native MuJoCo (C, float64) behind the same jit-able API as MJX.

Physics runs in MuJoCo's C engine on the CPU, entered from JAX with one
``jax.pure_callback`` per batched step (never one per env) that carries one
packed array in and one out. The host side steps the batch on MuJoCo's own
persistent thread pool (``mjb_apply``, the engine of ``mujoco.batch``) with a
small C function (:mod:`jaxrl_lite.envs.native_cstep`, compiled once), or, with
no C compiler, on a persistent Python thread pool
(:mod:`jaxrl_lite.envs.native_physics`); both give the same bits. Everything
Ant-specific (reset noise, observation, reward terms, health) comes from
:mod:`jaxrl_lite.envs.ant`, evaluated in JAX on float32 roundings of the
float64 results (the xy displacement is taken in float64 on the host). So the
health test sees float32 z: it can differ from gymnasium's only for z within
~1e-8 of a bound of healthy_z_range.

The State stays purely functional: ``physics`` holds the float64 integration
state (qpos [N, 15], qvel [N, 14], the solver warm start qacc_warmstart
[N, 14]) and the main body's stage ``xpos[:2]`` [N, 2] (gymnasium's "before"
position for the next step) as float32 triples ``hi + mid + lo`` that rebuild
the float64 values exactly. So the same State stepped twice gives the same
result, the same key gives the same trajectory, checkpoints restore it bit for
bit, and a step reproduces gymnasium's float64 step exactly (observations and
rewards are then rounded to float32).

Speed (WORKSPACE.md, "Env stepping"): close to raw ``mujoco.rollout`` per
env step at large batches; each batched call adds a fixed cost (JAX ops, the
callback), so small batches pay mostly overhead.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs import ant
from jaxrl_lite.envs.core import State, check_state_array
from jaxrl_lite.envs.native_cstep import CBatchStepper, load_library
from jaxrl_lite.envs.float64_parts import join_f64, split_f64
from jaxrl_lite.envs.native_physics import BatchStepper, check_num_threads

_logged_gpu = False


def _warn_if_accelerator() -> None:
    global _logged_gpu
    platform = jax.default_backend()
    if platform != "cpu" and not _logged_gpu:
        logging.warning(
            "backend='mujoco' with JAX default device %s: physics runs on the CPU and "
            "every batched step copies the state device->host->device through a host "
            "callback, so the accelerator mostly waits; use backend='mjx' (or 'auto') "
            "to keep the simulation on the %s.", platform, platform)
        _logged_gpu = True


class NativeAnt(ant.AntEnv):
    """Batched gymnasium ``Ant-v5`` on native MuJoCo.

    num_envs: N parallel envs. num_threads: host threads stepping them
    (default: the CPU cores this process may use). host_step: "auto" (the C
    step on MuJoCo's batch thread pool, compiled once with the system C
    compiler; the Python pool if that is impossible), "c" or "python" (a
    persistent Python thread pool: same results, a Python hand-off per env).
    Other keywords: gymnasium Ant-v5's (see :class:`jaxrl_lite.envs.ant.AntConfig`).
    """

    HOST_STEPS = ("auto", "c", "python")

    def __init__(self, num_envs: int = 1, auto_reset: bool = True,
                 num_threads: int | None = None, host_step: str = "auto", **ant_kwargs):
        if host_step not in self.HOST_STEPS:
            raise ValueError(f"host_step must be one of {', '.join(self.HOST_STEPS)}, "
                             f"got {host_step!r}")
        num_threads = check_num_threads(num_threads)
        config = ant.AntConfig.from_kwargs(**ant_kwargs)
        super().__init__(num_envs, auto_reset, config.max_episode_steps)
        self.config = config
        self.model = ant.load_model(config)
        self._main_body = ant.main_body_id(self.model, config)
        self._dt = ant.dt(self.model, config)
        use_c = host_step == "c" or (host_step == "auto" and load_library() is not None)
        stepper = CBatchStepper if use_c else BatchStepper
        self._stepper = stepper(self.model, config.frame_skip, self._main_body, num_threads)
        self.host_step = "c" if use_c else "python"
        self.num_threads = self._stepper.num_threads
        # gymnasium's init_qpos / init_qvel: the model's qpos0 and zeros.
        self._init_qpos = np.asarray(self.model.qpos0, np.float32)
        self._init_qvel = np.zeros(self.model.nv, np.float32)
        _warn_if_accelerator()

    # -- physics state -------------------------------------------------------
    # physics = {"x64": float32 [N, 3, 45], "fresh": bool [N]}: x64[:, k] is part
    # k (hi, mid, lo) of the float64 vector [qpos 15 | qvel 14 |
    # qacc_warmstart 14 | main-body xy 2]; x64[:, 0, :15] is qpos in float32.
    # fresh: the env comes straight from a reset (the "before" xy is then
    # recomputed on the host from qpos, as gymnasium's reset ran mj_forward).
    _SLICES = {"qpos": slice(0, ant.NQ), "qvel": slice(ant.NQ, ant.NQ + ant.NV),
               "qacc_warmstart": slice(ant.NQ + ant.NV, ant.NQ + 2 * ant.NV),
               "xy": slice(ant.NQ + 2 * ant.NV, ant.NQ + 2 * ant.NV + 2)}
    _D = ant.NQ + 2 * ant.NV + 2

    def unpack_physics(self, physics) -> dict:
        """State.physics -> float64 numpy qpos, qvel, qacc_warmstart, xy (host)."""
        x = join_f64(np.moveaxis(np.asarray(physics["x64"]), -2, -1))
        return {k: x[..., sl] for k, sl in self._SLICES.items()}

    def _reset_info(self, qpos):
        n = qpos.shape[0]
        zeros = jnp.zeros((n,), jnp.float32)
        info = {k: zeros for k in ("x_velocity", "y_velocity", "reward_forward",
                                   "reward_ctrl", "reward_contact", "reward_survive")}
        info.update(jax.vmap(ant.position_info)(qpos))
        return info

    def _first(self, qpos, qvel, physics):
        """Observation and info right after a reset (cfrc_ext is zero)."""
        cfrc = jnp.zeros((qpos.shape[0], ant.NBODY, 6), jnp.float32)
        obs = jax.vmap(lambda q, v, c: ant.observation(q, v, c, self.config))(qpos, qvel, cfrc)
        return obs.astype(jnp.float32), physics, self._reset_info(qpos)

    def _reset_batch(self, rng):
        scale = self.config.reset_noise_scale
        qpos, qvel = jax.vmap(
            lambda k: ant.reset_noise(k, self._init_qpos, self._init_qvel, scale))(rng)

        n = qpos.shape[0]
        # float32 values are exact float64 values: parts (x, 0, 0); warm start
        # zero as after mj_resetData; xy recomputed on the host (fresh).
        hi = jnp.concatenate([qpos, qvel, jnp.zeros((n, ant.NV + 2), jnp.float32)], -1)
        x64 = jnp.concatenate([hi[:, None], jnp.zeros((n, 2, self._D), jnp.float32)], 1)
        physics = {"x64": x64, "fresh": jnp.ones((n,), jnp.bool_)}
        return self._first(qpos, qvel, physics)

    def reset_to(self, qpos, qvel, key=None, *, qacc_warmstart=None,
                 main_body_xy=None) -> State:
        """Start every env at the given float64 state exactly (no noise).

        qpos float [N, 15], qvel float [N, 14]: as gymnasium's ``set_state``
        after a reset (the first observation has zero cfrc_ext). key: optional
        PRNG key seeding later auto-resets (default PRNGKey(0)). To continue a
        gymnasium episode bit for bit mid-way, also pass its
        ``data.qacc_warmstart`` [N, 14] (default zeros, as after a reset) and
        ``data.body(main_body).xpos[:2]`` as main_body_xy [N, 2] (default:
        recomputed from qpos, as gymnasium's reset does). Not jit-able.
        """
        n = self.num_envs
        qpos = _check_state_array("qpos", qpos, (n, ant.NQ), "nq")
        qvel = _check_state_array("qvel", qvel, (n, ant.NV), "nv")
        warm = (np.zeros((n, ant.NV)) if qacc_warmstart is None else
                _check_state_array("qacc_warmstart", qacc_warmstart, (n, ant.NV), "nv"))
        fresh = main_body_xy is None
        xy = (np.zeros((n, 2)) if fresh else
              _check_state_array("main_body_xy", main_body_xy, (n, 2), "2"))
        x64 = np.moveaxis(split_f64(np.concatenate([qpos, qvel, warm, xy], -1)), -1, -2)
        physics = {"x64": jnp.asarray(x64), "fresh": jnp.full((n,), fresh, jnp.bool_)}
        obs, physics, binfo = self._first(jnp.asarray(x64[:, 0, :ant.NQ]),
                                          jnp.asarray(x64[:, 0, ant.NQ:ant.NQ + ant.NV]),
                                          physics)
        key = jax.random.PRNGKey(0) if key is None else key
        return self._initial_state(obs, physics, binfo, jax.random.split(key, n))

    # -- step ------------------------------------------------------------------
    # One operand in, one out: pure_callback's cost grows with their number.
    # in  [B, 3*45 + 1 + 8]: x64 parts, fresh, ctrl.
    # out [B, 3*45 + 2 + 14*6]: new x64 parts, float32 xy displacement (m,
    #     from float64), float32 cfrc_ext (all bodies, after rnePostConstraint).
    def _host_step(self, packed):
        """numpy float32 [..., 144] -> float32 [..., 221] (see above)."""
        packed = np.asarray(packed)  # the callback may receive jax Arrays
        batch = packed.shape[:-1]
        packed = packed.reshape(-1, packed.shape[-1])
        d, n = self._D, packed.shape[0]
        x = join_f64(np.moveaxis(packed[:, :3 * d].reshape(n, 3, d), 1, -1))
        sl = self._SLICES
        res = self._stepper.step(x[:, sl["qpos"]], x[:, sl["qvel"]],
                                 x[:, sl["qacc_warmstart"]],
                                 packed[:, 3 * d + 1:].astype(np.float64), x[:, sl["xy"]],
                                 packed[:, 3 * d] > 0)
        out = np.empty((n, 3 * d + 2 + ant.NBODY * 6), np.float32)
        new = np.concatenate([res.qpos, res.qvel, res.qacc_warmstart, res.xy], -1)
        out[:, :3 * d] = np.moveaxis(split_f64(new), -1, 1).reshape(n, 3 * d)
        out[:, 3 * d:3 * d + 2] = res.dxy
        out[:, 3 * d + 2:] = res.cfrc_ext.reshape(n, -1)
        return out.reshape(batch + out.shape[-1:])

    def _step_batch(self, physics, action):
        n, d = action.shape[0], self._D
        ctrl = jax.vmap(ant.sanitize_ctrl)(action)
        packed = jnp.concatenate([physics["x64"].reshape(n, 3 * d),
                                  physics["fresh"].astype(jnp.float32)[:, None], ctrl], -1)
        out = jax.pure_callback(
            self._host_step, jax.ShapeDtypeStruct((n, 3 * d + 2 + ant.NBODY * 6), jnp.float32),
            packed, vmap_method="broadcast_all")
        x64 = out[:, :3 * d].reshape(n, 3, d)
        dxy = out[:, 3 * d:3 * d + 2]
        cfrc = out[:, 3 * d + 2:].reshape(n, ant.NBODY, 6)
        qpos = x64[:, 0, self._SLICES["qpos"]]  # float32 rounding of float64
        qvel = x64[:, 0, self._SLICES["qvel"]]
        cfg = self.config

        def semantics(q, v, c, dx, a):
            healthy = ant.is_healthy(q, v, cfg)
            reward, terms = ant.step_reward(dx, self._dt, a, c, healthy, cfg)
            obs = ant.observation(q, v, c, cfg)
            terms.update(ant.position_info(q))
            return obs, reward, ant.terminated(healthy, cfg), terms

        obs, reward, term, terms = jax.vmap(semantics)(qpos, qvel, cfrc, dxy, action)
        new_physics = {"x64": x64, "fresh": jnp.zeros((n,), jnp.bool_)}
        f32 = jnp.float32
        terms = {k: jnp.asarray(v, f32) for k, v in terms.items()}
        return obs.astype(f32), reward.astype(f32), term.astype(f32), new_physics, terms


def _check_state_array(name, value, expected, width) -> np.ndarray:
    """-> float64 numpy array, after the same checks as the MJX backend's reset_to."""
    return np.asarray(check_state_array(name, value, expected, width), np.float64)

"""Any task on native MuJoCo (C, float64), behind the same jit-able API as MJX.

Physics runs in MuJoCo's C engine on the CPU, entered from JAX once per batched step
(never once per env) with one packed array in and one out. The host side steps the
batch on MuJoCo's own persistent thread pool with a small C function
(:mod:`jaxrl_lite.envs.native.cstep`, compiled once), called by XLA directly as a
custom call (:mod:`jaxrl_lite.envs.native.ffi`) when JAX runs on the CPU, else through
``jax.pure_callback``; with no C compiler, a persistent Python thread pool
(:mod:`jaxrl_lite.envs.native.pool`) behind the callback. All give the same bits. What makes it the
task (reset noise, observation, reward terms, health) comes from the task's
:class:`~jaxrl_lite.envs.task.Semantics`, evaluated in JAX on float32 roundings of
the float64 results; the forward-reward position's change is taken in float64 on
the host. A task whose first observation reads data fields (Humanoid's com inertia,
Reacher's fingertip) gets them from a second callback that runs gymnasium's reset.

The State stays purely functional: ``physics`` holds the float64 integration state
(qpos, qvel, the solver warm start qacc_warmstart) and the task's Position at the
end of the last step (gymnasium's "before" for the next one) as float32 triples
``hi + mid + lo`` that rebuild the float64 values exactly. So the same State stepped
twice gives the same result, checkpoints restore it bit for bit, and a step
reproduces gymnasium's float64 step exactly (observations and rewards are then
rounded to float32).
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_lite.envs.core import State, check_state_array
from jaxrl_lite.envs.model import TaskEnv
from jaxrl_lite.envs.native import ffi
from jaxrl_lite.envs.native.cstep import CBatchStepper, load_library
from jaxrl_lite.envs.native.float64_parts import join_f64, split_f64
from jaxrl_lite.envs.native.pool import BatchStepper, check_num_threads, fields_width

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


class NativeEnv(TaskEnv):
    """A batched gymnasium MuJoCo task on native MuJoCo.

    num_envs: N parallel envs. num_threads: host threads stepping them (default: the
    CPU cores this process may use). host_step: "auto" (the C step on MuJoCo's batch
    thread pool, compiled once with the system C compiler; the Python pool if that is
    impossible), "c" or "python" (same results, a Python hand-off per env). Other
    keywords: the task's gymnasium keywords (its Config).
    """

    HOST_STEPS = ("auto", "c", "python")

    def __init__(self, spec, num_envs: int = 1, auto_reset: bool = True,
                 num_threads: int | None = None, host_step: str = "auto", **kwargs):
        if host_step not in self.HOST_STEPS:
            raise ValueError(f"host_step must be one of {', '.join(self.HOST_STEPS)}, "
                             f"got {host_step!r}")
        num_threads = check_num_threads(num_threads)
        super().__init__(spec, num_envs, auto_reset, **kwargs)
        use_c = host_step == "c" or (host_step == "auto" and load_library() is not None)
        stepper = CBatchStepper if use_c else BatchStepper
        self._stepper = stepper(self.model, self.config.frame_skip, self.position,
                                spec.fields, num_threads)
        self.host_step = "c" if use_c else "python"
        self.num_threads = self._stepper.num_threads
        m = self.model
        self._nq, self._nv, self._dim = m.nq, m.nv, self.position.dim
        # The float64 vector [qpos | qvel | qacc_warmstart | position] carried in State.
        self._D = m.nq + 2 * m.nv + self._dim
        self._width = fields_width(m, spec.fields)
        self._reset_width = fields_width(m, spec.reset_fields)
        # The C step as an XLA custom call when JAX runs on the CPU (ffi.py): no Python
        # between steps. None: the pure_callback path (same bits).
        self._ffi_key = (self._stepper.ffi_key() if use_c and jax.default_backend() == "cpu"
                         else None)
        _warn_if_accelerator()

    # -- physics state -------------------------------------------------------
    # physics = {"x64": float32 [N, 3, D], "fresh": bool [N]}: x64[:, k] is part k (hi,
    # mid, lo) of the float64 vector above; x64[:, 0, :nq] is qpos in float32. fresh:
    # the env comes straight from a reset (the "before" position is then recomputed on
    # the host from qpos, as gymnasium's reset ran mj_forward).
    def _slices(self):
        nq, nv, dim = self._nq, self._nv, self._dim
        return {"qpos": slice(0, nq), "qvel": slice(nq, nq + nv),
                "qacc_warmstart": slice(nq + nv, nq + 2 * nv),
                "position": slice(nq + 2 * nv, nq + 2 * nv + dim)}

    def unpack_physics(self, physics) -> dict:
        """State.physics -> float64 numpy qpos, qvel, qacc_warmstart, position (host)."""
        x = join_f64(np.moveaxis(np.asarray(physics["x64"]), -2, -1))
        return {k: x[..., sl] for k, sl in self._slices().items()}

    def _host_reset_fields(self, packed):
        """numpy float32 [..., nq + nv + 1] (state, needed) -> float32 [..., reset width]:
        gymnasium's reset for the needed rows (zeros for the others)."""
        packed = np.asarray(packed)
        batch = packed.shape[:-1]
        packed = packed.reshape(-1, packed.shape[-1]).astype(np.float64)
        out = np.zeros((packed.shape[0], self._reset_width), np.float32)
        rows = np.flatnonzero(packed[:, -1] > 0)
        if rows.size:
            state = packed[rows]
            out[rows] = self._stepper.reset_fields(state[:, :self._nq],
                                                   state[:, self._nq:-1],
                                                   self.spec.reset_fields)
        return out.reshape(batch + (self._reset_width,))

    def _first(self, qpos, qvel, physics, needed=None):
        """Observation and info right after a reset (needed: bool [N] or None = all;
        the data fields of the other rows are zeros, for results nobody uses)."""
        n = qpos.shape[0]
        if self._reset_width:
            needed = (jnp.ones((n, 1), jnp.float32) if needed is None
                      else needed.astype(jnp.float32)[:, None])
            # A finished env's reset runs mj_forward on the host; auto-reset asks for the
            # finished ones only, so tasks that end often (the pendulums) stay cheap.
            flat = jax.pure_callback(
                self._host_reset_fields,
                jax.ShapeDtypeStruct((n, self._reset_width), jnp.float32),
                jnp.concatenate([qpos, qvel, needed], -1), vmap_method="broadcast_all")
            fields = self.unpack_fields(flat, self.spec.reset_fields)
        else:
            fields = {}
        obs, info = self.first_observation(qpos, qvel, fields)
        return obs, physics, info

    def _reset_batch(self, rng, needed=None):
        qpos, qvel = jax.vmap(self.semantics.reset)(rng)
        n = qpos.shape[0]
        # float32 values are exact float64 values: parts (x, 0, 0); warm start zero as
        # after mj_resetData; the position recomputed on the host (fresh).
        hi = jnp.concatenate([qpos, qvel, jnp.zeros((n, self._nv + self._dim), jnp.float32)],
                             -1)
        x64 = jnp.concatenate([hi[:, None], jnp.zeros((n, 2, self._D), jnp.float32)], 1)
        physics = {"x64": x64, "fresh": jnp.ones((n,), jnp.bool_)}
        return self._first(qpos, qvel, physics, needed)

    def reset_to(self, qpos, qvel, key=None, *, qacc_warmstart=None, position=None) -> State:
        """Start every env at the given float64 state exactly (no noise).

        qpos float [N, nq], qvel float [N, nv]: as gymnasium's ``set_state`` after a
        reset. key: optional PRNG key seeding later auto-resets (default PRNGKey(0)). To
        continue a gymnasium episode bit for bit mid-way, also pass its
        ``data.qacc_warmstart`` [N, nv] (default zeros, as after a reset) and the task's
        Position as the data holds it, [N, dim] (default: recomputed from qpos, as
        gymnasium's reset does). Not jit-able.
        """
        n, nq, nv, dim = self.num_envs, self._nq, self._nv, self._dim
        qpos = _check("qpos", qpos, (n, nq), "nq")
        qvel = _check("qvel", qvel, (n, nv), "nv")
        warm = (np.zeros((n, nv)) if qacc_warmstart is None else
                _check("qacc_warmstart", qacc_warmstart, (n, nv), "nv"))
        fresh = position is None
        pos = np.zeros((n, dim)) if fresh else _check("position", position, (n, dim),
                                                      "position dim")
        x64 = np.moveaxis(split_f64(np.concatenate([qpos, qvel, warm, pos], -1)), -1, -2)
        physics = {"x64": jnp.asarray(x64), "fresh": jnp.full((n,), fresh, jnp.bool_)}
        # The observation sees the float32 rounding of the float64 state.
        obs, physics, binfo = self._first(jnp.asarray(x64[:, 0, :nq]),
                                          jnp.asarray(x64[:, 0, nq:nq + nv]), physics)
        key = jax.random.PRNGKey(0) if key is None else key
        return self._initial_state(obs, physics, binfo, jax.random.split(key, n))

    # -- step ------------------------------------------------------------------
    # One operand in, one out: pure_callback's cost grows with their number.
    # in  [B, 3D + 1 + nu]: x64 parts, fresh, ctrl.
    # out [B, 3D + dim + width]: new x64 parts, float32 position change (from float64),
    #     float32 data fields.
    def _host_step(self, packed):
        """numpy float32 [..., 3D + 1 + nu] -> float32 [..., 3D + dim + width]."""
        packed = np.asarray(packed)  # the callback may receive jax Arrays
        batch = packed.shape[:-1]
        packed = packed.reshape(-1, packed.shape[-1])
        if self.host_step == "c":  # the same conversions in C, on the stepping threads
            out = self._stepper.step_packed(packed)
            return out.reshape(batch + out.shape[-1:])
        d, n = self._D, packed.shape[0]
        x = join_f64(np.moveaxis(packed[:, :3 * d].reshape(n, 3, d), 1, -1))
        sl = self._slices()
        res = self._stepper.step(x[:, sl["qpos"]], x[:, sl["qvel"]], x[:, sl["qacc_warmstart"]],
                                 packed[:, 3 * d + 1:].astype(np.float64), x[:, sl["position"]],
                                 packed[:, 3 * d] > 0)
        out = np.empty((n, 3 * d + self._dim + self._width), np.float32)
        new = np.concatenate([res.qpos, res.qvel, res.qacc_warmstart, res.pos], -1)
        out[:, :3 * d] = np.moveaxis(split_f64(new), -1, 1).reshape(n, 3 * d)
        out[:, 3 * d:3 * d + self._dim] = res.dpos
        out[:, 3 * d + self._dim:] = res.fields
        return out.reshape(batch + out.shape[-1:])

    def _step_batch(self, physics, action):
        n, d, dim = action.shape[0], self._D, self._dim
        ctrl = jax.vmap(self.sanitize_ctrl)(action)
        packed = jnp.concatenate([physics["x64"].reshape(n, 3 * d),
                                  physics["fresh"].astype(jnp.float32)[:, None], ctrl], -1)
        result = jax.ShapeDtypeStruct((n, 3 * d + dim + self._width), jnp.float32)
        if self._ffi_key is not None:
            out = jax.ffi.ffi_call(ffi.TARGET, result, vmap_method="broadcast_all")(
                packed, key=np.int64(self._ffi_key))
        else:
            out = jax.pure_callback(self._host_step, result, packed,
                                    vmap_method="broadcast_all")
        x64 = out[:, :3 * d].reshape(n, 3, d)
        dpos = out[:, 3 * d:3 * d + dim]
        fields = self.unpack_fields(out[:, 3 * d + dim:], self.spec.fields)
        sl = self._slices()
        qpos, qvel = x64[:, 0, sl["qpos"]], x64[:, 0, sl["qvel"]]  # float32 roundings
        obs, reward, term, info = self.semantics_batch(qpos, qvel, fields, dpos, action)
        return obs, reward, term, {"x64": x64, "fresh": jnp.zeros((n,), jnp.bool_)}, info


def _check(name, value, expected, width) -> np.ndarray:
    """-> float64 numpy array, after the same checks as the MJX backend's reset_to."""
    return np.asarray(check_state_array(name, value, expected, width), np.float64)

"""Timing of batched env stepping (a module without flags, importable from the device
report's stage processes): ``time_backend`` (auto-reset, the report's MJX throughput) and
the pieces of ``bench_env``'s comparison with raw MuJoCo on identical work
(``Workload``, ``open_loop_timer``, ``Ceiling``)."""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import batch as mj_batch
from mujoco import rollout

from jaxrl_lite import envs
from jaxrl_lite.envs.model import load_model


def time_backend(backend, num_envs, steps, repeats, seed, task="Ant-v5", **kwargs):
    """Compile + steady-state timing of a jitted scan of env.step (random actions
    within the action bounds, auto-reset on)."""
    env = envs.make(task, backend=backend, num_envs=num_envs, auto_reset=True, **kwargs)
    low, high = env.action_low, env.action_high

    def rollout(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (num_envs, env.action_size), jnp.float32, low, high)
            s = env.step(s, a)
            return s, s.reward.mean()
        return jax.lax.scan(body, state, jax.random.split(key, steps))

    fn = jax.jit(rollout)
    key = jax.random.PRNGKey(seed)
    t = time.perf_counter()
    state = jax.block_until_ready(env.reset(key))
    reset_s = time.perf_counter() - t
    t = time.perf_counter()
    state, _ = jax.block_until_ready(fn(state, key))
    first_s = time.perf_counter() - t
    runs = []
    for r in range(repeats):
        t = time.perf_counter()
        state, _ = jax.block_until_ready(fn(state, jax.random.fold_in(key, r + 1)))
        runs.append(time.perf_counter() - t)
    steady = min(runs) if runs else first_s
    return {"task": task, "backend": backend, "num_envs": num_envs, "steps": steps,
            "first_reset_s": round(reset_s, 3), "compile_s": round(max(first_s - steady, 0), 2),
            "steady_s": round(steady, 4), "env_steps_per_s": round(num_envs * steps / steady, 1),
            **{k: v for k, v in kwargs.items()}}


class Workload:
    """What both sides of the comparison simulate: ``num_envs`` envs from the same states
    of the task's reset distribution (our reset, gymnasium's noise; seed ``seed``), each
    driven open loop for ``steps`` env steps by the same random controls (float32,
    uniform in the actuators' ctrlrange). The backend runs them with auto-reset off, so
    the physics engine does identical work on both sides and the ratio measures what
    the backend adds around it (host callback, conversions, task semantics)."""

    def __init__(self, task, num_envs, steps, seed, **kwargs):
        native = envs.make(task, backend="mujoco", num_envs=num_envs, auto_reset=False,
                           **kwargs)
        x = native.unpack_physics(native.reset(jax.random.PRNGKey(seed)).physics)
        self.qpos, self.qvel = x["qpos"], x["qvel"]
        lo, hi = native.model.actuator_ctrlrange.T
        rng = np.random.default_rng(seed)
        # [steps, N, nu] float32: the backend's actions; the ceiling's float64 ctrl.
        self.actions = rng.uniform(lo, hi, (steps, num_envs, native.model.nu)).astype(
            np.float32)
        self.task, self.num_envs, self.steps, self.seed = task, num_envs, steps, seed
        self.kwargs = kwargs


def open_loop_timer(backend, work: Workload):
    """-> (info, run, final_qpos): ``run()`` times one open-loop call of the workload
    (a jitted lax.scan of env.step, every call from the same states); info: compile_s
    (the first call's extra time); final_qpos(): float64 [N, nq] after the workload."""
    env = envs.make(work.task, backend=backend, num_envs=work.num_envs, auto_reset=False,
                    **work.kwargs)
    state0 = env.reset(jax.random.PRNGKey(work.seed))
    actions = jnp.asarray(work.actions)
    fn = jax.jit(lambda s, a: jax.lax.scan(lambda s, a: (env.step(s, a), None), s, a)[0])

    def run() -> float:
        t = time.perf_counter()
        jax.block_until_ready(fn(state0, actions))
        return time.perf_counter() - t

    first = run()
    second = run()

    def final_qpos():
        physics = fn(state0, actions).physics
        if backend == "mujoco":
            return env.unpack_physics(physics)["qpos"]
        return np.asarray(physics["qpos"], np.float64)

    return {"compile_s": round(max(first - second, 0.0), 2)}, run, final_qpos


class Ceiling:
    """Native MuJoCo stepping the same workload with no task logic (frame_skip substeps
    per env step): the most a CPU backend could reach. ``rollout_s()`` / ``batch_s()``
    time one call with ``mujoco.rollout`` (persistent thread pool) / ``mujoco.batch``
    (None if absent), each from the workload's states."""

    def __init__(self, work: Workload, threads):
        spec = envs.task_spec(work.task)
        config = spec.config.from_kwargs(**work.kwargs)
        self.model = model = load_model(spec, config)
        self.nthread = threads or os.cpu_count() or 1
        self.steps, self.fs = work.steps, config.frame_skip
        data = mujoco.MjData(model)
        state_spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.state0 = np.zeros((work.num_envs, mujoco.mj_stateSize(model, state_spec)))
        for i, (qpos, qvel) in enumerate(zip(work.qpos, work.qvel)):
            data.qpos[:], data.qvel[:] = qpos, qvel
            mujoco.mj_getState(model, data, self.state0[i], state_spec)
        self._start = (work.qpos, work.qvel)
        # [N, steps * frame_skip, nu]: each env step's control for its substeps.
        self.ctrl = np.moveaxis(work.actions.astype(np.float64), 0, 1).repeat(self.fs, axis=1)
        self.datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        self._rollout = rollout.Rollout(nthread=self.nthread)
        self._rollout.rollout(model, self.datas, self.state0, self.ctrl[:, :1], nstep=1)  # warm
        self._batch = None
        if hasattr(mj_batch, "Batch"):
            self._batch = mj_batch.Batch(model, nsim=work.num_envs, nthread=self.nthread)
            self._batch.ctrl = self.ctrl[:, 0]
            self._batch.step(nstep=1)  # warm up

    def rollout_s(self) -> float:
        t = time.perf_counter()
        self._rollout.rollout(self.model, self.datas, self.state0, self.ctrl,
                              nstep=self.steps * self.fs)
        return time.perf_counter() - t

    def rollout_final_qpos(self) -> np.ndarray:
        state, _ = self._rollout.rollout(self.model, self.datas, self.state0, self.ctrl,
                                         nstep=self.steps * self.fs)
        return state[:, -1, 1:1 + self.model.nq]

    def batch_s(self) -> float | None:
        if self._batch is None:
            return None
        self._batch.reset()  # as rollout: every call starts from the same states
        self._batch.qpos, self._batch.qvel = self._start
        t = time.perf_counter()
        for s in range(self.steps):
            self._batch.ctrl = self.ctrl[:, s * self.fs]
            self._batch.step(nstep=self.fs)
        return time.perf_counter() - t

    def close(self) -> None:
        self._rollout.close()

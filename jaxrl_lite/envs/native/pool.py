"""The native backend's batched step on a pool of Python threads (no JAX).

The default step is the C one in :mod:`jaxrl_lite.envs.native.cstep`; the pool here
is its fallback when no C compiler is available, with the same bits.

Per simulation, exactly what gymnasium's ``MujocoEnv`` does: load the integration
state (qpos, qvel and the solver's warm start ``qacc_warmstart``; no task has
activations), ``ctrl = action``, ``mj_step`` x ``frame_skip``,
``mj_rnePostConstraint`` (when the task reads ``cfrc_ext``, the only declared field it
writes); then read the task's :class:`~jaxrl_lite.envs.task.Position`
before and after and the declared data fields. A reset job is gymnasium's reset:
``mj_resetData``, set qpos/qvel, ``mj_forward``, read the fields.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple

import mujoco
import numpy as np

from jaxrl_lite.envs.task import FIELD_SIZES, Position


def default_num_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def check_num_threads(num_threads) -> int:
    """Validate a thread count (None -> all available cores); one-line errors."""
    if num_threads is None:
        return default_num_threads()
    if (not isinstance(num_threads, (int, np.integer)) or isinstance(num_threads, bool)
            or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int (default: the "
                         f"{default_num_threads()} available cores), got {num_threads!r}")
    return int(num_threads)


class StepResult(NamedTuple):
    """float64 results of one batched step, leading dim n.

    qpos [n, nq], qvel [n, nv], qacc_warmstart [n, nv]: state after the step.
    pos  [n, dim]: the task's Position after the step (the next step's "before").
    dpos [n, dim]: ``pos - before``, computed in float64.
    fields [n, width]: the declared data fields, flattened and concatenated.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    qacc_warmstart: np.ndarray
    pos: np.ndarray
    dpos: np.ndarray
    fields: np.ndarray


def fields_width(model, fields) -> int:
    return sum(FIELD_SIZES[f](model) for f in fields)


def empty_result(model, n: int, dim: int, fields) -> StepResult:
    return StepResult(np.empty((n, model.nq)), np.empty((n, model.nv)),
                      np.empty((n, model.nv)), np.empty((n, dim)), np.empty((n, dim)),
                      np.empty((n, fields_width(model, fields))))


def read_position(model, data, position: Position) -> np.ndarray:
    """The Position's value in ``data`` (float64 [dim])."""
    if position.kind == "qpos":
        return data.qpos[position.start:position.start + position.dim].copy()
    if position.kind == "body":
        return data.xpos[position.body, :position.dim].copy()
    if position.kind == "mass_center":
        mass = model.body_mass
        return (mass @ data.xipos / mass.sum())[:2]
    return np.zeros(0)


def read_fields(data, fields) -> np.ndarray:
    return np.concatenate([np.ravel(getattr(data, f)) for f in fields]) if fields \
        else np.zeros(0)


class BatchStepper:
    """Steps batches of simulations of ``model`` on ``num_threads`` threads.

    The pool is persistent: worker threads start once and wait on semaphores,
    so a batched call costs two semaphore hand-offs per worker, not a thread
    start. Calls must not overlap (they are serialised by a lock).
    """

    # Below this many simulations per thread, the hand-off costs more than it saves.
    MIN_PER_THREAD = 4

    def __init__(self, model: mujoco.MjModel, frame_skip: int, position: Position,
                 fields: tuple[str, ...], num_threads: int | None = None):
        self.model, self.frame_skip = model, int(frame_skip)
        self.position, self.fields = position, tuple(fields)
        self.num_threads = check_num_threads(num_threads)
        self._datas = [mujoco.MjData(model) for _ in range(self.num_threads)]
        self._lock = threading.Lock()
        self._go = [threading.Semaphore(0) for _ in range(self.num_threads)]
        self._done = threading.Semaphore(0)
        self._job = None
        self._errors: list[BaseException] = []
        self._closed = False
        for t in range(1, self.num_threads):
            threading.Thread(target=self._worker, args=(t,), daemon=True,
                             name=f"native-mujoco-{t}").start()

    # -- pool ----------------------------------------------------------------
    def _worker(self, t: int) -> None:
        while True:
            self._go[t].acquire()
            if self._closed:
                return
            try:
                self._run_chunk(t)
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller
                self._errors.append(e)
            finally:
                self._done.release()

    def close(self) -> None:
        """Stop the worker threads (also happens at interpreter exit). Waits for a
        step in flight: closing under the lock means no worker can see ``_closed``
        between a step's hand-off and its chunk (which left that step waiting
        forever for the worker's ``_done``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for t in range(1, self.num_threads):
                self._go[t].release()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- physics -------------------------------------------------------------
    def _run_chunk(self, t: int) -> None:
        job = self._job
        lo = job["n"] * t // job["nt"]
        hi = job["n"] * (t + 1) // job["nt"]
        (self._reset_range if job["reset"] else self._step_range)(self._datas[t], lo, hi, job)

    def _step_range(self, d: mujoco.MjData, lo: int, hi: int, job: dict) -> None:
        m, out = self.model, job["out"]
        for i in range(lo, hi):
            d.time = 0.0
            d.qpos[:] = job["qpos"][i]
            d.qvel[:] = job["qvel"][i]
            d.qacc_warmstart[:] = job["warm"][i]
            if job["fresh"][i]:  # gymnasium's reset ran mj_forward: positions from qpos
                mujoco.mj_kinematics(m, d)
                before = read_position(m, d, self.position)
            else:
                before = job["pos_before"][i]
            d.ctrl[:] = job["ctrl"][i]
            mujoco.mj_step(m, d, self.frame_skip)
            if "cfrc_ext" in job["fields"]:  # the only field it writes that a task reads
                mujoco.mj_rnePostConstraint(m, d)
            out.qpos[i] = d.qpos
            out.qvel[i] = d.qvel
            out.qacc_warmstart[i] = d.qacc_warmstart
            out.pos[i] = read_position(m, d, self.position)
            out.dpos[i] = out.pos[i] - before
            out.fields[i] = read_fields(d, job["fields"])

    def _reset_range(self, d: mujoco.MjData, lo: int, hi: int, job: dict) -> None:
        m, out = self.model, job["out"]
        for i in range(lo, hi):
            mujoco.mj_resetData(m, d)
            d.qpos[:] = job["qpos"][i]
            d.qvel[:] = job["qvel"][i]
            mujoco.mj_forward(m, d)
            out.fields[i] = read_fields(d, job["fields"])

    def _run(self, job: dict) -> StepResult:
        nt = max(1, min(self.num_threads, job["n"] // self.MIN_PER_THREAD))
        job["nt"] = nt
        with self._lock:
            if self._closed:
                raise RuntimeError("BatchStepper is closed")
            self._job = job
            self._errors.clear()
            for t in range(1, nt):
                self._go[t].release()
            try:
                self._run_chunk(0)
            finally:
                for _ in range(1, nt):
                    self._done.acquire()
                self._job = None
            if self._errors:
                raise self._errors[0]
        return job["out"]

    def step(self, qpos, qvel, warm, ctrl, pos_before, fresh) -> StepResult:
        """float64 qpos [n, nq], qvel [n, nv], warm (qacc_warmstart) [n, nv],
        ctrl [n, nu], pos_before [n, dim]; fresh bool [n] (True: the state comes
        straight from a reset, so "before" is recomputed from qpos) -> StepResult."""
        n = qpos.shape[0]
        out = empty_result(self.model, n, self.position.dim, self.fields)
        return self._run(dict(n=n, reset=False, qpos=qpos, qvel=qvel, warm=warm, ctrl=ctrl,
                              pos_before=pos_before, fresh=fresh, fields=self.fields, out=out))

    def reset_fields(self, qpos, qvel, fields: tuple[str, ...]) -> np.ndarray:
        """Gymnasium's reset at float64 qpos [n, nq], qvel [n, nv] -> ``fields``
        [n, width] after mj_resetData + mj_forward."""
        n = qpos.shape[0]
        out = empty_result(self.model, n, 0, fields)
        return self._run(dict(n=n, reset=True, qpos=qpos, qvel=qvel, fields=tuple(fields),
                              out=out)).fields

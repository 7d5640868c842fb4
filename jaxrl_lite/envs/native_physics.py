"""The native MuJoCo backend's batched step on a pool of Python threads (no JAX).

The default step is the C one in :mod:`jaxrl_lite.envs.native_cstep`; the
pool here is its fallback when no C compiler is available, with the same bits.

:class:`BatchStepper` steps ``n`` Ant simulations exactly as gymnasium's
``MujocoEnv.do_simulation`` does (``ctrl = action``; ``mj_step`` x
``frame_skip``; ``mj_rnePostConstraint``), spread over a persistent pool of
threads (``mj_step`` releases the GIL), one ``MjData`` per thread. Each
simulation is loaded from its full integration state (qpos, qvel and the
solver's warm start ``qacc_warmstart``; the Ant has no activations), so a
step is a pure function of its inputs and reproduces gymnasium bit for bit
(a zero warm start instead changes qvel within float32 rounding: WORKSPACE.md).
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple

import mujoco
import numpy as np


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
    xy   [n, 2]: main-body ``xpos[:2]`` after the step (last RK4 stage data,
         what gymnasium reads as ``data.body(main_body).xpos``).
    dxy  [n, 2]: ``xy - xy_before`` (m), computed in float64.
    cfrc_ext [n, nbody, 6]: after ``mj_rnePostConstraint``, world row included.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    qacc_warmstart: np.ndarray
    xy: np.ndarray
    dxy: np.ndarray
    cfrc_ext: np.ndarray


class BatchStepper:
    """Steps batches of simulations of ``model`` on ``num_threads`` threads.

    The pool is persistent: worker threads start once and wait on semaphores,
    so a batched call costs two semaphore hand-offs per worker, not a thread
    start. Calls must not overlap (they are serialised by a lock).
    """

    # Below this many simulations per thread, the hand-off costs more than it saves.
    MIN_PER_THREAD = 4

    def __init__(self, model: mujoco.MjModel, frame_skip: int, main_body: int,
                 num_threads: int | None = None):
        self.model = model
        self.frame_skip = int(frame_skip)
        self.main_body = int(main_body)
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
        self._step_range(self._datas[t], lo, hi, job)

    def _step_range(self, d: mujoco.MjData, lo: int, hi: int, job: dict) -> None:
        m, fs, body = self.model, self.frame_skip, self.main_body
        qpos, qvel, warm, ctrl = job["qpos"], job["qvel"], job["warm"], job["ctrl"]
        xy_before, fresh = job["xy_before"], job["fresh"]
        out = job["out"]
        for i in range(lo, hi):
            d.time = 0.0
            d.qpos[:] = qpos[i]
            d.qvel[:] = qvel[i]
            d.qacc_warmstart[:] = warm[i]
            if fresh[i]:
                # gymnasium's reset ran mj_forward; xpos is its kinematics.
                mujoco.mj_kinematics(m, d)
                before = d.xpos[body, :2].copy()
            else:
                before = xy_before[i]
            d.ctrl[:] = ctrl[i]
            mujoco.mj_step(m, d, fs)
            mujoco.mj_rnePostConstraint(m, d)
            out.qpos[i] = d.qpos
            out.qvel[i] = d.qvel
            out.qacc_warmstart[i] = d.qacc_warmstart
            xy = d.xpos[body, :2]
            out.xy[i] = xy
            out.dxy[i] = xy - before
            out.cfrc_ext[i] = d.cfrc_ext

    def step(self, qpos, qvel, warm, ctrl, xy_before, fresh) -> StepResult:
        """float64 qpos [n, nq], qvel [n, nv], warm (qacc_warmstart) [n, nv],
        ctrl [n, nu], xy_before [n, 2];
        fresh bool [n] (True: state comes straight from a reset, so xy_before
        is recomputed from qpos) -> :class:`StepResult`."""
        n = qpos.shape[0]
        m = self.model
        out = StepResult(np.empty((n, m.nq)), np.empty((n, m.nv)), np.empty((n, m.nv)),
                         np.empty((n, 2)), np.empty((n, 2)), np.empty((n, m.nbody, 6)))
        job = dict(n=n, qpos=qpos, qvel=qvel, warm=warm, ctrl=ctrl, xy_before=xy_before,
                   fresh=fresh, out=out)
        nt = max(1, min(self.num_threads, n // self.MIN_PER_THREAD))
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
        return out

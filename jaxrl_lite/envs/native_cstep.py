"""The native backend's batched step in C, on ``mujoco.batch``'s thread pool.

A few lines of C, compiled once per machine with the system C compiler
against the headers and ``libmujoco`` that ship in the ``mujoco`` wheel, and
cached privately by :mod:`jaxrl_lite.native_build`.
``mjb_apply`` (MuJoCo's batch API, the engine under ``mujoco.batch``) runs the per-simulation function below on its persistent
thread pool, so one call steps the whole batch with no Python (and no GIL) per
simulation. Results are bit-identical to the Python pool in
:mod:`jaxrl_lite.envs.native_physics`, which remains the fallback when no C
compiler is available.

Per simulation i: load qpos, qvel, qacc_warmstart, ctrl; if ``fresh[i]``
compute the main body's "before" xy with ``mj_kinematics`` (gymnasium's
reset ran ``mj_forward``); ``mj_step`` x frame_skip; ``mj_rnePostConstraint``;
write qpos, qvel, qacc_warmstart, main-body xy, xy - before, cfrc_ext.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading

import mujoco
import numpy as np

from jaxrl_lite import native_build
from jaxrl_lite.envs.native_physics import StepResult, check_num_threads

_SOURCE = r"""
#include <string.h>
#include <mujoco/mujoco.h>
#include <mujoco/mjbatch.h>

typedef struct {
  int frame_skip, body, n;
  int next;  /* next env to step: threads take envs one at a time */
  const double *qpos, *qvel, *warm, *ctrl, *xy_before;
  const unsigned char *fresh;
  double *out_qpos, *out_qvel, *out_warm, *out_xy, *out_dxy, *out_cfrc;
} nb_job;

static void nb_env(const mjModel* m, mjData* d, int i, const nb_job* j) {
  int nq = m->nq, nv = m->nv, nu = m->nu, b = j->body;
  double before[2];
  d->time = 0;
  memcpy(d->qpos, j->qpos + (size_t)i*nq, sizeof(double)*nq);
  memcpy(d->qvel, j->qvel + (size_t)i*nv, sizeof(double)*nv);
  memcpy(d->qacc_warmstart, j->warm + (size_t)i*nv, sizeof(double)*nv);
  if (j->fresh[i]) {
    mj_kinematics(m, d);
    before[0] = d->xpos[3*b]; before[1] = d->xpos[3*b+1];
  } else {
    before[0] = j->xy_before[2*i]; before[1] = j->xy_before[2*i+1];
  }
  memcpy(d->ctrl, j->ctrl + (size_t)i*nu, sizeof(double)*nu);
  for (int k = 0; k < j->frame_skip; k++) mj_step(m, d);
  mj_rnePostConstraint(m, d);
  memcpy(j->out_qpos + (size_t)i*nq, d->qpos, sizeof(double)*nq);
  memcpy(j->out_qvel + (size_t)i*nv, d->qvel, sizeof(double)*nv);
  memcpy(j->out_warm + (size_t)i*nv, d->qacc_warmstart, sizeof(double)*nv);
  j->out_xy[2*i] = d->xpos[3*b]; j->out_xy[2*i+1] = d->xpos[3*b+1];
  j->out_dxy[2*i] = d->xpos[3*b] - before[0];
  j->out_dxy[2*i+1] = d->xpos[3*b+1] - before[1];
  memcpy(j->out_cfrc + (size_t)i*6*m->nbody, d->cfrc_ext, sizeof(double)*6*m->nbody);
}

/* One "simulation" per thread of the batch; each steps envs taken from a shared
   counter until none is left, so a thread the OS delays does not hold up the
   batch (dynamic balancing, as mujoco.rollout's small chunks). */
static void nb_worker(const mjModel* m, mjData* d, int sim, void* arg) {
  nb_job* j = (nb_job*)arg;
  (void)sim;
  for (;;) {
    int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
    if (i >= j->n) break;
    nb_env(m, d, i, j);
  }
}

void* nb_make(const mjModel* m, int nsim, int nthread, char* err, int err_sz) {
  mjBatchConfig cfg;
  mjb_defaultConfig(&cfg);
  cfg.nthread = nthread;
  return mjb_makeBatch(m, nsim, &cfg, err, err_sz);
}

void nb_free(void* b) { mjb_deleteBatch((mjBatch*)b); }

int nb_nthread(void* b) { return mjb_nthread((mjBatch*)b); }

/* Step job->n envs on the batch's threads; return a failed worker's id, or -1. */
int nb_step(void* b, nb_job* job) {
  mjBatch* batch = (mjBatch*)b;
  int n = mjb_nsim(batch);
  job->next = 0;
  if (!mjb_apply(batch, NULL, n, nb_worker, job, 0)) return -1;
  const int* status = mjb_status(batch);
  for (int i = 0; i < n; i++) if (status[i]) return i;
  return -1;
}

const char* nb_error(void* b, int sim) { return mjb_error((mjBatch*)b, sim); }
"""

_D = ctypes.POINTER(ctypes.c_double)


class _Job(ctypes.Structure):
    _fields_ = [("frame_skip", ctypes.c_int), ("body", ctypes.c_int), ("n", ctypes.c_int),
                ("next", ctypes.c_int),
                ("qpos", _D), ("qvel", _D), ("warm", _D), ("ctrl", _D), ("xy_before", _D),
                ("fresh", ctypes.POINTER(ctypes.c_ubyte)),
                ("out_qpos", _D), ("out_qvel", _D), ("out_warm", _D), ("out_xy", _D),
                ("out_dxy", _D), ("out_cfrc", _D)]


_lib = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def load_error() -> str | None:
    """Why the C step is unavailable (after :func:`load_library` returned None)."""
    return _lib_error


def load_library():
    """Compile (once, cached) and load the C step; None if impossible, after one
    warning that names the reason and the (slower) fallback."""
    global _lib, _lib_error
    with _lib_lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        try:
            _lib = _build_and_load()
        except Exception as e:  # noqa: BLE001 - any failure means: use the fallback
            _lib_error = f"{type(e).__name__}: {e}".splitlines()[0]
            logging.warning("native MuJoCo backend: the compiled C step is NOT used (%s); "
                            "falling back to the Python thread pool, which is slower",
                            _lib_error)
        return _lib


def _build_and_load():
    pkg = os.path.dirname(mujoco.__file__)
    libs = sorted(f for f in os.listdir(pkg) if f.startswith("libmujoco.so"))
    if not libs:
        raise OSError(f"no libmujoco.so in {pkg}")
    flags = ["-O2", "-shared", "-fPIC", "-I", os.path.join(pkg, "include"), "-L", pkg,
             f"-l:{libs[-1]}", f"-Wl,-rpath,{pkg}"]
    lib = native_build.build_and_load("native_cstep", _SOURCE, flags,
                                      key_extra=(mujoco.__version__, pkg))
    lib.nb_make.restype = ctypes.c_void_p
    lib.nb_make.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_int]
    lib.nb_free.argtypes = [ctypes.c_void_p]
    lib.nb_nthread.argtypes = [ctypes.c_void_p]
    lib.nb_step.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Job)]
    lib.nb_error.restype = ctypes.c_char_p
    lib.nb_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _ptr(a: np.ndarray, ctype=ctypes.c_double):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


class CBatchStepper:
    """Same interface and results as :class:`native_physics.BatchStepper`.

    Holds ``mjBatch`` objects (MuJoCo's persistent thread pool, one MjData
    per thread) with one "simulation" per thread; each thread steps envs
    taken one at a time from a shared counter, for any batch size.
    """

    def __init__(self, model: mujoco.MjModel, frame_skip: int, main_body: int,
                 num_threads: int | None = None):
        lib = load_library()
        if lib is None:
            raise OSError(f"C step unavailable: {_lib_error}")
        self._lib = lib
        self.model = model
        self.frame_skip = int(frame_skip)
        self.main_body = int(main_body)
        self.num_threads = check_num_threads(num_threads)
        self._batches: dict[int, int] = {}
        self._lock = threading.Lock()

    def _batch(self, nthread: int) -> int:
        b = self._batches.get(nthread)
        if b is None:
            err = ctypes.create_string_buffer(300)
            b = self._lib.nb_make(ctypes.c_void_p(self.model._address), nthread, nthread,
                                  err, 300)
            if not b:
                raise RuntimeError(f"mjb_makeBatch failed: {err.value.decode()}")
            self._batches[nthread] = b
        return b

    def close(self) -> None:
        with self._lock:
            for b in self._batches.values():
                self._lib.nb_free(ctypes.c_void_p(b))
            self._batches.clear()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def step(self, qpos, qvel, warm, ctrl, xy_before, fresh) -> StepResult:
        """float64 qpos [n, nq], qvel [n, nv], warm [n, nv], ctrl [n, nu],
        xy_before [n, 2]; fresh bool [n] -> :class:`StepResult` (float64)."""
        m = self.model
        n = qpos.shape[0]
        c = lambda a, s: np.ascontiguousarray(a, np.float64).reshape(n, s)  # noqa: E731
        ins = (c(qpos, m.nq), c(qvel, m.nv), c(warm, m.nv), c(ctrl, m.nu), c(xy_before, 2))
        fresh_u8 = np.ascontiguousarray(fresh, np.uint8).reshape(n)
        out = StepResult(np.empty((n, m.nq)), np.empty((n, m.nv)), np.empty((n, m.nv)),
                         np.empty((n, 2)), np.empty((n, 2)), np.empty((n, m.nbody, 6)))
        job = _Job(self.frame_skip, self.main_body, n, 0, *(_ptr(a) for a in ins),
                   _ptr(fresh_u8, ctypes.c_ubyte), *(_ptr(a) for a in out))
        with self._lock:
            b = self._batch(max(1, min(self.num_threads, n)))
            failed = self._lib.nb_step(ctypes.c_void_p(b), ctypes.byref(job))
            if failed >= 0:
                msg = self._lib.nb_error(ctypes.c_void_p(b), failed).decode()
                raise RuntimeError(f"MuJoCo raised an error while stepping: {msg}")
        return out

"""The native backend's batched step in C, on ``mujoco.batch``'s thread pool.

A few lines of C for every task, compiled once per machine with the system C
compiler against the headers and ``libmujoco`` that ship in the ``mujoco`` wheel,
and cached privately by :mod:`jaxrl_lite.native_build`. ``mjb_apply`` (MuJoCo's
batch API, the engine under ``mujoco.batch``) runs the per-simulation function
below on its persistent thread pool, so one call steps the whole batch with no
Python (and no GIL) per simulation. Results are bit-identical to the Python pool in
:mod:`jaxrl_lite.envs.native.pool`, the fallback when no C compiler is available.

Per simulation i: load qpos, qvel, qacc_warmstart, ctrl; the task's Position
"before" (carried from the last step, or with ``mj_kinematics`` when ``fresh[i]``:
gymnasium's reset ran ``mj_forward``); ``mj_step`` x frame_skip;
``mj_rnePostConstraint`` if the task reads ``cfrc_ext`` (the only declared field it
writes: gymnasium calls it after every step, skipping it elsewhere changes no output);
write the state, the Position and its change, and the
data fields the task declared (in its order). A reset job is gymnasium's reset
(``mj_resetData``, set qpos/qvel, ``mj_forward``) and writes the fields.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading

import mujoco
import numpy as np

from jaxrl_lite import native_build
from jaxrl_lite.envs.native.pool import (StepResult, check_num_threads, empty_result,
                                          fields_width)
from jaxrl_lite.envs.task import FIELD_SIZES, Position

_SOURCE = r"""
#include <math.h>
#include <string.h>
#include <mujoco/mujoco.h>
#include <mujoco/mjbatch.h>

/* The data fields a task may read (jaxrl_lite.envs.task.FIELD_SIZES, same order). */
enum { F_CFRC_EXT, F_CINERT, F_CVEL, F_QFRC_ACTUATOR, F_QFRC_CONSTRAINT, F_XPOS, F_XIPOS,
       F_SITE_XPOS, F_TEN_LENGTH, F_TEN_VELOCITY, F_CTRL };
/* The Position kinds (jaxrl_lite.envs.task.Position). */
enum { P_NONE, P_QPOS, P_BODY, P_MASS_CENTER };

typedef struct {
  int frame_skip, n;
  int next;  /* next env to step: threads take envs one at a time */
  int reset; /* 1: gymnasium's reset (mj_resetData, set state, mj_forward), no step */
  int pos_kind, pos_dim, pos_start, pos_body;
  int nfield, width; const int* fields;
  int rne_post; /* 1: mj_rnePostConstraint after the step (the task reads cfrc_ext) */
  const double *qpos, *qvel, *warm, *ctrl, *pos_before;
  const unsigned char *fresh;
  double *out_qpos, *out_qvel, *out_warm, *out_pos, *out_dpos, *out_fields;
  /* The JAX side's float32 layout, used instead of the float64 arrays above when
     in_packed is set: in [n, 3D + 1 + nu] (the parts hi|mid|lo of the float64 vector
     [qpos | qvel | qacc_warmstart | position] of length D, fresh, ctrl), out
     [n, 3D + pos_dim + width] (new parts, position change, fields). */
  const float* in_packed;
  float* out_packed;
  int dx;
} nb_job;

/* float64 <-> three float32 parts, exactly as float64_parts.split_f64 / join_f64. */
static double nb_join(const float* p, int D, int k) {
  return ((double)p[k] + (double)p[D + k]) + (double)p[2*D + k];
}

static void nb_split(double x, float* p, int D, int k) {
  float hi = (float)x;
  double rest = isfinite(hi) ? x - (double)hi : 0.0;
  float mid = (float)rest;
  p[k] = hi; p[D + k] = mid; p[2*D + k] = (float)(rest - (double)mid);
}

static const mjtNum* nb_field(const mjModel* m, const mjData* d, int f, int* count) {
  switch (f) {
    case F_CFRC_EXT: *count = 6*m->nbody; return d->cfrc_ext;
    case F_CINERT: *count = 10*m->nbody; return d->cinert;
    case F_CVEL: *count = 6*m->nbody; return d->cvel;
    case F_QFRC_ACTUATOR: *count = m->nv; return d->qfrc_actuator;
    case F_QFRC_CONSTRAINT: *count = m->nv; return d->qfrc_constraint;
    case F_XPOS: *count = 3*m->nbody; return d->xpos;
    case F_XIPOS: *count = 3*m->nbody; return d->xipos;
    case F_SITE_XPOS: *count = 3*m->nsite; return d->site_xpos;
    case F_TEN_LENGTH: *count = m->ntendon; return d->ten_length;
    case F_TEN_VELOCITY: *count = m->ntendon; return d->ten_velocity;
    default: *count = m->nu; return d->ctrl;
  }
}

static void nb_fields(const mjModel* m, const mjData* d, int i, const nb_job* j) {
  double* out = j->out_fields + (size_t)i*j->width;
  for (int k = 0; k < j->nfield; k++) {
    int count;
    const mjtNum* src = nb_field(m, d, j->fields[k], &count);
    memcpy(out, src, sizeof(double)*count);
    out += count;
  }
}

static void nb_position(const mjModel* m, const mjData* d, const nb_job* j, double* out) {
  int b = j->pos_body;
  if (j->pos_kind == P_QPOS) {
    for (int k = 0; k < j->pos_dim; k++) out[k] = d->qpos[j->pos_start + k];
  } else if (j->pos_kind == P_BODY) {
    for (int k = 0; k < j->pos_dim; k++) out[k] = d->xpos[3*b + k];
  } else if (j->pos_kind == P_MASS_CENTER) {
    double total = 0, x = 0, y = 0;
    for (int k = 0; k < m->nbody; k++) {
      x += m->body_mass[k]*d->xipos[3*k];
      y += m->body_mass[k]*d->xipos[3*k+1];
      total += m->body_mass[k];
    }
    out[0] = x/total; out[1] = y/total;
  }
}

static void nb_env_packed(const mjModel* m, mjData* d, int i, const nb_job* j) {
  int nq = m->nq, nv = m->nv, nu = m->nu, dim = j->pos_dim, D = j->dx;
  const float* in = j->in_packed + (size_t)i*(3*D + 1 + nu);
  float* out = j->out_packed + (size_t)i*(3*D + dim + j->width);
  double before[8], pos[8];
  d->time = 0;
  for (int k = 0; k < nq; k++) d->qpos[k] = nb_join(in, D, k);
  for (int k = 0; k < nv; k++) d->qvel[k] = nb_join(in, D, nq + k);
  for (int k = 0; k < nv; k++) d->qacc_warmstart[k] = nb_join(in, D, nq + nv + k);
  if (in[3*D] > 0) {
    mj_kinematics(m, d);  /* fresh: gymnasium's reset ran mj_forward */
    nb_position(m, d, j, before);
  } else {
    for (int k = 0; k < dim; k++) before[k] = nb_join(in, D, nq + 2*nv + k);
  }
  for (int k = 0; k < nu; k++) d->ctrl[k] = (double)in[3*D + 1 + k];
  for (int k = 0; k < j->frame_skip; k++) mj_step(m, d);
  if (j->rne_post) mj_rnePostConstraint(m, d);
  for (int k = 0; k < nq; k++) nb_split(d->qpos[k], out, D, k);
  for (int k = 0; k < nv; k++) nb_split(d->qvel[k], out, D, nq + k);
  for (int k = 0; k < nv; k++) nb_split(d->qacc_warmstart[k], out, D, nq + nv + k);
  nb_position(m, d, j, pos);
  for (int k = 0; k < dim; k++) {
    nb_split(pos[k], out, D, nq + 2*nv + k);
    out[3*D + k] = (float)(pos[k] - before[k]);
  }
  float* f = out + 3*D + dim;
  for (int k = 0; k < j->nfield; k++) {
    int count;
    const mjtNum* src = nb_field(m, d, j->fields[k], &count);
    for (int c = 0; c < count; c++) f[c] = (float)src[c];
    f += count;
  }
}

static void nb_env(const mjModel* m, mjData* d, int i, const nb_job* j) {
  int nq = m->nq, nv = m->nv, nu = m->nu, dim = j->pos_dim;
  double before[8];
  if (j->reset) {
    mj_resetData(m, d);
    memcpy(d->qpos, j->qpos + (size_t)i*nq, sizeof(double)*nq);
    memcpy(d->qvel, j->qvel + (size_t)i*nv, sizeof(double)*nv);
    mj_forward(m, d);
    nb_fields(m, d, i, j);
    return;
  }
  d->time = 0;
  memcpy(d->qpos, j->qpos + (size_t)i*nq, sizeof(double)*nq);
  memcpy(d->qvel, j->qvel + (size_t)i*nv, sizeof(double)*nv);
  memcpy(d->qacc_warmstart, j->warm + (size_t)i*nv, sizeof(double)*nv);
  if (j->fresh[i]) {
    mj_kinematics(m, d);  /* gymnasium's reset ran mj_forward: positions from qpos */
    nb_position(m, d, j, before);
  } else {
    for (int k = 0; k < dim; k++) before[k] = j->pos_before[(size_t)i*dim + k];
  }
  memcpy(d->ctrl, j->ctrl + (size_t)i*nu, sizeof(double)*nu);
  for (int k = 0; k < j->frame_skip; k++) mj_step(m, d);
  if (j->rne_post) mj_rnePostConstraint(m, d);
  memcpy(j->out_qpos + (size_t)i*nq, d->qpos, sizeof(double)*nq);
  memcpy(j->out_qvel + (size_t)i*nv, d->qvel, sizeof(double)*nv);
  memcpy(j->out_warm + (size_t)i*nv, d->qacc_warmstart, sizeof(double)*nv);
  double* pos = j->out_pos + (size_t)i*dim;
  nb_position(m, d, j, pos);
  for (int k = 0; k < dim; k++) j->out_dpos[(size_t)i*dim + k] = pos[k] - before[k];
  nb_fields(m, d, i, j);
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
    if (j->in_packed) nb_env_packed(m, d, i, j);
    else nb_env(m, d, i, j);
  }
}

void* nb_make(const mjModel* m, int nsim, int nthread, char* err, int err_sz) {
  mjBatchConfig cfg;
  mjb_defaultConfig(&cfg);
  cfg.nthread = nthread;
  return mjb_makeBatch(m, nsim, &cfg, err, err_sz);
}

void nb_free(void* b) { mjb_deleteBatch((mjBatch*)b); }

/* Run job->n envs on the batch's threads; return a failed worker's id, or -1. */
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
_I = ctypes.c_int


class _Job(ctypes.Structure):
    _fields_ = [("frame_skip", _I), ("n", _I), ("next", _I), ("reset", _I),
                ("pos_kind", _I), ("pos_dim", _I), ("pos_start", _I), ("pos_body", _I),
                ("nfield", _I), ("width", _I), ("fields", ctypes.POINTER(_I)),
                ("rne_post", _I),
                ("qpos", _D), ("qvel", _D), ("warm", _D), ("ctrl", _D), ("pos_before", _D),
                ("fresh", ctypes.POINTER(ctypes.c_ubyte)),
                ("out_qpos", _D), ("out_qvel", _D), ("out_warm", _D), ("out_pos", _D),
                ("out_dpos", _D), ("out_fields", _D),
                ("in_packed", ctypes.POINTER(ctypes.c_float)),
                ("out_packed", ctypes.POINTER(ctypes.c_float)), ("dx", _I)]


FIELD_IDS = {name: i for i, name in enumerate(FIELD_SIZES)}
POSITION_KINDS = {"none": 0, "qpos": 1, "body": 2, "mass_center": 3}
MAX_POSITION_DIM = 8


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
    # No FMA contraction: the float64 <-> float32-parts code must round as numpy does.
    flags = ["-O2", "-ffp-contract=off", "-shared", "-fPIC", "-I",
             os.path.join(pkg, "include"), "-L", pkg, f"-l:{libs[-1]}", f"-Wl,-rpath,{pkg}"]
    lib = native_build.build_and_load("native_cstep", _SOURCE, flags,
                                      key_extra=(mujoco.__version__, pkg))
    lib.nb_make.restype = ctypes.c_void_p
    lib.nb_make.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_int]
    lib.nb_free.argtypes = [ctypes.c_void_p]
    lib.nb_step.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Job)]
    lib.nb_error.restype = ctypes.c_char_p
    lib.nb_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _ptr(a: np.ndarray, ctype=ctypes.c_double):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


class CBatchStepper:
    """Same interface and results as :class:`pool.BatchStepper`.

    Holds ``mjBatch`` objects (MuJoCo's persistent thread pool, one MjData
    per thread) with one "simulation" per thread; each thread steps envs
    taken one at a time from a shared counter, for any batch size.
    """

    def __init__(self, model: mujoco.MjModel, frame_skip: int, position: Position,
                 fields: tuple[str, ...], num_threads: int | None = None):
        lib = load_library()
        if lib is None:
            raise OSError(f"C step unavailable: {_lib_error}")
        if position.dim > MAX_POSITION_DIM:
            raise ValueError(f"a Position has at most {MAX_POSITION_DIM} entries")
        self._lib = lib
        self.model, self.frame_skip = model, int(frame_skip)
        self.position, self.fields = position, tuple(fields)
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

    def _run(self, n: int, reset: bool, fields, arrays: dict, out: StepResult | None,
             packed: tuple | None = None):
        """One job over n envs; ``packed`` = (in float32, out float32, D) for the
        packed layout (then ``out`` is None and the packed output is returned)."""
        m, p = self.model, self.position
        ids = np.asarray([FIELD_IDS[f] for f in fields] or [0], np.int32)
        zeros = np.zeros(1)
        get = lambda k: arrays.get(k, zeros)  # noqa: E731 - unused inputs of a reset job
        fresh = np.ascontiguousarray(arrays.get("fresh", np.zeros(n, bool)), np.uint8)
        job = _Job(self.frame_skip, n, 0, int(reset), POSITION_KINDS[p.kind], p.dim, p.start,
                   p.body, len(fields), fields_width(m, fields),
                   ids.ctypes.data_as(ctypes.POINTER(_I)), int("cfrc_ext" in fields),
                   *(_ptr(get(k)) for k in ("qpos", "qvel", "warm", "ctrl", "pos_before")),
                   _ptr(fresh, ctypes.c_ubyte),
                   *(_ptr(a) for a in (out or (zeros,) * len(StepResult._fields))))
        if packed is not None:
            job.in_packed = _ptr(packed[0], ctypes.c_float)
            job.out_packed = _ptr(packed[1], ctypes.c_float)
            job.dx = packed[2]
        with self._lock:
            b = self._batch(max(1, min(self.num_threads, n)))
            failed = self._lib.nb_step(ctypes.c_void_p(b), ctypes.byref(job))
            if failed >= 0:
                msg = self._lib.nb_error(ctypes.c_void_p(b), failed).decode()
                raise RuntimeError(f"MuJoCo raised an error while stepping: {msg}")
        return out if packed is None else packed[1]

    def step_packed(self, packed: np.ndarray) -> np.ndarray:
        """The callback layout of native/backend.py, float32 [n, 3D + 1 + nu] -> [n, 3D +
        dim + width], converted in C: the bits of :meth:`step` + numpy float64_parts."""
        m, dim = self.model, self.position.dim
        d = m.nq + 2 * m.nv + dim
        packed = np.ascontiguousarray(packed, np.float32)
        if packed.ndim != 2 or packed.shape[1] != 3 * d + 1 + m.nu:
            raise ValueError(f"step_packed expects [n, {3 * d + 1 + m.nu}], got {packed.shape}")
        out = np.empty((len(packed), 3 * d + dim + fields_width(m, self.fields)), np.float32)
        return self._run(len(packed), False, self.fields, {}, None, packed=(packed, out, d))

    def step(self, qpos, qvel, warm, ctrl, pos_before, fresh) -> StepResult:
        """float64 qpos [n, nq], qvel [n, nv], warm [n, nv], ctrl [n, nu],
        pos_before [n, dim]; fresh bool [n] -> :class:`StepResult` (float64)."""
        m, n = self.model, qpos.shape[0]
        c = lambda a, s: np.ascontiguousarray(a, np.float64).reshape(n, s)  # noqa: E731
        arrays = dict(qpos=c(qpos, m.nq), qvel=c(qvel, m.nv), warm=c(warm, m.nv),
                      ctrl=c(ctrl, m.nu), pos_before=c(pos_before, self.position.dim),
                      fresh=fresh)
        return self._run(n, False, self.fields, arrays,
                         empty_result(m, n, self.position.dim, self.fields))

    def reset_fields(self, qpos, qvel, fields: tuple[str, ...]) -> np.ndarray:
        """Gymnasium's reset at float64 qpos [n, nq], qvel [n, nv] -> ``fields``
        [n, width] after mj_resetData + mj_forward."""
        m, n = self.model, qpos.shape[0]
        c = lambda a, s: np.ascontiguousarray(a, np.float64).reshape(n, s)  # noqa: E731
        return self._run(n, True, tuple(fields), dict(qpos=c(qpos, m.nq), qvel=c(qvel, m.nv)),
                         empty_result(m, n, 0, fields)).fields

"""The native backend's batched step in C (``cstep.c``), on ``mujoco.batch``'s thread pool.

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
(``mj_resetData``, set qpos/qvel, ``mj_forward``) and writes the fields. Where jaxlib's
XLA FFI headers are present, ``ffi.c`` is compiled in too (:mod:`.ffi`).
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading

import mujoco
import numpy as np

from jaxrl_lite import native_build
from jaxrl_lite.envs.native import ffi
from jaxrl_lite.envs.native.pool import (StepResult, check_num_threads, empty_result,
                                          fields_width)
from jaxrl_lite.envs.task import FIELD_SIZES, Position

_HERE = os.path.dirname(os.path.abspath(__file__))


def _source(name: str) -> str:
    with open(os.path.join(_HERE, name)) as f:
        return f.read()


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
                ("in_packed", ctypes.c_void_p), ("out_packed", ctypes.c_void_p),
                ("dx", _I)]


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
    key = (mujoco.__version__, pkg)
    try:  # with the XLA custom call (ffi.py); without it the pure_callback path remains
        lib = native_build.build_and_load(
            "native_cstep_ffi", _source("cstep.c") + _source("ffi.c"),
            flags + ffi.build_flags(), key_extra=key)
        lib.has_ffi = True
    except PermissionError:  # an unsafe cache is refused, never worked around
        raise
    except OSError as e:
        logging.info("native step without the XLA custom call (%s)", str(e).splitlines()[0])
        lib = native_build.build_and_load("native_cstep", _source("cstep.c"), flags,
                                          key_extra=key)
        lib.has_ffi = False
    lib.nb_make.restype = ctypes.c_void_p
    lib.nb_make.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_int]
    lib.nb_free.argtypes = [ctypes.c_void_p]
    lib.nb_step.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Job)]
    lib.nb_error.restype = ctypes.c_char_p
    lib.nb_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
    if lib.has_ffi:
        lib.nb_ffi_register.argtypes = [ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int,
                                        ctypes.POINTER(_Job), ctypes.c_int, ctypes.c_int,
                                        ctypes.c_char_p, ctypes.c_int]
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
        # step_packed's job per batch size, built once: a step then only sets two
        # addresses (building a ctypes job costs ~0.1 ms, as much as a small model's step).
        self._packed_jobs: dict[int, tuple] = {}
        self._dx = model.nq + 2 * model.nv + position.dim
        self._packed_widths = (3 * self._dx + 1 + model.nu,
                               3 * self._dx + position.dim + fields_width(model, fields))

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

    def _job(self, n: int, reset: bool, fields, arrays: dict, out: StepResult | None):
        """-> (ctypes job over n envs, the arrays it points into: keep them alive)."""
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
        return job, (ids, zeros, fresh, arrays, out)

    def _call(self, n: int, job: _Job, packed: tuple[int, int] | None = None) -> None:
        """Run ``job``; ``packed``: the (in, out) addresses a cached packed job points
        to for this call (set under the lock: callbacks may run concurrently)."""
        with self._lock:
            if packed is not None:
                job.in_packed, job.out_packed = packed
            b = self._batch(max(1, min(self.num_threads, n)))
            failed = self._lib.nb_step(ctypes.c_void_p(b), ctypes.byref(job))
            if failed >= 0:
                msg = self._lib.nb_error(ctypes.c_void_p(b), failed).decode()
                raise RuntimeError(f"MuJoCo raised an error while stepping: {msg}")

    def _run(self, n: int, reset: bool, fields, arrays: dict, out: StepResult):
        job, _alive = self._job(n, reset, fields, arrays, out)
        self._call(n, job)
        return out

    def step_packed(self, packed: np.ndarray) -> np.ndarray:
        """The callback layout of native/backend.py, float32 [n, 3D + 1 + nu] -> [n, 3D +
        dim + width], converted in C: the bits of :meth:`step` + numpy float64_parts."""
        width_in, width_out = self._packed_widths
        packed = np.ascontiguousarray(packed, np.float32)
        if packed.ndim != 2 or packed.shape[1] != width_in:
            raise ValueError(f"step_packed expects [n, {width_in}], got {packed.shape}")
        n = len(packed)
        out = np.empty((n, width_out), np.float32)
        cached = self._packed_jobs.get(n)
        if cached is None:
            cached = self._job(n, False, self.fields, {}, None)
            cached[0].dx = self._dx
            self._packed_jobs[n] = cached
        self._call(n, cached[0], (packed.ctypes.data, out.ctypes.data))
        return out

    def ffi_key(self) -> int | None:
        """Register this stepper for the XLA custom call (:mod:`.ffi`) -> its key, or
        None when the library was built without the custom call."""
        if not self._lib.has_ffi or not ffi.register_target(self._lib):
            return None
        job, _alive = self._job(0, False, self.fields, {}, None)
        job.dx = self._dx
        settings = (self.frame_skip, tuple(self.position), self.fields, self.num_threads)
        key = ffi.stepper_key(self.model, settings)
        err = ctypes.create_string_buffer(300)
        if self._lib.nb_ffi_register(key, ctypes.c_void_p(self.model._address),
                                     self.num_threads, ctypes.byref(job),
                                     *self._packed_widths, err, 300):
            raise RuntimeError(f"registering the native step failed: {err.value.decode()}")
        return key

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

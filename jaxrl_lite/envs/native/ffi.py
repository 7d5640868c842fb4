"""The native step as an XLA custom call: no Python (and no GIL) between steps.

``jax.pure_callback`` costs about 0.2 ms per batched step on this kind of CPU (the
Python hand-off, argument checks, copies), as much as a 256-env step of the fastest
tasks spends in physics. When JAX runs on the CPU and the system C compiler can build
against jaxlib's XLA FFI headers (``jax.ffi.include_dir()``), the C step of
:mod:`jaxrl_lite.envs.native.cstep` is compiled together with the small handler below
and called by XLA directly, on the packed float32 layout of the callback path (same
bits). Otherwise the backend keeps the pure_callback path.

An XLA program must not name a stepper by address: the persistent compile cache
(:mod:`jaxrl_lite.run.compile_cache`) reuses programs across processes. The handler
therefore finds its stepper by a 64-bit key, a hash of the model's bytes and the
step's settings (:func:`stepper_key`), in a registry that lives as long as the
process and owns its copy of the model and its thread pool. Two envs with the same
key share one stepper (same bytes, same physics; calls are serialised by a lock).
"""
from __future__ import annotations

import hashlib
import os
import threading

import mujoco
import numpy as np

TARGET = "jaxrl_lite_native_step"


_registered_lib = None  # the library whose handler XLA calls (one per process)
_target_lock = threading.Lock()


def build_flags() -> list[str]:
    """Compiler flags that switch the FFI handler on (jaxlib's headers); OSError if the
    installed jaxlib has none."""
    import jax.ffi  # the backend imports JAX anyway; kept off cstep's import path

    include = jax.ffi.include_dir()
    if not os.path.exists(os.path.join(include, "xla", "ffi", "api", "c_api.h")):
        raise OSError(f"no XLA FFI headers under {include}")
    return ["-DNB_FFI", "-I", include]


def stepper_key(model: mujoco.MjModel, settings: tuple) -> int:
    """int64 key of a stepper: the model's bytes (mj_saveModel) and the step's settings
    (frame_skip, position, fields, threads), identical in every process that makes the
    same env, so a cached XLA program finds the same physics."""
    buf = np.empty(mujoco.mj_sizeModel(model), np.uint8)
    mujoco.mj_saveModel(model, None, buf)
    h = hashlib.blake2b(buf.tobytes(), digest_size=8)
    h.update(repr(settings).encode())
    return int(np.frombuffer(h.digest(), np.int64)[0])


def register_target(lib) -> bool:
    """Register the handler of ``lib`` (the C step built with -DNB_FFI) with XLA, once
    per process -> whether XLA calls ``lib``'s handler (False for a second library,
    e.g. one rebuilt into another cache: its steppers keep the callback path)."""
    global _registered_lib
    import jax.ffi

    with _target_lock:
        if _registered_lib is None:
            jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.nb_ffi_step),
                                        platform="cpu")
            _registered_lib = lib
        return _registered_lib is lib

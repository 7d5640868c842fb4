"""Environment registry: ``envs.make(name, backend=..., num_envs=..., **kwargs)``.

Backends:
  "mjx"    MuJoCo XLA, pure JAX; runs on any JAX device (use it on a GPU).
  "mujoco" native MuJoCo C (float64) on the CPU, entered from JAX through a
           host callback; same API, usable inside jit/scan.
  "auto"   "mjx" when JAX's default device is a GPU/TPU, else "mujoco".
"""
from __future__ import annotations

import importlib
import logging

from jaxrl_lite.envs.core import Env, State

BACKENDS = ("auto", "mjx", "mujoco")

# name -> {backend: "module:Class"}; modules are imported lazily so that the
# cheap JAX toy environments never pay for MuJoCo imports.
_REGISTRY: dict[str, dict[str, str]] = {
    "Ant-v5": {
        "mjx": "jaxrl_lite.envs.mjx_backend:MjxAnt",
        "mujoco": "jaxrl_lite.envs.mujoco_backend:NativeAnt",
    },
    # Cheap pure-JAX task for fast learning tests (backend-independent).
    "PointMass-v0": {
        "mjx": "jaxrl_lite.envs.point_mass:PointMass",
        "mujoco": "jaxrl_lite.envs.point_mass:PointMass",
    },
}

_logged_auto = False


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def resolve_backend(backend: str) -> str:
    """Map "auto" to a concrete backend for the current default JAX device."""
    global _logged_auto
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    import jax
    platform = jax.default_backend()
    chosen = "mjx" if platform in ("gpu", "cuda", "rocm", "tpu") else "mujoco"
    if not _logged_auto:
        logging.info("backend=auto: JAX default device is %s -> using %r", platform, chosen)
        _logged_auto = True
    return chosen


def make(name: str, backend: str = "auto", num_envs: int = 1, auto_reset: bool = True,
         **kwargs) -> Env:
    """Build a batched environment (WORKSPACE.md, "Public interfaces")."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(_REGISTRY)}")
    backend = resolve_backend(backend)
    target = _REGISTRY[name][backend]
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(num_envs=num_envs, auto_reset=auto_reset, **kwargs)


__all__ = ["BACKENDS", "Env", "State", "make", "registered", "resolve_backend"]

"""Environment registry: ``envs.make(name, backend=..., num_envs=..., **kwargs)``.

The eleven gymnasium MuJoCo v5 tasks (Ant, HalfCheetah, Hopper, Walker2d, Humanoid,
HumanoidStandup, Swimmer, Reacher, Pusher, InvertedPendulum, InvertedDoublePendulum,
all ``-v5``), with gymnasium's keywords and defaults, and PointMass-v0 (a cheap pure-JAX
task for tests). A user's task is one module with a ``TaskSpec`` and one
``envs.register(spec)`` (WORKSPACE.md, "Adding a task").

Backends:
  "mjx"    MuJoCo XLA, pure JAX; runs on any JAX device (use it on a GPU).
  "mujoco" native MuJoCo C (float64) on the CPU, entered from JAX through a
           host callback; same API, usable inside jit/scan.
  "auto"   "mjx" when JAX's default device is a GPU/TPU, else "mujoco".

Every MuJoCo env has ``action_low`` / ``action_high`` (float32 [action_size]: the
actuators' ctrlrange, to which the physics clamps actions) besides the Env API.
"""
from __future__ import annotations

import importlib
import logging

from jaxrl_lite.envs.core import Env, State
from jaxrl_lite.envs.point_mass import PointMass
from jaxrl_lite.envs.task import TaskSpec
from jaxrl_lite.envs.tasks import SUITE

BACKENDS = ("auto", "mjx", "mujoco")

# name -> TaskSpec (a MuJoCo task, any backend) or an Env class (backend-independent).
_REGISTRY: dict[str, TaskSpec | type] = {spec.name: spec for spec in SUITE}
_REGISTRY["PointMass-v0"] = PointMass

_logged_auto = False


def register(spec: TaskSpec, gym_entry_point: str | None = None) -> None:
    """Make ``spec.name`` available to :func:`make`, and with ``gym_entry_point``
    ("module:EnvClass", a gymnasium ``MujocoEnv`` of the same task) to gymnasium too,
    which the exporter and the Pi harness run. Call it when your module is imported;
    then ``--env=your.module:Name`` works in any process (the module is imported
    first, as gymnasium does). One-line ValueError if the name is taken."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register takes a TaskSpec, got {type(spec).__name__}")
    short = spec.name.split(":")[-1]
    if _REGISTRY.get(short, spec) is not spec:
        raise ValueError(f"task {short!r} is already registered")
    _REGISTRY[short] = spec
    if gym_entry_point is not None:
        import gymnasium as gym

        if short not in gym.registry:
            gym.register(id=short, entry_point=gym_entry_point,
                         max_episode_steps=spec.config().max_episode_steps)


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _lookup(name: str):
    """A registered name, or "module:Name" (the module is imported first)."""
    if name in _REGISTRY or ":" not in name:
        return _REGISTRY.get(name)
    module, _, short = name.rpartition(":")
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"environment {name!r}: cannot import {module} ({e})") from None
    return _REGISTRY.get(short)


def task_spec(name: str) -> TaskSpec | None:
    """The TaskSpec of a registered MuJoCo task (None for a pure-JAX env); one-line
    ValueError listing the registered names for an unknown one."""
    entry = _lookup(name)
    if entry is None:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(_REGISTRY)}")
    return entry if isinstance(entry, TaskSpec) else None


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
    spec = task_spec(name)
    backend = resolve_backend(backend)
    if spec is None:
        return _lookup(name)(num_envs=num_envs, auto_reset=auto_reset, **kwargs)
    if backend == "mjx":
        from jaxrl_lite.envs.mjx_backend import MjxEnv
        return MjxEnv(spec, num_envs=num_envs, auto_reset=auto_reset, **kwargs)
    from jaxrl_lite.envs.native.backend import NativeEnv
    return NativeEnv(spec, num_envs=num_envs, auto_reset=auto_reset, **kwargs)


__all__ = ["BACKENDS", "Env", "State", "TaskSpec", "make", "register", "registered",
           "resolve_backend", "task_spec"]

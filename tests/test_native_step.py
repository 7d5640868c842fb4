"""The native backend's machinery: which host step runs (the compiled C step, its
private cache, the Python-pool fallback without a compiler), the warning on an
accelerator, and a clean shutdown of the pool during a step."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from jaxrl_lite import envs
from jaxrl_lite.envs.native import backend as native_backend
from jaxrl_lite.envs.native import cstep as native_cstep
from jaxrl_lite.envs.native.pool import BatchStepper
from jaxrl_lite.envs.task import Position


def test_accelerator_default_device_logs_why_slow(monkeypatch, caplog):
    monkeypatch.setattr(native_backend, "_logged_gpu", False)
    monkeypatch.setattr(native_backend.jax, "default_backend", lambda: "gpu")
    with caplog.at_level(logging.WARNING):
        env = envs.make("Ant-v5", backend="mujoco", num_envs=2)
    assert "host callback" in caplog.text and "mjx" in caplog.text
    assert env.observation_size == 105  # still works: physics on the CPU


def test_without_a_c_compiler_falls_back_to_the_python_pool(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(native_cstep, "_lib", None)
    monkeypatch.setattr(native_cstep, "_lib_error", None)
    monkeypatch.setenv("JAXRL_LITE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.WARNING):
        env = envs.make("Ant-v5", backend="mujoco", num_envs=2)
    assert env.host_step == "python" and "Python thread pool" in caplog.text
    with pytest.raises(OSError):
        envs.make("Ant-v5", backend="mujoco", num_envs=2, host_step="c")


def _fresh_c_step(monkeypatch, cache):
    monkeypatch.setattr(native_cstep, "_lib", None)
    monkeypatch.setattr(native_cstep, "_lib_error", None)
    monkeypatch.setenv("JAXRL_LITE_CACHE", str(cache))
    return native_cstep


def test_c_step_cache_is_private_and_keyed_by_source_and_compiler(monkeypatch, tmp_path):
    import os
    import stat

    cache = tmp_path / "cache"
    native_cstep = _fresh_c_step(monkeypatch, cache)
    assert native_cstep.load_library() is not None, native_cstep.load_error()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    first = set(os.listdir(cache))
    assert len(first) == 1 and next(iter(first)).startswith("native_cstep_")
    so = cache / next(iter(first))
    assert stat.S_IMODE(os.stat(so).st_mode) & 0o077 == 0
    # Another compiler (here: the same one under another path) -> another object.
    cc = tmp_path / "cc"
    os.symlink(shutil.which("cc") or shutil.which("gcc"), cc)
    native_cstep = _fresh_c_step(monkeypatch, cache)
    monkeypatch.setenv("CC", str(cc))
    assert native_cstep.load_library() is not None, native_cstep.load_error()
    assert len(set(os.listdir(cache)) - first) == 1


@pytest.mark.parametrize("tamper, reason", [
    ("so_world_writable", "writable by group or others"),
    ("dir_world_writable", "writable by group or others"),
    ("so_other_owner", "owned by uid 65534"),
])
def test_c_step_refuses_a_cache_others_can_write(monkeypatch, tmp_path, caplog, tamper,
                                                  reason):
    import os

    cache = tmp_path / "cache"
    native_cstep = _fresh_c_step(monkeypatch, cache)
    assert native_cstep.load_library() is not None
    so = cache / os.listdir(cache)[0]
    if tamper == "so_world_writable":
        os.chmod(so, 0o777)
    elif tamper == "dir_world_writable":
        os.chmod(cache, 0o777)
    else:
        if os.getuid() != 0:
            pytest.skip("needs root to give the file to another user")
        os.chown(so, 65534, 65534)
    native_cstep = _fresh_c_step(monkeypatch, cache)
    with caplog.at_level(logging.WARNING):
        env = envs.make("Ant-v5", backend="mujoco", num_envs=2)
        envs.make("Ant-v5", backend="mujoco", num_envs=2)
    assert env.host_step == "python"
    assert reason in native_cstep.load_error()
    warned = [r for r in caplog.records if "C step is NOT used" in r.getMessage()]
    assert len(warned) == 1 and reason in warned[0].getMessage()  # once, with the reason
    with pytest.raises(OSError):
        envs.make("Ant-v5", backend="mujoco", num_envs=2, host_step="c")


def test_python_pool_close_during_a_step_does_not_hang():
    import threading

    model = envs.make("Ant-v5", backend="mujoco", num_envs=1).model
    n = 64
    q0 = np.tile(model.qpos0, (n, 1))
    zeros_v = np.zeros((n, model.nv))
    for _ in range(20):
        stepper = BatchStepper(model, 5, Position("body", 2, body=1), ("cfrc_ext",),
                               num_threads=4)
        outcome = []

        def step():
            try:
                stepper.step(q0, zeros_v, zeros_v, np.zeros((n, model.nu)), np.zeros((n, 2)),
                             np.ones(n, bool))
                outcome.append("stepped")
            except RuntimeError as e:
                outcome.append(str(e))

        t = threading.Thread(target=step)
        t.start()
        stepper.close()
        t.join(30)
        assert not t.is_alive(), "a step in flight hung when the pool was closed"
        assert outcome in (["stepped"], ["BatchStepper is closed"])

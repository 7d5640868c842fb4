"""The native backend's machinery: which host step runs (the compiled C step, its
private cache, the Python-pool fallback without a compiler, the XLA custom call and
the callback without it), the warning on an accelerator, and a clean shutdown of the
pool during a step."""
from __future__ import annotations

import logging
import os
import shutil

import jax
import jax.numpy as jnp
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


# -- the XLA custom call (ffi.py) ---------------------------------------------------
def _scan(env, key, steps=25):
    """Random actions, some outside the bounds, auto-reset on: the whole trajectory."""
    actions = jax.random.uniform(key, (steps, env.num_envs, env.action_size), minval=-1.5,
                                 maxval=1.5)
    run = jax.jit(lambda s, a: jax.lax.scan(
        lambda s, a: (env.step(s, a), (s.obs, s.reward, s.done)), s, a))
    return run(env.reset(key), actions)


_needs_cc = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                               reason="the custom call is compiled with the C step")


@_needs_cc
def test_custom_call_is_the_default_and_gives_the_callback_bits():
    kw = dict(backend="mujoco", num_envs=5, max_episode_steps=12)
    fast = envs.make("Hopper-v5", **kw)
    assert fast.host_step == "c" and fast._ffi_key is not None
    slow = envs.make("Hopper-v5", **kw)
    slow._ffi_key = None  # the jax.pure_callback path
    key = jax.random.PRNGKey(4)
    for x, y in zip(jax.tree_util.tree_leaves(_scan(fast, key)),
                    jax.tree_util.tree_leaves(_scan(slow, key))):
        np.testing.assert_array_equal(x, y)
    # vmapped over a leading axis: the handler steps [2, 5] envs as 10.
    states = [fast.reset(jax.random.PRNGKey(k)) for k in (1, 2)]
    a = jnp.linspace(-1, 1, 5 * fast.action_size).reshape(5, -1)
    both = jax.vmap(fast.step, in_axes=(0, None))(
        jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states), a)
    for i, s in enumerate(states):
        one = fast.step(s, a)
        np.testing.assert_array_equal(both.obs[i], one.obs)
        np.testing.assert_array_equal(both.physics["x64"][i], one.physics["x64"])


@_needs_cc
def test_custom_call_names_its_stepper_by_content_in_every_process():
    import subprocess
    import sys

    a = envs.make("Hopper-v5", backend="mujoco", num_envs=2)
    b = envs.make("Hopper-v5", backend="mujoco", num_envs=3, forward_reward_weight=2.0)
    c = envs.make("Hopper-v5", backend="mujoco", num_envs=2, frame_skip=5)
    assert a._ffi_key == b._ffi_key != c._ffi_key  # same physics, same stepper
    # Another process gets the same key: a compiled program from the persistent
    # cache finds its stepper there too.
    code = ("from jaxrl_lite import envs; "
            "print(envs.make('Hopper-v5', backend='mujoco', num_envs=2)._ffi_key)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.stdout.split()[-1] == str(a._ffi_key), out.stderr[-500:]


@_needs_cc
def test_without_ffi_headers_the_c_step_runs_through_the_callback(monkeypatch, tmp_path):
    from jaxrl_lite.envs.native import ffi

    def no_headers():
        raise OSError("no XLA FFI headers under nowhere")

    monkeypatch.setattr(ffi, "build_flags", no_headers)
    _fresh_c_step(monkeypatch, tmp_path / "cache")
    env = envs.make("Hopper-v5", backend="mujoco", num_envs=3, max_episode_steps=12)
    assert env.host_step == "c" and env._ffi_key is None
    ref = envs.make("Hopper-v5", backend="mujoco", num_envs=3, max_episode_steps=12,
                    host_step="python")
    key = jax.random.PRNGKey(9)
    for x, y in zip(jax.tree_util.tree_leaves(_scan(env, key)),
                    jax.tree_util.tree_leaves(_scan(ref, key))):
        np.testing.assert_array_equal(x, y)

"""The environment API: bad input fails early and clearly; auto-reset semantics.

Error checks build MJX envs (cheap: no tracing) and prove the errors come
before any JIT tracing by checking the jitted step's compile cache. The
episode semantics run on the pure-JAX PointMass task (cheap to compile).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxrl_lite import envs
from jaxrl_lite.envs.tasks import SUITE


def one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# -- make --------------------------------------------------------------------
def test_unknown_env_backend_and_kwarg():
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v4", backend="mjx")
    assert "Ant-v4" in one_line(e) and "Ant-v5" in one_line(e)
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="brax")
    assert "brax" in one_line(e) and "mjx" in one_line(e) and "mujoco" in one_line(e)
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="mjx", frame_skipp=5)
    msg = one_line(e)
    assert "frame_skipp" in msg and "frame_skip" in msg and "contact_force_range" in msg
    with pytest.raises(ValueError) as e:
        envs.make("Hopper-v5", backend="mujoco", render_mode="human")
    assert "render_mode" in one_line(e) and "render" in one_line(e).split("render_mode")[1]


@pytest.mark.parametrize("kwargs, name", [
    (dict(frame_skip=0), "frame_skip"),
    (dict(frame_skip=2.5), "frame_skip"),
    (dict(healthy_z_range=(1.0, 0.2)), "healthy_z_range"),
    (dict(contact_force_range=3.0), "contact_force_range"),
    (dict(reset_noise_scale=-0.1), "reset_noise_scale"),
    (dict(main_body="no_such_body"), "main_body"),
    (dict(xml_file="no_such.xml"), "no_such.xml"),
    (dict(iterations=0), "iterations"),
    (dict(terminate_when_unhealthy="yes"), "terminate_when_unhealthy"),
    (dict(num_envs=0), "num_envs"),
])
def test_bad_kwarg_values(kwargs, name):
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="mjx", **kwargs)
    assert name in one_line(e)


@pytest.mark.parametrize("spec", SUITE, ids=lambda s: s.name)
def test_every_gymnasium_keyword_is_accepted_with_its_default(spec):
    import inspect

    import gymnasium as gym

    entry = gym.spec(spec.name).entry_point
    module, cls = entry.split(":")
    params = inspect.signature(getattr(__import__(module, fromlist=[cls]), cls).__init__
                               ).parameters
    ours = spec.config()
    for name, p in params.items():
        if name in ("self", "kwargs", "default_camera_config"):
            continue  # rendering only
        assert getattr(ours, name) == p.default, name
    # gymnasium's TimeLimit for the task
    assert ours.max_episode_steps == gym.spec(spec.name).max_episode_steps
    ours_only = {f.name for f in dataclasses.fields(ours)} - set(params)
    assert ours_only == {"max_episode_steps", "iterations", "ls_iterations"}


def test_keywords_change_the_task():
    env = envs.make("Ant-v5", backend="mjx", num_envs=3, main_body="torso",
                    include_cfrc_ext_in_observation=False, healthy_z_range=[0.3, 1.2])
    assert env.observation_size == 27 and env.action_size == 8
    assert env.config.healthy_z_range == (0.3, 1.2)
    assert envs.make("Humanoid-v5", backend="mujoco", include_cinert_in_observation=False,
                     include_cvel_in_observation=False).observation_size == 348 - 130 - 78
    hopper = envs.make("Hopper-v5", backend="mujoco")
    assert hopper.observation_size == 11 and hopper.max_episode_steps == 1000
    assert envs.make("Reacher-v5", backend="mujoco").max_episode_steps == 50
    np.testing.assert_array_equal(envs.make("Humanoid-v5", backend="mujoco").action_high,
                                  np.full(17, 0.4, np.float32))


def test_mjx_refuses_what_it_cannot_simulate():
    for name in ("Humanoid-v5", "HumanoidStandup-v5"):
        with pytest.raises(ValueError) as e:
            envs.make(name, backend="mjx")
        msg = one_line(e)
        assert "PGS" in msg and "backend='mujoco'" in msg and name in msg


def test_unknown_task_lists_the_registered_ones():
    with pytest.raises(ValueError) as e:
        envs.make("Hopper-v4", backend="mujoco")
    msg = one_line(e)
    assert all(s.name in msg for s in SUITE) and "PointMass-v0" in msg
    with pytest.raises(ValueError) as e:
        envs.make("Reacher-v5", backend="mujoco", reward_dist_weigth=2.0)
    assert "reward_dist_weigth" in one_line(e) and "reward_dist_weight" in one_line(e)
    with pytest.raises(ValueError) as e:
        envs.make("Hopper-v5", backend="mujoco", healthy_angle_range=(0.2, -0.2))
    assert "Hopper-v5 healthy_angle_range" in one_line(e)


# -- step / reset_to input checks, before tracing -----------------------------
@pytest.fixture(scope="module")
def ant_env():
    return envs.make("Ant-v5", backend="mjx", num_envs=3, auto_reset=False)


def test_bad_actions_fail_before_tracing(ant_env):
    before = ant_env._fns.step._cache_size()
    # The state is never looked at: validation comes first (None proves it).
    with pytest.raises(ValueError) as e:
        ant_env.step(None, jnp.zeros((3, 7)))
    assert "(3, 8)" in one_line(e)
    with pytest.raises(ValueError) as e:
        ant_env.step(None, jnp.zeros((8,)))
    assert "(3, 8)" in one_line(e)
    with pytest.raises(TypeError) as e:
        ant_env.step(None, jnp.zeros((3, 8), jnp.int32))
    assert "float32" in one_line(e)
    with pytest.raises(TypeError) as e:
        ant_env.step(None, [[0.0] * 8] * 3)
    assert "array" in one_line(e)
    assert ant_env._fns.step._cache_size() == before


@pytest.mark.parametrize("qpos, qvel, exc, words", [
    (np.zeros((3, 14)), np.zeros((3, 14)), ValueError, ["qpos", "(3, 14)", "(3, 15)"]),
    (np.zeros((3, 15)), np.zeros((2, 14)), ValueError, ["qvel", "(2, 14)", "(3, 14)"]),
    (np.zeros((15,)), np.zeros((14,)), ValueError, ["qpos", "(3, 15)"]),
    (np.zeros((3, 15), np.int64), np.zeros((3, 14)), TypeError, ["qpos", "int64"]),
    ([[0.0] * 15] * 3, np.zeros((3, 14)), TypeError, ["qpos", "list"]),
])
def test_bad_reset_to_fails_before_tracing(ant_env, qpos, qvel, exc, words):
    before = ant_env._fns.from_state._cache_size()
    with pytest.raises(exc) as e:
        ant_env.reset_to(qpos, qvel)
    msg = one_line(e)
    for w in words:
        assert w in msg, (w, msg)
    assert ant_env._fns.from_state._cache_size() == before


def test_bad_reset_key(ant_env):
    with pytest.raises(TypeError) as e:
        ant_env.reset(jnp.zeros((3,), jnp.uint32))
    assert "PRNGKey" in one_line(e)


# -- episode semantics (PointMass: same core code path as every backend) -------
@pytest.fixture(scope="module")
def pm_step():
    env = envs.make("PointMass-v0", num_envs=4, auto_reset=True, max_episode_steps=5)
    return env, jax.jit(env.step)


def test_auto_reset_keeps_final_obs_and_totals(pm_step):
    env, step = pm_step
    state = env.reset(jax.random.PRNGKey(0))
    action = jnp.full((4, 2), 0.5, jnp.float32)
    manual_return = np.zeros(4)
    for t in range(5):
        prev = state
        state = step(state, action)
        manual_return += np.asarray(state.reward)
    # Step 5 truncates every env: done, truncated (not terminated).
    np.testing.assert_array_equal(np.asarray(state.done), np.ones(4))
    np.testing.assert_array_equal(np.asarray(state.info["truncated"]), np.ones(4))
    np.testing.assert_array_equal(np.asarray(state.info["terminated"]), np.zeros(4))
    # final_obs is the true last observation: one more dynamics step of prev.
    vel = prev.obs[:, 2:] + 0.1 * (action - 0.5 * prev.obs[:, 2:])
    expected_final = np.concatenate([prev.obs[:, :2] + 0.1 * vel, vel], -1)
    np.testing.assert_allclose(np.asarray(state.info["final_obs"]), expected_final,
                               rtol=1e-5, atol=1e-6)
    # obs is a fresh episode: zero velocity, bookkeeping restarted.
    np.testing.assert_array_equal(np.asarray(state.obs)[:, 2:], np.zeros((4, 2)))
    assert not np.allclose(np.asarray(state.obs), expected_final)
    np.testing.assert_array_equal(np.asarray(state.info["steps"]), np.zeros(4))
    np.testing.assert_array_equal(np.asarray(state.info["completed_length"]), [5] * 4)
    np.testing.assert_allclose(np.asarray(state.info["completed_return"]), manual_return,
                               rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(state.info["completed_count"]), [1] * 4)
    # Each env resets to its own new random start.
    assert len({tuple(np.round(o, 6)) for o in np.asarray(state.obs)[:, :2]}) == 4


def test_no_auto_reset_never_resets():
    env = envs.make("PointMass-v0", num_envs=2, auto_reset=False, max_episode_steps=3)
    state = env.reset(jax.random.PRNGKey(1))
    action = jnp.zeros((2, 2), jnp.float32)
    for t in range(1, 6):
        state = env.step(state, action)
        np.testing.assert_array_equal(np.asarray(state.info["steps"]), [t, t])
        np.testing.assert_array_equal(np.asarray(state.obs), np.asarray(state.info["final_obs"]))
    # done from the truncation step on; the episode is never restarted.
    assert float(state.done[0]) == 1.0


def test_step_runs_inside_lax_scan(pm_step):
    env, _ = pm_step

    @jax.jit
    def rollout(state):
        def body(s, _):
            s = env.step(s, jnp.zeros((4, 2), jnp.float32))
            return s, s.done
        return jax.lax.scan(body, state, None, length=12)

    state, dones = rollout(env.reset(jax.random.PRNGKey(2)))
    # Truncation every 5 steps: done at steps 5 and 10.
    np.testing.assert_array_equal(np.asarray(dones)[:, 0],
                                  [0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(state.info["completed_count"]), [2] * 4)

"""Native MuJoCo backend on Ant-v5: exact gymnasium parity, determinism, jit/scan,
auto-reset, bad input (the host-step machinery: test_native_step.py).

Tolerances. The backend runs the same float64 C physics as gymnasium from the
full integration state (qpos, qvel, warm start), so the physics must match
*bit for bit*: we compare float64 qpos/qvel exactly. What the JAX side sees is
float32: observations are the float32 rounding of gymnasium's float64
observation, so they must equal ``float32(gymnasium obs)`` exactly (clipping
commutes with rounding). Rewards are then computed in float32 from float32
inputs: a few roundings of terms of size <= ~10, so |Δreward| <= 4 ulp of the
largest term (float32 ulp is 2**-23 relative), i.e. 5e-7 * (1 + sum|terms|).
"""
from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite import envs
from jaxrl_lite.envs.native.float64_parts import join_f64, split_f64
from jaxrl_lite.envs.native.pool import check_num_threads

NQ, NV, NU = 15, 14, 8  # Ant-v5

TERMS = ("reward_forward", "reward_ctrl", "reward_contact", "reward_survive",
         "x_velocity", "y_velocity")
REWARD_RTOL = 5e-7


def _gym_env(**kwargs):
    import gymnasium as gym
    return gym.make("Ant-v5", **kwargs).unwrapped


def _x64(state, part):
    """float64 qpos [N,15] / qvel [N,14] from the backend's exact state."""
    x = join_f64(np.moveaxis(np.asarray(state.physics["x64"]), 1, -1))
    return x[:, :NQ] if part == "qpos" else x[:, NQ:NQ + NV]


def _reward_close(ours, ref, terms_abs):
    return np.abs(np.asarray(ours, np.float64) - ref) <= REWARD_RTOL * (1.0 + terms_abs)


@pytest.fixture(scope="module")
def visited():
    """Gymnasium-visited transitions with the full MuJoCo state before each step.

    Random actions in [-1, 1]; every 10th state is thrown upward from z=0.95 so
    that some steps end unhealthy (z > 1). float64 arrays [S, ...].
    """
    env = _gym_env()
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    rec = {k: [] for k in ("qpos", "qvel", "warm", "xy", "action", "obs", "reward",
                           "terminated", "next_qpos", "next_qvel", "ncon") + TERMS}
    t = 0
    while len(rec["qpos"]) < 64:
        t += 1
        if len(rec["qpos"]) % 10 == 9 and t % 7 == 0:
            qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
            qpos[2], qvel[2] = 0.95, rng.uniform(1.0, 3.0)
            env.set_state(qpos, qvel)
        action = rng.uniform(-1, 1, NU).astype(np.float32)
        before = dict(qpos=env.data.qpos.copy(), qvel=env.data.qvel.copy(),
                      warm=env.data.qacc_warmstart.copy(), xy=env.data.xpos[1, :2].copy())
        obs, reward, term, _, info = env.step(action)
        if t % 3 == 0 or term:
            for k, v in before.items():
                rec[k].append(v)
            rec["action"].append(action)
            rec["obs"].append(obs)
            rec["reward"].append(reward)
            rec["terminated"].append(term)
            rec["next_qpos"].append(env.data.qpos.copy())
            rec["next_qvel"].append(env.data.qvel.copy())
            rec["ncon"].append(env.data.ncon)
            for k in TERMS:
                rec[k].append(info[k])
        if term or t >= 200:
            env.reset(seed=int(rng.integers(1 << 30)))
            t = 0
    return {k: np.asarray(v) for k, v in rec.items()}


@pytest.fixture(scope="module")
def env64():
    return envs.make("Ant-v5", backend="mujoco", num_envs=64, auto_reset=False)


def test_float64_triples_round_trip_exactly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_000) * 10.0 ** rng.integers(-25, 25, 100_000)
    x = np.concatenate([x, [0.0, -0.0, 1e10, -1e10, np.pi, 1 / 3]])
    parts = split_f64(x)
    assert parts.dtype == np.float32 and parts.shape == x.shape + (3,)
    np.testing.assert_array_equal(join_f64(parts), x)
    np.testing.assert_array_equal(parts[..., 0], x.astype(np.float32))
    assert np.isnan(join_f64(split_f64(np.array([np.nan])))).all()


def test_one_step_matches_gymnasium_bit_for_bit(env64, visited):
    """From gymnasium-visited states (contacts, unhealthy ones included)."""
    assert (visited["ncon"] > 0).sum() >= 10, "the sample must include ground contacts"
    assert 0 < visited["terminated"].sum() < len(visited["terminated"])
    s = env64.reset_to(visited["qpos"], visited["qvel"],
                       qacc_warmstart=visited["warm"], position=visited["xy"])
    s = jax.jit(env64.step)(s, jnp.asarray(visited["action"]))
    np.testing.assert_array_equal(_x64(s, "qpos"), visited["next_qpos"])
    np.testing.assert_array_equal(_x64(s, "qvel"), visited["next_qvel"])
    np.testing.assert_array_equal(np.asarray(s.obs), visited["obs"].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(s.info["terminated"]) > 0, visited["terminated"])
    terms_abs = sum(np.abs(visited[k]) for k in TERMS[:4])
    assert _reward_close(s.reward, visited["reward"], terms_abs).all()
    for k in TERMS:
        assert _reward_close(s.info[k], visited[k], terms_abs).all(), k


def test_one_step_from_set_state_within_float32_rounding(env64):
    """The shared reference (gymnasium set_state + step, reset_to without the
    warm start): the solver then starts from another point and converges to
    its 1e-8 tolerance, measured <= 5e-7 in qvel (half a float32 ulp at |qvel|~8)."""
    from jaxrl_lite.envs import gym_reference

    ref = gym_reference.collect("Ant-v5", 64, seed=1, max_episode_len=150)
    err = gym_reference.one_step_errors(env64, ref, {"qpos": slice(0, 13),
                                                     "qvel": slice(13, 27),
                                                     "cfrc": slice(27, None)})
    assert err["obs_qpos"].max() < 1e-6
    assert err["obs_qvel"].max() < 2e-6
    assert err["obs_cfrc"].max() < 1e-6
    assert err["reward"].max() < 2e-6
    assert err["terminated_mismatch"].sum() == 0


@pytest.fixture(scope="module")
def episode():
    """A 1000-step gymnasium episode (random actions, not stopped at termination)."""
    env = _gym_env()
    obs0, _ = env.reset(seed=3)
    q0, v0 = env.data.qpos.copy(), env.data.qvel.copy()
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (1000, NU)).astype(np.float32)
    out = {k: [] for k in ("obs", "reward", "terminated", "qpos", "x_velocity")}
    for a in actions:
        obs, reward, term, _, info = env.step(a)
        for k, v in (("obs", obs), ("reward", reward), ("terminated", term),
                     ("qpos", env.data.qpos.copy()), ("x_velocity", info["x_velocity"])):
            out[k].append(v)
    out = {k: np.asarray(v) for k, v in out.items()}
    out.update(q0=q0, v0=v0, obs0=obs0, actions=actions)
    return out


def test_whole_episode_matches_gymnasium(episode):
    env = envs.make("Ant-v5", backend="mujoco", num_envs=1, auto_reset=False)
    s0 = env.reset_to(episode["q0"][None], episode["v0"][None])
    np.testing.assert_array_equal(np.asarray(s0.obs[0]), episode["obs0"].astype(np.float32))

    def body(s, a):
        s = env.step(s, a[None])
        return s, (s.obs[0], s.reward[0], s.info["terminated"][0], s.physics["x64"][0])

    _, (obs, reward, term, x64) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(
        s0, jnp.asarray(episode["actions"]))
    qpos = join_f64(np.moveaxis(np.asarray(x64), 1, -1))[:, :NQ]
    np.testing.assert_array_equal(qpos, episode["qpos"])  # the trajectory, in float64
    np.testing.assert_array_equal(np.asarray(obs), episode["obs"].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(term) > 0, episode["terminated"])
    assert np.abs(np.asarray(reward, np.float64) - episode["reward"]).max() < 1e-5
    # The episode must go somewhere for this to mean anything.
    assert np.abs(episode["qpos"][-1, :2] - episode["q0"][:2]).max() > 0.1


_ROLLOUTS = {}


def _rollout(env, key, steps=40):
    """reset(key) then `steps` random-action steps in one jit+scan (compiled
    once per env); -> numpy ((final state, key), (obs, reward, terminated, truncated))."""
    if (id(env), steps) not in _ROLLOUTS:
        def body(carry, _):
            s, k = carry
            k, sub = jax.random.split(k)
            a = jax.random.uniform(sub, (env.num_envs, env.action_size), minval=-1, maxval=1)
            s = env.step(s, a)
            return (s, k), (s.obs, s.reward, s.info["terminated"], s.info["truncated"])

        def run(key):
            s = env.reset(key)
            return jax.lax.scan(body, (s, jax.random.fold_in(key, 1)), None, length=steps)

        _ROLLOUTS[(id(env), steps)] = (env, jax.jit(run))
    return jax.tree_util.tree_map(np.asarray, _ROLLOUTS[(id(env), steps)][1](key))


@pytest.fixture(scope="module")
def small_env():
    # Short episodes and a narrow healthy range: both truncations and
    # terminations happen within a short scan.
    return envs.make("Ant-v5", backend="mujoco", num_envs=6, max_episode_steps=15,
                     healthy_z_range=(0.45, 0.85))


@pytest.fixture(scope="module")
def small_step(small_env):
    return jax.jit(small_env.step)


def test_same_key_same_trajectory_any_thread_count_or_host_step(small_env):
    if shutil.which("cc") or shutil.which("gcc"):
        assert small_env.host_step == "c"  # the fast path is the default
    a = _rollout(small_env, jax.random.PRNGKey(7))
    b = _rollout(small_env, jax.random.PRNGKey(7))
    # The Python thread pool, on one thread, must give the very same trajectory.
    one = envs.make("Ant-v5", backend="mujoco", num_envs=6, max_episode_steps=15,
                    healthy_z_range=(0.45, 0.85), num_threads=1, host_step="python")
    c = _rollout(one, jax.random.PRNGKey(7))
    for x, y, z in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                       jax.tree_util.tree_leaves(c)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    d = _rollout(small_env, jax.random.PRNGKey(8))
    assert not np.array_equal(a[1][0], d[1][0])


def test_stepping_the_same_state_twice_is_pure(small_env, small_step):
    s = small_env.reset(jax.random.PRNGKey(0))
    step = small_step
    a = jnp.full((6, 8), 0.3)
    s1 = step(s, a)
    s2 = step(s, a)
    step(s1, a)  # interleave another call on the same pool
    s3 = step(s, a)
    for x, y, z in zip(*(jax.tree_util.tree_leaves(t) for t in (s1, s2, s3))):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_auto_reset_inside_scan(small_env):
    (s, _), (obs, reward, term, trunc) = _rollout(small_env, jax.random.PRNGKey(3))
    assert obs.shape == (40, 6, 105) and np.isfinite(obs).all() and np.isfinite(reward).all()
    assert term.sum() > 0 and trunc.sum() > 0, "expected terminations and truncations"
    done = np.maximum(term, trunc)
    assert s.info["completed_count"].sum() == done.sum()
    assert (np.asarray(s.info["steps"]) < 15).all()
    cfrc = obs[..., NQ - 2 + NV:]
    # After a reset the observation is a reset observation (zero cfrc_ext) ...
    assert (cfrc[done > 0] == 0).all()
    # ... while running envs land on the ground and feel contact forces.
    assert (np.abs(cfrc[done == 0]).sum(-1) > 0).mean() > 0.1


def test_auto_reset_continues_like_reset_to():
    """An env reset inside step continues exactly like one started by reset_to."""
    env = envs.make("Ant-v5", backend="mujoco", num_envs=4, max_episode_steps=5,
                    terminate_when_unhealthy=False)
    step = jax.jit(env.step)
    s = env.reset(jax.random.PRNGKey(11))
    a = jnp.full((4, 8), -0.2)
    for _ in range(5):
        s = step(s, a)
    assert (np.asarray(s.info["truncated"]) > 0).all()
    q = np.asarray(s.physics["x64"][:, 0, :NQ], np.float64)
    v = np.asarray(s.physics["x64"][:, 0, NQ:NQ + NV], np.float64)
    assert not np.array_equal(np.asarray(s.obs), np.asarray(s.info["final_obs"]))
    fresh = env.reset_to(q, v)
    np.testing.assert_array_equal(np.asarray(fresh.obs), np.asarray(s.obs))
    np.testing.assert_array_equal(np.asarray(step(fresh, a).obs), np.asarray(step(s, a).obs))


def test_auto_reset_runs_gymnasium_reset_for_the_finished_envs_only():
    """InvertedDoublePendulum's first observation reads qfrc_constraint, so a reset
    runs mj_forward on the host; auto-reset asks for the finished envs only. The
    placeholders of the others never reach a State: the rollout equals one that
    resets every row, on the C step and on the Python pool."""
    from jaxrl_lite.envs.native.backend import NativeEnv

    class EveryRow(NativeEnv):
        def _reset_batch(self, rng, needed=None):
            return super()._reset_batch(rng)

    name = "InvertedDoublePendulum-v5"
    masked = envs.make(name, backend="mujoco", num_envs=5)
    every = EveryRow(envs.task_spec(name), num_envs=5)
    pool = envs.make(name, backend="mujoco", num_envs=5, num_threads=1, host_step="python")
    runs = [_rollout(e, jax.random.PRNGKey(4), steps=30) for e in (masked, every, pool)]
    term = runs[0][1][2]
    assert ((term.sum(1) > 0) & (term.sum(1) < 5)).any(), "expected partial resets"
    for x, y, z in zip(*(jax.tree_util.tree_leaves(r) for r in runs)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    # The host side (Reacher: body positions, never all zero): rows not asked for are
    # zeros, the others what a full reset gives.
    reacher = envs.make("Reacher-v5", backend="mujoco", num_envs=3)
    m = reacher.model
    state = np.random.default_rng(0).normal(0, 0.1, (3, m.nq + m.nv)).astype(np.float32)
    full = reacher._host_reset_fields(np.concatenate([state, np.ones((3, 1), np.float32)], 1))
    part = reacher._host_reset_fields(
        np.concatenate([state, np.float32([[1], [0], [1]])], 1))
    assert np.abs(full).sum(1).min() > 0
    np.testing.assert_array_equal(part[[0, 2]], full[[0, 2]])
    assert (part[1] == 0).all()


def test_bad_input_one_line_errors(small_env):
    def one_line(excinfo):
        msg = str(excinfo.value)
        assert "\n" not in msg and msg
        return msg

    s = small_env.reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError) as e:
        small_env.step(s, jnp.zeros((6, 7)))
    assert "(6, 8)" in one_line(e)
    with pytest.raises(TypeError):
        small_env.step(s, jnp.zeros((6, 8), jnp.int32))
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="mujoco", num_envs=2, not_a_kwarg=1)
    assert "not_a_kwarg" in one_line(e)
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="native", num_envs=2)
    assert "mujoco" in one_line(e)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError) as e:
            envs.make("Ant-v5", backend="mujoco", num_envs=2, num_threads=bad)
        assert "num_threads" in one_line(e)
        with pytest.raises(ValueError) as e:
            envs.make("Ant-v5", backend="mujoco", num_envs=bad)
        assert "num_envs" in one_line(e)
    with pytest.raises(ValueError) as e:
        envs.make("Ant-v5", backend="mujoco", num_envs=2, host_step="gpu")
    assert "host_step" in one_line(e)
    with pytest.raises(ValueError) as e:
        small_env.reset_to(np.zeros((6, 14)), np.zeros((6, 14)))
    assert "(6, 15)" in one_line(e)
    with pytest.raises(TypeError):
        small_env.reset_to(np.zeros((6, 15), np.int64), np.zeros((6, 14)))
    assert check_num_threads(None) >= 1 and check_num_threads(3) == 3


def test_out_of_range_and_nan_actions_follow_gymnasium():
    """As the MJX backend's test: MuJoCo clamps ctrl to ctrlrange (physics of a
    huge or infinite action == physics of the clipped one) while the ctrl cost uses
    the raw action (-inf reward); any NaN ctrl makes MuJoCo zero every actuator
    (finite physics == zero action) and the reward NaN, not terminated."""
    from tests.ant_actions import BIG, one_nan, steppers

    gym_step, ours = steppers(envs.make("Ant-v5", backend="mujoco", num_envs=2))
    o_big, r_big, st_big = ours(BIG)
    o_clip, _, _ = ours(np.clip(BIG, -1, 1))
    np.testing.assert_array_equal(o_big, o_clip)
    assert float(st_big.info["reward_ctrl"][0]) == -np.inf
    g_big, g_r = gym_step(BIG)
    assert g_r == r_big == -np.inf
    np.testing.assert_array_equal(o_big, g_big.astype(np.float32))

    o_nan, r_nan, st_nan = ours(one_nan())
    o_zero, _, _ = ours(np.zeros(8, np.float32))
    g_nan, g_rnan = gym_step(one_nan())
    np.testing.assert_array_equal(o_nan, o_zero)
    np.testing.assert_array_equal(o_nan, g_nan.astype(np.float32))
    assert np.isfinite(o_nan).all() and np.isnan(r_nan) and np.isnan(g_rnan)
    assert float(st_nan.info["terminated"][0]) == 0.0


def test_gymnasium_keywords_change_the_same_things():
    """Non-default Ant-v5 keywords, 60 steps against gymnasium with the same ones."""
    kw = dict(frame_skip=3, main_body="aux_2", ctrl_cost_weight=0.1, contact_cost_weight=1e-3,
              healthy_reward=0.5, healthy_z_range=(0.3, 0.9), contact_force_range=(-2.0, 3.0),
              exclude_current_positions_from_observation=False,
              include_cfrc_ext_in_observation=True, forward_reward_weight=2.0)
    g = _gym_env(**kw)
    g.reset(seed=5)
    env = envs.make("Ant-v5", backend="mujoco", num_envs=1, auto_reset=False, **kw)
    assert env.observation_size == g.observation_space.shape[0] == 107
    s = env.reset_to(g.data.qpos[None].copy(), g.data.qvel[None].copy())
    actions = np.random.default_rng(5).uniform(-1, 1, (60, NU)).astype(np.float32)
    ref = [g.step(a) for a in actions]

    def body(s, a):
        s = env.step(s, a[None])
        return s, (s.obs[0], s.reward[0], s.info["x_velocity"][0])

    _, (obs, reward, xvel) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(
        s, jnp.asarray(actions))
    np.testing.assert_array_equal(np.asarray(obs), np.stack([r[0] for r in ref]).astype(np.float32))
    np.testing.assert_allclose(np.asarray(xvel), [r[4]["x_velocity"] for r in ref],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(reward), [r[1] for r in ref], rtol=1e-6, atol=2e-6)

"""The on-device circular replay buffer: wrap-around, sampling range, flags."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite import envs
from jaxrl_lite.blocks import replay


def _batch(start: int, n: int, obs_dim=3, act_dim=2, truncated_every=0):
    """Transitions whose reward is their global index (to track where they land)."""
    ids = np.arange(start, start + n, dtype=np.float32)
    trunc = np.zeros(n, np.float32) if not truncated_every else (
        (ids % truncated_every) == 0).astype(np.float32)
    return replay.Transition(
        obs=jnp.asarray(np.repeat(ids[:, None], obs_dim, 1)),
        action=jnp.asarray(np.repeat(-ids[:, None], act_dim, 1)),
        reward=jnp.asarray(ids),
        next_obs=jnp.asarray(np.repeat(ids[:, None] + 0.5, obs_dim, 1)),
        terminated=jnp.zeros(n, jnp.float32),
        truncated=jnp.asarray(trunc))


def test_init_shapes_and_bad_sizes():
    buf = replay.init(10, 3, 2)
    assert buf.capacity == 10
    assert buf.data.obs.shape == (10, 3) and buf.data.next_obs.shape == (10, 3)
    assert buf.data.action.shape == (10, 2) and buf.data.reward.shape == (10,)
    assert int(buf.size) == 0 and int(buf.position) == 0
    assert replay.nbytes(buf) == 4 * 10 * (3 + 3 + 2 + 3) + 8
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="capacity must be a positive int"):
            replay.init(bad, 3, 2)


def test_insert_wraps_around_and_overwrites_oldest():
    insert = jax.jit(replay.insert)
    buf = replay.init(10, 3, 2)
    buf = insert(buf, _batch(0, 4))
    buf = insert(buf, _batch(4, 4))
    assert int(buf.size) == 8 and int(buf.position) == 8
    buf = insert(buf, _batch(8, 4))          # ids 8, 9 at the end, 10, 11 wrap to 0, 1
    assert int(buf.size) == 10 and int(buf.position) == 2
    np.testing.assert_array_equal(np.asarray(buf.data.reward),
                                  [10, 11, 2, 3, 4, 5, 6, 7, 8, 9])
    # Every field moved together with its transition.
    np.testing.assert_array_equal(np.asarray(buf.data.obs[:, 0]), np.asarray(buf.data.reward))
    np.testing.assert_array_equal(np.asarray(buf.data.next_obs[:, 1]),
                                  np.asarray(buf.data.reward) + 0.5)
    np.testing.assert_array_equal(np.asarray(buf.data.action[:, 1]),
                                  -np.asarray(buf.data.reward))
    buf = insert(buf, _batch(12, 9))         # 9 more: positions 2..9, 0
    assert int(buf.size) == 10 and int(buf.position) == 1
    np.testing.assert_array_equal(np.asarray(buf.data.reward),
                                  [20, 11, 12, 13, 14, 15, 16, 17, 18, 19])


def test_insert_rejects_oversized_or_mismatched_batches():
    buf = replay.init(4, 3, 2)
    with pytest.raises(ValueError, match="cannot insert 5 transitions into a buffer of capacity 4"):
        replay.insert(buf, _batch(0, 5))
    with pytest.raises(ValueError, match="'obs' has per-item shape"):
        replay.insert(buf, _batch(0, 2, obs_dim=4))


def test_sampling_stays_within_filled_entries_and_covers_them():
    sample = jax.jit(replay.sample, static_argnums=2)
    buf = replay.insert(replay.init(100, 3, 2), _batch(0, 7))
    got = np.asarray(sample(buf, jax.random.PRNGKey(0), 4096).reward)
    assert got.min() >= 0 and got.max() <= 6          # only the 7 filled slots
    assert set(got.astype(int)) == set(range(7))       # and all of them
    counts = np.bincount(got.astype(int), minlength=7)
    assert counts.min() > 4096 / 7 * 0.8               # roughly uniform
    # Samples are whole transitions, and different keys give different draws.
    s = sample(buf, jax.random.PRNGKey(1), 64)
    np.testing.assert_array_equal(np.asarray(s.obs[:, 2]), np.asarray(s.reward))
    assert not np.array_equal(np.asarray(s.reward),
                              np.asarray(sample(buf, jax.random.PRNGKey(2), 64).reward))


def test_truncated_transitions_keep_pre_reset_next_obs():
    """Filled from a real auto-resetting env: at a time limit the stored
    next_obs is the final observation (continuing the trajectory), not the
    reset observation, and the transition is truncated, not terminated."""
    env = envs.make("PointMass-v0", num_envs=3, max_episode_steps=4)
    state = env.reset(jax.random.PRNGKey(0))
    buf = replay.init(32, env.observation_size, env.action_size)
    action = jnp.full((3, 2), 0.5, jnp.float32)
    for _ in range(4):
        obs = state.obs
        state = env.step(state, action)
        buf = replay.insert(buf, replay.Transition(
            obs=obs, action=action, reward=state.reward, next_obs=state.info["final_obs"],
            terminated=state.info["terminated"], truncated=state.info["truncated"]))
    d = jax.tree_util.tree_map(np.asarray, buf.data)
    last = slice(9, 12)                     # the 4th env step, which hit the time limit
    np.testing.assert_array_equal(d.truncated[last], 1.0)
    np.testing.assert_array_equal(d.terminated[:12], 0.0)
    np.testing.assert_array_equal(d.truncated[:9], 0.0)
    # next_obs continues the episode (pos moves by dt * vel from obs) ...
    np.testing.assert_allclose(d.next_obs[last, :2], d.obs[last, :2] + 0.1 * d.next_obs[last, 2:],
                               atol=1e-6)
    # ... while the env itself already reset (velocity back to zero).
    np.testing.assert_array_equal(np.asarray(state.obs[:, 2:]), 0.0)
    assert np.all(np.abs(d.next_obs[last, 2:]) > 0)


# --- n-step returns --------------------------------------------------------------------

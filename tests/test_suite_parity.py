"""Every gymnasium MuJoCo v5 task on the native backend reproduces gymnasium's own.

For each task: 300 steps of gymnasium with random actions (a quarter drawn from 1.5x
the action bounds, so the engine's clamping and the raw-action control costs are
exercised), reset after every episode end and at least every 100 steps (new seeds);
the native env starts at each of gymnasium's reset states (``reset_to``) and takes
the same actions. Every observation entry, the reward, every info term gymnasium
reports (reward terms, velocities, positions, tendon lengths), ``terminated`` and
``truncated`` must agree. Tolerance: |ours - gymnasium| <= 1e-6 * max(1, |gymnasium|)
per entry. The physics is the same float64 C code from the same state, so what
remains is that ours is float32: observations are float32 roundings of gymnasium's
(relative 6e-8), rewards float32 sums of such (measured worst over the suite:
4.6e-7 relative, Reacher's fingertip-to-target vector).
"""
from __future__ import annotations

import numpy as np
import pytest

from jaxrl_lite import envs
from jaxrl_lite.envs import gym_reference
from jaxrl_lite.envs.tasks import SUITE

STEPS = 300
TOL = 1e-6


def _worst(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref)))) if ref.size else 0.0


@pytest.mark.parametrize("spec", SUITE, ids=lambda s: s.name)
def test_native_backend_reproduces_gymnasium(spec):
    ref = gym_reference.episodes(spec.name, STEPS, seed=0)
    env = envs.make(spec.name, backend="mujoco", num_envs=1, auto_reset=False)
    ours = gym_reference.replay_episodes(env, ref)
    assert len(ref["resets"]) >= 3  # several episodes
    assert (np.abs(ref["action"]) > env.action_high).any()  # out-of-bounds actions too
    np.testing.assert_array_equal(ours["terminated"], ref["terminated"])
    np.testing.assert_array_equal(ours["truncated"], ref["truncated"])
    assert set(ours["info"]) == set(ref["info"])  # every info term gymnasium reports
    worst = {"obs": _worst(ours["obs"], ref["obs"]),
             "reward": _worst(ours["reward"], ref["reward"]),
             **{k: _worst(ours["info"][k], ref["info"][k]) for k in ref["info"]}}
    print(f"\n{spec.name}: worst relative error " +
          " ".join(f"{k}={v:.1e}" for k, v in worst.items()))
    assert max(worst.values()) <= TOL, worst


@pytest.mark.parametrize("spec", SUITE, ids=lambda s: s.name)
def test_nan_action_matches_gymnasium(spec):
    """An action with a NaN entry: MuJoCo applies zero force on every actuator and
    warns; gymnasium's reward is NaN wherever its cost reads the action (or
    ``data.ctrl``, which keeps the NaN). Ours: the same finite next state, and NaN
    in exactly the same reward and info terms."""
    import gymnasium as gym
    import jax.numpy as jnp

    g = gym.make(spec.name)
    g.reset(seed=1)
    data = g.unwrapped.data
    env = envs.make(spec.name, backend="mujoco", num_envs=1, auto_reset=False)
    state = env.reset_to(data.qpos[None].copy(), data.qvel[None].copy())
    action = np.full(env.action_size, 0.1, np.float32)
    action[0] = np.nan
    obs, reward, _, _, info = g.step(action.astype(np.float64))
    state = env.step(state, jnp.asarray(action[None]))
    assert np.all(np.isfinite(obs))
    assert _worst(np.asarray(state.obs[0]), obs) <= TOL
    assert np.isnan(float(state.reward[0])) == np.isnan(reward)
    for k, v in info.items():
        if k in state.info:
            ours = np.asarray(state.info[k][0], np.float64)
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(np.asarray(v, np.float64)), k)

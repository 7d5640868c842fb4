"""Parity of the MJX backend with gymnasium's own tasks (Ant-v5 in depth).

Method: gymnasium (native MuJoCo, float64) runs with uniform random actions;
its visited states (with ground contacts, plus some lifted and thrown up so
the step ends unhealthy) become reference transitions. MJX is put in exactly
the same state (``reset_to``), given the same action, and every output is
compared: observation blocks, each reward term, terminated, truncated.

Why the tolerances are percentiles (measured: see the report in
experiments/bench_env.py --solver_table and the numbers in comments below).
MJX runs in float32 and, at plane-capsule contacts, builds a different
friction-pyramid tangent frame than MuJoCo C (WORKSPACE.md, "Physics facts"), so with
gymnasium's pyramidal cone roughly one contact state in ten ends the step
with a visibly different velocity. Most states agree to float32 precision.
The same pipeline with ``cone="elliptic"`` in both engines removes that
difference, and there the tolerances are tight: that test pins the formulas
(observation layout, xpos-based forward reward, cfrc_ext, health).

The compiled step is shared by all tests (module-scoped env, num_envs=2 so
the vmapped batch path is exercised) and by the persistent JAX cache.
"""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxrl_lite import envs
from jaxrl_lite.envs import gym_reference
from jaxrl_lite.envs.model import xml_path
from jaxrl_lite.envs.tasks import ant

N = 2
NUM_STATES = 300


def pct(x, q):
    return float(np.percentile(x, q))


@pytest.fixture(scope="module")
def env():
    return envs.make("Ant-v5", backend="mjx", num_envs=N, auto_reset=False)


@pytest.fixture(scope="module")
def env_auto():
    # Same config -> same compiled functions as `env`.
    return envs.make("Ant-v5", backend="mjx", num_envs=N, auto_reset=True)


@pytest.fixture(scope="module")
def reference():
    return gym_reference.collect("Ant-v5", NUM_STATES, seed=0, perturb=gym_reference.ant_lift)


@pytest.fixture(scope="module")
def errors(env, reference):
    errs = gym_reference.one_step_errors(env, reference, gym_reference.ANT_OBS_GROUPS)
    print("\nMJX vs gymnasium one-step |error| over %d states: p50 p90 p99 max" % NUM_STATES)
    for k, v in errs.items():
        print(f"  {k:20s} {pct(v, 50):.3g} {pct(v, 90):.3g} {pct(v, 99):.3g} {v.max():.3g}")
    return errs


def test_reference_covers_contacts_and_unhealthy(reference):
    # The comparison is only meaningful if gymnasium's states include ground
    # contacts (non-zero contact cost) and steps that end unhealthy. Under
    # random actions the Ant bounces (gear 150): about 30% of the visited
    # states end their step with a foot on the ground.
    assert (reference["reward_contact"] < 0).mean() > 0.2
    assert 10 <= reference["terminated"].sum() < NUM_STATES // 2


def test_one_step_parity_distribution(errors):
    # Measured on this machine (256-400 states, 5 seeds; MJX default solver
    # 10/10, bit-identical to the model's 100/50 on these states):
    #   p50 / p90 / max
    #   obs qpos  2e-5 / 3e-3 / 0.02   obs qvel 1e-5..7e-5 / 0.26..0.41 / 2.4
    #   reward    2e-6 / 0.02..0.05 / 0.48   contact cost 0 / 1e-4 / 0.006
    # Tolerances: the median at float32 level (x5 margin) - most states
    # agree; p90 about 1.5-2x the worst seed (contact-frame divergence);
    # max only bounds blow-ups.
    assert pct(errors["obs_qpos"], 50) < 1e-4
    assert pct(errors["obs_qpos"], 90) < 1e-2
    assert errors["obs_qpos"].max() < 0.1
    assert pct(errors["obs_qvel"], 50) < 5e-4
    assert pct(errors["obs_qvel"], 90) < 0.6
    assert errors["obs_qvel"].max() < 5.0
    assert pct(errors["reward"], 50) < 5e-5
    assert pct(errors["reward"], 90) < 0.08
    assert errors["reward"].max() < 1.0
    for k in ("reward_forward", "x_velocity", "y_velocity"):
        assert pct(errors[k], 50) < 5e-5, k
        assert pct(errors[k], 90) < 0.08, k
    # Contact cost: 5e-4 * sum of 78 clipped squares; equal for most states.
    assert pct(errors["reward_contact"], 50) < 1e-6
    assert errors["reward_contact"].max() < 0.02
    # Clipped cfrc_ext entries: at the clip bound in both engines for most
    # states; in diverging contact states an entry can flip sign (error 2).
    assert pct(errors["obs_cfrc"], 50) < 1e-3
    assert (errors["obs_cfrc"] > 0.5).mean() < 0.15


def test_terms_that_must_match_exactly(errors):
    # ctrl cost is a function of the action alone (float32 vs float64 sum).
    assert errors["reward_ctrl"].max() < 1e-6
    # Health: no state near enough to a z bound for float32 to flip it.
    assert errors["reward_survive"].max() == 0.0
    assert errors["terminated_mismatch"].sum() == 0


def _elliptic_xml(directory, integrator: str) -> str:
    """gymnasium's ant.xml with the elliptic friction cone and ``integrator``."""
    src = open(xml_path("ant.xml", "Ant-v5")).read()
    tag = '<option integrator="RK4" timestep="0.01"/>'
    assert tag in src, "gymnasium's ant.xml changed; update this test"
    path = directory / f"ant_elliptic_{integrator}.xml"
    path.write_text(src.replace(tag, f'<option integrator="{integrator}" timestep="0.01" '
                                     f'cone="elliptic"/>'))
    return str(path)


# Euler in the default run: the elliptic cone is what this test is about, and one Euler
# step compiles in half the time of gymnasium's RK4 (12 vs 23 s for MJX on a CPU; the RK4
# test alone took 35 s, up to 77 s beside the other test worker). The RK4 model: -m mjx_full.
@pytest.mark.parametrize("integrator", ["Euler", pytest.param("RK4", marks=pytest.mark.mjx_full)])
def test_one_step_parity_elliptic_cone_is_tight(tmp_path, integrator):
    # With the elliptic friction cone both engines build the same contact
    # model, so what remains is float32 vs float64 in a 100-iteration Newton
    # solve. Measured (RK4, 300 states, seed 3): p99 |Δqvel| 8e-4, |Δreward| 2e-4,
    # |Δcfrc| 5e-3 (unclipped entries); single outliers up to 0.1 / 0.02.
    elliptic_xml = _elliptic_xml(tmp_path, integrator)
    env = envs.make("Ant-v5", backend="mjx", num_envs=N, auto_reset=False,
                    xml_file=elliptic_xml)
    ref = gym_reference.collect("Ant-v5", 100, seed=3, perturb=gym_reference.ant_lift, xml_file=elliptic_xml)
    e = gym_reference.one_step_errors(env, ref, gym_reference.ANT_OBS_GROUPS)
    assert pct(e["obs_qpos"], 99) < 5e-4
    assert pct(e["obs_qvel"], 95) < 2e-3
    assert pct(e["obs_cfrc"], 95) < 1e-2
    assert pct(e["reward"], 95) < 5e-4
    assert pct(e["reward_contact"], 99) < 1e-4
    assert e["reward"].max() < 0.05
    assert e["obs_qvel"].max() < 0.3
    assert e["terminated_mismatch"].sum() == 0


def test_reset_noise_matches_gymnasium_distribution(env):
    import gymnasium as gym

    seeds = 256
    ours_q, ours_v = [], []
    for s in range(seeds):
        st = env.reset(jax.random.PRNGKey(s))
        ours_q.append(np.asarray(st.physics["qpos"]))
        ours_v.append(np.asarray(st.physics["qvel"]))
        if s == 0:
            # First observation: qpos[2:], qvel, and zero cfrc_ext (gymnasium's
            # reset runs only mj_forward).
            obs = np.asarray(st.obs)
            np.testing.assert_array_equal(obs[:, :13], ours_q[0][:, 2:])
            np.testing.assert_array_equal(obs[:, 13:27], ours_v[0])
            assert np.all(obs[:, 27:] == 0.0) and obs.shape == (N, 105)
            assert float(st.info["x_position"][0]) == ours_q[0][0, 0]
    ours_q, ours_v = np.concatenate(ours_q), np.concatenate(ours_v)
    g = gym.make("Ant-v5").unwrapped
    gq, gv = [], []
    for s in range(seeds * N):
        g.reset(seed=s)
        gq.append(g.data.qpos.copy())
        gv.append(g.data.qvel.copy())
    gq, gv = np.array(gq), np.array(gv)
    init_q = g.init_qpos
    nq, nv = ours_q - init_q, ours_v
    # Support: uniform noise in [-0.1, 0.1] on all 15 qpos (quaternion too).
    assert np.abs(nq).max() <= 0.1 + 1e-6 and np.abs(nq).max() > 0.099
    assert abs(nq[:, 3:7].std() - 0.1 / np.sqrt(3)) < 0.006  # quaternion perturbed too
    assert np.abs(gq - init_q).max() <= 0.1

    def ks(a, b):
        x = np.sort(np.concatenate([a, b]))
        fa = np.searchsorted(np.sort(a), x, side="right") / len(a)
        fb = np.searchsorted(np.sort(b), x, side="right") / len(b)
        return np.abs(fa - fb).max()

    # Two-sample Kolmogorov-Smirnov per pooled block, critical value at
    # alpha = 1e-3: 1.95 * sqrt((n + m) / (n m)).
    for ours, theirs in ((nq.ravel(), (gq - init_q).ravel()), (nv.ravel(), gv.ravel())):
        crit = 1.95 * np.sqrt((len(ours) + len(theirs)) / (len(ours) * len(theirs)))
        assert ks(ours, theirs) < crit
    # Moments against the exact distributions: U(-0.1, 0.1) std 0.0577, N(0, 0.1).
    assert abs(nq.std() - 0.1 / np.sqrt(3)) < 0.002 and abs(nq.mean()) < 0.002
    assert abs(nv.std() - 0.1) < 0.003 and abs(nv.mean()) < 0.003
    # Same key -> same state; different envs in a batch -> different states.
    again = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(again.physics["qpos"]), ours_q[:N])
    assert not np.allclose(ours_q[0], ours_q[1])


def test_out_of_range_and_nan_actions_follow_mujoco(env):
    from tests.ant_actions import BIG, one_nan, steppers

    gym_step, mjx_step = steppers(env)
    clipped = np.clip(BIG, -1, 1)
    o_big, r_big, st_big = mjx_step(BIG)
    o_clip, r_clip, _ = mjx_step(clipped)
    # Physics sees the clamped control (MuJoCo clamps to ctrlrange) ...
    np.testing.assert_allclose(o_big, o_clip, atol=1e-6)
    # ... while ctrl cost uses the raw action, as gymnasium does.
    assert float(st_big.info["reward_ctrl"][0]) == -np.inf
    g_obs, g_r = gym_step(BIG)
    assert g_r == r_big == -np.inf
    g_clip, _ = gym_step(clipped)
    np.testing.assert_allclose(g_obs, g_clip, atol=1e-9)  # MuJoCo C clamps too

    o_nan, r_nan, st_nan = mjx_step(one_nan())
    o_zero, _, _ = mjx_step(np.zeros(8, np.float32))
    # Native MuJoCo 4.0: any NaN ctrl -> warning, every actuator gets 0 ...
    g_nan, g_rnan = gym_step(one_nan())
    g_zero, _ = gym_step(np.zeros(8))
    np.testing.assert_array_equal(g_nan, g_zero)
    # ... and MJX does the same: finite physics equal to the zero action,
    # reward NaN (raw action in ctrl cost), not terminated.
    np.testing.assert_array_equal(o_nan, o_zero)
    assert np.isfinite(o_nan).all() and np.isnan(r_nan) and np.isnan(g_rnan)
    assert float(st_nan.info["terminated"][0]) == 0.0


def test_episode_truncates_at_1000_steps(env, env_auto):
    # Standing start (gymnasium's init_qpos, zero velocity) with zero action:
    # the Ant settles on its legs and stays healthy for the whole episode.
    qpos0 = np.tile(np.asarray(env.model.qpos0), (N, 1))
    state = env.reset_to(qpos0, np.zeros((N, 14)))
    action = jnp.zeros((N, 8), jnp.float32)
    dones, truncs, terms = [], [], []
    for t in range(env.max_episode_steps):
        if t == env.max_episode_steps - 1:
            before_last = state
        state = env.step(state, action)
        dones.append(state.done)
        truncs.append(state.info["truncated"])
        terms.append(state.info["terminated"])
    dones, truncs, terms = (np.asarray(jnp.stack(x)) for x in (dones, truncs, terms))
    assert env.max_episode_steps == 1000
    assert terms.max() == 0.0
    assert truncs[:-1].max() == 0.0 and dones[:-1].max() == 0.0
    assert np.all(truncs[-1] == 1.0) and np.all(dones[-1] == 1.0)
    np.testing.assert_array_equal(np.asarray(state.info["steps"]), [1000] * N)
    # 1000 steps from a reset_to state compiled the physics step once
    # (data.time is strongly typed, the State keeps its types).
    assert env._fns.step._cache_size() == 1
    # auto_reset=False never resets: one more step keeps going (steps 1001).
    after = env.step(state, action)
    np.testing.assert_array_equal(np.asarray(after.info["steps"]), [1001] * N)
    # auto_reset=True from the same step 999 state: the step reports the
    # truncation, keeps the final observation, and starts a fresh episode.
    auto = env_auto.step(before_last, action)
    np.testing.assert_array_equal(np.asarray(auto.done), [1.0] * N)
    np.testing.assert_array_equal(np.asarray(auto.info["final_obs"]), np.asarray(state.obs))
    np.testing.assert_array_equal(np.asarray(auto.info["steps"]), [0] * N)
    np.testing.assert_array_equal(np.asarray(auto.info["completed_length"]), [1000] * N)
    assert np.all(np.asarray(auto.obs)[:, 27:] == 0.0)  # reset obs: no cfrc_ext
    assert not np.allclose(np.asarray(auto.obs), np.asarray(state.obs))


def test_unhealthy_step_terminates_and_auto_resets(env_auto):
    qpos = np.tile(np.asarray(env_auto.model.qpos0), (N, 1))
    qpos[0, 2] = 1.3  # above healthy_z_range: unhealthy after the step
    state = env_auto.reset_to(qpos, np.zeros((N, 14)))
    state = env_auto.step(state, jnp.zeros((N, 8), jnp.float32))
    np.testing.assert_array_equal(np.asarray(state.info["terminated"]), [1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(state.info["truncated"]), [0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(state.info["reward_survive"]), [0.0, 1.0])
    final = np.asarray(state.info["final_obs"])
    assert final[0, 0] > 1.0  # z of the terminal observation
    assert 0.6 < np.asarray(state.obs)[0, 0] < 0.9  # fresh reset: z = 0.75 +- 0.1
    np.testing.assert_array_equal(np.asarray(state.obs)[1], final[1])
    # State pytree keeps one structure, so env.step can be a lax.scan carry.
    fresh = env_auto.reset(jax.random.PRNGKey(1))
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(state)):
        # Same shape, dtype and weak type: a jitted step compiles once.
        assert jax.typeof(a) == jax.typeof(b), (jax.typeof(a), jax.typeof(b))


def test_kwargs_change_semantics(env):
    # Keyword arguments reach the spec: a config without cfrc_ext and with
    # x/y kept has 15 + 14 = 29 observations; weights scale the terms.
    cfg = ant.Config(exclude_current_positions_from_observation=False,
                     include_cfrc_ext_in_observation=False, ctrl_cost_weight=2.0)
    qpos = np.arange(15, dtype=np.float32)
    qvel = np.arange(14, dtype=np.float32)
    obs = ant.observation(qpos, qvel, np.ones((14, 6), np.float32), cfg)
    np.testing.assert_array_equal(obs, np.concatenate([qpos, qvel]))
    assert env.observation_size == 105
    assert envs.make("Ant-v5", backend="mujoco", exclude_current_positions_from_observation=False,
                     include_cfrc_ext_in_observation=False).observation_size == 29
    _, terms = ant.step_reward(np.array([0.1, 0.0]), 0.05, np.ones(8), np.zeros((14, 6)),
                               True, cfg)
    assert float(terms["reward_ctrl"]) == -16.0 and abs(float(terms["x_velocity"]) - 2.0) < 1e-6

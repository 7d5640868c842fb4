"""PPO: GAE, clipped loss, truncation bootstrapping, tanh-Gaussian density, learning."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite import envs
from jaxrl_lite.run import evaluation
from jaxrl_lite.blocks import policy, return_norm
from jaxrl_lite.agents import ppo
from jaxrl_lite.agents.ppo import losses, networks
from jaxrl_lite.agents.ppo import train as ppo_train


# --------------------------------------------------------------------------- GAE
def test_gae_matches_hand_computed_example():
    # Three envs (columns), three steps, gamma=0.9, lambda=0.8:
    #   env 0: no episode end;  env 1: terminated at t=1;  env 2: truncated at t=1.
    rewards = jnp.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    values = jnp.array([[0.5] * 3, [1.0] * 3, [1.5] * 3])
    next_values = jnp.array([[1.0] * 3, [1.5] * 3, [2.0] * 3])
    terminated = jnp.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]])
    done = jnp.array([[0.0, 0, 0], [0, 1, 1], [0, 0, 0]])
    adv, targets = losses.gae(rewards, values, next_values, terminated, done, 0.9, 0.8)
    # By hand: deltas d0 = 1 + .9*1.0 - .5 = 1.4, d1 = 2 + .9*1.5 - 1 = 2.35
    # (terminated: 2 - 1 = 1.0), d2 = 3 + .9*2 - 1.5 = 3.3; A_t = d_t + .72 A_{t+1}.
    expected = np.array([[4.80272, 2.12, 3.092],
                         [4.726, 1.0, 2.35],
                         [3.3, 3.3, 3.3]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(targets, expected + np.asarray(values), rtol=1e-6)


def test_gae_lambda_one_is_discounted_return_minus_value():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(6, 1)).astype(np.float32)
    v = rng.normal(size=(6, 1)).astype(np.float32)
    nv = np.concatenate([v[1:], [[0.7]]]).astype(np.float32)
    z = np.zeros_like(r)
    adv, _ = losses.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), z, z, 0.95, 1.0)
    ret = 0.7
    expected = []
    for t in reversed(range(6)):
        ret = r[t, 0] + 0.95 * ret
        expected.append(ret - v[t, 0])
    np.testing.assert_allclose(adv[:, 0], expected[::-1], rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------- clipped surrogate
def test_clipped_surrogate_example_and_gradients():
    ratio = jnp.array([1.5, 0.5, 1.5, 0.5, 1.1])
    adv = jnp.array([1.0, 1.0, -1.0, -1.0, 2.0])
    old = jnp.zeros(5)
    # min(r A, clip(r, .8, 1.2) A) = [1.2, 0.5, -1.5, -0.8, 2.2] -> mean 0.32
    loss, clip_frac, kl = losses.clipped_surrogate(jnp.log(ratio), old, adv, 0.2)
    assert float(loss) == pytest.approx(-0.32, abs=1e-6)
    assert float(clip_frac) == pytest.approx(0.8)
    assert float(kl) > 0
    grad = jax.grad(lambda lp: losses.clipped_surrogate(lp, old, adv, 0.2)[0])(jnp.log(ratio))
    # d/dlogp of -mean(r A) = -r A / 5 where unclipped, 0 where the clip is active.
    np.testing.assert_allclose(grad, [0.0, -0.1, 0.3, 0.0, -0.44], atol=1e-6)


def test_value_loss_clipping():
    v, old, tgt = jnp.array([2.0]), jnp.array([0.0]), jnp.array([3.0])
    assert float(losses.value_loss(v, old, tgt, None)) == pytest.approx(0.5)
    # clipped prediction 0.5 -> error 2.5^2; max(1, 6.25) / 2
    assert float(losses.value_loss(v, old, tgt, 0.5)) == pytest.approx(3.125)


# ------------------------------------------------------------ tanh-Gaussian density
def _norm_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_squashed_log_prob_matches_numerical_density():
    loc = jnp.array([0.3, -1.2])
    log_std = jnp.array([-0.4, 0.2])
    std = np.exp(np.asarray(log_std, np.float64))
    for u in ([0.1, -0.5], [1.7, 0.8], [-2.5, -3.0]):
        u = jnp.asarray(u, jnp.float32)
        got = float(networks.squashed_log_prob(u, loc, log_std))
        # Density of a = tanh(u), per dim: d/da P(tanh(U) <= a) by central differences.
        expected = 0.0
        for d in range(2):
            a = math.tanh(float(u[d]))
            h = 1e-6 * (1 - a * a)
            cdf = lambda x: _norm_cdf((math.atanh(x) - float(loc[d])) / std[d])  # noqa: E731
            expected += math.log((cdf(a + h) - cdf(a - h)) / (2 * h))
        assert got == pytest.approx(expected, rel=2e-3, abs=2e-3)


def test_squashed_density_integrates_to_one():
    a = np.linspace(-1 + 1e-6, 1 - 1e-6, 200001)
    u = jnp.asarray(np.arctanh(a)[:, None], jnp.float32)
    logp = networks.squashed_log_prob(u, jnp.array([0.4]), jnp.array([-0.3]))
    assert np.trapezoid(np.exp(np.asarray(logp, np.float64)), a) == pytest.approx(1.0, abs=1e-3)


def test_tanh_log_det_is_stable_and_correct():
    u = jnp.array([[-30.0, -2.0, 0.0, 0.5, 30.0]])
    got = networks.tanh_log_det_jacobian(u.T)
    assert np.all(np.isfinite(got))
    naive = np.log(1 - np.tanh(np.array([-2.0, 0.0, 0.5])) ** 2)
    np.testing.assert_allclose(got[1:4], naive, rtol=1e-5)


# -------------------------------------------------- small config, shared compile
SMALL = ppo.Config(num_envs=32, total_steps=80_000, unroll_length=16, num_minibatches=4,
                   num_epochs=4, learning_rate=1e-3, discount=0.97, reward_scale=1.0,
                   entropy_coef=0.0, policy_hidden=(32, 32), value_hidden=(64, 64))


@pytest.fixture(scope="module")
def small():
    env = envs.make("PointMass-v0", num_envs=SMALL.num_envs)
    return env, ppo.make_train_iteration(SMALL, env)


def test_truncation_bootstraps_from_final_obs():
    cfg = ppo.Config(num_envs=2, unroll_length=4, num_minibatches=1, policy_hidden=(8,),
                     value_hidden=(8,), discount=0.9, gae_lambda=0.0, reward_scale=1.0)
    env = envs.make("PointMass-v0", num_envs=2, max_episode_steps=3)
    ts = jax.jit(lambda k: ppo.init(cfg, env, k))(jax.random.PRNGKey(1))
    spec, _, _ = ppo.policy_parts(cfg, ts)
    _, data = jax.jit(lambda ts, k: ppo_train.rollout(
        cfg, env, spec, ts.params, ts.norm, ts.env_state, k))(ts, jax.random.PRNGKey(2))
    assert np.all(data["done"][2] == 1) and np.all(data["terminated"][2] == 0)
    # The env auto-reset: the next step's obs is a fresh start, not final_obs.
    assert not np.allclose(data["final_obs"][2], data["obs"][3])
    values, adv, _ = jax.jit(lambda ts, d: ppo_train.advantages(
        cfg, spec, ts.params, ts.norm, d))(ts, data)
    v = lambda o: networks.value(spec, cfg.value_hidden, ts.params, ts.norm, o)  # noqa: E731
    want = data["reward"][2] + 0.9 * v(data["final_obs"][2]) - values[2]
    np.testing.assert_allclose(adv[2], want, rtol=1e-5, atol=1e-6)
    as_death = data["reward"][2] - values[2]
    as_reset = data["reward"][2] + 0.9 * v(data["obs"][3]) - values[2]
    assert not np.allclose(adv[2], as_death) and not np.allclose(adv[2], as_reset)


# --------------------------------------------------------- reward normalisation
def test_return_norm_follows_the_sb3_recurrence():
    """Two rollouts: per-env returns restart after done; var = population var of all."""
    rng = np.random.default_rng(3)
    rewards = rng.normal(1.0, 2.0, size=(2, 7, 3)).astype(np.float32)
    done = (rng.random((2, 7, 3)) < 0.2).astype(np.float32)
    state = return_norm.init(3)
    g, seen = np.zeros(3), []
    for k in range(2):
        state = jax.jit(return_norm.update, static_argnums=3)(
            state, jnp.asarray(rewards[k]), jnp.asarray(done[k]), 0.9)
        for t in range(7):
            g = 0.9 * g + rewards[k, t]
            seen.append(g.copy())
            g = g * (1 - done[k, t])
    np.testing.assert_allclose(state.returns, g, rtol=1e-5, atol=1e-5)
    assert float(state.moments.count) == 42
    np.testing.assert_allclose(state.moments.var[0], np.var(seen), rtol=1e-4)
    r = jnp.array([0.5, -3.0, 1e6])
    std = np.sqrt(np.var(seen) + 1e-8)
    np.testing.assert_allclose(return_norm.normalize(state, r),
                               [0.5 / std, -3.0 / std, return_norm.CLIP], rtol=1e-4)


def test_normalize_rewards_scales_the_advantages_and_stays_opt_in():
    kw = dict(num_envs=2, unroll_length=4, num_minibatches=1, policy_hidden=(8,),
              value_hidden=(8,), discount=0.9, gae_lambda=0.0, reward_scale=0.5)
    env = envs.make("PointMass-v0", num_envs=2, max_episode_steps=3)
    plain = jax.jit(lambda k: ppo.init(ppo.Config(**kw), env, k))(jax.random.PRNGKey(1))
    assert plain.ret_norm is None  # runs without the flag keep their checkpoint layout
    cfg = ppo.Config(normalize_rewards=True, **kw)
    ts = jax.jit(lambda k: ppo.init(cfg, env, k))(jax.random.PRNGKey(1))
    step = ppo.make_train_iteration(cfg, env)
    ts, m = step(ts)
    ts, m = step(ts)
    assert float(ts.ret_norm.moments.count) == 2 * 4 * 2
    assert float(m["return_std"]) == pytest.approx(float(jnp.sqrt(ts.ret_norm.moments.var[0])))
    spec, _, _ = ppo.policy_parts(cfg, ts)
    _, data = ppo_train.rollout(cfg, env, spec, ts.params, ts.norm, ts.env_state,
                                jax.random.PRNGKey(2))
    _, adv, _ = ppo_train.advantages(cfg, spec, ts.params, ts.norm, data, ts.ret_norm)
    scaled = dict(data, reward=return_norm.normalize(ts.ret_norm, data["reward"]))
    _, want, _ = ppo_train.advantages(cfg, spec, ts.params, ts.norm, scaled)
    np.testing.assert_allclose(adv, want, rtol=1e-6)
    _, raw, _ = ppo_train.advantages(cfg, spec, ts.params, ts.norm, data)
    assert not np.allclose(adv, raw)


def test_normalize_rewards_state_survives_a_checkpoint_exactly(tmp_path):
    """Save after one iteration, restore into a fresh template: the next iteration
    (returns, their moments, params) is the same as without the round trip."""
    from jaxrl_lite.run import checkpoint
    cfg = ppo.Config(num_envs=2, unroll_length=4, num_minibatches=1, policy_hidden=(8,),
                     value_hidden=(8,), normalize_rewards=True)
    env = envs.make("PointMass-v0", num_envs=2, max_episode_steps=3)
    fresh = ppo.init(cfg, env, jax.random.PRNGKey(4))
    step = ppo.make_train_iteration(cfg, env)
    ts1, _ = step(fresh)
    spec, actor, norm = ppo.policy_parts(cfg, ts1)
    ck = checkpoint.Checkpointer(str(tmp_path / "run"))
    ck.save(1, ts1, spec, actor, norm, algo="ppo")
    back, _ = ck.restore(fresh)
    ck.close()
    want, got = step(ts1)[0], step(back)[0]
    assert float(back.ret_norm.moments.count) == 8
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
        np.testing.assert_array_equal(a, b)


def test_config_validation_one_line_errors():
    with pytest.raises(ValueError, match="does not divide") as e:
        ppo.Config(num_envs=5, unroll_length=3, num_minibatches=2).validate()
    assert "\n" not in str(e.value)
    for bad in (dict(num_envs=0), dict(learning_rate=-1.0), dict(discount=1.5),
                dict(lr_schedule="cosine"), dict(policy_hidden=())):
        with pytest.raises(ValueError):
            ppo.Config(**bad).validate()


def test_policy_parts_is_the_deterministic_tanh_of_loc(small):
    env, _ = small
    ts = jax.jit(lambda k: ppo.init(SMALL, env, k))(jax.random.PRNGKey(0))
    spec, actor, norm = ppo.policy_parts(SMALL, ts)
    assert (spec.obs_dim, spec.act_dim, spec.hidden_sizes) == (4, 2, (32, 32))
    obs = ts.env_state.obs
    np.testing.assert_allclose(
        policy.deterministic_action(spec, actor, norm, obs),
        jnp.tanh(networks.policy_loc(spec, ts.params, norm, obs)), rtol=1e-6)


@pytest.mark.slow
def test_ppo_learns_point_mass_and_beats_random(small):
    env, iteration = small
    ts = jax.jit(lambda k: ppo.init(SMALL, env, k))(jax.random.PRNGKey(0))
    for _ in range(ppo.num_iterations(SMALL)):
        ts, m = iteration(ts)
    assert np.isfinite(float(m["loss/total"]))
    spec, actor, norm = ppo.policy_parts(SMALL, ts)
    eval_env = envs.make("PointMass-v0", num_envs=32, auto_reset=False)
    trained = float(evaluation.make_evaluator(eval_env, spec)(
        actor, norm, jax.random.PRNGKey(7))["eval/return_mean"])

    def random_return(key):
        def step(carry, k):
            state, ret = carry
            a = jax.random.uniform(k, (32, 2), minval=-1.0, maxval=1.0)
            state = eval_env.step(state, a)
            return (state, ret + state.reward), None
        (_, ret), _ = jax.lax.scan(step, (eval_env.reset(key), jnp.zeros(32)),
                                   jax.random.split(key, eval_env.max_episode_steps))
        return jnp.mean(ret)

    rand = float(jax.jit(random_return)(jax.random.PRNGKey(7)))
    # Random play scores about -55 per episode; a good controller about -12.
    print(f"PointMass PPO: trained {trained:.1f}, random {rand:.1f}")
    assert trained > rand + 0.5 * abs(rand), (trained, rand)

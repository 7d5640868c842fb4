"""The TD3/DDPG actor-critic's pieces: targets, losses, the CrossQ critic's batch
renormalisation, updates, the deployed policy, config errors. Training end to end:
``test_actor_critic_training.py``."""
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite import agents, envs
from jaxrl_lite.agents.actor_critic import Config, crossq, losses, networks, state, td3
from jaxrl_lite.blocks import policy, replay

SMALL = dict(num_envs=4, total_steps=2000, steps_per_iteration=5, buffer_size=256,
             batch_size=32, hidden=(16, 16), warmup_steps=0, updates_per_step=2)


def _critic(cfg, obs_dim=4):
    return state.critic_variant(cfg).module(cfg, obs_dim)


def leaves_close(a, b):
    return all(np.allclose(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                 jax.tree_util.tree_leaves(b)))


# --- the TD3 target against hand-computed numbers -----------------------------------

def test_bellman_target_hand_computed():
    reward = jnp.array([1.0, 2.0, -1.0])
    terminated = jnp.array([0.0, 1.0, 0.0])
    next_q = jnp.array([[3.0, 5.0, -2.0],      # target critic 1
                        [4.0, 1.0, -3.0]])     # target critic 2
    # Clipped double-Q: min = [3, 1, -3]; the terminated transition does not bootstrap.
    y = losses.bellman_target(reward, terminated, next_q, 0.9, clipped_double_q=True)
    np.testing.assert_allclose(np.asarray(y), [1 + 0.9 * 3, 2.0, -1 + 0.9 * -3], rtol=1e-6)
    # DDPG: the first critic only.
    y = losses.bellman_target(reward, terminated, next_q, 0.9, clipped_double_q=False)
    np.testing.assert_allclose(np.asarray(y), [1 + 0.9 * 3, 2.0, -1 + 0.9 * -2], rtol=1e-6)


def test_target_policy_smoothing_hand_computed():
    action = jnp.array([[0.9, -0.2, 0.0]])
    noise = jnp.array([[1.0, -5.0, 0.5]])
    # scale 0.2 -> [0.2, -1.0, 0.1]; clip 0.5 -> [0.2, -0.5, 0.1]; + action, clip to [-1, 1].
    out = losses.smooth_action(action, noise, noise_scale=0.2, noise_clip=0.5)
    np.testing.assert_allclose(np.asarray(out), [[1.0, -0.7, 0.1]], rtol=1e-6)


@pytest.fixture(scope="module")
def filled():
    """A small config, its initial train state and a buffer filled by real env steps."""
    cfg = Config(**SMALL)
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs, max_episode_steps=7)
    ts = state.init(cfg, env, jax.random.PRNGKey(0))
    collect = jax.jit(td3.make_collect_step(cfg, env, state.policy_spec(cfg, 4, 2)))
    for i in range(20):
        ts = collect(ts, jax.random.PRNGKey(100 + i))
    return cfg, env, ts


def test_td3_target_with_networks_matches_hand_composition(filled):
    cfg, _, ts = filled
    spec = state.policy_spec(cfg, 4, 2)
    critic = _critic(cfg)
    batch = replay.sample(ts.buffer, jax.random.PRNGKey(1), 16)
    batch = batch.replace(terminated=batch.terminated.at[:4].set(1.0))
    # Perturb the target critics so that they differ from each other.
    tcp = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.arange(p.shape[0]).reshape(
        (-1,) + (1,) * (p.ndim - 1)), ts.target_critic_params)
    key = jax.random.PRNGKey(7)
    y = jax.jit(lambda tcp, batch: losses.td3_target(
        critic, tcp, ts.norm, batch, losses.next_actions(
            spec, ts.target_actor_params, ts.norm, batch.next_obs, key, 0.3, 0.4),
        gamma=0.97, clipped_double_q=True))(tcp, batch)
    # Recompute by hand in NumPy from the pieces.
    a = np.asarray(jax.jit(networks.actor_action, static_argnums=0)(
        spec, ts.target_actor_params, ts.norm, batch.next_obs))
    eps = np.clip(0.3 * np.asarray(jax.random.normal(key, a.shape)), -0.4, 0.4)
    a_smooth = np.clip(a + eps, -1, 1)
    q = np.asarray(jax.jit(lambda a: networks.critic_values(critic, tcp, ts.norm,
                                                            batch.next_obs, a))(a_smooth))
    assert q.shape == (2, 16) and not np.allclose(q[0], q[1])
    expected = (np.asarray(batch.reward) + 0.97 * (1 - np.asarray(batch.terminated))
                * q.min(0))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y[:4]), np.asarray(batch.reward[:4]), rtol=1e-6)


def test_batch_renorm_trains_like_its_running_statistics_after_warmup():
    brn = crossq.BatchRenorm(momentum=0.0, warmup=1)   # momentum 0: running = last batch
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (64, 5)) + 2.0
    v = brn.init(jax.random.PRNGKey(1), x)
    y, upd = brn.apply(v, x, train=True, mutable=["batch_stats"])   # warm-up: batch norm
    np.testing.assert_allclose(np.asarray(y.mean(0)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y.std(0)), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(upd["batch_stats"]["mean"]), np.asarray(x.mean(0)),
                               rtol=1e-6)
    v = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    x2 = 2.5 * jax.random.normal(jax.random.PRNGKey(2), (64, 5)) + 1.5
    y_train, upd2 = brn.apply(v, x2, train=True, mutable=["batch_stats"])
    y_eval = brn.apply(v, x2)
    # Renormalised: the training output is what the running statistics give ...
    np.testing.assert_allclose(np.asarray(y_train), np.asarray(y_eval), atol=1e-5)
    # ... but the gradient still flows through the batch statistics.
    g = jax.grad(lambda x: brn.apply(v, x, train=True, mutable=["batch_stats"])[0][0, 0])(x2)
    assert np.count_nonzero(np.asarray(g)[1:]) > 0
    assert float(upd2["batch_stats"]["calls"]) == 2.0


def test_truncated_transitions_bootstrap(filled):
    """PointMass only truncates (every 7 steps here): those transitions are in
    the buffer, are never terminated, and their target includes gamma * Q."""
    cfg, _, ts = filled
    d = jax.tree_util.tree_map(np.asarray, ts.buffer.data)
    n = int(ts.buffer.size)
    assert d.truncated[:n].sum() >= 4 and d.terminated[:n].sum() == 0
    batch = jax.tree_util.tree_map(lambda x: x[:n][d.truncated[:n] > 0], ts.buffer.data)
    y = jax.jit(lambda ts, batch: losses.td3_target(
        _critic(cfg), ts.target_critic_params, ts.norm, batch, losses.next_actions(
            state.policy_spec(cfg, 4, 2), ts.target_actor_params, ts.norm, batch.next_obs,
            jax.random.PRNGKey(0), 0.2, 0.5), gamma=0.99, clipped_double_q=True))(ts, batch)
    assert not np.allclose(np.asarray(y), np.asarray(batch.reward))


# --- the updates train both actor and critics (the seed study's bug) ----------------

@pytest.mark.parametrize("variant", ["td3", "ddpg"])
def test_updates_train_actor_and_critics_with_delay_and_polyak(filled, variant):
    cfg, _, ts0 = filled
    if variant == "ddpg":
        cfg = dataclasses.replace(cfg, twin_critics=False, target_smoothing=False,
                                  policy_delay=1, tau=0.5)
        ts0 = dataclasses.replace(ts0, critic_params=jax.tree_util.tree_map(
            lambda p: p[:1], ts0.critic_params))
        ts0 = ts0.replace(target_critic_params=ts0.critic_params,
                          critic_opt_state=state.optimizer(cfg, 1e-3).init(ts0.critic_params))
    update = jax.jit(td3.make_update(cfg, state.policy_spec(cfg, 4, 2)))
    ts1, m1 = update(ts0, jax.random.PRNGKey(1))
    assert np.isfinite(float(m1["loss/critic"])) and float(m1["loss/critic"]) > 0
    assert not leaves_close(ts1.critic_params, ts0.critic_params)
    if variant == "td3":
        # First update (1 % 2 != 0): critic only; actor and targets wait.
        assert float(m1["actor_updates"]) == 0
        assert leaves_close(ts1.actor_params, ts0.actor_params)
        assert leaves_close(ts1.target_critic_params, ts0.target_critic_params)
        ts_prev, (ts2, m2) = ts1, update(ts1, jax.random.PRNGKey(2))
    else:
        ts_prev, ts2, m2 = ts0, ts1, m1
    assert float(m2["actor_updates"]) == 1
    assert not leaves_close(ts2.actor_params, ts_prev.actor_params), "actor was not trained"
    tau = cfg.tau
    for tgt, old, new in ((ts2.target_actor_params, ts_prev.target_actor_params,
                           ts2.actor_params),
                          (ts2.target_critic_params, ts_prev.target_critic_params,
                           ts2.critic_params)):
        jax.tree_util.tree_map(lambda t, o, n: np.testing.assert_allclose(
            t, (1 - tau) * o + tau * n, rtol=1e-5, atol=1e-6), tgt, old, new)


def test_actor_gradient_flows_through_the_critic(filled):
    cfg, _, ts = filled
    spec, critic = state.policy_spec(cfg, 4, 2), _critic(cfg)
    obs = ts.buffer.data.obs[:32]
    g_actor, g_critic = jax.jit(jax.grad(
        lambda a, c: losses.actor_loss(a, spec, critic, c, ts.norm, obs), argnums=(0, 1)))(
            ts.actor_params, ts.critic_params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(g_actor))
    # The actor is scored by the first critic only.
    assert sum(float(jnp.abs(g[1:]).sum()) for g in jax.tree_util.tree_leaves(g_critic)) == 0


def test_critic_init_has_no_batched_qr():
    """Orthogonal init is a QR; a batched QR (e.g. from vmapping the critics'
    init) deadlocked jitted inits on this 2-core CPU. Every QR must be 2-D."""
    critic = networks.critic_module((16, 16), "relu", True)
    text = str(jax.make_jaxpr(lambda k: networks.init_critics(critic, k, 2, 4, 2))(
        jax.random.PRNGKey(0)))
    qr_shapes = re.findall(r"f32\[([0-9,]+)\] \S+:f32\[[0-9,]+\] = qr\[", text)
    assert qr_shapes, "no QR found: the check would pass vacuously"
    assert all(shape.count(",") == 1 for shape in qr_shapes), qr_shapes


def test_policy_parts_is_the_deployed_policy(filled):
    cfg, _, ts = filled
    spec, params, norm = state.policy_parts(cfg, ts)
    assert (spec.obs_dim, spec.act_dim, spec.hidden_sizes) == (4, 2, (16, 16))
    obs = ts.buffer.data.obs[:8]
    np.testing.assert_allclose(
        np.asarray(policy.deterministic_action(spec, params, norm, obs)),
        np.asarray(networks.actor_action(spec, ts.actor_params, ts.norm, obs)))
    assert float(ts.norm.count) == 20 * cfg.num_envs   # normaliser saw every collected obs


def test_checkpoint_state_drops_buffer_only_by_flag(filled):
    cfg, _, ts = filled
    assert state.checkpoint_state(cfg, ts) is ts
    light = dataclasses.replace(cfg, checkpoint_replay_buffer=False)
    saved = state.checkpoint_state(light, ts)
    assert saved.buffer is None
    restored = state.restore_state(light, ts, saved)
    assert restored.buffer is ts.buffer and restored.actor_params is ts.actor_params


# --- bad input: one-line errors before anything is built -----------------------------

@pytest.mark.parametrize("change, message", [
    (dict(buffer_size=16, batch_size=32), "buffer_size (16) must be >= batch_size (32)"),
    (dict(actor_learning_rate=0.0), "actor_learning_rate must be a positive number"),
    (dict(critic_learning_rate=-1e-3), "critic_learning_rate must be a positive number"),
    (dict(tau=0.0), "tau must be in (0, 1]"),
    (dict(tau=1.5), "tau must be in (0, 1]"),
    (dict(discount=1.0), "discount must be in [0, 1)"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(num_envs=-2), "num_envs must be a positive integer"),
    (dict(policy_delay=0), "policy_delay must be a positive integer"),
    (dict(target_noise=-0.1), "target_noise must be a non-negative number"),
    (dict(hidden=()), "hidden must be positive layer sizes"),
    (dict(activation="gelu"), "activation must be one of"),
    (dict(updates_per_step=0, utd_ratio=0.01), "utd_ratio * num_envs must round to >= 1"),
    (dict(exploration_noise=0.1, exploration_noise_final=0.3),
     "exploration_noise_final (0.3) must be <= exploration_noise (0.1)"),
    (dict(critic_hidden=(64, 0)), "critic_hidden must be positive layer sizes"),
    (dict(buffer_size=2, batch_size=1), "buffer_size (2) must be >= batch_size (1) and >= "
     "num_envs (4)"),
    (dict(warmup_steps=-1), "warmup_steps must be a non-negative integer"),
])
def test_config_validation_one_line_errors(change, message):
    cfg = Config(**dict(SMALL, **change))
    with pytest.raises(ValueError) as e:
        cfg.validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_defaults_are_valid_and_registered():
    agent = agents.get("ac")
    assert agent.NAME == "ac"
    cfg = agent.Config()
    cfg.validate()
    assert (cfg.hidden, cfg.batch_size, cfg.discount, cfg.tau, cfg.policy_delay) == (
        (256, 256), 256, 0.99, 0.005, 2)
    assert cfg.twin_critics and cfg.target_smoothing and cfg.critic_layer_norm
    assert agent.env_steps_per_iteration(cfg) == cfg.num_envs * cfg.steps_per_iteration
    agents.config_fields(agent.Config)     # every field can be an absl flag


def test_ignored_observation_features_stay_exactly_out_of_the_deployed_policy():
    cfg = Config(**dict(SMALL, observation_features=2))
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)       # obs 4, action 2
    ts = state.init(cfg, env, jax.random.PRNGKey(0))
    iteration = td3.make_train_iteration(cfg, env)
    for _ in range(3):
        ts, m = iteration(ts)
    assert float(m["actor_updates"]) > 0
    actor_k = np.asarray(ts.actor_params["params"]["hidden_0"]["kernel"])      # [4, h]
    critic_k = np.asarray(ts.critic_params["params"]["hidden_0"]["kernel"])    # [K, 6, h]
    assert actor_k[:2].any() and not actor_k[2:].any()
    assert not critic_k[:, 2:4].any() and critic_k[:, 4:].any() and critic_k[:, :2].any()
    # The deployed function ignores features 2 and 3 whatever they hold.
    spec, params, norm = state.policy_parts(cfg, ts)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    moved = obs.at[:, 2:].set(100.0)
    np.testing.assert_array_equal(
        np.asarray(policy.deterministic_action(spec, params, norm, obs)),
        np.asarray(policy.deterministic_action(spec, params, norm, moved)))
    with pytest.raises(ValueError, match="observation_features \\(5\\) exceeds"):
        state.check_env(dataclasses.replace(cfg, observation_features=5), env)


@pytest.mark.parametrize("crossq_critic", [False, True])
def test_critics_leave_ignored_features_out_of_the_product(crossq_critic):
    """observation_features=2 of 4 (+2 action inputs): the critic's first product reads
    4 inputs, not 6, with the same parameters and (ignored rows zero) the same values."""
    cfg = Config(**dict(SMALL, observation_features=2, crossq=crossq_critic))
    full = _critic(dataclasses.replace(cfg, observation_features=0))
    skip = _critic(cfg)
    key, x = jax.random.PRNGKey(0), jax.random.normal(jax.random.PRNGKey(1), (8, 6))
    params = full.init(key, x)
    assert leaves_close(params, skip.init(key, x))        # same tree, same initial values
    params = state.ignore_input_rows(cfg, params, 4)
    np.testing.assert_allclose(np.asarray(skip.apply(params, x)),
                               np.asarray(full.apply(params, x)), rtol=1e-5, atol=1e-6)
    def matmul_inputs(module):      # the input widths of every matmul of one forward pass
        eqns = jax.make_jaxpr(lambda p: module.apply(p, x))(params).jaxpr.eqns
        return [e.invars[0].aval.shape[-1] for e in eqns if e.primitive.name == "dot_general"]

    assert matmul_inputs(full) == [6, 16, 16] and matmul_inputs(skip) == [4, 16, 16]

"""The TD3/DDPG actor-critic: targets, losses, updates, config errors, learning."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite import agents, envs
from jaxrl_lite.blocks import policy, replay
from jaxrl_lite.agents.actor_critic import losses, networks
from jaxrl_lite.agents.actor_critic import train as ac

SMALL = dict(num_envs=4, total_steps=2000, steps_per_iteration=5, buffer_size=256,
             batch_size=32, hidden=(16, 16), warmup_steps=0, updates_per_step=2)


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


def test_c51_projection_hand_computed_and_mean_preserving():
    support = jnp.array([0.0, 1.0, 2.0, 3.0])
    probs = jnp.array([[0.0, 1.0, 0.0, 0.0],      # all mass on atom 1
                       [0.25, 0.25, 0.25, 0.25],
                       [0.0, 0.0, 0.0, 1.0]])
    reward = jnp.array([0.5, 2.25, 1.0])
    bootstrap = jnp.array([1.0, 0.0, 0.5])        # 0: terminated, no bootstrap
    out = np.asarray(losses.c51_projection(support, probs, reward, bootstrap))
    # 1 -> 1.5: half to atom 1, half to atom 2.
    np.testing.assert_allclose(out[0], [0, 0.5, 0.5, 0], atol=1e-6)
    # Every atom -> 2.25: 0.75 to atom 2, 0.25 to atom 3.
    np.testing.assert_allclose(out[1], [0, 0, 0.75, 0.25], atol=1e-6)
    # 3 -> 1 + 0.5 * 3 = 2.5.
    np.testing.assert_allclose(out[2], [0, 0, 0.5, 0.5], atol=1e-6)
    # Random distributions: mass is conserved, and the mean is r + b * E[Z] while no
    # shifted atom leaves [v_min, v_max].
    support = jnp.linspace(-10.0, 10.0, 51)
    p = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (64, 51)))
    r = jax.random.uniform(jax.random.PRNGKey(1), (64,), minval=-1, maxval=1)
    b = jax.random.uniform(jax.random.PRNGKey(2), (64,), minval=0, maxval=0.9)
    proj = losses.c51_projection(support, p, r, b)
    np.testing.assert_allclose(np.asarray(proj.sum(-1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray((proj * support).sum(-1)),
                               np.asarray(r + b * (p * support).sum(-1)), atol=1e-4)


@pytest.fixture(scope="module")
def filled():
    """A small config, its initial train state and a buffer filled by real env steps."""
    cfg = ac.Config(**SMALL)
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs, max_episode_steps=7)
    ts = ac.init(cfg, env, jax.random.PRNGKey(0))
    collect = jax.jit(ac.make_collect_step(cfg, env, ac.policy_spec(cfg, 4, 2)))
    for i in range(20):
        ts, _ = collect(ts, jax.random.PRNGKey(100 + i))
    return cfg, env, ts


def test_td3_target_with_networks_matches_hand_composition(filled):
    cfg, _, ts = filled
    spec = ac.policy_spec(cfg, 4, 2)
    critic = ac._critic(cfg)
    batch = replay.sample(ts.buffer, jax.random.PRNGKey(1), 16)
    batch = batch.replace(terminated=batch.terminated.at[:4].set(1.0))
    # Perturb the target critics so that they differ from each other.
    tcp = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.arange(p.shape[0]).reshape(
        (-1,) + (1,) * (p.ndim - 1)), ts.target_critic_params)
    key = jax.random.PRNGKey(7)
    y = jax.jit(lambda tcp, batch: losses.td3_target(
        spec, critic, ts.target_actor_params, tcp, ts.norm, batch, key, gamma=0.97,
        target_noise=0.3, noise_clip=0.4, target_smoothing=True, clipped_double_q=True))(
            tcp, batch)
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


def test_c51_target_takes_the_target_critic_with_the_smaller_mean(filled):
    cfg, _, ts = filled
    cfg = dataclasses.replace(cfg, num_atoms=11, v_min=-5.0, v_max=5.0)
    spec, critic, support = ac.policy_spec(cfg, 4, 2), ac._critic(cfg), cfg.support()
    tcp = networks.init_critics(critic, jax.random.PRNGKey(3), 2, 4, 2)
    batch = replay.sample(ts.buffer, jax.random.PRNGKey(1), 16)
    batch = batch.replace(terminated=batch.terminated.at[:4].set(1.0))
    discount = jnp.full((16,), 0.9).at[8:].set(0.81)      # n-step: per-transition discount
    y = jax.jit(lambda: losses.td3_target(
        spec, critic, ts.target_actor_params, tcp, ts.norm, batch, jax.random.PRNGKey(0),
        gamma=discount, target_noise=0.2, noise_clip=0.5, target_smoothing=False,
        clipped_double_q=True, support=support))()
    a = networks.actor_action(spec, ts.target_actor_params, ts.norm, batch.next_obs)
    probs = jax.nn.softmax(networks.critic_outputs(critic, tcp, ts.norm, batch.next_obs, a))
    q = np.asarray((probs * support).sum(-1))
    assert q.shape == (2, 16) and (q[0] < q[1]).any() and (q[1] < q[0]).any()
    chosen = np.where((q[0] < q[1])[:, None], probs[0], probs[1])
    expected = losses.c51_projection(support, jnp.asarray(chosen), batch.reward,
                                     discount * (1 - batch.terminated))
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=1e-6)
    # Terminated transitions: all mass around the reward alone.
    np.testing.assert_allclose(np.asarray((y[:4] * support).sum(-1)),
                               np.clip(np.asarray(batch.reward[:4]), -5, 5), atol=1e-5)


def test_batch_renorm_trains_like_its_running_statistics_after_warmup():
    brn = networks.BatchRenorm(momentum=0.0, warmup=1)   # momentum 0: running = last batch
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


@pytest.mark.parametrize("recipe", [
    dict(n_step=3, num_atoms=21, v_min=-60.0, v_max=10.0, exploration_noise_ladder=True),
    dict(n_step=2, critic_hidden=(32, 32, 32)),
    dict(crossq=True, adam_b1=0.5, policy_delay=3, num_atoms=11, v_min=-60.0, v_max=5.0)])
def test_recipe_options_train_on_point_mass(recipe):
    cfg = ac.Config(**dict(SMALL, buffer_size=240, **recipe))
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)
    ts = ac.init(cfg, env, jax.random.PRNGKey(0))
    assert [p.shape[-1] for p in jax.tree_util.tree_leaves(ts.critic_params)
            if p.ndim == 3][-1] == max(cfg.num_atoms, 1)
    initial = jax.tree_util.tree_map(np.asarray, (ts.actor_params, ts.critic_params))
    iteration = ac.make_train_iteration(cfg, env)
    for _ in range(3):
        ts, m = iteration(ts)
    assert all(np.isfinite(float(v)) for v in m.values())
    assert float(m["critic_updates"]) > 0 and float(m["actor_updates"]) > 0
    assert not _leaves_close((ts.actor_params, ts.critic_params), initial)


def test_truncated_transitions_bootstrap(filled):
    """PointMass only truncates (every 7 steps here): those transitions are in
    the buffer, are never terminated, and their target includes gamma * Q."""
    cfg, _, ts = filled
    d = jax.tree_util.tree_map(np.asarray, ts.buffer.data)
    n = int(ts.buffer.size)
    assert d.truncated[:n].sum() >= 4 and d.terminated[:n].sum() == 0
    batch = jax.tree_util.tree_map(lambda x: x[:n][d.truncated[:n] > 0], ts.buffer.data)
    y = jax.jit(lambda ts, batch: losses.td3_target(
        ac.policy_spec(cfg, 4, 2), ac._critic(cfg), ts.target_actor_params,
        ts.target_critic_params, ts.norm, batch, jax.random.PRNGKey(0), gamma=0.99,
        target_noise=0.2, noise_clip=0.5, target_smoothing=True, clipped_double_q=True))(
            ts, batch)
    assert not np.allclose(np.asarray(y), np.asarray(batch.reward))


# --- the updates train both actor and critics (the seed study's bug) ----------------

def _leaves_close(a, b):
    return all(np.allclose(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                 jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("variant", ["td3", "ddpg"])
def test_updates_train_actor_and_critics_with_delay_and_polyak(filled, variant):
    cfg, _, ts0 = filled
    if variant == "ddpg":
        cfg = dataclasses.replace(cfg, twin_critics=False, target_smoothing=False,
                                  policy_delay=1, tau=0.5)
        ts0 = dataclasses.replace(ts0, critic_params=jax.tree_util.tree_map(
            lambda p: p[:1], ts0.critic_params))
        ts0 = ts0.replace(target_critic_params=ts0.critic_params,
                          critic_opt_state=ac._optimizer(cfg, 1e-3).init(ts0.critic_params))
    update = jax.jit(ac.make_update(cfg, ac.policy_spec(cfg, 4, 2)))
    ts1, m1 = update(ts0, jax.random.PRNGKey(1))
    assert np.isfinite(float(m1["loss/critic"])) and float(m1["loss/critic"]) > 0
    assert not _leaves_close(ts1.critic_params, ts0.critic_params)
    if variant == "td3":
        # First update (1 % 2 != 0): critic only; actor and targets wait.
        assert float(m1["actor_updates"]) == 0
        assert _leaves_close(ts1.actor_params, ts0.actor_params)
        assert _leaves_close(ts1.target_critic_params, ts0.target_critic_params)
        ts_prev, (ts2, m2) = ts1, update(ts1, jax.random.PRNGKey(2))
    else:
        ts_prev, ts2, m2 = ts0, ts1, m1
    assert float(m2["actor_updates"]) == 1
    assert not _leaves_close(ts2.actor_params, ts_prev.actor_params), "actor was not trained"
    tau = cfg.tau
    for tgt, old, new in ((ts2.target_actor_params, ts_prev.target_actor_params,
                           ts2.actor_params),
                          (ts2.target_critic_params, ts_prev.target_critic_params,
                           ts2.critic_params)):
        jax.tree_util.tree_map(lambda t, o, n: np.testing.assert_allclose(
            t, (1 - tau) * o + tau * n, rtol=1e-5, atol=1e-6), tgt, old, new)


def test_actor_gradient_flows_through_the_critic(filled):
    cfg, _, ts = filled
    spec, critic = ac.policy_spec(cfg, 4, 2), ac._critic(cfg)
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
    import re
    critic = networks.critic_module((16, 16), "relu", True)
    text = str(jax.make_jaxpr(lambda k: networks.init_critics(critic, k, 2, 4, 2))(
        jax.random.PRNGKey(0)))
    qr_shapes = re.findall(r"f32\[([0-9,]+)\] \S+:f32\[[0-9,]+\] = qr\[", text)
    assert qr_shapes, "no QR found: the check would pass vacuously"
    assert all(shape.count(",") == 1 for shape in qr_shapes), qr_shapes


def test_policy_parts_is_the_deployed_policy(filled):
    cfg, _, ts = filled
    spec, params, norm = ac.policy_parts(cfg, ts)
    assert (spec.obs_dim, spec.act_dim, spec.hidden_sizes) == (4, 2, (16, 16))
    obs = ts.buffer.data.obs[:8]
    np.testing.assert_allclose(
        np.asarray(policy.deterministic_action(spec, params, norm, obs)),
        np.asarray(networks.actor_action(spec, ts.actor_params, ts.norm, obs)))
    assert float(ts.norm.count) == 20 * cfg.num_envs   # normaliser saw every collected obs


def test_checkpoint_state_drops_buffer_only_by_flag(filled):
    cfg, _, ts = filled
    assert ac.checkpoint_state(cfg, ts) is ts
    light = dataclasses.replace(cfg, checkpoint_replay_buffer=False)
    saved = ac.checkpoint_state(light, ts)
    assert saved.buffer is None
    restored = ac.restore_state(light, ts, saved)
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
    (dict(n_step=0), "n_step must be a positive integer"),
    (dict(n_step=3, buffer_size=250), "n_step > 1 needs buffer_size (250) divisible by"),
    (dict(num_atoms=1), "num_atoms must be 0 (scalar critics) or >= 2"),
    (dict(num_atoms=51, v_min=5.0, v_max=-5.0), "C51 needs finite v_min < v_max"),
    (dict(critic_hidden=(64, 0)), "critic_hidden must be positive layer sizes"),
])
def test_config_validation_one_line_errors(change, message):
    cfg = ac.Config(**dict(SMALL, **change))
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


# --- learning: fails if the actor is not trained -------------------------------------

LEARN = dict(num_envs=16, total_steps=12_000, steps_per_iteration=50, buffer_size=20_000,
             batch_size=128, hidden=(64, 64), discount=0.9, warmup_steps=1600,
             updates_per_step=16)
THRESHOLD = -28.0   # PointMass-v0: random ~ -55, zero action ~ -38, good ~ -12


def _make_evaluate(cfg, episodes=64):
    """-> evaluate(train_state): mean return of the exported deterministic policy
    (policy_parts + policy.deterministic_action) on fresh PointMass episodes."""
    env = envs.make("PointMass-v0", num_envs=episodes, auto_reset=False)

    @jax.jit
    def run(ts):
        spec, params, norm = ac.policy_parts(cfg, ts)
        s = env.reset(jax.random.PRNGKey(123))

        def body(s, _):
            s = env.step(s, policy.deterministic_action(spec, params, norm, s.obs))
            return s, s.reward
        return jax.lax.scan(body, s, None, length=env.max_episode_steps)[1].sum(0).mean()
    return lambda ts: float(run(ts))


@pytest.mark.slow
def test_learns_point_mass_and_the_actor_is_what_learns():
    cfg = ac.Config(**LEARN)
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)
    ts = ac.init(cfg, env, jax.random.PRNGKey(0))
    initial_actor = jax.tree_util.tree_map(np.asarray, ts.actor_params)
    # The untrained actor (what the seed study deployed) must NOT pass the threshold.
    evaluate = _make_evaluate(cfg)
    untrained = evaluate(ts)
    assert untrained < THRESHOLD, f"threshold too lax: untrained actor scores {untrained:.1f}"
    iteration = ac.make_train_iteration(cfg, env)
    for _ in range(cfg.total_steps // ac.env_steps_per_iteration(cfg)):
        ts, metrics = iteration(ts)
    assert int(ts.env_steps) == cfg.total_steps
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["actor_updates"]) == 50 * 16 / 2
    assert not _leaves_close(ts.actor_params, initial_actor), "actor params never changed"
    trained = evaluate(ts)
    assert trained > THRESHOLD and trained > untrained + 10, (
        f"actor did not learn: {untrained:.1f} -> {trained:.1f} (threshold {THRESHOLD})")


# --- the shared launcher: artifacts and bit-exact resume with the replay buffer ------

CLI = ["--algo=ac", "--env=PointMass-v0", "--num_envs=8", "--steps_per_iteration=8",
       "--total_steps=640", "--warmup_steps=128", "--updates_per_step=2",
       "--buffer_size=1024", "--batch_size=32", "--hidden=16,16", "--log_every_steps=128",
       "--checkpoint_every_steps=256", "--eval_every_steps=640", "--eval_envs=2",
       "--keep_checkpoints=3", "--noprogress", "--plot_every_s=1000"]


def _train(*args):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.setdefault("JAXRL_LITE_JAX_CACHE", os.path.join(root, ".jax_cache"))
    proc = subprocess.run([sys.executable, "-m", "experiments.train", *CLI, *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_launcher_trains_ac_and_resumes_bit_exactly(tmp_path):
    import concurrent.futures
    import os

    import orbax.checkpoint as ocp

    from jaxrl_lite.run import checkpoint, metrics
    a, b, c = (str(tmp_path / n) for n in "abc")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(_train, f"--out_dir={a}"),
                pool.submit(_train, f"--out_dir={b}", "--stop_after_steps=300"),
                pool.submit(_train, f"--out_dir={c}", "--stop_after_steps=300",
                            "--nocheckpoint_replay_buffer")]
        procs = [r.result() for r in runs]
    assert "replay buffer: 1024 transitions" in procs[0].stderr
    assert metrics.read(b)[-1]["step"] == 512                  # stopped at a checkpoint
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for r in [pool.submit(_train, f"--out_dir={b}", "--resume"),
                  pool.submit(_train, f"--out_dir={c}", "--resume",
                              "--nocheckpoint_replay_buffer")]:
            r.result()
    timing = ("wall_s", "env_steps_per_s")
    ra, rb, rc = ([{k: v for k, v in r.items() if k not in timing} for r in metrics.read(d)]
                  for d in (a, b, c))
    assert ra == rb                                            # bit-exact resume
    assert ra[:4] == rc[:4] and ra[-1] != rc[-1]               # buffer refilled: differs
    assert [r["step"] for r in ra] == [128, 256, 384, 512, 640]
    assert ra[-1]["critic_updates"] > 0 and ra[-1]["actor_updates"] > 0
    assert "eval/return_mean" in ra[-1]
    step = os.path.join(a, "checkpoints", "640", "state")
    sa = ocp.StandardCheckpointer().restore(step)
    sb = ocp.StandardCheckpointer().restore(os.path.join(b, "checkpoints", "640", "state"))
    for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
        np.testing.assert_array_equal(x, y)
    assert int(sa["buffer"]["size"]) == 640
    sc = ocp.StandardCheckpointer().restore(os.path.join(c, "checkpoints", "512", "state"))
    assert sc.get("buffer") is None
    bundle = checkpoint.load_policy(a)
    assert (bundle.algo, bundle.spec.env, bundle.step) == ("ac", "PointMass-v0", 640)
    assert bundle.spec.hidden_sizes == (16, 16) and bundle.spec.activation == "relu"


def test_ignored_observation_features_stay_exactly_out_of_the_deployed_policy():
    cfg = ac.Config(**dict(SMALL, observation_features=2))
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)       # obs 4, action 2
    ts = ac.init(cfg, env, jax.random.PRNGKey(0))
    iteration = ac.make_train_iteration(cfg, env)
    for _ in range(3):
        ts, m = iteration(ts)
    assert float(m["actor_updates"]) > 0
    actor_k = np.asarray(ts.actor_params["params"]["hidden_0"]["kernel"])      # [4, h]
    critic_k = np.asarray(ts.critic_params["params"]["hidden_0"]["kernel"])    # [K, 6, h]
    assert actor_k[:2].any() and not actor_k[2:].any()
    assert not critic_k[:, 2:4].any() and critic_k[:, 4:].any() and critic_k[:, :2].any()
    # The deployed function ignores features 2 and 3 whatever they hold.
    spec, params, norm = ac.policy_parts(cfg, ts)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    moved = obs.at[:, 2:].set(100.0)
    np.testing.assert_array_equal(
        np.asarray(policy.deterministic_action(spec, params, norm, obs)),
        np.asarray(policy.deterministic_action(spec, params, norm, moved)))
    with pytest.raises(ValueError, match="observation_features \\(5\\) exceeds"):
        ac.init(dataclasses.replace(cfg, observation_features=5), env, jax.random.PRNGKey(0))


# --- the recipe flag files stay valid configurations -----------------------------------

def test_recipe_flag_files_parse_into_valid_configs():
    import glob
    import os

    from experiments.ac_recipes import recipe_config
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = os.getcwd()
    os.chdir(root)
    try:
        names = [os.path.basename(p)[:-6] for p in
                 glob.glob("experiments/configs/ac_recipes/*.flags")]
        configs = {n: ac.Config(**recipe_config(n)) for n in names}
        presets = {n: ac.Config(**recipe_config(f"experiments/configs/{n}.flags"))
                   for n in ("ac_cpu", "ac_gpu", "ac_smoke")}
    finally:
        os.chdir(old)
    assert {"td3", "td3_nstep", "fasttd3", "crossq"} <= set(configs)
    for c in list(configs.values()) + list(presets.values()):
        c.validate()
    td3 = configs["td3"]     # plain TD3 stays reachable by flags
    assert (td3.n_step, td3.num_atoms, td3.crossq, td3.twin_critics, td3.policy_delay,
            td3.batch_size, td3.hidden) == (1, 0, False, True, 2, 256, (256, 256))
    assert configs["fasttd3"].num_atoms == 101 and configs["fasttd3"].exploration_noise_ladder
    assert configs["crossq"].crossq and configs["crossq"].adam_b1 == 0.5


def test_launcher_rejects_config_that_does_not_fit_the_env_before_writing(tmp_path):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", *CLI, f"--out_dir={out}",
         "--observation_features=9"], cwd=root, env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "observation_features (9) exceeds the observation size 4" in last
    assert "Traceback" not in proc.stderr and not out.exists()

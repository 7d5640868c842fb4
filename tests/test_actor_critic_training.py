"""The actor-critic trained end to end: every critic variant on PointMass, learning
that fails if the actor is not trained, the launcher's artifacts and bit-exact resume
with the replay buffer, the recipe flag files, and config-vs-env errors."""
import concurrent.futures
import glob
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.ac_recipes import recipe_config
from jaxrl_lite import envs
from jaxrl_lite.agents.actor_critic import Config, state, td3
from jaxrl_lite.blocks import policy
from jaxrl_lite.run import checkpoint, metrics
from tests.cli_runs import ROOT, train
from tests.test_actor_critic import SMALL, leaves_close


@pytest.mark.parametrize("recipe", [
    dict(critic_hidden=(32, 32, 32)),
    dict(twin_critics=False, target_smoothing=False, policy_delay=1),
    dict(crossq=True, adam_b1=0.5, policy_delay=3)])
def test_variants_train_on_point_mass(recipe):
    cfg = Config(**dict(SMALL, buffer_size=240, **recipe))
    cfg.validate()
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)
    ts = state.init(cfg, env, jax.random.PRNGKey(0))
    kernels = [p for p in jax.tree_util.tree_leaves(ts.critic_params) if p.ndim == 3]
    assert kernels[-1].shape[0] == cfg.num_critics() and kernels[-1].shape[-1] == 1
    initial = jax.tree_util.tree_map(np.asarray, (ts.actor_params, ts.critic_params))
    iteration = td3.make_train_iteration(cfg, env)
    for _ in range(3):
        ts, m = iteration(ts)
    assert all(np.isfinite(float(v)) for v in m.values())
    assert float(m["critic_updates"]) > 0 and float(m["actor_updates"]) > 0
    assert not leaves_close((ts.actor_params, ts.critic_params), initial)
    if cfg.crossq:  # no target networks: they never move
        assert leaves_close(ts.target_critic_params, initial[1])


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
        spec, params, norm = state.policy_parts(cfg, ts)
        s = env.reset(jax.random.PRNGKey(123))

        def body(s, _):
            s = env.step(s, policy.deterministic_action(spec, params, norm, s.obs))
            return s, s.reward
        return jax.lax.scan(body, s, None, length=env.max_episode_steps)[1].sum(0).mean()
    return lambda ts: float(run(ts))


@pytest.mark.slow
def test_learns_point_mass_and_the_actor_is_what_learns():
    cfg = Config(**LEARN)
    env = envs.make("PointMass-v0", num_envs=cfg.num_envs)
    ts = state.init(cfg, env, jax.random.PRNGKey(0))
    initial_actor = jax.tree_util.tree_map(np.asarray, ts.actor_params)
    # The untrained actor (what the seed study deployed) must NOT pass the threshold.
    evaluate = _make_evaluate(cfg)
    untrained = evaluate(ts)
    assert untrained < THRESHOLD, f"threshold too lax: untrained actor scores {untrained:.1f}"
    iteration = td3.make_train_iteration(cfg, env)
    for _ in range(cfg.total_steps // state.env_steps_per_iteration(cfg)):
        ts, metrics = iteration(ts)
    assert int(ts.env_steps) == cfg.total_steps
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["actor_updates"]) == 50 * 16 / 2
    assert not leaves_close(ts.actor_params, initial_actor), "actor params never changed"
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
    proc = train(*CLI, *args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_launcher_trains_ac_and_resumes_bit_exactly(tmp_path):
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


# --- the recipe flag files stay valid configurations -----------------------------------

def test_recipe_flag_files_parse_into_valid_configs():
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        names = [os.path.basename(p)[:-6] for p in
                 glob.glob("experiments/configs/ac_recipes/*.flags")]
        configs = {n: Config(**recipe_config(n)) for n in names}
        presets = {n: Config(**recipe_config(f"experiments/configs/{n}.flags"))
                   for n in ("ac_cpu", "ac_gpu", "ac_smoke")}
    finally:
        os.chdir(old)
    assert {"td3", "crossq", "td3_no_contact"} <= set(configs)
    for c in list(configs.values()) + list(presets.values()):
        c.validate()
    plain = configs["td3"]     # plain TD3 stays reachable by flags
    assert (plain.crossq, plain.twin_critics, plain.policy_delay, plain.batch_size,
            plain.hidden, plain.observation_features) == (False, True, 2, 256, (256, 256), 0)
    assert configs["td3_no_contact"].observation_features == 27
    assert configs["crossq"].crossq and configs["crossq"].adam_b1 == 0.5


def test_launcher_rejects_config_that_does_not_fit_the_env_before_writing(tmp_path):
    out = tmp_path / "run"
    proc = train(*CLI, f"--out_dir={out}", "--observation_features=9", timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "observation_features (9) exceeds the observation size 4" in last
    assert "Traceback" not in proc.stderr and not out.exists()

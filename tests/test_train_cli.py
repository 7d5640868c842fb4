"""experiments/train.py end to end, through processes as a user runs it.

One short PointMass PPO run (A), the same run stopped at a checkpoint and resumed
(B) (the session fixture ``cli_runs_ab``), resumes from older checkpoints, a
diverging run, TensorBoard mirroring. Bad input: ``test_train_bad_input.py``.
"""
import json
import os
import re
import shutil

import numpy as np
import pytest

from jaxrl_lite.run import checkpoint, metrics
from tests.cli_runs import (COMMON, LOG_LINE, assert_same_run, damage, leaves, strip_timing,
                            train)
from tests.deps import require


def test_run_writes_every_artifact(cli_runs_ab):
    a = cli_runs_ab["a"]
    assert sorted(os.listdir(checkpoint.checkpoint_dir(a))) == ["1024", "1536"]  # keep 2
    with open(os.path.join(a, "learning_curve.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(a, "config.json")) as f:
        cfg = json.load(f)
    for key, value in (("algo", "ppo"), ("env", "PointMass-v0"), ("seed", 0),
                       ("unroll_length", 8), ("policy_hidden", [16, 16]),
                       ("learning_rate", 3e-4), ("keep_checkpoints", 2)):
        assert cfg[key] == value, key
    recs = metrics.read(a)
    assert [r["step"] for r in recs] == list(range(256, 1537, 256))
    for r in recs:
        for key in ("step", "wall_s", "env_steps_per_s", "episode_return_mean"):
            assert key in r
        assert r["env_steps_per_s"] > 0
    assert [r["step"] for r in recs if "eval/return_mean" in r] == [512, 1024, 1536]
    assert recs[-1]["episode_return_mean"] < 0  # PointMass rewards are negative
    runtime = [json.loads(x) for x in open(os.path.join(a, "runtime.jsonl"))]
    assert len(runtime) == 1 and runtime[0]["jax"] and runtime[0]["devices"]
    assert runtime[0]["matmul_precision"] == "highest"
    bundle = checkpoint.load_policy(a)
    assert (bundle.algo, bundle.spec.env, bundle.step) == ("ppo", "PointMass-v0", 1536)
    assert bundle.spec.hidden_sizes == (16, 16)


def test_best_evaluated_policy_is_kept_in_best(cli_runs_ab):
    """--keep_best (on by default): best/ holds one step, the record whose evaluation
    was the highest (the first of equal ones), with that return in its meta; export and
    evaluation load it like a run."""
    a = cli_runs_ab["a"]
    evals = [(r["step"], r["eval/return_mean"]) for r in metrics.read(a)
             if "eval/return_mean" in r]
    best_step, best_return = max(evals, key=lambda x: (x[1], -x[0]))
    assert checkpoint.list_steps_in(checkpoint.best_dir(a)) == [best_step]
    assert checkpoint.best_eval_return(a) == best_return
    bundle = checkpoint.load_policy(checkpoint.best_dir(a))
    assert bundle.step == best_step and bundle.algo == "ppo"
    assert bundle.source == os.path.join(checkpoint.best_dir(a), str(best_step))
    assert bundle.meta["eval/return_mean"] == best_return
    if best_step in checkpoint.list_steps(a):  # a kept checkpoint of the same step
        same = checkpoint.load_policy(a, step=best_step)
        for k, v in leaves(same.actor_params).items():
            np.testing.assert_array_equal(v, leaves(bundle.actor_params)[k])


def test_resume_reproduces_uninterrupted_run_exactly(cli_runs_ab):
    a, b = cli_runs_ab["a"], cli_runs_ab["b"]
    assert cli_runs_ab["stopped_records"][-1]["step"] == 1024  # stopped at a checkpoint boundary
    assert_same_run(a, b)
    assert metrics.read(b)[-1]["wall_s"] > cli_runs_ab["stopped_records"][-1]["wall_s"]  # continues
    assert len(open(os.path.join(b, "runtime.jsonl")).readlines()) == 2


def test_python_api_trains_the_same_run_as_the_cli(cli_runs_ab, tmp_path):
    from jaxrl_lite.run import trainer
    from jaxrl_lite.agents.ppo.train import Config

    out = str(tmp_path / "api")
    config = trainer.TrainConfig(
        out_dir=out, algo="ppo", env="PointMass-v0", log_every_steps=256,
        checkpoint_every_steps=512, eval_every_steps=512, eval_envs=4, keep_checkpoints=2,
        progress=False, plot_every_s=1000,
        agent_config=Config(num_envs=8, unroll_length=8, num_minibatches=2, num_epochs=2,
                            total_steps=1536, policy_hidden=(16, 16), value_hidden=(16, 16)))
    summary = trainer.train(config)
    assert summary["exit"] == "finished" and summary["env_steps"] == 1536
    assert summary["last"]["step"] == 1536 and "eval/return_mean" in summary["last"]
    assert_same_run(cli_runs_ab["a"], out)
    with pytest.raises(trainer.ConfigError, match=r"already holds a run") as e:
        trainer.train(config)  # never over a run with checkpoints
    assert e.value.exit_code == 2


def test_time_budget_stops_at_the_first_iteration_past_it(tmp_path):
    """The budget is checked after every iteration: a run whose first log record is
    far away stops (logged, evaluated, checkpointed) soon after the budget, between
    records, and can be resumed."""
    from jaxrl_lite.run import trainer
    from jaxrl_lite.agents.ppo.train import Config

    out = str(tmp_path / "budget")
    every = 64 * 4096  # one record per 4,096 iterations of 64 env steps
    config = trainer.TrainConfig(
        out_dir=out, algo="ppo", env="PointMass-v0", log_every_steps=every,
        checkpoint_every_steps=every, eval_every_steps=0, eval_envs=2, keep_checkpoints=2,
        progress=False, plot_every_s=1000, max_wall_s=1.0, keep_best=False,
        agent_config=Config(num_envs=8, unroll_length=8, num_minibatches=2, num_epochs=2,
                            total_steps=2 * every, policy_hidden=(16, 16),
                            value_hidden=(16, 16)))
    summary = trainer.train(config)
    assert summary["exit"] == "time budget"
    assert 0 < summary["env_steps"] < every and summary["env_steps"] % 64 == 0
    assert summary["wall_s"] >= 1.0
    (record,) = metrics.read(out)
    assert record["step"] == summary["env_steps"] and "eval/return_mean" in record
    assert checkpoint.list_steps(out) == [summary["env_steps"]]
    assert not os.path.exists(checkpoint.best_dir(out))  # keep_best=False: evaluated, not kept


def test_train_env_kwargs_reach_the_training_envs_only(tmp_path):
    """A stricter healthy bound for training: the training envs terminate where the
    evaluation envs (the plain task) do not."""
    import jax
    import jax.numpy as jnp

    from jaxrl_lite.agents.ppo.train import Config
    from jaxrl_lite.run import setup, trainer

    config = trainer.validate(trainer.TrainConfig(
        out_dir=str(tmp_path / "kw"), env="Ant-v5", backend="mujoco", eval_envs=2,
        train_env_kwargs='{"healthy_z_range": [0.2, 0.5]}',
        agent_config=Config(num_envs=2, unroll_length=4, num_minibatches=2, num_epochs=1,
                            total_steps=64)))
    run = setup.build(config)
    assert run.env.config.healthy_z_range == (0.2, 0.5)
    assert run.eval_env.config.healthy_z_range == (0.2, 1.0)
    zero = jnp.zeros((2, run.env.action_size), jnp.float32)
    key = jax.random.PRNGKey(0)
    # The ant starts with its torso at z = 0.75: unhealthy for training only.
    train_done = run.env.step(run.env.reset(key), zero).info["terminated"]
    eval_done = run.eval_env.step(run.eval_env.reset(key), zero).info["terminated"]
    assert np.all(np.asarray(train_done) == 1) and np.all(np.asarray(eval_done) == 0)
    assert not os.path.exists(config.out_dir)


def test_resume_step_continues_from_an_older_checkpoint_exactly(cli_runs_ab):
    d = str(cli_runs_ab["base"] / "resume_step")
    shutil.copytree(cli_runs_ab["a"], d)
    damage("state", "flipped")(d)
    proc = train(*COMMON, f"--out_dir={d}", "--resume", "--resume_step=1024")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(cli_runs_ab["a"], d)
    (moved,) = os.listdir(os.path.join(d, "discarded_checkpoints"))
    assert os.listdir(os.path.join(d, "discarded_checkpoints", moved)) == ["1536"]


def test_load_policy_verifies_policy_and_names_the_newest_intact_checkpoint(cli_runs_ab):
    d = str(cli_runs_ab["base"] / "bad_policy")
    shutil.copytree(cli_runs_ab["a"], d)
    damage("policy", "flipped")(d)
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load_policy(d)
    msg = str(e.value)
    assert "\n" not in msg and "checkpoints/1536 is damaged: policy/" in msg
    assert f"newest intact checkpoint: step 1024 (use {d}/checkpoints/1024)" in msg
    assert checkpoint.load_policy(os.path.join(d, "checkpoints", "1024")).step == 1024
    # Damage in state/ does not concern the deployable policy.
    d2 = str(cli_runs_ab["base"] / "bad_state_policy_ok")
    shutil.copytree(cli_runs_ab["a"], d2)
    damage("state", "truncated")(d2)
    assert checkpoint.load_policy(d2).step == 1536
    # best/ is checked the same way; a damaged one is ignored by a resume (replaced at the
    # next improvement), never read as a return.
    d3 = str(cli_runs_ab["base"] / "bad_best")
    shutil.copytree(cli_runs_ab["a"], d3)
    (step,) = checkpoint.list_steps_in(checkpoint.best_dir(d3))
    meta = os.path.join(checkpoint.best_dir(d3), str(step), "meta")
    f = max((os.path.join(r, n) for r, _, ns in os.walk(meta) for n in ns), key=os.path.getsize)
    with open(f, "r+b") as fh:
        fh.write(b"#")  # same size, other content
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load_policy(checkpoint.best_dir(d3))
    assert f"best/{step} is damaged: meta/" in str(e.value) and "\n" not in str(e.value)
    assert checkpoint.best_eval_return(d3) is None


def test_killed_before_first_checkpoint_restarts_with_the_same_command(cli_runs_ab):
    d = str(cli_runs_ab["base"] / "restart")
    killed = train(*COMMON, f"--out_dir={d}",
                   env_extra={"JAXRL_LITE_FAULT_KILL_AT": "record:256"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert checkpoint.list_steps(d) == [] and [r["step"] for r in metrics.read(d)] == [256]
    again = train(*COMMON, f"--out_dir={d}")  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds no checkpoint of this run: starting it from step 0" in again.stderr
    assert_same_run(cli_runs_ab["a"], d)


def test_divergence_stops_with_message_and_keeps_good_checkpoint(cli_runs_ab):
    out = str(cli_runs_ab["base"] / "nan")
    # lr=10 makes the losses explode but whether they reach NaN depends on the JAX/optax
    # build (this one stays finite), so the launcher's fault hook makes a metric NaN from
    # step 256 on, after the first checkpoints.
    proc = train(*COMMON, f"--out_dir={out}", "--learning_rate=10",
                 "--checkpoint_every_steps=64", "--log_every_steps=64",
                 env_extra={"JAXRL_LITE_FAULT_NAN_AT_STEP": "256"})
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if not LOG_LINE.match(ln)]
    assert len(lines) == 1 and "training diverged at env step" in lines[0], lines
    m = re.search(r"Last good checkpoint: (\S+)", lines[0])
    assert m and os.path.isdir(m.group(1))
    bundle = checkpoint.load_policy(out)
    for leaf in leaves(bundle.actor_params).values():
        assert np.all(np.isfinite(leaf))
    diverged_at = int(re.search(r"env step (\d+)", lines[0]).group(1))
    assert bundle.step < diverged_at == 256 and "loss/injected_fault" in lines[0]


def _tensorboard_scalars(directory):
    """{tag: [(step, value), ...]} of every event file in ``directory``."""
    tf = require("tensorflow")
    from tensorflow.core.util import event_pb2

    out = {}
    for name in sorted(os.listdir(directory)):
        for raw in tf.data.TFRecordDataset(os.path.join(directory, name)):
            event = event_pb2.Event.FromString(raw.numpy())
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    return out


def test_tensorboard_mirrors_metrics_once_per_step_across_a_resume(cli_runs_ab):
    d = str(cli_runs_ab["base"] / "tensorboard")
    first = train(*COMMON, f"--out_dir={d}", "--stop_after_steps=700", "--tensorboard")
    assert first.returncode == 0, first.stderr[-3000:]
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:  # as if killed after a record
        f.write(json.dumps({"step": 1088, "iteration": 17, "loss/total": 1.0}) + "\n")
    again = train(*COMMON, f"--out_dir={d}", "--resume", "--tensorboard")
    assert again.returncode == 0, again.stderr[-3000:]
    tb = os.path.join(d, "tensorboard")
    assert len([n for n in os.listdir(tb) if n.startswith("events.out.tfevents.")]) == 1
    scalars = _tensorboard_scalars(tb)
    recs = metrics.read(d)
    assert strip_timing(recs) == strip_timing(metrics.read(cli_runs_ab["a"]))  # the record stays metrics.jsonl
    for key in ("episode_return_mean", "loss/total", "eval/return_mean", "wall_s"):
        want = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
        got = scalars[key]
        assert [s for s, _ in got] == [s for s, _ in want], key  # each step once, in order
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_metrics_writer_truncates_records_after_the_resumed_checkpoint(tmp_path):
    w = metrics.MetricsWriter(str(tmp_path), plot_every_s=1e9)
    for step in (100, 200, 300):
        w.write({"step": step, "wall_s": step / 10, "env_steps_per_s": 1.0,
                 "episode_return_mean": float("nan")})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 400, "wal')  # a record torn by a kill
    w2 = metrics.MetricsWriter(str(tmp_path))
    assert [r["step"] for r in w2.records] == [100, 200, 300]
    assert w2.records[0]["episode_return_mean"] is None  # NaN is written as null
    w2.truncate_after(200)
    assert [r["step"] for r in metrics.read(str(tmp_path))] == [100, 200]
    w2.write({"step": 300, "wall_s": 1.0, "env_steps_per_s": 1.0,
              "episode_return_mean": -3.0}, force_plot=True)
    assert [r["step"] for r in metrics.read(str(tmp_path))] == [100, 200, 300]
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000


def test_bench_gym_evaluation_runs_the_checkpointed_policy_in_gymnasium(tmp_path):
    import jax

    from jaxrl_lite.run import evaluation
    from jaxrl_lite.blocks import normalizer, policy

    spec = policy.PolicySpec(env="Ant-v5", obs_dim=105, act_dim=8, hidden_sizes=(8,))
    actor = policy.init_actor_params(spec, jax.random.PRNGKey(0))
    ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=1)
    ck.save(5, {"x": np.zeros(2)}, spec, actor, normalizer.init(105), "ppo")
    ck.close()
    out = evaluation.gymnasium_evaluate(str(tmp_path), episodes=1, seed=3)
    assert out["checkpoint_env_steps"] == 5 and len(out["returns"]) == 1
    assert out["env"] == "Ant-v5"  # the task recorded in the checkpoint
    assert all(1 <= n <= 1000 for n in out["episode_lengths"])
    assert out["falls"] == sum(n < 1000 for n in out["episode_lengths"])
    # A near-zero-action policy stands still: about +1 per step (healthy reward).
    assert np.isfinite(out["return_mean"]) and out["return_mean"] > 0.5 * np.mean(
        out["episode_lengths"])
    again = evaluation.gymnasium_evaluate(str(tmp_path), episodes=1, seed=3)
    assert again["returns"] == out["returns"]  # seeded: reproducible

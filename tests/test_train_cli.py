"""experiments/train.py end to end, through subprocesses as a user runs it.

One short PointMass PPO run (A), the same run stopped at a checkpoint and
resumed (B), a diverging run, and every bad-input case; processes run
concurrently (module-scoped) to keep the suite fast.
"""
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxrl_lite import agents
from jaxrl_lite.run import checkpoint, metrics
from tests import forkserver
from tests.deps import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--algo=ppo", "--env=PointMass-v0", "--num_envs=8", "--unroll_length=8",
          "--num_minibatches=2", "--num_epochs=2", "--total_steps=1536",
          "--log_every_steps=256", "--checkpoint_every_steps=512", "--eval_every_steps=512",
          "--eval_envs=4", "--keep_checkpoints=2", "--policy_hidden=16,16",
          "--value_hidden=16,16", "--noprogress", "--plot_every_s=1000"]
TIMING = ("wall_s", "env_steps_per_s")
LOG_LINE = re.compile(r"^[IWEF]\d{4} ")  # absl log lines


def _env():
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("JAXRL_LITE_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
    return env


def train(*args, timeout=240, env_extra=None, fork=True):
    """``python -m experiments.train ARGS`` -> CompletedProcess. ``fork``: start it
    from the warm fork server (tests/forkserver.py) instead of a new interpreter."""
    env = dict(_env(), **(env_extra or {}))
    if fork:
        return forkserver.run("experiments.train", args, cwd=ROOT, env=env, timeout=timeout)
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _snapshot(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = hashlib.sha1(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    a, b = str(base / "a"), str(base / "b")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # The reference run is a plain `python -m experiments.train`; the others fork.
        fa = pool.submit(train, *COMMON, f"--out_dir={a}", fork=False)
        fb = pool.submit(train, *COMMON, f"--out_dir={b}", "--stop_after_steps=700")
        ra, rb1 = fa.result(), fb.result()
    assert ra.returncode == 0, ra.stderr[-3000:]
    assert rb1.returncode == 0, rb1.stderr[-3000:]
    stopped = metrics.read(b)
    rb2 = train(*COMMON, f"--out_dir={b}", "--resume")
    assert rb2.returncode == 0, rb2.stderr[-3000:]
    return {"base": base, "a": a, "b": b, "stopped_records": stopped}


def test_run_writes_every_artifact(runs):
    a = runs["a"]
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


def _strip(recs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def assert_same_run(a, b, step="1536"):
    """Same metrics (timing aside) and bit-identical state arrays at ``step``."""
    assert _strip(metrics.read(a)) == _strip(metrics.read(b))
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as reader:
        sa = reader.restore(os.path.join(a, "checkpoints", step, "state"))
        sb = reader.restore(os.path.join(b, "checkpoints", step, "state"))
    la, lb = (_leaves(sa), _leaves(sb))
    assert la.keys() == lb.keys() and len(la) > 10
    for k in la:
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


def test_resume_reproduces_uninterrupted_run_exactly(runs):
    a, b = runs["a"], runs["b"]
    assert runs["stopped_records"][-1]["step"] == 1024  # stopped at a checkpoint boundary
    assert_same_run(a, b)
    assert metrics.read(b)[-1]["wall_s"] > runs["stopped_records"][-1]["wall_s"]  # continues
    assert len(open(os.path.join(b, "runtime.jsonl")).readlines()) == 2


def test_python_api_trains_the_same_run_as_the_cli(runs, tmp_path):
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
    assert_same_run(runs["a"], out)
    with pytest.raises(trainer.ConfigError, match=r"already holds a run") as e:
        trainer.train(config)  # never over a run with checkpoints
    assert e.value.exit_code == 2


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


def test_resume_step_continues_from_an_older_checkpoint_exactly(runs):
    d = str(runs["base"] / "resume_step")
    shutil.copytree(runs["a"], d)
    _damage("state", "flipped")(d)
    proc = train(*COMMON, f"--out_dir={d}", "--resume", "--resume_step=1024")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(runs["a"], d)
    (moved,) = os.listdir(os.path.join(d, "discarded_checkpoints"))
    assert os.listdir(os.path.join(d, "discarded_checkpoints", moved)) == ["1536"]


def test_load_policy_verifies_policy_and_names_the_newest_intact_checkpoint(runs):
    d = str(runs["base"] / "bad_policy")
    shutil.copytree(runs["a"], d)
    _damage("policy", "flipped")(d)
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load_policy(d)
    msg = str(e.value)
    assert "\n" not in msg and "checkpoints/1536 is damaged: policy/" in msg
    assert f"newest intact checkpoint: step 1024 (use {d}/checkpoints/1024)" in msg
    assert checkpoint.load_policy(os.path.join(d, "checkpoints", "1024")).step == 1024
    # Damage in state/ does not concern the deployable policy.
    d2 = str(runs["base"] / "bad_state_policy_ok")
    shutil.copytree(runs["a"], d2)
    _damage("state", "truncated")(d2)
    assert checkpoint.load_policy(d2).step == 1536


def test_killed_before_first_checkpoint_restarts_with_the_same_command(runs):
    d = str(runs["base"] / "restart")
    killed = train(*COMMON, f"--out_dir={d}",
                   env_extra={"JAXRL_LITE_FAULT_KILL_AT": "record:256"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert checkpoint.list_steps(d) == [] and [r["step"] for r in metrics.read(d)] == [256]
    again = train(*COMMON, f"--out_dir={d}")  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds no checkpoint of this run: starting it from step 0" in again.stderr
    assert_same_run(runs["a"], d)


def _leaves(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_leaves(v, f"{prefix}/{i}"))
    else:
        out[prefix] = np.asarray(tree)
    return out


def _corrupt(run_dir):
    newest = os.path.join(run_dir, "checkpoints", "1536", "state")
    for root, _, files in os.walk(newest):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")


def _largest_file(d):
    files = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
    return max(files, key=os.path.getsize)


def _damage(item, how):
    """Damage ``item`` (state | policy) of the newest checkpoint (1536) of a run."""
    def prepare(run_dir):
        d = os.path.join(run_dir, "checkpoints", "1536", item)
        if how == "missing":
            sub = sorted(e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e)))[0]
            shutil.rmtree(os.path.join(d, sub))
            return
        f = _largest_file(d)
        with open(f, "r+b") as fh:
            if how == "truncated":
                fh.truncate(os.path.getsize(f) // 2)
            else:  # one flipped byte: same size, other content
                fh.seek(os.path.getsize(f) // 2)
                byte = fh.read(1)
                fh.seek(-1, 1)
                fh.write(bytes([byte[0] ^ 0xFF]))
    return prepare


DAMAGE = {"flipped": r"has changed since it was written \(SHA-256 mismatch\)",
          "truncated": "bytes, .* were written", "missing": "is missing"}


def _bad_cases(base, a):
    """(name, args, expected message regex, run dir to prepare or None)."""
    def copy(name, prepare=None):
        d = str(base / name)
        shutil.copytree(a, d)
        if prepare:
            prepare(d)
        return d

    cases = [
        ("algo", ["--algo=sac"], r"unknown --algo='sac'; valid algos: ppo, ac", None),
        ("backend", ["--backend=cuda"], r"unknown --backend='cuda'.*mjx, mujoco", None),
        ("env", ["--env=Nope-v0"], r"unknown --env='Nope-v0'", None),
        ("num_envs", ["--num_envs=0"], r"num_envs must be a positive integer, got 0", None),
        ("total_steps", ["--total_steps=-5"], r"total_steps must be a positive", None),
        ("minibatches", ["--num_minibatches=3"], r"64 does not divide into num_minibatches=3",
         None),
        ("lr", ["--learning_rate=0"], r"learning_rate must be a positive number", None),
        ("ckpt_keep", ["--keep_checkpoints=0"], r"--keep_checkpoints must be a positive",
         None),
        ("hidden", ["--policy_hidden=16,x"], r"--policy_hidden must be comma-separated", None),
        ("unknown_flag", ["--no_such_flag=1"], r"no_such_flag", None),
        ("resume_nothing", ["--resume"], r"no run to resume", None),
        ("resume_no_ckpt", ["--resume"], r"has no checkpoint but its metrics.jsonl reaches step "
         r"1536.*new --out_dir",
         copy("no_ckpt", lambda d: shutil.rmtree(os.path.join(d, "checkpoints")))),
        ("resume_corrupt", ["--resume"], r"checkpoints/1536 is damaged: state/.* has 7 bytes.*"
         r"newest intact checkpoint: step 1024 \(use --resume_step=1024\)",
         copy("corrupt", _corrupt)),
        ("other_run", [], r"already holds a run \(config.json\)", copy("other")),
        ("resume_step_absent", ["--resume", "--resume_step=700"],
         r"--resume_step=700: no checkpoint for that step .*have \[1024, 1536\]",
         copy("step_absent")),
        ("resume_step_without_resume", ["--resume_step=1024"], r"--resume_step needs --resume",
         None),
        ("resume_diff", ["--resume", "--seed=1"], r"--seed=1 differs .*seed=0",
         copy("diff")),
        ("train_env_kwargs_json", ["--train_env_kwargs={max_episode_steps: 5}"],
         r"--train_env_kwargs is not valid JSON", None),
        ("train_env_kwargs_key", ['--train_env_kwargs={"healthy_z_range": [0.2, 0.9]}'],
         r"--train_env_kwargs: .*unexpected keyword argument 'healthy_z_range'", None),
    ]
    for item in ("state", "policy"):
        for how, phrase in DAMAGE.items():
            cases.append((f"damaged_{item}_{how}", ["--resume"],
                          rf"checkpoints/1536 is damaged: {item}/.*{phrase}; newest intact "
                          rf"checkpoint: step 1024 \(use --resume_step=1024\)",
                          copy(f"damaged_{item}_{how}", _damage(item, how))))
    ppo_only = set(f.name for f in agents.config_fields(agents.get("ppo").Config))
    ppo_only -= set(f.name for f in agents.config_fields(agents.get("ac").Config))
    assert "unroll_length" in ppo_only
    cases.append(("wrong_algo_flag", ["--algo=ac", "--unroll_length=4"],
                  r"does not apply to --algo=ac", None))
    return cases


@pytest.fixture(scope="module")
def bad_results(runs):
    base, a = runs["base"], runs["a"]
    cases = _bad_cases(base, a)
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for name, args, pattern, run_dir in cases:
            out = run_dir or str(base / f"bad_{name}")
            before = _snapshot(out) if run_dir else None
            jobs[name] = (pool.submit(train, *COMMON, f"--out_dir={out}", *args, timeout=120),
                          pattern, out, before)
        return {k: (f.result(), p, o, s) for k, (f, p, o, s) in jobs.items()}


BAD = ["algo", "backend", "env", "num_envs", "total_steps", "minibatches", "lr", "ckpt_keep",
       "hidden", "unknown_flag", "resume_nothing", "resume_no_ckpt", "resume_corrupt",
       "other_run", "resume_diff", "wrong_algo_flag", "resume_step_absent",
       "resume_step_without_resume", "train_env_kwargs_json", "train_env_kwargs_key"] + [
    f"damaged_{item}_{how}" for item in ("state", "policy") for how in DAMAGE]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_error_and_touches_nothing(bad_results, name):
    proc, pattern, out, before = bad_results[name]
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if not LOG_LINE.match(ln)]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("train: error: ") and re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
    if before is None:
        assert not os.path.exists(out)  # nothing created for rejected input
    else:
        assert _snapshot(out) == before  # nothing overwritten or lost


def test_divergence_stops_with_message_and_keeps_good_checkpoint(runs):
    out = str(runs["base"] / "nan")
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
    for leaf in _leaves(bundle.actor_params).values():
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


def test_tensorboard_mirrors_metrics_once_per_step_across_a_resume(runs):
    d = str(runs["base"] / "tensorboard")
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
    assert _strip(recs) == _strip(metrics.read(runs["a"]))  # the record stays metrics.jsonl
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
    assert all(1 <= n <= 1000 for n in out["episode_lengths"])
    # A near-zero-action policy stands still: about +1 per step (healthy reward).
    assert np.isfinite(out["return_mean"]) and out["return_mean"] > 0.5 * np.mean(
        out["episode_lengths"])
    again = evaluation.gymnasium_evaluate(str(tmp_path), episodes=1, seed=3)
    assert again["returns"] == out["returns"]  # seeded: reproducible

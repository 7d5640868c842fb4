"""Bad input to experiments/train.py: every case ends with exit status 2 and one line
on stderr before anything is written (a run directory given is left as it was)."""
import concurrent.futures
import os
import re
import shutil

import pytest

from jaxrl_lite import agents
from tests.cli_runs import COMMON, DAMAGE, LOG_LINE, damage, snapshot, train


def _corrupt(run_dir):
    newest = os.path.join(run_dir, "checkpoints", "1536", "state")
    for root, _, files in os.walk(newest):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")


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
        ("env", ["--env=Nope-v0"], r"--env: unknown environment 'Nope-v0'; registered: Ant-v5, "
         r"HalfCheetah-v5, .*InvertedDoublePendulum-v5, PointMass-v0", None),
        ("num_envs", ["--num_envs=0"], r"num_envs must be a positive integer, got 0", None),
        ("total_steps", ["--total_steps=-5"], r"total_steps must be a positive", None),
        ("minibatches", ["--num_minibatches=3"], r"64 does not divide into num_minibatches=3",
         None),
        ("lr", ["--learning_rate=0"], r"learning_rate must be a positive number", None),
        ("ckpt_keep", ["--keep_checkpoints=0"], r"--keep_checkpoints must be a positive",
         None),
        ("eval_every", ["--eval_every_steps=-2"],
         r"--eval_every_steps must be an integer >= -1, got -2", None),
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
                          copy(f"damaged_{item}_{how}", damage(item, how))))
    ppo_only = set(f.name for f in agents.config_fields(agents.get("ppo").Config))
    ppo_only -= set(f.name for f in agents.config_fields(agents.get("ac").Config))
    assert "unroll_length" in ppo_only
    cases.append(("wrong_algo_flag", ["--algo=ac", "--unroll_length=4"],
                  r"does not apply to --algo=ac", None))
    return cases


@pytest.fixture(scope="module")
def bad_results(cli_runs_ab):
    base, a = cli_runs_ab["base"], cli_runs_ab["a"]
    cases = _bad_cases(base, a)
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for name, args, pattern, run_dir in cases:
            out = run_dir or str(base / f"bad_{name}")
            before = snapshot(out) if run_dir else None
            jobs[name] = (pool.submit(train, *COMMON, f"--out_dir={out}", *args, timeout=120),
                          pattern, out, before)
        return {k: (f.result(), p, o, s) for k, (f, p, o, s) in jobs.items()}


BAD = ["algo", "backend", "env", "num_envs", "total_steps", "minibatches", "lr", "ckpt_keep",
       "eval_every", "hidden", "unknown_flag", "resume_nothing", "resume_no_ckpt", "resume_corrupt",
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
        assert snapshot(out) == before  # nothing overwritten or lost




def test_a_flag_added_later_reads_as_its_old_value_on_resume():
    """A run saved before --normalize_rewards existed resumes with it off, not with it on."""
    from jaxrl_lite.run import run_config
    saved = {"algo": "ppo", "seed": 0}
    assert run_config._first_difference(saved, dict(saved, normalize_rewards=False), "d") is None
    msg = run_config._first_difference(saved, dict(saved, normalize_rewards=True), "d")
    assert msg == "--normalize_rewards=True differs from the run in d (normalize_rewards=False)"
    assert run_config._first_difference(saved, dict(saved, seed=1), "d").startswith("--seed=1")

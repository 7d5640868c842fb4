"""Data-parallel training (jaxrl_lite.blocks.sharding, jaxrl_lite.run.multihost): sharded == single-device
math, a real two-process jax.distributed run with checkpoint + resume, and
one-line errors for bad input.

Everything multi-device runs in subprocesses with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` so this pytest process
keeps its single CPU device.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests import forkserver
from tests.cli_runs import TWO_PROCESSES, xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("JAXRL_LITE_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
NUM_ENVS = 8
ITERS = 3


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", JAX_DEFAULT_MATMUL_PRECISION="highest",
               TF_CPP_MIN_LOG_LEVEL="2", JAXRL_LITE_JAX_CACHE=CACHE, PYTHONPATH=ROOT,
               XLA_FLAGS=xla_flags(devices))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# A sharded run and a single-device run of one agent (argv[1]: ppo, ac or
# ppo_native_ant), same global batch, in a 4-device subprocess; or (argv[1] = mesh) the
# mesh errors and constrain(). Prints one JSON line. One part per subprocess: the three
# compiles together took 50-67 s in a test's setup on CI.
_COMPARE = textwrap.dedent(f"""
    import json, sys
    import jax, numpy as np
    from jaxrl_lite.run import compile_cache
    compile_cache.configure()
    from jaxrl_lite import agents, envs
    from jaxrl_lite.blocks import sharding
    from tests.distributed_worker import small_config

    def run(algo, num_devices, env_name="PointMass-v0", backend="auto"):
        agent = agents.get(algo)
        config = small_config(agent, algo, {NUM_ENVS})
        mesh = sharding.make_mesh(num_devices, num_envs=config.num_envs)
        env = sharding.shard_env(envs.make(env_name, backend=backend, num_envs=config.num_envs),
                             mesh)
        key = jax.random.PRNGKey(0)
        state, shardings = sharding.sharded_init(lambda: agent.init(config, env, key), mesh,
                                             config.num_envs)
        step = sharding.data_parallel(agent.make_train_iteration(config, env), shardings,
                                  donate=True)
        losses = []
        for _ in range({ITERS}):
            state, m = step(state)
            losses.append({{k: float(v) for k, v in m.items() if k.startswith("loss/")}})
        _, actor, norm = agent.policy_parts(config, state)
        out = {{"losses": losses,
               "actor": [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(actor)],
               "norm": [np.asarray(norm.mean).tolist(), np.asarray(norm.var).tolist(),
                        float(norm.count)],
               "obs_spec": list(state.env_state.obs.sharding.spec),
               "obs_shards": len({{str(s.index) for s in state.env_state.obs.addressable_shards}}),
               "key_replicated": bool(state.key.sharding.is_fully_replicated)}}
        if algo == "ac":
            out["buffer_spec"] = list(state.buffer.data.obs.sharding.spec)
        return out

    def mesh_checks():
        errors = {{}}
        for name, fn in {{"indivisible": lambda: sharding.make_mesh(4, num_envs=6),
                         "too_many": lambda: sharding.make_mesh(8),
                         "bad_count": lambda: sharding.make_mesh(-1)}}.items():
            try:
                fn()
                errors[name] = None
            except ValueError as e:
                errors[name] = str(e)
        # constrain(): a layout hint under data_parallel's mesh, identity elsewhere.
        mesh4 = sharding.make_mesh(4)
        x = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
        with jax.set_mesh(mesh4):
            y = jax.jit(lambda a: sharding.constrain({{"a": a * 2.0}}, axis=1))(x)["a"]
        z = jax.jit(lambda a: sharding.constrain(a * 2.0, axis=1))(x)
        return {{"errors": errors,
                "constrain": {{"spec": list(y.sharding.spec), "equal": bool(np.array_equal(y, z)),
                              "plain_shards": len(z.sharding.device_set)}}}}

    part = sys.argv[1]
    if part == "mesh":
        result = mesh_checks()
    elif part == "ppo_native_ant":  # native MuJoCo: its step runs per device via shard_env
        result = {{n: run("ppo", n, "Ant-v5", "mujoco") for n in (1, 4)}}
    else:
        result = {{n: run(part, n) for n in (1, 4)}}
    result = {{"devices": len(jax.devices()), "part": result}}
    print("RESULT " + json.dumps(result))
""")


@pytest.fixture(scope="module")
def compare():
    """compare(part) -> that part's JSON (see _COMPARE), computed once per module."""
    done = {}

    def get(part):
        if part not in done:
            proc = subprocess.run([sys.executable, "-c", _COMPARE, part], env=_env(4), cwd=ROOT,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
            result = json.loads(line[len("RESULT "):])
            assert result["devices"] == 4
            done[part] = result["part"]
        return done[part]
    return get


def _assert_same_losses(a, b):
    assert len(a) == len(b) == ITERS
    for x, y in zip(a, b):
        assert set(x) == set(y) and x
        for k in x:
            np.testing.assert_allclose(y[k], x[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("algo", ["ppo", "ac", "ppo_native_ant"])
def test_sharded_run_matches_single_device(compare, algo):
    single, sharded = compare(algo)["1"], compare(algo)["4"]
    # The layout really is data-parallel: env batch split in 4, key replicated.
    assert sharded["obs_spec"] == ["data"] and sharded["obs_shards"] == 4
    assert single["obs_shards"] == 1 and sharded["key_replicated"]
    if algo == "ac":
        assert sharded["buffer_spec"] == ["data"]
    _assert_same_losses(single["losses"], sharded["losses"])
    # Losses change over the iterations (the comparison is not of constants).
    assert len({round(x["loss/critic" if algo == "ac" else "loss/total"], 7)
                for x in single["losses"]}) > 1
    # Normaliser statistics are global-batch statistics, not per-device ones (those of 2 of
    # the 8 envs). The mean's tolerance is the losses' one: 1 and 4 devices sum in different
    # orders (seen: 1.6e-6 on a -0.057 mean of native Ant at LLVM -O0).
    assert single["norm"][2] == sharded["norm"][2] > 0
    np.testing.assert_allclose(sharded["norm"][0], single["norm"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sharded["norm"][1], single["norm"][1], rtol=1e-4, atol=1e-6)
    for a, b in zip(single["actor"], sharded["actor"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_constrain_splits_only_under_a_mesh(compare):
    c = compare("mesh")["constrain"]
    assert c["spec"] == [None, "data"] and c["equal"] and c["plain_shards"] == 1


def test_mesh_errors_are_one_line(compare):
    errors = compare("mesh")["errors"]
    assert "num_envs=6 is not divisible by the 4 devices" in errors["indivisible"]
    assert "num_devices=8 but only 4" in errors["too_many"]
    assert "num_devices must be a positive integer" in errors["bad_count"]
    assert all("\n" not in e for e in errors.values())


def _launch(out_dir, port, process_id, *extra, devices=2, num_processes=2, timeout_s=60):
    args = [f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={num_processes}", f"--process_id={process_id}",
            f"--out_dir={out_dir}", f"--timeout_s={timeout_s}", f"--iterations={ITERS}",
            f"--num_envs={NUM_ENVS}", *extra]
    return forkserver.start("tests.distributed_worker", args, cwd=ROOT, env=_env(devices))


def _wait(procs, timeout=300):
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(q.pid, signal.SIGKILL)
            raise
        out.append((p.returncode, stdout, stderr))
    return out


def test_two_processes_train_checkpoint_and_resume(compare, tmp_path):
    """2 processes x 2 CPU devices through jax.distributed on localhost: each
    process steps its own 4 of the 8 envs, the losses equal the single-device
    run's, one checkpoint is written, and both processes resume from it."""
    from jaxrl_lite.run import checkpoint

    out = tmp_path / "run"
    out.mkdir()
    port = _free_port()
    for rc, _, err in _wait([_launch(out, port, i) for i in (0, 1)]):
        assert rc == 0, err[-3000:]
    steps = ITERS * NUM_ENVS * 8  # unroll_length=8 in small_config
    assert sorted(os.listdir(out / "checkpoints")) == [str(steps)]
    result = json.loads((out / f"result_{ITERS}.json").read_text())
    assert result["mesh"] == {"num_devices": 4, "num_processes": 2, "process_index": 0,
                              "local_devices": 2, "platform": "cpu"}
    rows = {p: sorted(map(tuple, r)) for p, r in result["env_rows"].items()}
    assert rows == {"0": [(0, 2), (2, 4)], "1": [(4, 6), (6, 8)]}
    assert result["norm_count"] == steps
    _assert_same_losses(compare("ppo")["1"]["losses"], result["losses"])
    # Only process 0 wrote files outside checkpoints/.
    assert sorted(os.listdir(out)) == ["checkpoints", f"result_{ITERS}.json"]
    # The deployable policy of a multi-process checkpoint loads in one process.
    bundle = checkpoint.load_policy(str(out))
    assert bundle.step == steps and bundle.algo == "ppo" and bundle.spec.obs_dim == 4

    port = _free_port()
    for rc, _, err in _wait([_launch(out, port, i, "--resume") for i in (0, 1)]):
        assert rc == 0, err[-3000:]
    assert sorted(os.listdir(out / "checkpoints")) == sorted([str(steps), str(2 * steps)])
    resumed = json.loads((out / f"result_{2 * ITERS}.json").read_text())
    assert resumed["norm_count"] == 2 * steps
    assert all(np.isfinite(v) for x in resumed["losses"] for v in x.values())


def test_two_processes_actor_critic_matches_single_device(compare, tmp_path):
    """The TD3-style agent across 2 processes x 1 device (replay buffer sharded
    over processes along its capacity) computes the single-device losses."""
    port = _free_port()
    procs = [_launch(tmp_path, port, i, "--algo=ac", devices=1) for i in (0, 1)]
    for rc, _, err in _wait(procs):
        assert rc == 0, err[-3000:]
    result = json.loads((tmp_path / f"result_{ITERS}.json").read_text())
    assert result["mesh"]["num_processes"] == 2 and result["env_rows"] == {
        "0": [[0, 4]], "1": [[4, 8]]}
    _assert_same_losses(compare("ac")["1"]["losses"], result["losses"])
    assert os.listdir(tmp_path / "checkpoints") == [str(ITERS * NUM_ENVS * 4)]


def test_unreachable_coordinator_fails_fast_with_one_line(tmp_path):
    port = _free_port()  # nothing listens there
    (rc, _, err), = _wait([_launch(tmp_path, port, 1, timeout_s=3, devices=1)], timeout=60)
    assert rc == 2
    line = _last_line(err)
    assert line.startswith("distributed_worker: error: coordinator 127.0.0.1:")
    assert "unreachable after 3 s" in line


def test_missing_peer_fails_after_timeout_with_one_line(tmp_path):
    """Process 0 alone: XLA would abort with a C++ stack dump; we exit 2 with one line."""
    (rc, _, err), = _wait([_launch(tmp_path, _free_port(), 0, timeout_s=3, devices=1)],
                          timeout=60)
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith(
        "distributed: error: process 0: not all 2 processes joined the coordinator")
    assert "Check failure" not in err


def test_inconsistent_flags_between_processes(tmp_path):
    port = _free_port()
    procs = [_launch(tmp_path, port, 0, devices=1),
             _launch(tmp_path, port, 1, "--seed=1", devices=1)]
    for rc, _, err in _wait(procs, timeout=120):
        assert rc == 2
        assert _last_line(err) == ("distributed_worker: error: inconsistent flags between "
                                   "processes: --seed=0 on process 0 but 1 on process 1; "
                                   "start every process with the same flags")
    assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize("args, message", [
    (("localhost", 2, 0), "coordinator_address must be 'host:port'"),
    (("127.0.0.1:99999", 2, 0), "port must be in 1..65535"),
    (("127.0.0.1:1234", 2, 2), "process_id must be an integer in [0, 2)"),
    (("127.0.0.1:1234", 0, 0), "num_processes must be a positive integer"),
])
def test_initialize_rejects_bad_flags_before_connecting(args, message):
    from jaxrl_lite.run import multihost
    with pytest.raises(ValueError) as e:
        multihost.initialize(*args, timeout_s=1)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_single_process_is_a_no_op_and_primary():
    from jaxrl_lite.run import multihost
    multihost.initialize("127.0.0.1:1234", 1, 0)
    assert multihost.is_primary()
    multihost.check_consistent({"a": 1})


@pytest.mark.parametrize("args, message", [
    (["--devices=1,3", "--num_envs=8"], "--num_envs=8 is not divisible by device count(s) [3]"),
    (["--set=nope=1"], "--set: 'nope' is not a field of the ppo Config"),
    (["--devices=0,2"], "--devices must be positive integers"),
])
def test_bench_scaling_bad_input_is_one_line(args, message):
    proc = forkserver.run("experiments.bench_scaling", args, cwd=ROOT, env=_env(1),
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("bench_scaling: error: " + message)


def test_launcher_two_processes_write_one_run(tmp_path):
    """The user-facing path: two `experiments.train` processes on localhost through
    jax.distributed train one run; process 0 alone writes config/metrics/curve,
    both write their shards of the one checkpoint, and the policy loads."""
    from jaxrl_lite.run import checkpoint

    port = _free_port()
    out = tmp_path / "run"
    # test_faults' two-process run, flag for flag (its compiles are in the cache).
    args = [*TWO_PROCESSES, f"--coordinator_address=127.0.0.1:{port}", f"--out_dir={out}"]
    procs = [forkserver.start("experiments.train", [*args, f"--process_id={i}"], cwd=ROOT,
                              env=_env(1)) for i in (0, 1)]
    for rc, _, err in _wait(procs):
        assert rc == 0, err[-3000:]
    assert sorted(os.listdir(out / "checkpoints")) == ["256", "512"]
    assert {"config.json", "metrics.jsonl", "learning_curve.png"} <= set(os.listdir(out))
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(64, 513, 64))  # one writer
    runtime = json.loads((out / "runtime.jsonl").read_text().splitlines()[0])
    assert runtime["mesh"]["num_processes"] == 2 and runtime["mesh"]["num_devices"] == 2
    assert checkpoint.load_policy(str(out)).step == 512
    # Both processes saved the best evaluated policy (the final one: the only evaluation).
    assert checkpoint.load_policy(str(out / "best")).step == 512


@pytest.mark.parametrize("devices, flags_, message", [
    (2, ["--num_envs=3"], "train: error: num_envs=3 is not divisible by the 2 devices"),
    (1, ["--num_envs=4", "--num_devices=3"], "train: error: num_devices=3 but only 1 cpu"),
])
def test_launcher_mesh_errors_are_one_line(tmp_path, devices, flags_, message):
    out = tmp_path / "run"
    proc = forkserver.run(
        "experiments.train", ["--env=PointMass-v0", "--total_steps=100", "--noprogress",
                              f"--out_dir={out}", *flags_], cwd=ROOT, env=_env(devices),
        timeout=120)
    assert proc.returncode == 2
    assert _last_line(proc.stderr).startswith(message)
    assert "Traceback" not in proc.stderr and not out.exists()

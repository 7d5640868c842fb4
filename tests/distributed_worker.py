"""One process of a data-parallel training run (used by tests/test_distributed.py).

    python tests/distributed_worker.py --coordinator_address=127.0.0.1:PORT \
        --num_processes=2 --process_id=I --out_dir=DIR [--algo=ppo] [--num_envs=8] \
        [--iterations=3] [--resume]

Trains ``--algo`` on ``--env`` (PointMass-v0) with jaxrl_lite.blocks.sharding over every
device of every process, saves one checkpoint (all processes take part; orbax
writes each process's shards), and process 0 alone writes ``result.json``
(per-iteration losses). With ``--resume`` it first restores the newest
checkpoint of ``out_dir`` (sharded) and trains ``--iterations`` more.
Errors are one line on stderr, exit status 2. Set ``XLA_FLAGS`` for several
CPU devices per process. This is also the reference for wiring the module
into experiments/train.py.
"""
from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxrl_lite.blocks import sharding  # noqa: E402
from jaxrl_lite.run import compile_cache, multihost  # noqa: E402

flags.DEFINE_string("coordinator_address", "127.0.0.1:12355", "host:port of process 0")
flags.DEFINE_integer("num_processes", 1, "processes in the run")
flags.DEFINE_integer("process_id", 0, "this process's index")
flags.DEFINE_float("timeout_s", 30.0, "seconds to wait for the coordinator")
flags.DEFINE_string("out_dir", None, "run directory (shared by all processes)")
flags.DEFINE_string("algo", "ppo", "ppo | ac")
flags.DEFINE_string("env", "PointMass-v0", "environment")
flags.DEFINE_string("backend", "auto", "physics backend")
flags.DEFINE_integer("num_envs", 8, "GLOBAL env batch (all processes)")
flags.DEFINE_integer("num_devices", 0, "devices in the mesh (0 = all)")
flags.DEFINE_integer("iterations", 3, "train iterations")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_boolean("resume", False, "restore the newest checkpoint first")
flags.DEFINE_integer("hidden", 16, "hidden layer width of every network")
FLAGS = flags.FLAGS


def small_config(agent, algo: str, num_envs: int, hidden: int = 16):
    h = (hidden, hidden)
    if algo == "ppo":
        return agent.Config(num_envs=num_envs, unroll_length=8, num_minibatches=4,
                            num_epochs=2, total_steps=100_000, policy_hidden=h,
                            value_hidden=h)
    return agent.Config(num_envs=num_envs, steps_per_iteration=4, buffer_size=256,
                        batch_size=32, hidden=h, warmup_steps=32, total_steps=100_000)


def main(argv):
    del argv
    compile_cache.configure()
    try:
        multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                        timeout_s=FLAGS.timeout_s)
        settings = {k: FLAGS[k].value for k in (
            "num_processes", "out_dir", "algo", "env", "backend", "num_envs", "num_devices",
            "iterations", "seed", "hidden", "resume")}
        multihost.check_consistent(settings, timeout_s=FLAGS.timeout_s)
        from jaxrl_lite import agents, envs
        from jaxrl_lite.run import checkpoint
        agent = agents.get(FLAGS.algo)
        config = small_config(agent, FLAGS.algo, FLAGS.num_envs, FLAGS.hidden)
        config.validate()
        mesh = sharding.make_mesh(FLAGS.num_devices or None, num_envs=config.num_envs)
        multihost.barrier("flags-checked")  # e.g. all check out_dir before process 0 writes
    except (ValueError, multihost.DistributedError) as e:
        sys.stderr.write(f"distributed_worker: error: {e}\n")
        sys.exit(2)

    # shard_env: each device (so each process) steps only its own envs' physics.
    env = sharding.shard_env(envs.make(FLAGS.env, backend=FLAGS.backend, num_envs=config.num_envs,
                                   auto_reset=True), mesh)
    key = jax.random.PRNGKey(FLAGS.seed)
    state, shardings = sharding.sharded_init(lambda: agent.init(config, env, key), mesh,
                                         config.num_envs)
    ckpt = checkpoint.Checkpointer(FLAGS.out_dir, max_to_keep=2)
    start = 0
    if FLAGS.resume:
        template = sharding.abstract_state(jax.eval_shape(lambda: state), shardings)
        state, meta = ckpt.restore(template)
        start = int(meta["iteration"])
    step = sharding.data_parallel(agent.make_train_iteration(config, env), shardings, donate=True)
    losses = []
    for _ in range(FLAGS.iterations):
        state, metrics = step(state)
        host = sharding.to_host(metrics)
        losses.append({k: float(v) for k, v in host.items() if k.startswith("loss/")})
    it = start + FLAGS.iterations
    spec, actor, norm = agent.policy_parts(config, state)
    # numpy (written once, by process 0) so that export's single-process
    # load_policy can read it; the sharded state keeps its layout for resume.
    actor, norm = sharding.to_host((actor, norm))
    spec = dataclasses.replace(spec, env=FLAGS.env)
    steps = it * agent.env_steps_per_iteration(config)
    ckpt.save(steps, state, spec, actor, norm, agent.NAME, extra_meta={"iteration": it})
    ckpt.close()
    if multihost.is_primary():
        obs = state.env_state.obs
        rows = {}  # process -> env rows it holds (and steps)
        for d, idx in obs.sharding.devices_indices_map(obs.shape).items():
            rows.setdefault(str(d.process_index), []).append(
                [idx[0].start or 0, idx[0].stop or obs.shape[0]])
        result = {"losses": losses, "iteration": it, "env_steps": steps,
                  "mesh": sharding.describe(mesh), "env_rows": rows,
                  "norm_count": float(sharding.to_host(state.norm.count))}
        with open(os.path.join(FLAGS.out_dir, f"result_{it}.json"), "w") as f:
            json.dump(result, f)

if __name__ == "__main__":
    app.run(main)

"""Everything a run builds once before its first iteration.

:func:`prepare` checks the config and its out_dir on every process and writes
nothing; :func:`build` makes the agent's envs, the data-parallel layout and the
schedule (a :class:`Run`); :func:`initial_state` gives the train state to
start from: fresh, or restored from a checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import socket
import sys
import time
import types

import jax
import jaxlib
import numpy as np
from absl import logging

from jaxrl_lite import agents, envs
from jaxrl_lite.blocks import sharding
from jaxrl_lite.blocks.policy import PolicySpec, ScaledActions
from jaxrl_lite.run import checkpoint, multihost, run_config
from jaxrl_lite.run.errors import ConfigError, output_errors
from jaxrl_lite.run.run_config import CONFIG_FILE, TrainConfig
from jaxrl_lite.run.schedule import Schedule

DISCARDED_SUBDIR = "discarded_checkpoints"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated config and how its out_dir starts (see ``run_config.plan_out_dir``)."""

    config: TrainConfig
    start: str                 # "fresh" | "restart" | "resume"
    resume_from: int | None    # checkpoint step to resume from
    set_aside: tuple[int, ...] = ()  # newer checkpoints moved away (resume_step)


def prepare(config: TrainConfig) -> Plan:
    """Validate ``config`` and its out_dir on every process (nothing is written);
    raises ConfigError. ``train`` calls it; callers may call it early."""
    config = run_config.validate(config)
    try:
        multihost.check_consistent(config.to_json())
        # Device count and batch divisibility, checked before anything is written.
        sharding.make_mesh(config.num_devices or None, num_envs=config.agent_config.num_envs)
    except (ValueError, multihost.DistributedError) as e:
        raise ConfigError(str(e)) from None
    start, step = run_config.plan_out_dir(config)
    newer = tuple(s for s in checkpoint.list_steps(config.out_dir)
                  if step is not None and s > step)
    multihost.barrier("out_dir-checked")  # before process 0 writes anything
    return Plan(config, start, step, newer)


@dataclasses.dataclass
class Run:
    """What one ``train`` call computes once: the agent, its envs, the layout, the
    schedule and the keys."""

    config: TrainConfig
    agent: types.ModuleType
    parallel: sharding.DataParallel
    env: object                # training envs (sharded, auto-reset; actions in [-1, 1])
    eval_env: object           # evaluation envs (plain task, no auto-reset)
    action_bounds: tuple | None  # (low, high) [act_dim] the policy maps onto; None: [-1, 1]
    schedule: Schedule
    init_key: jax.Array
    eval_key: jax.Array

    @property
    def agent_config(self):
        return self.config.agent_config


def build(config: TrainConfig) -> Run:
    """The agent's envs and layout for a validated config; ConfigError when the
    agent or ``--train_env_kwargs`` does not fit the env (nothing written yet)."""
    agent, ac = agents.get(config.algo), config.agent_config
    parallel = sharding.DataParallel(config.num_devices, ac.num_envs)
    try:
        train_env = envs.make(config.env, backend=config.backend, num_envs=ac.num_envs,
                              auto_reset=True, **run_config.train_env_kwargs(config))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--train_env_kwargs: {e}") from None
    eval_env = envs.make(config.env, backend=config.backend, num_envs=config.eval_envs,
                         auto_reset=False)
    if train_env.observation_size != eval_env.observation_size:
        raise ConfigError(f"--train_env_kwargs changes the observation size "
                          f"({train_env.observation_size} instead of "
                          f"{eval_env.observation_size}); the policy is evaluated and "
                          f"exported on the plain --env={config.env}")
    env = parallel.shard_env(train_env)
    bounds = action_bounds(train_env)
    if bounds is not None:  # agents act in [-1, 1]; the env gets the task's units
        env = ScaledActions(env, PolicySpec(config.env, env.observation_size, env.action_size,
                                            (1,)).with_bounds(*bounds))
    if hasattr(agent, "check_env"):   # optional: config vs env, before any write
        try:
            agent.check_env(ac, env)
        except ValueError as e:
            raise ConfigError(f"--algo={config.algo}: {e}") from None
    schedule = Schedule.from_config(config, int(agent.env_steps_per_iteration(ac)))
    init_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed))
    return Run(config, agent, parallel, env, eval_env, bounds, schedule, init_key, eval_key)


def action_bounds(env) -> tuple[np.ndarray, np.ndarray] | None:
    """The task's finite action bounds when they are not [-1, 1], else None."""
    low, high = getattr(env, "action_low", None), getattr(env, "action_high", None)
    if low is None or not (np.isfinite(low).all() and np.isfinite(high).all()):
        return None
    if (low == -1).all() and (high == 1).all():
        return None
    return np.asarray(low, np.float32), np.asarray(high, np.float32)


@contextlib.contextmanager
def quiet_orbax():
    """orbax logs every file operation at INFO through absl: keep warnings only."""
    level = logging.get_verbosity()
    if level > logging.WARNING:  # absl: INFO=0 > WARNING=-1
        logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def start_out_dir(plan: Plan) -> checkpoint.Checkpointer:
    """Process 0 sets newer checkpoints aside (``--resume_step``) and writes
    config.json on a new run; every process then opens the checkpointer."""
    config = plan.config
    out = config.out_dir
    if plan.set_aside and multihost.is_primary():
        dest = os.path.join(out, DISCARDED_SUBDIR, time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(dest, exist_ok=True)
        for s in plan.set_aside:
            shutil.move(os.path.join(checkpoint.checkpoint_dir(out), str(s)),
                        os.path.join(dest, str(s)))
        logging.warning("resuming from step %d: newer checkpoints %s moved to %s",
                        plan.resume_from, list(plan.set_aside), dest)
    multihost.barrier("newer-checkpoints-set-aside")
    if multihost.is_primary() and plan.start != "resume":
        with output_errors(CONFIG_FILE, out, lambda: None):
            os.makedirs(out, exist_ok=True)
            tmp = os.path.join(out, CONFIG_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump(config.to_json(), f, indent=1, sort_keys=True)
            os.replace(tmp, os.path.join(out, CONFIG_FILE))
    multihost.barrier("config-written")
    with quiet_orbax():
        return checkpoint.Checkpointer(out, max_to_keep=config.keep_checkpoints)


def initial_state(run: Run, plan: Plan, ckpt: checkpoint.Checkpointer):
    """-> (train state, start iteration, resumed-from step or None, wall_s so far)."""
    agent, ac = run.agent, run.agent_config

    def init_fn():  # the train state built directly in its sharded layout
        return run.parallel.init(lambda: agent.init(ac, run.env, run.init_key))

    if plan.start != "resume":
        if plan.start == "restart":
            logging.warning("%s holds no checkpoint of this run: starting it from step 0",
                            plan.config.out_dir)
        return init_fn(), 0, None, 0.0
    shapes = jax.eval_shape(lambda: agents.checkpoint_state(
        agent, ac, agent.init(ac, run.env, run.init_key)))
    try:
        with quiet_orbax():  # each process reads its own shards
            restored, meta = ckpt.restore(run.parallel.restore_template(shapes),
                                          plan.resume_from)
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"--resume: {e}") from None
    fresh = init_fn() if hasattr(agent, "restore_state") else None
    state = agents.restore_state(agent, ac, fresh, restored)
    step = int(meta["step"])
    return (state, int(meta.get("iteration", step // run.schedule.steps_per_iter)), step,
            float(meta.get("wall_s", 0.0)))


def runtime_info(run: Run, resumed_from: int | None) -> dict:
    """One line of runtime.jsonl: where and with what this start ran."""
    config = run.config
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_from_step": resumed_from,
        "argv": sys.argv,
        "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"),
        "python": platform.python_version(), "host": socket.gethostname(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "backend": envs.resolve_backend(config.backend),
        "mesh": run.parallel.describe(),
    }

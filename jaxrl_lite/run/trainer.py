"""The training loop: ``train(TrainConfig) -> summary`` for every algorithm.

    from jaxrl_lite.run import trainer
    from jaxrl_lite.agents.ppo.train import Config
    summary = trainer.train(trainer.TrainConfig(
        out_dir="runs/x", algo="ppo", env="PointMass-v0",
        agent_config=Config(num_envs=8, total_steps=4096)))

Writes into ``out_dir``: ``config.json`` (every field), ``checkpoints/``
(orbax, atomic, last K, checksummed), ``metrics.jsonl`` (one record per log
interval), ``learning_curve.png`` and ``runtime.jsonl`` (JAX/device info, one
line per start). Checkpoints, logs and evaluations happen at fixed iteration
boundaries, so a run resumed from a checkpoint computes exactly what the
uninterrupted one does, bit for bit.

Errors are :class:`TrainingError` subclasses with a one-line message and the
CLI's exit status: :class:`ConfigError` (2: bad input, raised before anything
is compiled or written), :class:`Diverged` (3: a non-finite metric or policy
parameter; the checkpoints on disk are the last good ones) and
:class:`OutputError` (4: a checkpoint or metrics write failed, e.g. out of
disk; the previous checkpoint and ``metrics.jsonl`` stay consistent).

Multi-process runs call ``multihost.initialize`` first (the CLI does); every
process then calls ``train`` with the same config.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
from typing import Callable

from absl import logging

from jaxrl_lite import agents
from jaxrl_lite.run import checkpoint, faults, run_config
from jaxrl_lite.run.run_config import (CONFIG_FILE, RUNTIME_FILE, ConfigError, TrainConfig,
                                   TrainingError, plan_out_dir, validate)

__all__ = ["train", "prepare", "validate", "TrainConfig", "TrainingError", "ConfigError",
           "Diverged", "OutputError", "PeerLost", "DISCARDED_SUBDIR"]

EXIT_DIVERGED = 3
EXIT_OUTPUT = 4
DISCARDED_SUBDIR = "discarded_checkpoints"
class Diverged(TrainingError):
    """Non-finite metrics or policy parameters (exit status 3)."""

    exit_code = EXIT_DIVERGED


class OutputError(TrainingError):
    """A checkpoint or metrics write failed (exit status 4)."""

    exit_code = EXIT_OUTPUT


class PeerLost(TrainingError):
    """Multi-process run: a collective failed, typically because another process
    died (exit status 5). Exit with ``multihost.exit_now``: a normal exit would
    wait in jax's shutdown barrier for the process that is gone."""

    exit_code = 5


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
    from jaxrl_lite.run import multihost
    from jaxrl_lite.blocks import sharding

    config = validate(config)
    try:
        multihost.check_consistent(config.to_json())
        # Device count and batch divisibility, checked before anything is written.
        sharding.make_mesh(config.num_devices or None, num_envs=config.agent_config.num_envs)
    except (ValueError, multihost.DistributedError) as e:
        raise ConfigError(str(e)) from None
    start, step = plan_out_dir(config)
    newer = tuple(s for s in checkpoint.list_steps(config.out_dir)
                  if step is not None and s > step)
    multihost.barrier("out_dir-checked")  # before process 0 writes anything
    return Plan(config, start, step, newer)


def _runtime_info(config: TrainConfig, resumed_from) -> dict:
    import jax
    import jaxlib
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
    }


def _boundaries(config: TrainConfig, steps_per_iter: int, total_iters: int):
    """-> (checkpoint, log, eval, stop) in iterations (eval 0 = only at the end)."""
    to_iters = lambda s: max(1, -(-s // steps_per_iter))  # noqa: E731
    ckpt = to_iters(config.checkpoint_every_steps)
    log = to_iters(config.log_every_steps)
    ev = to_iters(config.eval_every_steps) if config.eval_every_steps else 0
    stop = total_iters
    if config.stop_after_steps:
        first = to_iters(config.stop_after_steps)
        stop = min(total_iters, -(-first // ckpt) * ckpt)
    return ckpt, log, ev, stop


def _host_scalars(tree) -> dict:
    import numpy as np
    return {k: float(np.asarray(v)) for k, v in tree.items()}


class _NoWriter:
    """Metrics writer of processes other than 0: writes nothing."""
    records = ()

    def write(self, record, force_plot=False):
        pass

    def truncate_after(self, step):
        pass

    def plot(self):
        pass

    def close(self):
        pass


@contextlib.contextmanager
def _quiet_orbax():
    """orbax logs every file operation at INFO through absl: keep warnings only."""
    level = logging.get_verbosity()
    if level > logging.WARNING:  # absl: INFO=0 > WARNING=-1
        logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e``, if any: orbax re-raises them wrapped, tensorstore
    as a ValueError whose text ends in ``[os_error_code='28']``."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError):
            return e
        m = re.search(r"os_error_code='(\d+)'", str(e))
        if m:
            code = int(m.group(1))
            return OSError(code, os.strerror(code))
        e = e.__cause__ or e.__context__
        seen += 1
    return None


@contextlib.contextmanager
def _writes(what: str, out_dir: str, kept: Callable[[], int | None]):
    """Turn a failed write (ENOSPC, EACCES, ...) into one OutputError line."""
    try:
        yield
    except (TrainingError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - orbax raises many types around an OSError
        err = _os_error(e)
        if err is None:
            raise
        step = kept()
        raise OutputError(
            f"cannot write {what} in {out_dir} ({err.strerror or type(err).__name__}"
            f"{': ' + err.filename if getattr(err, 'filename', None) else ''}); stopped. "
            f"Newest checkpoint: {'none' if step is None else step}; free space or fix "
            f"permissions, then continue with the same flags and --resume") from None


def _set_aside_newer(plan: Plan) -> None:
    """Resuming from an older checkpoint: process 0 moves the newer steps to
    discarded_checkpoints/ (kept for inspection, out of orbax's way)."""
    from jaxrl_lite.run import multihost

    out = plan.config.out_dir
    if plan.set_aside and multihost.is_primary():
        dest = os.path.join(out, DISCARDED_SUBDIR, time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(dest, exist_ok=True)
        for s in plan.set_aside:
            shutil.move(os.path.join(checkpoint.checkpoint_dir(out), str(s)),
                        os.path.join(dest, str(s)))
        logging.warning("resuming from step %d: newer checkpoints %s moved to %s",
                        plan.resume_from, list(plan.set_aside), dest)
    multihost.barrier("newer-checkpoints-set-aside")


@dataclasses.dataclass
class _Run:
    """What one ``train`` call computes once: the agent, envs, schedule, keys."""

    config: TrainConfig
    mod: object
    mesh: object
    env: object
    eval_env: object
    steps_per_iter: int
    total_iters: int
    ckpt_it: int          # checkpoint every ckpt_it iterations
    log_it: int
    eval_it: int          # 0 = only at the end
    stop_it: int
    init_key: object
    eval_key: object

    @property
    def agent_config(self):
        return self.config.agent_config


def _build(config: TrainConfig) -> _Run:
    import jax

    from jaxrl_lite import envs
    from jaxrl_lite.blocks import sharding

    mod = agents.get(config.algo)
    ac = config.agent_config
    mesh = sharding.make_mesh(config.num_devices or None, num_envs=ac.num_envs)
    try:
        train_env = envs.make(config.env, backend=config.backend, num_envs=ac.num_envs,
                              auto_reset=True, **run_config.train_env_kwargs(config))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--train_env_kwargs: {e}") from None
    env = sharding.shard_env(train_env, mesh)
    eval_env = envs.make(config.env, backend=config.backend, num_envs=config.eval_envs,
                         auto_reset=False)
    if train_env.observation_size != eval_env.observation_size:
        raise ConfigError(f"--train_env_kwargs changes the observation size "
                          f"({train_env.observation_size} instead of "
                          f"{eval_env.observation_size}); the policy is evaluated and "
                          f"exported on the plain --env={config.env}")
    check_env = getattr(mod, "check_env", None)   # optional: config vs env, before any write
    if check_env is not None:
        try:
            check_env(ac, env)
        except ValueError as e:
            raise ConfigError(f"--algo={config.algo}: {e}") from None
    steps_per_iter = int(mod.env_steps_per_iteration(ac))
    total_iters = max(1, -(-ac.total_steps // steps_per_iter))
    init_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed))
    return _Run(config, mod, mesh, env, eval_env, steps_per_iter, total_iters,
                *_boundaries(config, steps_per_iter, total_iters), init_key, eval_key)


def _write_config(config: TrainConfig) -> None:
    os.makedirs(config.out_dir, exist_ok=True)
    tmp = os.path.join(config.out_dir, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(config.to_json(), f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(config.out_dir, CONFIG_FILE))


def _initial_state(run: _Run, plan: Plan, ckpt: checkpoint.Checkpointer):
    """-> (train state, start iteration, resumed-from step or None, wall_s so far)."""
    import jax

    from jaxrl_lite.blocks import sharding

    mod, ac = run.mod, run.agent_config

    def init_fn():  # the train state built directly in its sharded layout
        return sharding.sharded_init(lambda: mod.init(ac, run.env, run.init_key), run.mesh,
                                        ac.num_envs)[0]

    if plan.start != "resume":
        if plan.start == "restart":
            logging.warning("%s holds no checkpoint of this run: starting it from step 0",
                            plan.config.out_dir)
        return init_fn(), 0, None, 0.0
    shapes = jax.eval_shape(lambda: agents.checkpoint_state(
        mod, ac, mod.init(ac, run.env, run.init_key)))
    template = sharding.abstract_state(  # each process reads its own shards
        shapes, sharding.state_shardings(shapes, run.mesh, ac.num_envs))
    try:
        with _quiet_orbax():
            restored, meta = ckpt.restore(template, plan.resume_from)
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"--resume: {e}") from None
    fresh = init_fn() if hasattr(mod, "restore_state") else None
    state = agents.restore_state(mod, ac, fresh, restored)
    step = int(meta["step"])
    return (state, int(meta.get("iteration", step // run.steps_per_iter)), step,
            float(meta.get("wall_s", 0.0)))


def train(config: TrainConfig | Plan,
          on_record: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) one run. ``on_record(record)`` is called on process 0
    after each metrics record is written and checkpointed (e.g. a soak test's
    memory probe).

    Returns {"exit": "finished" | "stopped" | "time budget", "env_steps",
    "iterations", "compile_s", "wall_s", "setup_s", "last" (the last metrics
    record), "state" (the train state), "spec", "policy_parts"}.
    Raises ConfigError / Diverged / OutputError (one line each).
    """
    t_start = time.perf_counter()
    plan = config if isinstance(config, Plan) else prepare(config)
    config = plan.config
    import jax

    from jaxrl_lite.run import multihost

    cache = os.environ.get("JAXRL_LITE_JAX_CACHE")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    run = _build(config)
    _set_aside_newer(plan)
    if multihost.is_primary() and plan.start != "resume":
        with _writes(CONFIG_FILE, config.out_dir, lambda: None):
            _write_config(config)
    multihost.barrier("config-written")
    with _quiet_orbax():
        ckpt = checkpoint.Checkpointer(config.out_dir, max_to_keep=config.keep_checkpoints)
    # float32 matmuls everywhere (TF32 on some GPUs otherwise), as the CLI sets it.
    precision = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or "highest"
    try:
        with jax.default_matmul_precision(precision):
            state, start_iter, resumed_from, wall_offset = _initial_state(run, plan, ckpt)
            return _loop(run, plan, ckpt, state, start_iter, resumed_from, wall_offset,
                         on_record, t_start)
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        raise PeerLost(multihost.peer_lost_message(jax.process_index(), str(e))) from None
    finally:
        with _quiet_orbax():
            ckpt.close()


def _loop(run: _Run, plan: Plan, ckpt, state, start_iter, resumed_from, wall_offset,
          on_record, t_start) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_lite import envs
    from jaxrl_lite.run import evaluation, metrics, multihost, progress
    from jaxrl_lite.blocks import sharding

    config, mod, ac = run.config, run.mod, run.agent_config
    steps_per_iter, total_iters, stop_it = run.steps_per_iter, run.total_iters, run.stop_it
    fault_nan_at = faults.nan_at_step()
    try:
        fault_kill = faults.kill_point()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    primary = multihost.is_primary()
    info = _runtime_info(config, resumed_from)
    logging.info("JAX %s on %s; algo=%s env=%s backend=%s (%s); %d env steps/iteration, "
                 "%d iterations", info["jax"], info["devices"], config.algo, config.env,
                 config.backend, envs.resolve_backend(config.backend), steps_per_iter,
                 total_iters)
    info["mesh"] = sharding.describe(run.mesh)
    out_dir = config.out_dir
    writing = lambda what: _writes(what, out_dir, ckpt.latest_step)  # noqa: E731
    with writing(metrics.METRICS_FILE):
        writer = (metrics.MetricsWriter(out_dir, title=f"{config.algo} on {config.env} "
                                        f"(seed {config.seed})", plot_every_s=config.plot_every_s)
                  if primary else _NoWriter())
        # A resume drops records after its checkpoint; a restart drops all of them.
        if plan.start != "fresh":
            writer.truncate_after(resumed_from or 0)
    if config.tensorboard and primary:
        with writing(metrics.TENSORBOARD_SUBDIR):
            writer.start_tensorboard()

    shardings = sharding.state_shardings(state, run.mesh, ac.num_envs)
    train_iteration = sharding.data_parallel(mod.make_train_iteration(ac, run.env),
                                                shardings, donate=True)
    t0 = time.perf_counter()
    train_iteration = train_iteration.lower(state).compile()
    compile_s = time.perf_counter() - t0
    info["compile_s"] = round(compile_s, 3)
    logging.info("train iteration compiled in %.1f s", compile_s)

    spec = dataclasses.replace(mod.policy_parts(ac, state)[0], env=config.env)

    def policy_finite(ts):
        _, actor, norm = mod.policy_parts(ac, ts)
        leaves = jax.tree_util.tree_leaves((actor, norm))
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

    t0 = time.perf_counter()
    policy_finite = jax.jit(policy_finite).lower(state).compile()
    # The evaluator runs on each process's own first device from host copies.
    actor0, norm0 = sharding.to_host(mod.policy_parts(ac, state)[1:])
    evaluator = evaluation.make_evaluator(run.eval_env, spec).lower(
        actor0, norm0, run.eval_key).compile()
    info["eval_compile_s"] = round(time.perf_counter() - t0, 3)
    if primary:
        with writing(RUNTIME_FILE), open(os.path.join(out_dir, RUNTIME_FILE), "a") as f:
            f.write(json.dumps(info) + "\n")

    def save(it, ts, wall_s):  # every process: orbax writes each one's shards
        # numpy policy: written once, loadable by export's single-process load_policy
        actor, norm = sharding.to_host(mod.policy_parts(ac, ts)[1:])
        step = it * steps_per_iter
        if fault_kill == ("save", step):
            faults.kill_when_saving(ckpt.directory, step)
        with writing("a checkpoint"), _quiet_orbax():
            ckpt.save(step, agents.checkpoint_state(mod, ac, ts), spec,
                      actor, norm, config.algo,
                      extra_meta={"iteration": it, "wall_s": wall_s,
                                  "env_steps_per_iteration": steps_per_iter,
                                  "config": config.to_json()})
        if fault_kill in (("save", step), ("checksums", step)):
            # On disk as if killed between orbax's rename and the checksums.
            os.remove(os.path.join(ckpt.directory, str(step), checkpoint.MANIFEST))
            faults.kill_self()

    bar = progress.Progress(total_iters * steps_per_iter, start_iter * steps_per_iter,
                            enabled=config.progress and primary,
                            description=f"{config.algo} {config.env}")
    pending = []
    train_time = 0.0  # seconds inside training iterations since the last record
    t_run = time.perf_counter()
    last = {}
    it = start_iter
    exit_reason = "finished"
    try:
        while it < stop_it:
            t_it = time.perf_counter()
            state, m = train_iteration(state)
            pending.append(m)
            it += 1
            is_ckpt = it % run.ckpt_it == 0 or it == stop_it
            is_eval = (run.eval_it and it % run.eval_it == 0) or it == total_iters
            if not (is_ckpt or is_eval or it % run.log_it == 0 or it == stop_it):
                train_time += time.perf_counter() - t_it
                continue
            out_of_time = bool(config.max_wall_s) and (
                wall_offset + time.perf_counter() - t_run >= config.max_wall_s)
            if out_of_time:
                is_ckpt = is_eval = True
            host = [_host_scalars(x) for x in sharding.to_host(pending)]
            ok = bool(policy_finite(state))
            train_time += time.perf_counter() - t_it
            record = {"step": it * steps_per_iter, "iteration": it}
            for k in host[-1]:
                vals = [h[k] for h in host]
                record[k] = vals[-1] if k.startswith("episode") else float(np.mean(vals))
            record["env_steps_per_s"] = len(pending) * steps_per_iter / max(train_time, 1e-9)
            pending, train_time = [], 0.0
            if fault_nan_at and record["step"] >= fault_nan_at:   # fault injection (tests)
                record["loss/injected_fault"] = float("nan")
            bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad or not ok:
                what = ", ".join(bad) if bad else "policy parameters"
                kept = ckpt.latest_step()
                record["wall_s"] = wall_offset + time.perf_counter() - t_run
                record["episode_return_mean"] = None
                with writing(metrics.METRICS_FILE):
                    writer.write(record, force_plot=True)
                raise Diverged(f"training diverged at env step {record['step']}: non-finite "
                               f"{what}; stopped. Last good checkpoint: "
                               + (f"{ckpt.directory}/{kept}" if kept is not None else "none"))
            if record.get("episodes_completed", 1.0) == 0.0:
                record["episode_return_mean"] = None
                record["episode_length_mean"] = None
            if is_eval:
                actor, norm = sharding.to_host(mod.policy_parts(ac, state)[1:])
                record.update(_host_scalars(evaluator(actor, norm,
                                                      jax.random.fold_in(run.eval_key, it))))
            record["wall_s"] = wall_offset + time.perf_counter() - t_run
            with writing(metrics.METRICS_FILE):
                writer.write(record, force_plot=it == stop_it)
            if fault_kill == ("record", record["step"]):
                faults.kill_self()
            last = record
            ret = record.get("episode_return_mean")
            logging.log(logging.DEBUG if bar.active else logging.INFO,
                        "step %d/%d  %.0f steps/s  return %s%s", record["step"],
                        total_iters * steps_per_iter, record["env_steps_per_s"],
                        "-" if ret is None else f"{ret:.2f}",
                        f"  eval {record['eval/return_mean']:.2f}" if is_eval else "")
            bar.update(record["step"], record["env_steps_per_s"], ret)
            if is_ckpt:
                save(it, state, record["wall_s"])
            if on_record is not None and primary:
                on_record(record)
            if out_of_time and it < stop_it:
                logging.info("wall-time budget of %.0f s reached at env step %d",
                             config.max_wall_s, record["step"])
                exit_reason = "time budget"
                break
        else:
            if stop_it < total_iters:
                exit_reason = "stopped"
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            if writer.records:
                writer.plot()
            writer.close()
    return {"exit": exit_reason, "env_steps": it * steps_per_iter, "iterations": it,
            "compile_s": compile_s, "wall_s": wall_offset + time.perf_counter() - t_run,
            "setup_s": t_run - t_start, "last": last, "state": state, "spec": spec,
            "policy_parts": mod.policy_parts(ac, state)}

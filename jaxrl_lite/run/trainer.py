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
boundaries (:mod:`jaxrl_lite.run.schedule`), so a run resumed from a
checkpoint computes exactly what the uninterrupted one does, bit for bit.

The loop is one compiled step (the agent's iteration, data-parallel) and, at
boundaries, three named actions of :class:`Boundaries`: ``record`` (metrics,
divergence check), ``evaluate`` and ``checkpoint``. Errors are the one-line
:mod:`jaxrl_lite.run.errors` (ConfigError 2, Diverged 3, OutputError 4,
PeerLost 5). Multi-process runs call ``multihost.initialize`` first (the CLI
does); every process then calls ``train`` with the same config.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxrl_lite import agents
from jaxrl_lite.run import (checkpoint, compile_cache, evaluation, faults, metrics, multihost,
                            progress)
from jaxrl_lite.run.errors import (ConfigError, Diverged, OutputError, PeerLost,
                                   TrainingError, output_errors)
from jaxrl_lite.run.run_config import RUNTIME_FILE, TrainConfig, validate
from jaxrl_lite.run.setup import DISCARDED_SUBDIR, Plan, Run, prepare
from jaxrl_lite.run import setup

__all__ = ["train", "prepare", "validate", "TrainConfig", "TrainingError", "ConfigError",
           "Diverged", "OutputError", "PeerLost", "DISCARDED_SUBDIR", "Plan"]


def train(config: TrainConfig | Plan,
          on_record: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) one run. ``on_record(record)`` is called on process 0
    after each metrics record is written and checkpointed (e.g. a soak test's
    memory probe).

    Returns {"exit": "finished" | "stopped" | "time budget", "env_steps",
    "iterations", "compile_s", "wall_s", "setup_s", "last" (the last metrics
    record), "state" (the train state), "spec", "policy_parts"}.
    Raises ConfigError / Diverged / OutputError / PeerLost (one line each).
    """
    t_start = time.perf_counter()
    plan = config if isinstance(config, Plan) else prepare(config)
    config = plan.config
    compile_cache.configure()
    run = setup.build(config)
    ckpt = setup.start_out_dir(plan)
    # float32 matmuls everywhere (TF32 on some GPUs otherwise), as the CLI sets it.
    precision = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or "highest"
    try:
        with jax.default_matmul_precision(precision):
            state, start_iter, resumed_from, wall_offset = setup.initial_state(run, plan, ckpt)
            with Boundaries(run, plan, ckpt, state, start_iter, resumed_from) as act:
                act.compile_evaluator(state, precision)  # in a thread, beside the step's
                t0 = time.perf_counter()
                step = run.parallel.compile(
                    run.agent.make_train_iteration(run.agent_config, run.env), state)
                act.compiled(state, time.perf_counter() - t0)
                return _iterate(run, act, step, state, start_iter, wall_offset, on_record,
                                t_start)
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        raise PeerLost(multihost.peer_lost_message(jax.process_index(), str(e))) from None
    finally:
        with setup.quiet_orbax():
            ckpt.close()


def _iterate(run: Run, act: "Boundaries", step, state, start_iter: int, wall_offset: float,
             on_record, t_start: float) -> dict:
    """Call the compiled step until the schedule's stop; boundary actions between."""
    sched, config = run.schedule, run.config
    clock = _Clock(wall_offset, config.max_wall_s)
    pending, it, exit_reason = [], start_iter, "finished"
    single = jax.process_count() == 1
    watch = single and bool(config.max_wall_s)
    previous = None
    while it < sched.stop:
        t_it = time.perf_counter()
        state, m = step(state)
        pending.append(m)
        it += 1
        # One process checks the budget after every iteration, not only at log records
        # (a run logging every minute would overshoot by up to a minute); past it, this
        # iteration becomes the last record (evaluated, checkpointed). The clock must see
        # finished work, not dispatched work: wait for the previous iteration (one stays in
        # flight), or asynchronous dispatch runs ahead to the next record. Several
        # processes check at records only, where all of them stop together.
        if watch and previous is not None:
            jax.block_until_ready(previous)
        previous = m
        out_of_time = (sched.is_record(it) or single) and clock.out_of_time()
        if not sched.is_record(it) and not out_of_time:
            clock.trained(t_it)
            continue
        record = act.record(it, pending, state, clock, t_it)
        pending = []
        if sched.is_eval(it) or (out_of_time and sched.evaluates):
            record.update(act.evaluate(it, state))
        act.write(record, clock, final=it == sched.stop)
        if sched.is_checkpoint(it) or out_of_time:
            act.checkpoint(it, state, record["wall_s"])
        act.keep_best(it, state, record)  # after the checkpoint: resuming needs only that
        if on_record is not None and multihost.is_primary():
            on_record(record)
        if out_of_time and it < sched.stop:
            logging.info("wall-time budget of %.0f s reached at env step %d",
                         config.max_wall_s, record["step"])
            exit_reason = "time budget"
            break
    else:
        if sched.stop < sched.total_iters:
            exit_reason = "stopped"
    return {"exit": exit_reason, "env_steps": sched.env_steps(it), "iterations": it,
            "compile_s": act.info["compile_s"], "wall_s": clock.wall_s(),
            "setup_s": clock.t_run - t_start, "last": act.last, "state": state,
            "spec": act.spec, "policy_parts": run.agent.policy_parts(run.agent_config, state)}


class _Clock:
    """Wall time of the run (continued across resumes) and the time spent inside
    training iterations since the last record (for env_steps_per_s)."""

    def __init__(self, wall_offset: float, max_wall_s: float):
        self.t_run = time.perf_counter()
        self.wall_offset, self.max_wall_s = wall_offset, max_wall_s
        self.train_s = 0.0

    def trained(self, t_since: float) -> None:
        self.train_s += time.perf_counter() - t_since

    def take_train_s(self) -> float:
        out, self.train_s = self.train_s, 0.0
        return out

    def wall_s(self) -> float:
        return self.wall_offset + time.perf_counter() - self.t_run

    def out_of_time(self) -> bool:
        return bool(self.max_wall_s) and self.wall_s() >= self.max_wall_s


def _host_scalars(tree) -> dict:
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


class Boundaries:
    """The actions at iteration boundaries: ``record`` (a metrics record, with the
    divergence check), ``evaluate`` (the deterministic policy on the eval envs),
    ``write`` (metrics.jsonl, progress, log line) and ``checkpoint``. A context
    manager: leaving it closes the progress bar and the metrics writer."""

    def __init__(self, run: Run, plan: Plan, ckpt: checkpoint.Checkpointer, state,
                 start_iter: int, resumed_from: int | None):
        self.run, self.ckpt, self.last = run, ckpt, {}
        config = run.config
        self.fault_nan_at = faults.nan_at_step()
        try:
            self.fault_kill = faults.kill_point()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.primary = multihost.is_primary()
        self.info = setup.runtime_info(run, resumed_from)
        logging.info("JAX %s on %s; algo=%s env=%s backend=%s (%s); %d env steps/iteration, "
                     "%d iterations", self.info["jax"], self.info["devices"], config.algo,
                     config.env, config.backend, self.info["backend"],
                     run.schedule.steps_per_iter, run.schedule.total_iters)
        with self._writing(metrics.METRICS_FILE):
            self.writer = (metrics.MetricsWriter(
                config.out_dir, title=f"{config.algo} on {config.env} (seed {config.seed})",
                plot_every_s=config.plot_every_s) if self.primary else _NoWriter())
            if plan.start != "fresh":  # a resume drops records after its checkpoint
                self.writer.truncate_after(resumed_from or 0)
        if config.tensorboard and self.primary:
            with self._writing(metrics.TENSORBOARD_SUBDIR):
                self.writer.start_tensorboard()
        sched = run.schedule
        self.bar = progress.Progress(sched.env_steps(sched.total_iters),
                                     sched.env_steps(start_iter),
                                     enabled=config.progress and self.primary,
                                     description=f"{config.algo} {config.env}")
        self.spec = dataclasses.replace(
            run.agent.policy_parts(run.agent_config, state)[0], env=config.env)
        if run.action_bounds is not None:  # the deployed policy acts in the task's units
            self.spec = self.spec.with_bounds(*run.action_bounds)
        self._eval_pool = self._eval_future = None
        # The best evaluation so far, of every start of this run (best/ survives resumes:
        # a resumed run recomputes the same evaluations, so it ends with the same best).
        self.best_return = (checkpoint.best_eval_return(config.out_dir)
                            if config.keep_best and plan.start != "fresh" else None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._eval_pool is not None:  # a failed start: do not wait for the evaluator
            self._eval_pool.shutdown(wait=False, cancel_futures=True)
        self.bar.close()
        with contextlib.suppress(OSError):
            if self.writer.records:
                self.writer.plot()
            self.writer.close()
        return False

    def _writing(self, what: str):
        return output_errors(what, self.run.config.out_dir, self.ckpt.latest_step)

    def _policy(self, state):
        """Host (numpy) copies of the deployable actor and normaliser."""
        return self.run.parallel.to_host(
            self.run.agent.policy_parts(self.run.agent_config, state)[1:])

    def compile_evaluator(self, state, precision: str) -> None:
        """Start compiling the evaluator in a thread, so that it overlaps the train
        step's compile (each is one program around the env step: an MJX evaluator
        takes ~15 s to compile on a CPU). ``compiled`` collects it."""
        if not self.run.schedule.evaluates:
            return
        run, (actor, norm) = self.run, self._policy(state)

        def build():  # the matmul precision is a thread-local setting
            with jax.default_matmul_precision(precision):
                return evaluation.make_evaluator(run.eval_env, self.spec).lower(
                    actor, norm, run.eval_key).compile()

        self._eval_pool = concurrent.futures.ThreadPoolExecutor(1, "evaluator-compile")
        self._eval_future = self._eval_pool.submit(build)

    def compiled(self, state, compile_s: float) -> None:
        """After the step compiled (in ``compile_s``): compile the policy-finiteness
        check, wait for the evaluator (``eval_compile_s``: the seconds both took
        after the step was ready), then write this start's runtime.jsonl line."""
        self.info["compile_s"] = round(compile_s, 3)
        logging.info("train iteration compiled in %.1f s", compile_s)
        run, t0 = self.run, time.perf_counter()

        def policy_finite(ts):
            _, actor, norm = run.agent.policy_parts(run.agent_config, ts)
            leaves = jax.tree_util.tree_leaves((actor, norm))
            return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

        self._policy_finite = jax.jit(policy_finite).lower(state).compile()
        # The evaluator runs on each process's own first device from host copies.
        if self._eval_future is not None:
            self._evaluator = self._eval_future.result()
            self._eval_pool.shutdown()
            self._eval_pool = None
        self.info["eval_compile_s"] = round(time.perf_counter() - t0, 3)
        if self.primary:
            path = os.path.join(run.config.out_dir, RUNTIME_FILE)
            with self._writing(RUNTIME_FILE), open(path, "a") as f:
                f.write(json.dumps(self.info) + "\n")

    def record(self, it: int, pending: list, state, clock: _Clock, t_it: float) -> dict:
        """The metrics record at iteration ``it``: the last episode figures, the mean
        of the other metrics over ``pending`` iterations, env steps/s. Raises
        Diverged (after writing the record) on a non-finite metric or policy."""
        host = [_host_scalars(x) for x in self.run.parallel.to_host(pending)]
        finite = bool(self._policy_finite(state))
        clock.trained(t_it)
        record = {"step": self.run.schedule.env_steps(it), "iteration": it}
        for k in host[-1]:
            vals = [h[k] for h in host]
            record[k] = vals[-1] if k.startswith("episode") else float(np.mean(vals))
        record["env_steps_per_s"] = (len(pending) * self.run.schedule.steps_per_iter
                                     / max(clock.take_train_s(), 1e-9))
        if self.fault_nan_at and record["step"] >= self.fault_nan_at:  # fault injection
            record["loss/injected_fault"] = float("nan")
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad or not finite:
            record["wall_s"] = clock.wall_s()
            record["episode_return_mean"] = None
            with self._writing(metrics.METRICS_FILE):
                self.writer.write(record, force_plot=True)
            kept = self.ckpt.latest_step()
            raise Diverged(f"training diverged at env step {record['step']}: non-finite "
                           f"{', '.join(bad) if bad else 'policy parameters'}; stopped. Last "
                           f"good checkpoint: "
                           + (f"{self.ckpt.directory}/{kept}" if kept is not None else "none"))
        if record.get("episodes_completed", 1.0) == 0.0:
            record["episode_return_mean"] = None
            record["episode_length_mean"] = None
        return record

    def evaluate(self, it: int, state) -> dict:
        """eval/return_mean, eval/return_std, eval/length_mean of the deterministic policy."""
        actor, norm = self._policy(state)
        return _host_scalars(self._evaluator(actor, norm,
                                             jax.random.fold_in(self.run.eval_key, it)))

    def write(self, record: dict, clock: _Clock, final: bool) -> None:
        """Append the record to metrics.jsonl (with wall_s); log and show progress."""
        record["wall_s"] = clock.wall_s()
        with self._writing(metrics.METRICS_FILE):
            self.writer.write(record, force_plot=final)
        if self.fault_kill == ("record", record["step"]):
            faults.kill_self()
        self.last = record
        ret = record.get("episode_return_mean")
        sched = self.run.schedule
        logging.log(logging.DEBUG if self.bar.active else logging.INFO,
                    "step %d/%d  %.0f steps/s  return %s%s", record["step"],
                    sched.env_steps(sched.total_iters), record["env_steps_per_s"],
                    "-" if ret is None else f"{ret:.2f}",
                    f"  eval {record['eval/return_mean']:.2f}"
                    if "eval/return_mean" in record else "")
        self.bar.update(record["step"], record["env_steps_per_s"], ret)

    def keep_best(self, it: int, state, record: dict) -> None:
        """With --keep_best: save the policy to best/ when this record's evaluation
        beats every earlier one (every process calls it: orbax coordinates them)."""
        ret = record.get("eval/return_mean")
        if not self.run.config.keep_best or ret is None or not math.isfinite(ret):
            return
        if self.best_return is not None and ret <= self.best_return:
            return
        actor, norm = self._policy(state)
        with self._writing("the best policy"), setup.quiet_orbax():
            self.ckpt.save_best(self.run.schedule.env_steps(it), self.spec, actor, norm,
                                self.run.config.algo,
                                {"iteration": it, "wall_s": record["wall_s"],
                                 "eval/return_mean": ret,
                                 "eval/return_std": record.get("eval/return_std")})
        self.best_return = ret

    def checkpoint(self, it: int, state, wall_s: float) -> None:
        """Every process saves its shards of the train state; the numpy policy
        bundle (what export loads) is written once."""
        run, step = self.run, self.run.schedule.env_steps(it)
        actor, norm = self._policy(state)
        if self.fault_kill == ("save", step):
            faults.kill_when_saving(self.ckpt.directory, step)
        with self._writing("a checkpoint"), setup.quiet_orbax():
            self.ckpt.save(step, agents.checkpoint_state(run.agent, run.agent_config, state),
                           self.spec, actor, norm, run.config.algo,
                           extra_meta={"iteration": it, "wall_s": wall_s,
                                       "env_steps_per_iteration": run.schedule.steps_per_iter,
                                       "config": run.config.to_json()})
        if self.fault_kill in (("save", step), ("checksums", step)):
            # On disk as if killed between orbax's rename and the checksums.
            os.remove(os.path.join(self.ckpt.directory, str(step), checkpoint.MANIFEST))
            faults.kill_self()

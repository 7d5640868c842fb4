"""Environment throughput: env steps/s per task, backend and batch size, against
raw ``mujoco.rollout`` of the same model and batch in the same run.

    python -m experiments.bench_env                      # every task, native, N=256,1024
    python -m experiments.bench_env --tasks=Ant-v5 --backends=mjx,mujoco \
        --batch_sizes=1,64,256 --steps=50 --out=bench_env.json
    python -m experiments.bench_env --mjx_compile        # + MJX compile seconds per task
    python -m experiments.bench_env --solver_table --solver_settings=model,10:10,4:4,1:4

Default mode, per task and batch size N: one workload, N envs from the same states of
the task's reset distribution driven open loop for ``--steps`` env steps by the same
random controls (uniform in the actuators' ctrlrange). Each backend runs it as a jitted
``lax.scan`` of ``env.step`` with auto-reset off (the first call's extra time is its
compile time); the ceiling runs it with native MuJoCo and no task logic (frame_skip
substeps per env step, all cores): ``mujoco.rollout`` (persistent thread pool) and
``mujoco.batch`` when this mujoco has it. The physics engine does identical work on both
sides (the native backend's final qpos equals rollout's: ``max_abs_qpos_vs_rollout``,
0 expected), so ``ratio`` measures what the backend adds around the physics: host
callback, float64 <-> float32 conversions, task semantics. ``--repeats`` rounds time
every backend and the ceiling once each, one after the other (a shared machine's load
drifts over seconds; calls milliseconds apart see the same load); rows report the
median round's env steps/s and ``ratio`` = the median over rounds of env steps/s /
``mujoco.rollout``'s, with its range (goal for the native backend: >= 0.9 at N=256).
``--mjx_compile``: seconds to compile MJX's reset and step per task (batch 8).

``--solver_table``: for MJX solver settings (iterations:ls_iterations,
"model" = the model's 100:50; MJX's default is 10:10) -> env steps/s at ``--solver_batch`` and
one-step parity with gymnasium over ``--parity_states`` visited states
(median and p90 of max |Δqvel| and of |Δreward|). The native backend, when
importable, is listed too.

Prints a table and writes JSON (``--out``). One-line errors for bad flags.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from absl import app, flags

from experiments.env_timing import Ceiling, Workload, open_loop_timer
from jaxrl_lite import envs
from jaxrl_lite.envs import gym_reference

FLAGS = flags.FLAGS
flags.DEFINE_list("tasks", None, "Tasks to time (default: every gymnasium MuJoCo v5 task).")
flags.DEFINE_list("backends", ["mujoco"], "Backends to time (mjx, mujoco).")
flags.DEFINE_list("batch_sizes", ["256", "1024"], "num_envs values.")
flags.DEFINE_bool("mjx_compile", False, "Also time MJX compilation (reset + step) per task.")
flags.DEFINE_integer("steps", 50, "Env steps per timed rollout.")
flags.DEFINE_integer("repeats", 7, "Timed rounds after the compiling call: each round times "
                     "every backend and the ceiling once; rows report the median round.")
flags.DEFINE_integer("iterations", None,
                     "Solver iterations (default: the backend's; MJX 10, native the model's 100).")
flags.DEFINE_integer("ls_iterations", None,
                     "Line-search iterations (default: the backend's; MJX 10, native 50).")
flags.DEFINE_bool("ceiling", True, "Also time native mujoco.rollout / mujoco.batch.")
flags.DEFINE_integer("ceiling_threads", 0, "Threads for the ceiling (0: all cores).")
flags.DEFINE_bool("solver_table", False, "Print the solver settings -> speed -> parity table.")
flags.DEFINE_list("solver_settings", ["model", "10:10", "6:6", "4:4", "1:4"],
                  "iterations:ls_iterations pairs for --solver_table ('model' = the "
                  "model's own 100:50).")
flags.DEFINE_integer("solver_batch", 64, "num_envs for --solver_table speed and parity.")
flags.DEFINE_integer("parity_states", 256, "gymnasium states for --solver_table parity.")
flags.DEFINE_integer("seed", 0, "PRNG seed.")
flags.DEFINE_string("out", "bench_env.json", "JSON output path ('' to skip).")


class FlagError(ValueError):
    pass


def _ints(name, values, minimum=1):
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise FlagError(f"--{name} must be integers, got {','.join(values)}") from None
    if not out or min(out) < minimum:
        raise FlagError(f"--{name} must be integers >= {minimum}, got {','.join(values)}")
    return out


def _solver_kwargs():
    kw = {}
    if FLAGS.iterations is not None:
        kw["iterations"] = FLAGS.iterations
    if FLAGS.ls_iterations is not None:
        kw["ls_iterations"] = FLAGS.ls_iterations
    return kw


def _parse_settings(values):
    out = []
    for v in values:
        if v in ("model", "default"):  # the model's own 100:50
            out.append((None, None))
            continue
        try:
            it, ls = (int(x) for x in v.split(":"))
        except ValueError:
            raise FlagError(f"--solver_settings entries are 'default' or ITER:LS, got {v!r}") \
                from None
        if it < 1 or ls < 1:
            raise FlagError(f"--solver_settings values must be >= 1, got {v!r}")
        out.append((it, ls))
    return out


def _rate(num_envs, steps, seconds) -> float:
    return round(num_envs * steps / seconds, 1)


def time_mjx_compile(task) -> dict:
    """Seconds to build and compile MJX's reset and step of ``task`` (batch 8)."""
    t = time.perf_counter()
    try:
        env = envs.make(task, backend="mjx", num_envs=8, auto_reset=False)
    except ValueError as e:
        return {"task": task, "mjx": str(e)}
    state = jax.block_until_ready(env.reset(jax.random.PRNGKey(0)))
    t_reset = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(env.step(state, jnp.zeros((8, env.action_size), jnp.float32)))
    return {"task": task, "mjx_reset_compile_s": round(t_reset, 1),
            "mjx_step_compile_s": round(time.perf_counter() - t, 1)}


def solver_table(settings, batch, parity_states, seed, backends):
    """settings [(iterations, ls_iterations)] -> rows with speed and parity."""
    ref = gym_reference.collect("Ant-v5", parity_states, seed=seed,
                                perturb=gym_reference.ant_lift)
    cases = [("mjx", it, ls) for it, ls in settings]
    if "mujoco" in backends:
        cases.append(("mujoco", None, None))
    rows = []
    for backend, it, ls in cases:
        kw = {"iterations": it, "ls_iterations": ls}  # None: the model's own
        env = envs.make("Ant-v5", backend=backend, num_envs=batch, auto_reset=False, **kw)
        t = time.perf_counter()
        try:
            errs = gym_reference.one_step_errors(env, ref, gym_reference.ANT_OBS_GROUPS)
        except Exception as e:  # noqa: BLE001 - e.g. a backend without reset_to
            print(f"solver_table: {backend} skipped: {type(e).__name__}: {e}"[:300])
            continue
        parity_s = time.perf_counter() - t
        key = jax.random.PRNGKey(seed)
        state = env.reset(key)
        steps = 10
        actions = jax.random.uniform(key, (steps, batch, 8), jnp.float32, -1, 1)
        state = jax.block_until_ready(env.step(state, actions[0]))
        t = time.perf_counter()
        for a in actions:
            state = env.step(state, a)
        jax.block_until_ready(state)
        sps = batch * steps / (time.perf_counter() - t)
        q, r = errs["obs_qvel"], errs["reward"]
        rows.append({
            "backend": backend, "iterations": it or 100, "ls_iterations": ls or 50,
            "num_envs": batch, "env_steps_per_s": round(sps, 1),
            "dqvel_p50": float(np.median(q)), "dqvel_p90": float(np.percentile(q, 90)),
            "dreward_p50": float(np.median(r)), "dreward_p90": float(np.percentile(r, 90)),
            "terminated_mismatch": int(errs["terminated_mismatch"].sum()),
            "parity_states": parity_states, "parity_wall_s": round(parity_s, 1)})
        print(f"{backend} iterations={rows[-1]['iterations']} ls={rows[-1]['ls_iterations']}: "
              f"{sps:.1f} env steps/s, |dqvel| p50 {rows[-1]['dqvel_p50']:.3g} "
              f"p90 {rows[-1]['dqvel_p90']:.3g}", flush=True)
    return rows


def _table(rows, columns):
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    for r in rows:
        lines.append("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return "-" if v is None else str(v)


def _machine():
    dev = jax.devices()[0]
    return {"jax_device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor(), "python": platform.python_version(),
            "jax": jax.__version__, "mujoco": mujoco.__version__}


def _speed_table(tasks, backends, batch_sizes, solver_kw, report):
    """Per task and batch: the backends and the ceiling on one Workload, timed in
    alternation for ``--repeats`` rounds, so that each round's ratio compares calls a
    few milliseconds apart on the same (shared, noisy) machine; rows report the median
    round and the range of the ratios."""
    steps, rounds = FLAGS.steps, max(FLAGS.repeats, 1)
    for task in tasks:
        for n in batch_sizes:
            work = Workload(task, n, steps, FLAGS.seed, **solver_kw)
            ceiling = Ceiling(work, FLAGS.ceiling_threads) if FLAGS.ceiling else None
            timers = {}
            for backend in backends:
                try:
                    timers[backend] = open_loop_timer(backend, work)
                except ValueError as e:  # e.g. a feature MJX lacks
                    report["notes"].append(f"{task} {backend}: {e}")
                    print(report["notes"][-1])
            times = {b: [] for b in timers}
            ceil_times = {"mujoco.rollout": [], "mujoco.batch": []}
            for _ in range(rounds):
                for backend, (_, run, _) in timers.items():
                    times[backend].append(run())
                if ceiling:
                    ceil_times["mujoco.rollout"].append(ceiling.rollout_s())
                    b = ceiling.batch_s()
                    if b is not None:
                        ceil_times["mujoco.batch"].append(b)
            reference_qpos = ceiling.rollout_final_qpos() if ceiling else None
            if ceiling:
                ceiling.close()
                for method, ts in ceil_times.items():
                    if ts:
                        report["ceiling"].append({
                            "task": task, "method": method, "num_envs": n,
                            "threads": ceiling.nthread, "steps": steps, "rounds": len(ts),
                            "env_steps_per_s": _rate(n, steps, float(np.median(ts)))})
            for backend, (info, _, final_qpos) in timers.items():
                ts = np.asarray(times[backend])
                row = {"task": task, "backend": backend, "num_envs": n, "steps": steps,
                       "rounds": rounds, "compile_s": info["compile_s"],
                       "steady_s": round(float(np.median(ts)), 4),
                       "env_steps_per_s": _rate(n, steps, float(np.median(ts))), **solver_kw}
                if ceiling:
                    ratios = np.asarray(ceil_times["mujoco.rollout"]) / ts
                    row["rollout_env_steps_per_s"] = _rate(
                        n, steps, float(np.median(ceil_times["mujoco.rollout"])))
                    row["ratio"] = round(float(np.median(ratios)), 3)
                    row["ratio_min"] = round(float(ratios.min()), 3)
                    row["ratio_max"] = round(float(ratios.max()), 3)
                    # Same work: the native backend ends where rollout ends, bit for bit.
                    row["max_abs_qpos_vs_rollout"] = float(
                        np.abs(final_qpos() - reference_qpos).max())
                report["results"].append(row)
                print(f"{task:26s} {backend:7s} N={n:5d}: {row['env_steps_per_s']:10.1f} env "
                      f"steps/s (compile {row['compile_s']} s)"
                      + (f", {row['ratio']:.2f} of mujoco.rollout (rounds "
                         f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}; final qpos "
                         f"differs by {row['max_abs_qpos_vs_rollout']:.2g})"
                         if "ratio" in row else ""), flush=True)
        if FLAGS.mjx_compile:
            report["mjx_compile"].append(time_mjx_compile(task))
            print(report["mjx_compile"][-1], flush=True)


def run(argv):
    del argv
    batch_sizes = _ints("batch_sizes", FLAGS.batch_sizes)
    for name in ("steps", "solver_batch", "parity_states"):
        if getattr(FLAGS, name) < 1:
            raise FlagError(f"--{name} must be >= 1, got {getattr(FLAGS, name)}")
    if FLAGS.repeats < 0 or FLAGS.ceiling_threads < 0:
        raise FlagError("--repeats and --ceiling_threads must be >= 0")
    unknown = [b for b in FLAGS.backends if b not in ("mjx", "mujoco")]
    if unknown:
        raise FlagError(f"unknown --backends {','.join(unknown)}; valid: mjx, mujoco")
    tasks = FLAGS.tasks or [n for n in envs.registered() if envs.task_spec(n) is not None]
    for task in tasks:
        if envs.task_spec(task) is None:
            raise FlagError(f"--tasks: {task} is not a MuJoCo task")
    settings = _parse_settings(FLAGS.solver_settings) if FLAGS.solver_table else []
    solver_kw = _solver_kwargs()
    for task in tasks:  # validates --iterations / --ls_iterations against every task
        envs.task_spec(task).config.from_kwargs(**solver_kw)

    report = {"machine": _machine(), "results": [], "ceiling": [], "solver_table": [],
              "mjx_compile": [], "notes": []}
    if FLAGS.solver_table:
        rows = solver_table(settings, FLAGS.solver_batch, FLAGS.parity_states, FLAGS.seed,
                            FLAGS.backends)
        report["solver_table"] = rows
        print("\nSolver settings -> speed -> one-step parity with gymnasium Ant-v5 "
              f"({FLAGS.parity_states} states; |Δqvel| max over dofs)")
        print(_table(rows, ["backend", "iterations", "ls_iterations", "num_envs",
                            "env_steps_per_s", "dqvel_p50", "dqvel_p90", "dreward_p50",
                            "dreward_p90", "terminated_mismatch"]))
    else:
        _speed_table(tasks, FLAGS.backends, batch_sizes, solver_kw, report)
        print("\nEnv steps/s (one env step = frame_skip physics substeps)")
        print(_table(report["results"], ["task", "backend", "num_envs", "compile_s",
                                         "env_steps_per_s", "rollout_env_steps_per_s",
                                         "ratio", "ratio_min", "ratio_max",
                                         "max_abs_qpos_vs_rollout"]))
        if report["ceiling"]:
            print("\nCeiling: native MuJoCo physics only, same model")
            print(_table(report["ceiling"], ["task", "method", "num_envs", "threads",
                                             "env_steps_per_s"]))
    for note in report["notes"]:
        print("note:", note)
    print("machine:", json.dumps(report["machine"]))
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(report, f, indent=1)
        print("wrote", FLAGS.out)


def main(argv):
    try:
        run(argv)
    except FlagError as e:
        print(f"bench_env: error: {e}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:  # bad task keywords
        print(f"bench_env: error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)

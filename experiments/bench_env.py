"""Environment throughput: Ant-v5 env steps/s per backend and batch size.

    python -m experiments.bench_env --backends=mjx,mujoco --batch_sizes=1,64,256 \
        --steps=50 --out=bench_env.json
    python -m experiments.bench_env --solver_table --solver_settings=model,10:10,4:4,1:4

Default mode: for every backend and batch size, a jitted ``lax.scan`` of
``env.step`` (random actions in [-1, 1], auto-reset on) is compiled and run;
the first call's extra time is reported as compile time, the best of
``--repeats`` further calls as the steady state. In the same run, the
ceiling: native MuJoCo stepping the same model (5 substeps per env step) on
all cores, with ``mujoco.rollout`` (persistent thread pool) and
``mujoco.batch`` when this mujoco has it.

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

from absl import app, flags

from experiments.env_timing import time_backend

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["mjx", "mujoco"], "Backends to time (mjx, mujoco).")
flags.DEFINE_list("batch_sizes", ["1", "64", "256", "1024"], "num_envs values.")
flags.DEFINE_integer("steps", 50, "Env steps per timed rollout.")
flags.DEFINE_integer("repeats", 2, "Timed rollouts after the compiling one (best is kept).")
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


def _backend_available(backend):
    """-> None if usable, else a one-line reason."""
    import importlib

    module = {"mjx": "jaxrl_lite.envs.mjx_backend",
              "mujoco": "jaxrl_lite.envs.mujoco_backend"}[backend]
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - report any import failure as a note
        return f"backend {backend!r} skipped: {type(e).__name__}: {e}".splitlines()[0]
    return None


def time_ceiling(num_envs, steps, threads, seed, **kwargs):
    """Native MuJoCo, same model, frame_skip substeps per env step, random
    controls, no env logic: the most a CPU backend could reach."""
    import numpy as np
    import mujoco
    from mujoco import rollout

    from jaxrl_lite.envs import ant

    config = ant.AntConfig(**kwargs)
    model = ant.load_model(config)
    nthread = threads or os.cpu_count() or 1
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state0, spec)
    nsub = steps * config.frame_skip
    ctrl = rng.uniform(-1, 1, (num_envs, steps, model.nu)).repeat(config.frame_skip, axis=1)
    rows = []
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    with rollout.Rollout(nthread=nthread) as r:
        r.rollout(model, datas, np.tile(state0, (num_envs, 1)), ctrl[:, :1], nstep=1)  # warm up
        t = time.perf_counter()
        r.rollout(model, datas, np.tile(state0, (num_envs, 1)), ctrl, nstep=nsub)
        dt = time.perf_counter() - t
    rows.append({"method": "mujoco.rollout", "num_envs": num_envs, "threads": nthread,
                 "steps": steps, "env_steps_per_s": round(num_envs * steps / dt, 1)})
    try:
        from mujoco import batch as mj_batch
    except ImportError:
        mj_batch = None
    if mj_batch is not None and hasattr(mj_batch, "Batch"):
        b = mj_batch.Batch(model, nsim=num_envs, nthread=nthread)
        b.ctrl = ctrl[:, 0]
        b.step(nstep=1)  # warm up
        t = time.perf_counter()
        for s in range(steps):
            b.ctrl = ctrl[:, s * config.frame_skip]
            b.step(nstep=config.frame_skip)
        dt = time.perf_counter() - t
        rows.append({"method": "mujoco.batch", "num_envs": num_envs, "threads": nthread,
                     "steps": steps, "env_steps_per_s": round(num_envs * steps / dt, 1)})
    return rows


def solver_table(settings, batch, parity_states, seed, backends):
    """settings [(iterations, ls_iterations)] -> rows with speed and parity."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_lite import envs
    from jaxrl_lite.envs import gym_reference

    ref = gym_reference.collect(parity_states, seed=seed)
    cases = [("mjx", it, ls) for it, ls in settings]
    if "mujoco" in backends and _backend_available("mujoco") is None:
        cases.append(("mujoco", None, None))
    rows = []
    for backend, it, ls in cases:
        kw = {"iterations": it, "ls_iterations": ls}  # None: the model's own
        env = envs.make("Ant-v5", backend=backend, num_envs=batch, auto_reset=False, **kw)
        t = time.perf_counter()
        try:
            errs = gym_reference.one_step_errors(env, ref)  # first chunk compiles
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
    import jax
    import mujoco

    dev = jax.devices()[0]
    return {"jax_device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor(), "python": platform.python_version(),
            "jax": jax.__version__, "mujoco": mujoco.__version__}


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
    settings = _parse_settings(FLAGS.solver_settings) if FLAGS.solver_table else []
    solver_kw = _solver_kwargs()
    from jaxrl_lite.envs import ant
    ant.AntConfig.from_kwargs(**solver_kw)  # validates --iterations / --ls_iterations

    report = {"machine": _machine(), "results": [], "ceiling": [], "solver_table": [],
              "notes": []}
    if FLAGS.solver_table:
        rows = solver_table(settings, FLAGS.solver_batch, FLAGS.parity_states, FLAGS.seed,
                            FLAGS.backends)
        report["solver_table"] = rows
        print("\nSolver settings -> speed -> one-step parity with gymnasium "
              f"({FLAGS.parity_states} states; |Δqvel| max over dofs)")
        print(_table(rows, ["backend", "iterations", "ls_iterations", "num_envs",
                            "env_steps_per_s", "dqvel_p50", "dqvel_p90", "dreward_p50",
                            "dreward_p90", "terminated_mismatch"]))
    else:
        for backend in FLAGS.backends:
            reason = _backend_available(backend)
            if reason:
                report["notes"].append(reason)
                print(reason)
                continue
            for n in batch_sizes:
                row = time_backend(backend, n, FLAGS.steps, FLAGS.repeats, FLAGS.seed,
                                   **solver_kw)
                report["results"].append(row)
                print(f"{backend:7s} N={n:5d}: {row['env_steps_per_s']:10.1f} env steps/s "
                      f"(compile {row['compile_s']} s)", flush=True)
        if FLAGS.ceiling:
            for n in batch_sizes:
                report["ceiling"].extend(
                    time_ceiling(n, FLAGS.steps, FLAGS.ceiling_threads, FLAGS.seed,
                                 **solver_kw))
        print("\nAnt-v5 env steps/s (1 env step = 5 physics substeps)")
        print(_table(report["results"], ["backend", "num_envs", "steps", "compile_s",
                                         "steady_s", "env_steps_per_s"]))
        if report["ceiling"]:
            print("\nCeiling: native MuJoCo physics only, same model")
            print(_table(report["ceiling"], ["method", "num_envs", "threads", "steps",
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
    except ValueError as e:  # bad Ant kwargs from envs.make / AntConfig
        print(f"bench_env: error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)

"""The one training launcher (WORKSPACE.md, "Public interfaces"), for every algorithm.

    python -m experiments.train --algo=ppo|ac --env=Ant-v5 --backend=auto|mjx|mujoco \
        --num_envs=N --total_steps=S --seed=K --out_dir=DIR [--resume] [--flagfile=F]

Every field of the chosen algorithm's ``Config`` dataclass is also a flag (see
``jaxrl_lite.agents``); a field both algorithms define with different defaults
has flag default None = "the algorithm's default". Writes into DIR:
``config.json`` (every flag's value), ``checkpoints/`` (orbax, atomic, last K),
``metrics.jsonl``, ``learning_curve.png`` and ``runtime.jsonl`` (JAX/device
info, one line per start). ``--resume`` continues from the newest checkpoint
bit-for-bit (checkpoints, logs and evals happen at fixed iteration
boundaries, so an interrupted-and-resumed run computes exactly what the
uninterrupted one does).

Bad input (unknown algo/env/backend/flag, non-positive sizes, indivisible
minibatches, nothing or something corrupt to resume, an out_dir holding
another run) is reported as one line on stderr with exit status 2, before any
compilation and without touching out_dir. Non-finite losses or parameters stop
the run with exit status 3; the checkpoints on disk are the last good ones.
"""
from __future__ import annotations

import os

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging as pylogging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import typing  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from jaxrl_lite import agents  # noqa: E402

CONFIG_FILE = "config.json"
RUNTIME_FILE = "runtime.jsonl"
# Flags that may differ between a run and its --resume (they do not change
# what is computed).
RESUME_FREE = ("coordinator_address", "process_id", "distributed_timeout_s",
               "resume", "progress", "stop_after_steps", "out_dir", "plot_every_s",
               "max_wall_s")
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit status 2."""


# ----------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------
_ALGO = flags.DEFINE_string("algo", "ppo", "Algorithm: " + " | ".join(agents.names()) + ".")
_ENV = flags.DEFINE_string("env", "Ant-v5", "Environment name (jaxrl_lite.envs registry).")
_BACKEND = flags.DEFINE_string("backend", "auto", "Physics backend: auto | mjx | mujoco.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (params, env resets, sampling).")
_OUT = flags.DEFINE_string("out_dir", None, "Run directory (created; must not hold another run).")
_RESUME = flags.DEFINE_boolean("resume", False, "Continue the run in out_dir from its newest "
                               "checkpoint (flags must match its config.json).")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every_steps", 1_000_000,
                                   "Env steps between checkpoints (rounded to iterations).")
_KEEP = flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept (newest K).")
_LOG_EVERY = flags.DEFINE_integer("log_every_steps", 100_000,
                                  "Env steps between metrics records (rounded to iterations).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every_steps", 1_000_000,
                                   "Env steps between deterministic evaluations; 0 = only at "
                                   "the end.")
_EVAL_ENVS = flags.DEFINE_integer("eval_envs", 8, "Episodes per evaluation (one per eval env).")
_STOP_AFTER = flags.DEFINE_integer(
    "stop_after_steps", 0, "Stop early (with a checkpoint) at the first checkpoint boundary at "
    "or after this many env steps; 0 = train to total_steps. Resume later with --resume.")
_MAX_WALL = flags.DEFINE_float(
    "max_wall_s", 0.0, "Wall-time budget in seconds (0 = none): at the first log record past "
    "it, evaluate, checkpoint and stop (resumable; the schedule still spans total_steps).")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a rich progress bar (on a terminal).")
_PLOT_EVERY = flags.DEFINE_float("plot_every_s", 20.0, "Seconds between learning-curve redraws.")
_NUM_DEVICES = flags.DEFINE_integer(
    "num_devices", 0, "Devices to shard the env batch over (0 = all, of all processes); "
    "--num_envs is the global batch and must divide by it.")
_COORD = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator "
    "(jax.distributed); unset = one process.")
_NPROC = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index in "
                            "[0, num_processes).")
_DIST_TIMEOUT = flags.DEFINE_float("distributed_timeout_s", 120.0, "Multi-host: seconds to "
                                   "wait for every process to join.")


def _loadable_agents() -> dict:
    out = {}
    for name in agents.names():
        try:
            out[name] = agents.get(name)
        except Exception as e:  # e.g. an algorithm still being written
            pylogging.getLogger(__name__).warning("agent %s unavailable: %s", name, e)
    return out


_AGENT_MODULES = _loadable_agents()


def _define_config_flags() -> dict[str, dict[str, dataclasses.Field]]:
    """Define one flag per Config field (union over algorithms)."""
    by_name: dict[str, dict[str, dataclasses.Field]] = {}
    hints: dict[str, dict] = {}
    for algo, mod in _AGENT_MODULES.items():
        hints[algo] = typing.get_type_hints(mod.Config)
        for f in agents.config_fields(mod.Config):
            by_name.setdefault(f.name, {})[algo] = f
    for name, per_algo in by_name.items():
        types_ = {typing.get_origin(hints[a][name]) or hints[a][name] for a in per_algo}
        if len(types_) != 1:
            raise TypeError(f"Config field {name!r} has different types across algos")
        ftype = types_.pop()
        defaults = {a: f.default for a, f in per_algo.items()}
        shared_default = len(set(map(repr, defaults.values()))) == 1
        default = next(iter(defaults.values())) if shared_default else None
        helps = [f.metadata.get("help", "") for f in per_algo.values()]
        help_text = next((h for h in helps if h), name).rstrip(".")
        if not shared_default:
            help_text += "; default: " + ", ".join(f"{a}={d!r}" for a, d in defaults.items())
        if len(per_algo) < len(_AGENT_MODULES):
            help_text += f" [{', '.join(per_algo)} only]"
        if ftype is bool:
            flags.DEFINE_boolean(name, default, help_text)
        elif ftype is int:
            flags.DEFINE_integer(name, default, help_text)
        elif ftype is float:
            flags.DEFINE_float(name, default, help_text)
        elif ftype is str:
            flags.DEFINE_string(name, default, help_text)
        else:  # tuple[int, ...]
            flags.DEFINE_list(name, None if default is None else [str(x) for x in default],
                              help_text + " (comma-separated integers)")
    return by_name


_CONFIG_FIELDS = _define_config_flags()
FLAGS = flags.FLAGS
# Fault injection for tests: from this env step on, a logged metric reads NaN, so the
# divergence path (stop, exit 3, name the last good checkpoint) runs deterministically.
_FAULT_NAN_AT = int(os.environ.get("JAXRL_LITE_FAULT_NAN_AT_STEP", "0") or 0)


# ----------------------------------------------------------------------------
# Run configuration (validated before anything is built)
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class RunConfig:
    algo: str
    env: str
    backend: str
    seed: int
    out_dir: str
    resume: bool
    checkpoint_every_steps: int
    keep_checkpoints: int
    log_every_steps: int
    eval_every_steps: int
    eval_envs: int
    stop_after_steps: int
    max_wall_s: float
    progress: bool
    plot_every_s: float
    num_devices: int = 0
    num_processes: int = 1
    agent_config: typing.Any = None

    def to_json(self) -> dict:
        """config.json: every flag's value (algorithm fields resolved)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "agent_config"}
        for k, v in dataclasses.asdict(self.agent_config).items():
            d[k] = list(v) if isinstance(v, tuple) else v
        return d


def _tuple_of_ints(name: str, value) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be comma-separated integers, got {value!r}") from None
    return out


def run_config_from_flags() -> RunConfig:
    """Validate every flag and build the RunConfig; raises UsageError (one line)."""
    from jaxrl_lite import envs

    algo = _ALGO.value
    if algo not in agents.names():
        raise UsageError(f"unknown --algo={algo!r}; valid algos: {', '.join(agents.names())}")
    if algo not in _AGENT_MODULES:
        raise UsageError(f"--algo={algo} is not available in this installation "
                         f"(its module failed to import)")
    if _ENV.value not in envs.registered():
        raise UsageError(f"unknown --env={_ENV.value!r}; registered: "
                         f"{', '.join(envs.registered())}")
    if _BACKEND.value not in envs.BACKENDS:
        raise UsageError(f"unknown --backend={_BACKEND.value!r}; valid backends: "
                         f"{', '.join(envs.BACKENDS)}")
    if not _OUT.value:
        raise UsageError("--out_dir is required")
    for flag, minimum in ((_CKPT_EVERY, 1), (_KEEP, 1), (_LOG_EVERY, 1), (_EVAL_ENVS, 1),
                          (_EVAL_EVERY, 0), (_STOP_AFTER, 0)):
        if flag.value is None or flag.value < minimum:
            what = "positive" if minimum == 1 else "non-negative"
            raise UsageError(f"--{flag.name} must be a {what} integer, got {flag.value}")
    if not (_MAX_WALL.value >= 0):
        raise UsageError(f"--max_wall_s must be >= 0, got {_MAX_WALL.value}")
    if not (_PLOT_EVERY.value >= 0):
        raise UsageError(f"--plot_every_s must be >= 0, got {_PLOT_EVERY.value}")

    mod = _AGENT_MODULES[algo]
    own = {f.name for f in agents.config_fields(mod.Config)}
    for name, per_algo in _CONFIG_FIELDS.items():
        if algo not in per_algo and FLAGS[name].present:
            raise UsageError(f"--{name} does not apply to --algo={algo} "
                             f"(only to {', '.join(per_algo)})")
    kwargs = {}
    for name in own:
        value = FLAGS[name].value
        if value is None:
            continue  # the algorithm's default
        if isinstance(_CONFIG_FIELDS[name][algo].default, tuple):
            value = _tuple_of_ints(name, value)
        kwargs[name] = value
    config = mod.Config(**kwargs)
    try:
        config.validate()
    except ValueError as e:
        raise UsageError(f"--algo={algo}: {e}") from None
    return RunConfig(
        algo=algo, env=_ENV.value, backend=_BACKEND.value, seed=_SEED.value,
        out_dir=os.path.abspath(_OUT.value), resume=_RESUME.value,
        checkpoint_every_steps=_CKPT_EVERY.value, keep_checkpoints=_KEEP.value,
        log_every_steps=_LOG_EVERY.value, eval_every_steps=_EVAL_EVERY.value,
        eval_envs=_EVAL_ENVS.value, stop_after_steps=_STOP_AFTER.value,
        max_wall_s=_MAX_WALL.value, progress=_PROGRESS.value, plot_every_s=_PLOT_EVERY.value,
        num_devices=_NUM_DEVICES.value, num_processes=_NPROC.value,
        agent_config=config)


def check_out_dir(rc: RunConfig) -> None:
    """Refuse to start in a directory that holds another run (or nothing to resume)."""
    from jaxrl_lite import checkpoint

    cfg_path = os.path.join(rc.out_dir, CONFIG_FILE)
    if os.path.exists(rc.out_dir) and not os.path.isdir(rc.out_dir):
        raise UsageError(f"--out_dir={rc.out_dir} exists and is not a directory")
    if not rc.resume:
        if os.path.exists(cfg_path):
            raise UsageError(f"--out_dir={rc.out_dir} already holds a run ({CONFIG_FILE}); "
                             f"pass --resume to continue it or choose another --out_dir")
        for name in ("checkpoints", "metrics.jsonl"):
            if os.path.exists(os.path.join(rc.out_dir, name)):
                raise UsageError(f"--out_dir={rc.out_dir} already holds {name} of another "
                                 f"run; choose another --out_dir")
        return
    if not os.path.exists(cfg_path):
        raise UsageError(f"--resume: no run to resume in {rc.out_dir} (no {CONFIG_FILE})")
    try:
        with open(cfg_path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume: unreadable {cfg_path} ({e})") from None
    now = rc.to_json()
    for key in sorted(set(saved) | set(now)):
        if key in RESUME_FREE:
            continue
        if saved.get(key, "<absent>") != now.get(key, "<absent>"):
            raise UsageError(f"--resume: --{key}={now.get(key, '<absent>')!r} differs from the "
                             f"run in {rc.out_dir} ({key}={saved.get(key, '<absent>')!r}); "
                             f"resume with the same flags")
    ckpt_dir = checkpoint.checkpoint_dir(rc.out_dir)
    steps = []
    if os.path.isdir(ckpt_dir):
        steps = [d for d in os.listdir(ckpt_dir)
                 if d.isdigit() and os.path.isdir(os.path.join(ckpt_dir, d))]
    if not steps:
        raise UsageError(f"--resume: no checkpoint in {ckpt_dir} (the run stopped before its "
                         f"first checkpoint: start it again in a new --out_dir)")


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------
def _runtime_info(rc: RunConfig, resumed_from) -> dict:
    import jax
    import jaxlib
    devices = jax.devices()
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_from_step": resumed_from,
        "argv": sys.argv,
        "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"),
        "python": platform.python_version(), "host": socket.gethostname(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
    }


def _boundaries(rc: RunConfig, steps_per_iter: int, total_iters: int):
    to_iters = lambda s: max(1, -(-s // steps_per_iter))  # noqa: E731
    ckpt = to_iters(rc.checkpoint_every_steps)
    log = to_iters(rc.log_every_steps)
    ev = to_iters(rc.eval_every_steps) if rc.eval_every_steps else 0
    stop = total_iters
    if rc.stop_after_steps:
        first = to_iters(rc.stop_after_steps)
        stop = min(total_iters, -(-first // ckpt) * ckpt)
    return ckpt, log, ev, stop


def _host_scalars(tree) -> dict:
    import numpy as np
    return {k: float(np.asarray(v)) for k, v in tree.items()}


class Diverged(RuntimeError):
    pass


class _NoWriter:
    """Metrics writer of processes other than 0: writes nothing."""
    records = ()

    def write(self, record, force_plot=False):
        pass

    def truncate_after(self, step):
        pass

    def plot(self):
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


def run(rc: RunConfig) -> dict:
    """Train (or resume) one run; returns a summary dict. Assumes validated input."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_lite import checkpoint, distributed, envs, evaluation, metrics, progress

    cache = os.environ.get("JAXRL_LITE_JAX_CACHE")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

    t_start = time.perf_counter()
    mod = agents.get(rc.algo)
    config = rc.agent_config
    mesh = distributed.make_mesh(rc.num_devices or None, num_envs=config.num_envs)
    primary = distributed.is_primary()
    env = distributed.shard_env(
        envs.make(rc.env, backend=rc.backend, num_envs=config.num_envs, auto_reset=True), mesh)
    eval_env = envs.make(rc.env, backend=rc.backend, num_envs=rc.eval_envs, auto_reset=False)
    check_env = getattr(mod, "check_env", None)   # optional: config vs env, before any write
    if check_env is not None:
        try:
            check_env(config, env)
        except ValueError as e:
            raise UsageError(f"--algo={rc.algo}: {e}") from None
    steps_per_iter = int(mod.env_steps_per_iteration(config))
    total_iters = max(1, -(-config.total_steps // steps_per_iter))
    ckpt_it, log_it, eval_it, stop_it = _boundaries(rc, steps_per_iter, total_iters)
    key = jax.random.PRNGKey(rc.seed)
    init_key, eval_key = jax.random.split(key)

    def init_fn(k):  # the train state built directly in its sharded layout
        return distributed.sharded_init(lambda: mod.init(config, env, k), mesh,
                                        config.num_envs)[0]
    os.makedirs(rc.out_dir, exist_ok=True)
    with _quiet_orbax():
        ckpt = checkpoint.Checkpointer(rc.out_dir, max_to_keep=rc.keep_checkpoints)
    resumed_from = None
    wall_offset = 0.0
    if rc.resume:
        shapes = jax.eval_shape(lambda: agents.checkpoint_state(
            mod, config, mod.init(config, env, init_key)))
        template = distributed.abstract_state(  # each process reads its own shards
            shapes, distributed.state_shardings(shapes, mesh, config.num_envs))
        with _quiet_orbax():
            restored, meta = ckpt.restore(template)
        fresh = init_fn(init_key) if hasattr(mod, "restore_state") else None
        state = agents.restore_state(mod, config, fresh, restored)
        resumed_from = int(meta["step"])
        start_iter = int(meta.get("iteration", resumed_from // steps_per_iter))
        wall_offset = float(meta.get("wall_s", 0.0))
    else:
        if primary:
            with open(os.path.join(rc.out_dir, CONFIG_FILE + ".tmp"), "w") as f:
                json.dump(rc.to_json(), f, indent=1, sort_keys=True)
            os.replace(os.path.join(rc.out_dir, CONFIG_FILE + ".tmp"),
                       os.path.join(rc.out_dir, CONFIG_FILE))
        state = init_fn(init_key)
        start_iter = 0

    info = _runtime_info(rc, resumed_from)
    logging.info("JAX %s on %s; algo=%s env=%s backend=%s (%s); %d env steps/iteration, "
                 "%d iterations", info["jax"], info["devices"], rc.algo, rc.env, rc.backend,
                 envs.resolve_backend(rc.backend), steps_per_iter, total_iters)
    info["mesh"] = distributed.describe(mesh)
    writer = (metrics.MetricsWriter(rc.out_dir, title=f"{rc.algo} on {rc.env} (seed {rc.seed})",
                                    plot_every_s=rc.plot_every_s) if primary else _NoWriter())
    if rc.resume:
        writer.truncate_after(resumed_from)

    shardings = distributed.state_shardings(state, mesh, config.num_envs)
    train_iteration = distributed.data_parallel(mod.make_train_iteration(config, env),
                                                shardings, donate=True)
    t0 = time.perf_counter()
    try:
        train_iteration = train_iteration.lower(state).compile()
    except AttributeError:  # not a jax.jit object: compiled on first call
        pass
    compile_s = time.perf_counter() - t0
    info["compile_s"] = round(compile_s, 3)
    logging.info("train iteration compiled in %.1f s", compile_s)

    spec0, _, _ = mod.policy_parts(config, state)
    spec = dataclasses.replace(spec0, env=rc.env)
    evaluator = evaluation.make_evaluator(eval_env, spec)

    def policy_finite(ts):
        _, actor, norm = mod.policy_parts(config, ts)
        leaves = jax.tree_util.tree_leaves((actor, norm))
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

    t0 = time.perf_counter()
    policy_finite = jax.jit(policy_finite).lower(state).compile()
    # The evaluator runs on each process's own first device from host copies.
    actor0, norm0 = distributed.to_host(mod.policy_parts(config, state)[1:])
    evaluator = evaluator.lower(actor0, norm0, eval_key).compile()
    info["eval_compile_s"] = round(time.perf_counter() - t0, 3)
    if primary:
        with open(os.path.join(rc.out_dir, RUNTIME_FILE), "a") as f:
            f.write(json.dumps(info) + "\n")

    def save(it, ts, wall_s):  # every process: orbax writes each one's shards
        # numpy policy: written once, loadable by export's single-process load_policy
        actor, norm = distributed.to_host(mod.policy_parts(config, ts)[1:])
        with _quiet_orbax():
            ckpt.save(it * steps_per_iter, agents.checkpoint_state(mod, config, ts), spec,
                      actor, norm, rc.algo,
                      extra_meta={"iteration": it, "wall_s": wall_s,
                                  "env_steps_per_iteration": steps_per_iter,
                                  "config": rc.to_json()})

    bar = progress.Progress(total_iters * steps_per_iter, start_iter * steps_per_iter,
                            enabled=rc.progress and primary, description=f"{rc.algo} {rc.env}")
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
            is_ckpt = it % ckpt_it == 0 or it == stop_it
            is_eval = (eval_it and it % eval_it == 0) or it == total_iters
            if not (is_ckpt or is_eval or it % log_it == 0 or it == stop_it):
                train_time += time.perf_counter() - t_it
                continue
            out_of_time = bool(rc.max_wall_s) and (
                wall_offset + time.perf_counter() - t_run >= rc.max_wall_s)
            if out_of_time:
                is_ckpt = is_eval = True
            host = [_host_scalars(x) for x in distributed.to_host(pending)]
            ok = bool(policy_finite(state))
            train_time += time.perf_counter() - t_it
            record = {"step": it * steps_per_iter, "iteration": it}
            for k in host[-1]:
                vals = [h[k] for h in host]
                record[k] = vals[-1] if k.startswith("episode") else float(np.mean(vals))
            n_steps = len(pending) * steps_per_iter
            record["env_steps_per_s"] = n_steps / max(train_time, 1e-9)
            pending, train_time = [], 0.0
            if _FAULT_NAN_AT and record["step"] >= _FAULT_NAN_AT:   # fault injection (tests)
                record["loss/injected_fault"] = float("nan")
            bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad or not ok:
                what = ", ".join(bad) if bad else "policy parameters"
                kept = ckpt.latest_step()
                record["wall_s"] = wall_offset + time.perf_counter() - t_run
                record["episode_return_mean"] = None
                writer.write(record, force_plot=True)
                raise Diverged(f"training diverged at env step {record['step']}: non-finite "
                               f"{what}; stopped. Last good checkpoint: "
                               + (f"{ckpt.directory}/{kept}" if kept is not None else "none"))
            if record.get("episodes_completed", 1.0) == 0.0:
                record["episode_return_mean"] = None
                record["episode_length_mean"] = None
            if is_eval:
                actor, norm = distributed.to_host(mod.policy_parts(config, state)[1:])
                ev = evaluator(actor, norm, jax.random.fold_in(eval_key, it))
                record.update(_host_scalars(ev))
            record["wall_s"] = wall_offset + time.perf_counter() - t_run
            writer.write(record, force_plot=it == stop_it)
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
            if out_of_time and it < stop_it:
                logging.info("wall-time budget of %.0f s reached at env step %d",
                             rc.max_wall_s, record["step"])
                exit_reason = "time budget"
                break
        else:
            if stop_it < total_iters:
                exit_reason = "stopped"
    finally:
        bar.close()
        if writer.records:
            writer.plot()
        with _quiet_orbax():
            ckpt.close()
    wall_s = wall_offset + time.perf_counter() - t_run
    return {"exit": exit_reason, "env_steps": it * steps_per_iter, "iterations": it,
            "compile_s": compile_s, "wall_s": wall_s,
            "setup_s": t_run - t_start, "last": last, "state": state, "spec": spec,
            "policy_parts": mod.policy_parts(config, state)}


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _fail(msg: str, code: int = EXIT_BAD_INPUT):
    sys.stderr.write(f"train: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def parse_flags(argv):
    """absl flags parser whose errors are one line (no usage dump)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
    from jaxrl_lite.checkpoint import CheckpointError
    signal.signal(signal.SIGTERM, _terminate)  # a scheduler's kill: same as Ctrl-C
    from jaxrl_lite import distributed
    try:
        if _COORD.value is not None or _NPROC.value != 1:
            distributed.initialize(_COORD.value, _NPROC.value, _PID.value,
                                   timeout_s=_DIST_TIMEOUT.value)
        rc = run_config_from_flags()
        distributed.check_consistent(rc.to_json(), timeout_s=_DIST_TIMEOUT.value)
        # Device count and batch divisibility, checked before anything is written.
        distributed.make_mesh(rc.num_devices or None, num_envs=rc.agent_config.num_envs)
        check_out_dir(rc)
        distributed.barrier("out_dir-checked")  # before process 0 writes config.json
    except (UsageError, ValueError, distributed.DistributedError) as e:
        _fail(str(e))
    try:
        summary = run(rc)
    except UsageError as e:
        _fail(str(e))
    except CheckpointError as e:
        _fail(f"--resume: {e}")
    except Diverged as e:
        _fail(str(e), EXIT_DIVERGED)
    except KeyboardInterrupt:
        _fail(f"interrupted; checkpoints in {rc.out_dir}/checkpoints are intact: continue "
              f"with the same flags and --resume", 130)
    logging.info("%s: %d env steps in %.1f s (compile %.1f s); run dir %s", summary["exit"],
                 summary["env_steps"], summary["wall_s"], summary["compile_s"], rc.out_dir)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)

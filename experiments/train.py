"""The training CLI: absl flags -> ``TrainConfig`` -> ``jaxrl_lite.run.trainer.train``.

    python -m experiments.train --algo=ppo|ac --env=Ant-v5 --backend=auto|mjx|mujoco \
        --num_envs=N --total_steps=S --seed=K --out_dir=DIR [--resume [--resume_step=N]] \
        [--flagfile=F]

Every field of the chosen algorithm's ``Config`` dataclass is also a flag (see
``jaxrl_lite.agents``); a field both algorithms define with different defaults
has flag default None = "the algorithm's default". What is written into DIR,
how resume and restarts work: ``jaxrl_lite.run.trainer`` and ``jaxrl_lite.run.run_config``.

Every error is one line on stderr: exit status 2 for bad input (before any
compilation and without touching DIR), 3 for divergence, 4 for a failed
checkpoint or metrics write, 5 when another process of a multi-process run
stopped, 130 for Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import ctypes
import os

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX=2 would (a value the user set wins).

    glibc gives new threads their own arenas; orbax starts threads at every save, so a
    long run's RSS creeps up without a leak (WORKSPACE.md, "Soak"). Done before JAX and
    orbax start any thread; a no-op off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        pass

import dataclasses  # noqa: E402
import logging as pylogging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

_limit_malloc_arenas()
import threading  # noqa: E402
import typing  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from jaxrl_lite import agents  # noqa: E402
from jaxrl_lite.run import multihost, trainer  # noqa: E402
from jaxrl_lite.run.errors import EXIT_BAD_INPUT, ConfigError  # noqa: E402
from jaxrl_lite.run.run_config import TrainConfig  # noqa: E402


# ----------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------
_COORD = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator "
    "(jax.distributed); unset = one process.")
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


def _define_flag(name: str, ftype: type, default, help_text: str) -> None:
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


def _define_run_flags() -> None:
    """One flag per TrainConfig field (its help text is the field's metadata)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "agent_config":
            default = None if f.name == "out_dir" else f.default  # required flag
            _define_flag(f.name, hints[f.name], default, f.metadata["help"])


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
        _define_flag(name, ftype, default, help_text)
    return by_name


_define_run_flags()
_CONFIG_FIELDS = _define_config_flags()
FLAGS = flags.FLAGS


def _tuple_of_ints(name: str, value) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} must be comma-separated integers, got {value!r}") from None


def config_from_flags() -> TrainConfig:
    """The flags as a TrainConfig (agent flags resolved); raises ConfigError for
    flags that do not apply. Field checks: ``run_config.validate`` (in train)."""
    algo = FLAGS.algo
    if algo not in agents.names():
        raise ConfigError(f"unknown --algo={algo!r}; valid algos: {', '.join(agents.names())}")
    if algo not in _AGENT_MODULES:
        raise ConfigError(f"--algo={algo} is not available in this installation "
                          f"(its module failed to import)")
    for name, per_algo in _CONFIG_FIELDS.items():
        if algo not in per_algo and FLAGS[name].present:
            raise ConfigError(f"--{name} does not apply to --algo={algo} "
                              f"(only to {', '.join(per_algo)})")
    kwargs = {}
    for f in agents.config_fields(_AGENT_MODULES[algo].Config):
        value = FLAGS[f.name].value
        if value is None:
            continue  # the algorithm's default
        kwargs[f.name] = _tuple_of_ints(f.name, value) if isinstance(f.default, tuple) else value
    run_fields = {f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)
                  if f.name != "agent_config"}
    return TrainConfig(**run_fields, agent_config=_AGENT_MODULES[algo].Config(**kwargs))


def config_from_args(args: list[str]) -> TrainConfig:
    """Training flags given as a list (e.g. ``["--flagfile=F", "--out_dir=D"]``) as a
    TrainConfig, for programs that train in-process (demo); raises ConfigError."""
    try:
        FLAGS(["train", *args])
    except flags.Error as e:
        raise ConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return config_from_flags()


class _OneLineRecords(pylogging.Filter):
    """Library errors logged with a traceback (orbax's writer threads and asyncio
    after a failed save) become their first line: the CLI reports the failure
    itself, as one line."""

    def filter(self, record):
        if record.exc_info or record.exc_text or "\n" in str(record.msg):
            lines = record.getMessage().strip().splitlines()
            record.msg, record.args = (lines[0] if lines else ""), ()
            record.exc_info = record.exc_text = record.stack_info = None
        return True


def _one_line_background_errors() -> None:
    for handler in pylogging.getLogger().handlers:
        handler.addFilter(_OneLineRecords())

    def thread_hook(args):
        logging.warning("background thread %s: %s: %s", getattr(args.thread, "name", "?"),
                        args.exc_type.__name__, (str(args.exc_value).splitlines() or [""])[0])

    def unraisable_hook(u):
        logging.warning("ignored %s: %s", type(u.exc_value).__name__,
                        (str(u.exc_value).splitlines() or [""])[0])

    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook


class _Sigterm:
    received = False


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (a scheduler's or ``kill``'s stop) as Ctrl-C: KeyboardInterrupt in
    the main thread, so the run ends with its one-line 'interrupted' error."""
    signal.signal(signal.SIGTERM, _terminate)


def sigterm_received() -> bool:
    """Whether this process was stopped by SIGTERM (not Ctrl-C)."""
    return _Sigterm.received


def _terminate(signum, frame):
    # Once: a repeat (the process group's and a parent's) must not interrupt the
    # interrupted run's clean-up.
    _Sigterm.received = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def fail(msg: str, code: int = EXIT_BAD_INPUT):
    """One line on stderr, then exit with ``code``."""
    sys.stderr.write(f"train: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def parse_flags(argv):
    """absl flags parser whose errors are one line (no usage dump)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def initialize_distributed() -> None:
    """jax.distributed start-up from the multi-host flags (no-op for one process)."""
    if _COORD.value is not None or FLAGS.num_processes != 1:
        multihost.initialize(_COORD.value, FLAGS.num_processes, _PID.value,
                               timeout_s=_DIST_TIMEOUT.value)


def run_cli(config_check=None) -> dict:
    """Flags -> config -> train, every error as one line; ``config_check(config)``
    may add caller-specific checks (raise ConfigError). Returns the summary."""
    interrupt_on_sigterm()
    _one_line_background_errors()
    out_dir = FLAGS.out_dir
    try:
        initialize_distributed()
        config = config_from_flags()
        if config_check is not None:
            config_check(config)
        plan = trainer.prepare(config)
        return trainer.train(plan)
    except trainer.PeerLost as e:
        multihost.exit_now(str(e), e.exit_code)
    except trainer.TrainingError as e:
        fail(str(e), e.exit_code)
    except (ValueError, multihost.DistributedError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; checkpoints in {os.path.abspath(out_dir or '.')}/checkpoints are "
             f"intact: continue with the same flags and --resume", 130)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
    summary = run_cli()
    logging.info("%s: %d env steps in %.1f s (compile %.1f s); run dir %s", summary["exit"],
                 summary["env_steps"], summary["wall_s"], summary["compile_s"],
                 os.path.abspath(FLAGS.out_dir))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)

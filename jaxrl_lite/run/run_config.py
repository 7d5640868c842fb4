"""What one training run is: ``TrainConfig``, its validation, and the out_dir check.

Free of JAX (only the agent's ``Config`` class is imported), so bad input is
reported before anything is compiled or written. Every field of
``TrainConfig`` and of the agent's ``Config`` has a flag of the same name in
``experiments/train.py``; error messages therefore name ``--field``.

The out_dir check decides how a run starts (:func:`plan_out_dir`):
``"fresh"``    an empty or absent directory;
``"restart"``  a directory left by the same run killed before its first
               checkpoint (same config, no checkpoint, no metrics past the first
               checkpoint boundary): nothing of value is in it, so the run
               starts again from step 0, with or without ``resume``;
``"resume"``   ``resume=True`` and a checkpoint to continue from (the newest, or
               ``resume_step``), verified against its checksums first.
A directory holding checkpoints is never started over.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import typing

from jaxrl_lite import agents, envs
from jaxrl_lite.run import checkpoint, metrics
from jaxrl_lite.run.errors import EXIT_BAD_INPUT, ConfigError, TrainingError  # noqa: F401

CONFIG_FILE = "config.json"
RUNTIME_FILE = "runtime.jsonl"
METRICS_FILE = "metrics.jsonl"
# Fields that may differ between a run and its resume (they do not change what is
# computed).
RESUME_FREE = ("coordinator_address", "process_id", "distributed_timeout_s", "resume",
               "resume_step", "progress", "stop_after_steps", "out_dir", "plot_every_s",
               "max_wall_s", "tensorboard", "keep_best")

_flag = agents.flag_field


@dataclasses.dataclass
class TrainConfig:
    """One run. Step counts are env steps (rounded up to whole iterations).

    Every field but ``agent_config`` is also a flag of ``experiments/train.py``
    (its help text is the field's). ``agent_config`` is the algorithm's
    ``Config`` (None: its defaults).
    """

    out_dir: str = _flag("", "Run directory (created; must not hold another run).")
    algo: str = _flag("ppo", "Algorithm: " + " | ".join(agents.names()) + ".")
    env: str = _flag("Ant-v5", "Environment name (jaxrl_lite.envs registry).")
    backend: str = _flag("auto", "Physics backend: auto | mjx | mujoco.")
    train_env_kwargs: str = _flag(
        "", "Environment keywords for the training envs only, as a JSON object, e.g. "
        "'{\"healthy_z_range\": [0.2, 0.9]}' (train on a stricter bound than the task); "
        "evaluation always uses the plain --env. Observations must keep their size.")
    seed: int = _flag(0, "Random seed (params, env resets, sampling).")
    resume: bool = _flag(False, "Continue the run in out_dir from its newest checkpoint "
                         "(flags must match its config.json).")
    resume_step: int = _flag(0, "With --resume: continue from the checkpoint of this env step "
                             "instead of the newest (newer ones are moved to "
                             "out_dir/discarded_checkpoints/); 0 = newest.")
    checkpoint_every_steps: int = _flag(1_000_000, "Env steps between checkpoints (rounded "
                                        "to iterations).")
    keep_checkpoints: int = _flag(3, "Checkpoints kept (newest K).")
    keep_best: bool = _flag(True, "Also keep the policy of the best in-training evaluation "
                            "in out_dir/best/ (policy only, replaced on each improvement; "
                            "export and evaluation accept that directory as a run).")
    log_every_steps: int = _flag(100_000, "Env steps between metrics records (rounded to "
                                 "iterations).")
    eval_every_steps: int = _flag(1_000_000, "Env steps between deterministic evaluations; "
                                  "0 = only at the end; -1 = never (no evaluator is "
                                  "compiled).")
    eval_envs: int = _flag(8, "Episodes per evaluation (one per eval env).")
    stop_after_steps: int = _flag(0, "Stop early (with a checkpoint) at the first checkpoint "
                                  "boundary at or after this many env steps; 0 = train to "
                                  "total_steps. Resume later with --resume.")
    max_wall_s: float = _flag(0.0, "Wall-time budget in seconds (0 = none): at the first "
                              "iteration past it (first log record with several processes), "
                              "log, evaluate, checkpoint and stop (resumable; the schedule "
                              "still spans total_steps).")
    progress: bool = _flag(True, "Show a rich progress bar (on a terminal).")
    plot_every_s: float = _flag(20.0, "Seconds between learning-curve redraws.")
    num_devices: int = _flag(0, "Devices to shard the env batch over (0 = all, of all "
                             "processes); --num_envs is the global batch and must divide by "
                             "it.")
    num_processes: int = _flag(1, "Multi-host: number of processes.")
    tensorboard: bool = _flag(False, "Also write metrics.jsonl's scalars as TensorBoard event "
                              "files in out_dir/tensorboard/ (needs tensorflow; "
                              "metrics.jsonl stays the record).")
    agent_config: typing.Any = None

    def to_json(self) -> dict:
        """config.json: every field (algorithm fields resolved, flattened)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "agent_config"}
        for k, v in dataclasses.asdict(self.agent_config).items():
            d[k] = list(v) if isinstance(v, tuple) else v
        return d


def validate(config: TrainConfig) -> TrainConfig:
    """Check every field; returns a copy with ``agent_config`` filled in and
    ``out_dir`` absolute. Raises ConfigError (one line)."""
    if config.algo not in agents.names():
        raise ConfigError(f"unknown --algo={config.algo!r}; valid algos: "
                          f"{', '.join(agents.names())}")
    try:
        mod = agents.get(config.algo)
    except ImportError as e:
        raise ConfigError(f"--algo={config.algo} is not available in this installation "
                          f"({e})") from None
    try:
        envs.task_spec(config.env)
    except ValueError as e:
        raise ConfigError(f"--env: {e}") from None
    if config.backend not in envs.BACKENDS:
        raise ConfigError(f"unknown --backend={config.backend!r}; valid backends: "
                          f"{', '.join(envs.BACKENDS)}")
    if not config.out_dir:
        raise ConfigError("--out_dir is required")
    train_env_kwargs(config)
    for name, minimum in (("checkpoint_every_steps", 1), ("keep_checkpoints", 1),
                          ("log_every_steps", 1), ("eval_envs", 1), ("eval_every_steps", -1),
                          ("stop_after_steps", 0), ("resume_step", 0)):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            what = {1: "a positive integer", 0: "a non-negative integer"}.get(
                minimum, f"an integer >= {minimum}")
            raise ConfigError(f"--{name} must be {what}, got {value}")
    for name in ("max_wall_s", "plot_every_s"):
        if not (getattr(config, name) >= 0):
            raise ConfigError(f"--{name} must be >= 0, got {getattr(config, name)}")
    if config.resume_step and not config.resume:
        raise ConfigError("--resume_step needs --resume")
    if config.tensorboard and importlib.util.find_spec("tensorflow") is None:
        raise ConfigError("--tensorboard writes through TensorFlow's summary writer, which is "
                          "not installed: pip install '.[export]' or drop --tensorboard")
    agent_config = mod.Config() if config.agent_config is None else config.agent_config
    if type(agent_config) is not mod.Config:
        raise ConfigError(f"agent_config is a {type(agent_config).__qualname__}, "
                          f"--algo={config.algo} needs {mod.__name__}.Config")
    try:
        agent_config.validate()
    except ValueError as e:
        raise ConfigError(f"--algo={config.algo}: {e}") from None
    return dataclasses.replace(config, agent_config=agent_config,
                               out_dir=os.path.abspath(config.out_dir))


def train_env_kwargs(config: TrainConfig) -> dict:
    """``--train_env_kwargs`` parsed: a dict (empty for ""). Raises ConfigError."""
    text = config.train_env_kwargs.strip()
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"--train_env_kwargs is not valid JSON ({e}): {text!r}") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--train_env_kwargs must be a JSON object of env keywords, got "
                          f"{text!r}")
    return kwargs


# Fields added after runs were saved: a config.json without one ran with this value.
ADDED_LATER = {"normalize_rewards": False}


def _first_difference(saved: dict, now: dict, out_dir: str) -> str | None:
    for key in sorted(set(saved) | set(now)):
        if key in RESUME_FREE:
            continue
        was = saved.get(key, ADDED_LATER.get(key, "<absent>"))
        if was != now.get(key, "<absent>"):
            return (f"--{key}={now.get(key, '<absent>')!r} differs from the run in {out_dir} "
                    f"({key}={was!r})")
    return None


def _check_nothing_lost(config: TrainConfig) -> None:
    """A run without checkpoints may start over only if it never had one."""
    records = metrics.read_jsonl(os.path.join(config.out_dir, METRICS_FILE))
    last = max((r.get("step", 0) for r in records), default=0)
    resumed = any(r.get("resumed_from_step") is not None
                  for r in metrics.read_jsonl(os.path.join(config.out_dir, RUNTIME_FILE)))
    if last >= config.checkpoint_every_steps or resumed:
        raise ConfigError(
            f"--out_dir={config.out_dir} has no checkpoint but its {METRICS_FILE} reaches step "
            f"{last}{' and it was resumed before' if resumed else ''}: its checkpoints were "
            f"removed; start the run in a new --out_dir")


def plan_out_dir(config: TrainConfig) -> tuple[str, int | None]:
    """-> ("fresh" | "restart" | "resume", step to resume from or None).

    Reads only; raises ConfigError (one line) for a directory holding another run,
    nothing to resume or a corrupt checkpoint (naming the newest good one).
    """
    out = config.out_dir
    cfg_path = os.path.join(out, CONFIG_FILE)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out_dir={out} exists and is not a directory")
    saved = None
    if os.path.exists(cfg_path):
        try:
            with open(cfg_path) as f:
                saved = json.load(f)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise ConfigError(f"unreadable {cfg_path} ({e}); choose another --out_dir") from None
    steps = checkpoint.list_steps(out)
    if saved is None:
        if config.resume:
            raise ConfigError(f"--resume: no run to resume in {out} (no {CONFIG_FILE})")
        for name in (checkpoint.CHECKPOINT_SUBDIR, checkpoint.BEST_SUBDIR, METRICS_FILE):
            if os.path.exists(os.path.join(out, name)):
                raise ConfigError(f"--out_dir={out} already holds {name} of another run; "
                                  f"choose another --out_dir")
        return "fresh", None
    diff = _first_difference(saved, config.to_json(), out)
    if steps and not config.resume:
        raise ConfigError(f"--out_dir={out} already holds a run ({CONFIG_FILE}) with "
                          f"checkpoints; pass --resume to continue it or choose another "
                          f"--out_dir")
    if diff:
        way_out = "resume with the same flags" if config.resume else "choose another --out_dir"
        raise ConfigError(f"{'--resume: ' if config.resume else ''}{diff}; {way_out}")
    if not steps:
        if config.resume_step:
            raise ConfigError(f"--resume_step={config.resume_step}: no checkpoint in "
                              f"{checkpoint.checkpoint_dir(out)}")
        _check_nothing_lost(config)
        return "restart", None
    if config.resume_step:
        if config.resume_step not in steps:
            raise ConfigError(f"--resume_step={config.resume_step}: no checkpoint for that "
                              f"step in {checkpoint.checkpoint_dir(out)}; have {steps}")
        step = config.resume_step
    else:
        step = steps[-1]
    try:
        checkpoint.verify(out, step, how_to_pick="--resume_step=")
    except checkpoint.CheckpointError as e:
        raise ConfigError(f"--resume: {e}") from None
    return "resume", step

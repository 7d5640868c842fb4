"""Learning benchmark: train with a preset through the training CLI's own code path,
then evaluate the deterministic policy in gymnasium's OWN environment of the task.

    python -m experiments.bench_learning --flagfile=experiments/configs/ppo_cpu.flags \
        --out_dir=runs/bench-ppo-cpu [--max_wall_s=1800] [--episodes=10] [--report=F.json]

Every ``experiments.train`` flag applies (``--algo=ppo|ac``, presets via
``--flagfile``). After training, the newest checkpoint is loaded the way the
exporter loads it (``checkpoint.load_policy``) and ``policy.deterministic_action``
drives ``gymnasium.make(--env)`` (native MuJoCo, float64, the real thing) for
``--episodes`` episodes seeded ``gym_seed .. gym_seed+episodes-1``. The JSON
report (default ``<out_dir>/bench_learning.json``) holds: return mean/std,
per-episode returns/lengths and falls (episodes ended by termination), env steps, training wall time, env steps/s
including learning, compile time, the device and the curve's path.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

from experiments import train  # defines every training flag (shared FLAGS)
import jax  # noqa: E402,I001 (after experiments.train has set JAX's environment)
from jaxrl_lite import envs
from jaxrl_lite.run import evaluation, trainer
from jaxrl_lite.run.trainer import ConfigError

_EPISODES = flags.DEFINE_integer("episodes", 10, "gymnasium evaluation episodes.")
_GYM_SEED = flags.DEFINE_integer("gym_seed", 1000, "Seed of the first evaluation episode.")
_REPORT = flags.DEFINE_string("report", None, "JSON report path "
                              "(default <out_dir>/bench_learning.json).")
_SKIP_TRAIN = flags.DEFINE_boolean("eval_only", False, "Skip training: evaluate the newest "
                                   "checkpoint already in --out_dir.")


def _update_figures(config, summary) -> dict:
    """Gradient updates, updates/s and how many sampled transitions each collected
    one fed (the actor-critic's compute figures); {} for agents without updates."""
    updates = getattr(summary["state"], "updates", None)
    if updates is None:
        return {}
    updates = int(updates)
    batch = int(config.agent_config.batch_size)
    return {"updates": updates, "batch_size": batch,
            "updates_per_s": updates / max(summary["wall_s"], 1e-9),
            "sampled_per_collected": updates * batch / max(summary["env_steps"], 1)}


def main(argv):
    if len(argv) > 1:
        train.fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
    t_start = time.perf_counter()

    def check(config):
        if envs.task_spec(config.env) is None:
            raise ConfigError(f"bench_learning evaluates in gymnasium's own task; "
                              f"--env={config.env} is not a gymnasium task")
        if _EPISODES.value < 1:
            raise ConfigError(f"--episodes must be positive, got {_EPISODES.value}")

    try:
        config = trainer.validate(train.config_from_flags())
        check(config)
        if not _SKIP_TRAIN.value:
            summary = trainer.train(config)
    except trainer.TrainingError as e:
        train.fail(str(e), e.exit_code)
    report = {"algo": config.algo, "env": config.env, "backend": config.backend,
              "seed": config.seed, "out_dir": config.out_dir, "argv": sys.argv}
    if not _SKIP_TRAIN.value:
        last = summary["last"]
        report.update({
            "exit": summary["exit"],
            "env_steps": summary["env_steps"],
            "train_wall_s": summary["wall_s"],
            "env_steps_per_s": summary["env_steps"] / max(summary["wall_s"], 1e-9),
            "env_steps_per_s_last_log": last.get("env_steps_per_s"),
            "compile_s": summary["compile_s"],
            "setup_s": summary["setup_s"],
            "process_wall_s_to_trained": time.perf_counter() - t_start,
            "train_episode_return_mean_last": last.get("episode_return_mean"),
            "eval_return_mean_last": last.get("eval/return_mean"),
        })
        report.update(_update_figures(config, summary))
    report["device"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    report["cpu_count"] = os.cpu_count()
    report["gymnasium"] = evaluation.gymnasium_evaluate(
        config.out_dir, _EPISODES.value, _GYM_SEED.value)
    report["return_mean"] = report["gymnasium"]["return_mean"]
    report["return_std"] = report["gymnasium"]["return_std"]
    report["falls"] = report["gymnasium"]["falls"]
    report["learning_curve"] = os.path.join(config.out_dir, "learning_curve.png")
    path = _REPORT.value or os.path.join(config.out_dir, "bench_learning.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report.get(k) for k in (
        "algo", "return_mean", "return_std", "env_steps", "train_wall_s", "env_steps_per_s",
        "updates_per_s", "compile_s")}))
    logging.info("report written to %s", path)


if __name__ == "__main__":
    app.run(main, flags_parser=train.parse_flags)

"""The README's main command: train -> export -> evaluate, on a small default.

Runs the stages in order into a fresh directory ``runs/demo-<timestamp>/``
(nothing earlier is overwritten):

  1. ``jaxrl_lite.run.trainer.train`` in this process, configured from the training
     preset --flagfile=experiments/configs/ppo_smoke.flags (as experiments.train) on
     the stricter training bound STEADY (below);
  2. python -m export.convert     --run_dir=RUN --out_dir=RUN/export
  3. python -m export.evaluate    --export_dir=RUN/export   (table + chart + JSON)

The table compares every variant with fp32 over the same episodes. A small policy that
walks near Ant-v5's height bound (torso z <= 1.0) falls or not on tiny numeric
differences, and a fall flips a whole episode: over 3 episodes a correct export then
looked broken (a SavedModel at 0.45 of fp32's return). So the demo trains on z <= 0.9
(evaluation keeps gymnasium's 1.0), as the ppo_cpu_steady preset does, evaluates more
episodes, and the table says in words which differences its intervals cannot tell
from noise.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app, flags

from experiments import train  # the training flags, for the preset
from jaxrl_lite.run import trainer

# Training environment keywords of the demo's run: a margin below the height bound.
STEADY = '--train_env_kwargs={"healthy_z_range": [0.2, 0.9]}'

_FLAGFILE = flags.DEFINE_string(
    "train_flagfile", "experiments/configs/ppo_smoke.flags", "Training preset.")
_OUT = flags.DEFINE_string("runs_dir", "runs", "Parent folder for the demo run.")
_EPISODES = flags.DEFINE_integer("episodes", 8, "Evaluation episodes per variant.")
_SKIP_TRAIN = flags.DEFINE_string(
    "run_dir", None, "Reuse this finished training run instead of training.")


def _train(flagfile: str, run_dir: str) -> None:
    print(f"\n=== train: jaxrl_lite.run.trainer.train(--flagfile={flagfile} {STEADY} "
          f"--out_dir={run_dir})", flush=True)
    t0 = time.perf_counter()
    try:
        summary = trainer.train(train.config_from_args([f"--flagfile={flagfile}", STEADY,
                                                        f"--out_dir={run_dir}"]))
    except trainer.TrainingError as e:
        print(f"demo: stage 'train' failed: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(f"=== train: {summary['env_steps']} env steps, done in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)


def _stage(title: str, cmd: list[str]) -> None:
    print(f"\n=== {title}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    if rc != 0:
        print(f"demo: stage '{title}' failed (exit {rc})", file=sys.stderr)
        sys.exit(rc)
    print(f"=== {title}: done in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv):
    del argv
    py = sys.executable
    run_dir = _SKIP_TRAIN.value or os.path.join(
        _OUT.value, time.strftime("demo-%Y%m%d-%H%M%S"))
    if not _SKIP_TRAIN.value:
        _train(_FLAGFILE.value, run_dir)
    export_dir = os.path.join(run_dir, "export")
    _stage("export", [py, "-m", "export.convert", f"--run_dir={run_dir}",
                      f"--out_dir={export_dir}"])
    _stage("evaluate", [py, "-m", "export.evaluate", f"--export_dir={export_dir}",
                        f"--episodes={_EPISODES.value}", "--seed=0", "--threads=1",
                        f"--report={os.path.join(run_dir, 'evaluation.json')}"])
    print(f"\nDemo finished. Training run, curve and checkpoints: {run_dir}\n"
          f"Exported models and manifest: {export_dir}")


if __name__ == "__main__":
    app.run(main)

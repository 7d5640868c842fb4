"""Soak benchmark: train for N minutes and watch memory for leaks.

    python -m experiments.bench_soak --flagfile=experiments/configs/ac_smoke.flags \
        --total_steps=1000000000 --minutes=15 --out_dir=runs/soak [--report=F.json]

Every ``experiments.train`` flag applies; ``--minutes`` sets the wall-time budget
(``--max_wall_s``). At every metrics record the process's RSS and, where the
backend reports it, device memory in use are appended to ``<out_dir>/runtime.jsonl``
as ``{"kind": "memory", "step", "wall_s", "rss_bytes", "device_bytes_in_use"}``.
The report (default ``<out_dir>/bench_soak.json``, also printed) gives RSS at the
first record after ``--settle_s`` seconds, at the end, the maximum, and the
growth in between (%). The actor-critic preset exercises the native backend's
host callback, the replay buffer, checkpoints, evaluation and the metrics writer.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import psutil
from absl import app, flags, logging

from experiments import train  # defines every training flag (shared FLAGS)
import jax  # noqa: E402,I001 (after experiments.train has set JAX's environment)
from jaxrl_lite.run import trainer
from jaxrl_lite.run.run_config import RUNTIME_FILE

_MINUTES = flags.DEFINE_float("minutes", 15.0, "Training wall time in minutes.")
_SETTLE = flags.DEFINE_float("settle_s", 60.0, "Growth is measured from the first record "
                             "after this many seconds (start-up, buffers filling).")
_REPORT = flags.DEFINE_string("report", None, "JSON report path "
                              "(default <out_dir>/bench_soak.json).")


def _device_bytes_in_use():
    stats = jax.local_devices()[0].memory_stats()  # None on backends without stats
    return None if not stats else int(stats.get("bytes_in_use", 0))


def growth(samples: list[dict], settle_s: float) -> dict:
    """RSS figures of ``samples`` (the memory records) from ``settle_s`` on."""
    later = [s for s in samples if s["wall_s"] >= settle_s] or samples[-1:]
    base, end = later[0]["rss_bytes"], later[-1]["rss_bytes"]
    out = {"samples": len(samples), "settle_s": settle_s,
           "rss_mb_first": samples[0]["rss_bytes"] / 2**20,
           "rss_mb_after_settle": base / 2**20, "rss_mb_end": end / 2**20,
           "rss_mb_max": max(s["rss_bytes"] for s in samples) / 2**20,
           "rss_growth_after_settle_pct": 100.0 * (end - base) / base,
           "wall_s_span": later[-1]["wall_s"] - later[0]["wall_s"]}
    dev = [s["device_bytes_in_use"] for s in later if s["device_bytes_in_use"] is not None]
    if dev:
        out.update(device_mb_after_settle=dev[0] / 2**20, device_mb_end=dev[-1] / 2**20)
    return out


def main(argv):
    if len(argv) > 1:
        train.fail(f"unexpected positional arguments: {' '.join(argv[1:])}")

    if not _MINUTES.value > 0:
        train.fail(f"--minutes must be positive, got {_MINUTES.value}")
    proc = psutil.Process()
    samples: list[dict] = []
    try:
        config = dataclasses.replace(train.config_from_flags(), max_wall_s=_MINUTES.value * 60)
        plan = trainer.prepare(config)
        path = os.path.join(plan.config.out_dir, RUNTIME_FILE)

        def probe(record):
            sample = {"kind": "memory", "step": record["step"], "wall_s": record["wall_s"],
                      "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "rss_bytes": proc.memory_info().rss,
                      "device_bytes_in_use": _device_bytes_in_use()}
            samples.append(sample)
            with open(path, "a") as f:
                f.write(json.dumps(sample) + "\n")

        summary = trainer.train(plan, on_record=probe)
    except trainer.TrainingError as e:
        train.fail(str(e), e.exit_code)
    if not samples:
        train.fail("no metrics record was written: lower --log_every_steps")
    report = {"algo": plan.config.algo, "env": plan.config.env, "backend": plan.config.backend,
              "minutes": _MINUTES.value, "env_steps": summary["env_steps"],
              "wall_s": summary["wall_s"], "exit": summary["exit"],
              **growth(samples, _SETTLE.value)}
    out = _REPORT.value or os.path.join(plan.config.out_dir, "bench_soak.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))
    logging.info("report written to %s", out)


if __name__ == "__main__":
    app.run(main, flags_parser=train.parse_flags)

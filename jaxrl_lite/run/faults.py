"""Fault injection for tests, read from the environment by the trainer.

``JAXRL_LITE_FAULT_NAN_AT_STEP=S``: from env step S on, a logged metric reads NaN,
so the divergence path (stop, exit 3, name the last good checkpoint) runs
deterministically.

``JAXRL_LITE_FAULT_KILL_AT=PHASE:STEP``: SIGKILL the training process at env step
STEP: ``record`` right after its metrics record, ``save`` while orbax writes its
checkpoint (once the temporary step directory exists), ``checksums`` after orbax
finished the step but before ``checksums.json`` exists. Unset: no fault.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

NAN_ENV = "JAXRL_LITE_FAULT_NAN_AT_STEP"
KILL_ENV = "JAXRL_LITE_FAULT_KILL_AT"
KILL_PHASES = ("record", "save", "checksums")


def nan_at_step() -> int:
    """-> the env step from which a metric is NaN (0 = never)."""
    return int(os.environ.get(NAN_ENV, "0") or 0)


def kill_point() -> tuple[str, int] | None:
    """-> (phase, env step) to SIGKILL at, or None; ValueError for a bad value."""
    spec = os.environ.get(KILL_ENV, "")
    if not spec:
        return None
    phase, _, step = spec.partition(":")
    if phase not in KILL_PHASES or not step.isdigit():
        raise ValueError(f"{KILL_ENV}={spec!r}: expected {'|'.join(KILL_PHASES)}:STEP")
    return phase, int(step)


def kill_self() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_when_saving(ckpt_dir: str, step: int) -> None:
    """SIGKILL this process as soon as orbax's temporary directory for ``step``
    appears in ``ckpt_dir`` (the save is then in flight)."""
    def watch():
        while True:
            with contextlib.suppress(OSError):
                if any(n.startswith(f"{step}.") for n in os.listdir(ckpt_dir)):
                    kill_self()
            time.sleep(0.0002)
    threading.Thread(target=watch, daemon=True, name="fault-kill-in-save").start()

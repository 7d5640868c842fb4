"""What a measurement process reports about itself and its machine: RSS, CPU time
and share, the machine description, and the JSON report it writes.

The harness runs where /proc may be missing or not what it seems: a chroot without
/proc mounted, or qemu-user, which passes the host's /proc/cpuinfo through and fills
/proc/self/stat's CPU times with zeros. Figures that cannot be read are None (shown
"n/a") with a note in the report, never a traceback or a wrong number.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Callable

import psutil

from export.harness.errors import BudgetExceeded

EMULATION_ENV = "JAXRL_LITE_EMULATION"


def emulation() -> str | None:
    """'qemu-user' (or $JAXRL_LITE_EMULATION) when this process runs under a user-mode
    emulator, else None: the kernel has a qemu binfmt handler for this very
    architecture, which a native kernel never needs."""
    if os.environ.get(EMULATION_ENV):
        return os.environ[EMULATION_ENV]
    try:
        with open(f"/proc/sys/fs/binfmt_misc/qemu-{platform.machine()}") as f:
            return "qemu-user" if f.readline().strip() == "enabled" else None
    except OSError:
        return None


def rss_mb_now() -> float:
    """Resident set size of this process, MiB; NaN when the OS does not expose it."""
    try:
        return psutil.Process().memory_info().rss / 2**20
    except (OSError, psutil.Error):
        return float("nan")


def cpu_seconds() -> float | None:
    """User + system CPU seconds of this process (all threads) so far; None when unreadable.

    getrusage: microsecond resolution and no /proc needed (psutil's /proc/self/stat
    counts 10 ms ticks, which reads 0 over a short run, and qemu-user fills it with
    zeros); psutil where the resource module does not exist (Windows).
    """
    try:
        import resource
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    except (ImportError, OSError):
        pass
    try:
        t = psutil.Process().cpu_times()
    except (OSError, psutil.Error):
        return None
    return t.user + t.system


def cpu_percent(cpu_s: float | None, wall_s: float) -> float | None:
    """100 * CPU seconds / wall seconds over a measured loop; None when not measurable.

    Zero CPU over a loop that ran Python for ``wall_s`` is impossible, so it means
    the OS reported nothing: None, shown as "n/a".
    """
    if cpu_s is None or wall_s <= 0 or cpu_s <= 0:
        return None
    return 100.0 * cpu_s / wall_s


def os_figure_notes() -> list[str]:
    """Notes for the report on figures this machine cannot provide or that mislead."""
    notes = []
    emu = emulation()
    if emu:
        notes.append(f"Running under emulation ({emu}): latency, env-step time and CPU % "
                     f"measure the emulator, not the target CPU, and are not meaningful; RSS "
                     f"includes the emulator's own memory. Returns and actions are meaningful.")
    missing = [p for p in ("/proc/self/statm", "/proc/meminfo", "/proc/cpuinfo")
               if not os.access(p, os.R_OK)]
    if missing:
        notes.append(f"{', '.join(missing)} not readable (is /proc mounted?): the figures "
                     f"that need them (RSS, total memory, CPU model) read n/a.")
    if not cpu_seconds():
        notes.append("this OS reports no CPU time for the process: CPU % reads n/a.")
    return notes


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for key in ("model name", "Model", "Hardware", "cpu model"):
            for line in text.splitlines():
                if line.startswith(key) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_description(constraints: dict | None = None) -> dict:
    """CPU model, cores, memory, OS, Python and runtime versions (+ constraints)."""

    def figure(fn):
        try:
            return fn()
        except (OSError, psutil.Error, ValueError, RuntimeError):
            return None

    memory = figure(lambda: psutil.virtual_memory().total)
    emu = emulation()
    desc = {
        "cpu_model": _cpu_model() + (f" (under {emu})" if emu else ""),
        "cpu_count_logical": figure(lambda: psutil.cpu_count(logical=True)) or os.cpu_count(),
        "cpu_count_physical": figure(lambda: psutil.cpu_count(logical=False)),
        "memory_total_mb": None if memory is None else round(memory / 2**20),
        "emulation": emu,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "litert_version": _version("ai-edge-litert"),
        "numpy_version": _version("numpy"),
        "mujoco_version": _version("mujoco"),
        "gymnasium_version": _version("gymnasium"),
    }
    if constraints is not None:
        desc.update({"cpus": constraints["cpus"], "threads": constraints["threads"],
                     "memory_budget_mb": constraints["memory_budget_mb"],
                     "profile": constraints["profile"], "notes": constraints["notes"]})
    return desc


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def measure_to_json(path: str | None, measure: Callable[[], dict]) -> dict:
    """``measure()``'s report, also written to ``path`` when given; on BudgetExceeded
    the partial report it carries is written before the error goes on."""
    try:
        report = measure()
    except BudgetExceeded as e:
        if path and getattr(e, "report", None):
            write_json(path, e.report)
        raise
    if path:
        write_json(path, report)
    return report

"""Shared pieces of the evaluation harness: flags, one-line errors, constraint
profiles (CPU affinity, threads, memory budget) and the machine description.

Imports only the standard library, psutil and absl, so every harness process
(LiteRT, TFLM, and the TensorFlow / JAX comparison rows) can use it.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import sys
from typing import Callable

from absl import flags

# Exit codes of every harness process.
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3


class HarnessError(Exception):
    """Bad input or a failed constraint: printed as one line, exit non-zero."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.exit_code = exit_code


class BudgetExceeded(HarnessError):
    """Peak RSS went over the profile's memory budget."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_BUDGET)


@dataclasses.dataclass(frozen=True)
class Profile:
    """A Raspberry-Pi-like constraint preset.

    cores: CPUs of the board (the run is pinned to at most this many CPUs);
    threads: interpreter threads; ram_mb: RAM of the board's smallest model;
    budget_mb: peak-RSS budget for the whole evaluation process (RAM minus
    what the OS and desktop-less Raspberry Pi OS Lite keep for themselves).
    """

    name: str
    board: str
    cores: int
    threads: int
    ram_mb: int
    budget_mb: int
    clock: str


PROFILES = {
    "pi_zero_2": Profile("pi_zero_2", "Raspberry Pi Zero 2 W (4x Cortex-A53)", 4, 4,
                         512, 384, "1.0 GHz"),
    "pi4": Profile("pi4", "Raspberry Pi 4 Model B, 1 GB (4x Cortex-A72)", 4, 4,
                   1024, 768, "1.8 GHz"),
    "pi5": Profile("pi5", "Raspberry Pi 5, 2 GB (4x Cortex-A76)", 4, 4,
                   2048, 1536, "2.4 GHz"),
}

PROFILE_NOTE = ("On this machine a profile emulates the board's core count (CPU affinity, "
                "interpreter threads) and its memory (a peak-RSS budget), not the Pi's "
                "clock speed, cache, memory bandwidth or ARM kernels: latencies are this "
                "machine's, not the Pi's.")


def dir_bytes(path: str) -> int:
    """Total bytes of the files under ``path`` (a SavedModel, a checkpoint item)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def define_common_flags() -> None:
    """Flags every harness process understands (forwarded to child processes).

    Idempotent, so harness modules can be imported together (e.g. in tests).
    """
    if "max_episode_steps" in flags.FLAGS:
        return
    flags.DEFINE_integer("episodes", 5, "Episodes per variant (seeds seed, seed+1, ...).")
    flags.DEFINE_integer("seed", 0, "Seed of the first episode; episode i uses seed + i.")
    flags.DEFINE_integer("threads", 1, "Interpreter threads (LiteRT num_threads, TF intra-op).")
    flags.DEFINE_string("cpus", None, "CPU affinity, e.g. '0' or '0,1' or '0-3'.")
    flags.DEFINE_enum("profile", None, list(PROFILES),
                      "Pi-like preset: cores, threads and a memory budget.")
    flags.DEFINE_float("memory_budget_mb", None,
                       "Fail if the process's peak RSS exceeds this (overrides the profile's).")
    flags.DEFINE_integer("max_episode_steps", 1000, "Truncate episodes at this many steps.")
    flags.DEFINE_integer("warmup", 50, "Untimed inferences before measuring.")
    flags.DEFINE_string("report", None, "Write the JSON report here.")
    flags.DEFINE_string("name", None, "Variant label in the report (default: file name).")


def define_model_flags() -> None:
    """--model/--runtime/--manifest/--video (evaluate and harness.video); idempotent."""
    if "model" in flags.FLAGS:
        return
    flags.DEFINE_string("model", None, "A .tflite model (or, with --runtime=tflm, a TFLM "
                        "C array .cc/.h) taking float32 [1,105] obs.")
    flags.DEFINE_enum("runtime", "litert", ["litert", "tflm"],
                      "Interpreter for --model: LiteRT or TFLite Micro (int8 model).")
    flags.DEFINE_string("manifest", None, "manifest.json with the micro model's quantization "
                        "(default: found next to or above --model).")
    flags.DEFINE_string("video", None, "Record one episode to FILE.mp4 (needs ffmpeg) or "
                        "FILE.gif (Pillow) with MuJoCo's offscreen renderer.")


COMMON_FLAGS = ("episodes", "seed", "threads", "cpus", "profile", "memory_budget_mb",
                "max_episode_steps", "warmup")


def forwarded_flags() -> list[str]:
    """The common flags, as given, for a child harness process."""
    out = []
    for name in COMMON_FLAGS:
        f = flags.FLAGS[name]
        if f.present or name in ("episodes", "seed", "max_episode_steps"):
            if f.value is not None:
                out.append(f"--{name}={f.value}")
    return out


def parse_cpus(spec: str) -> list[int]:
    """'0,2-3' -> [0, 2, 3]; one-line error on bad syntax."""
    cpus: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.update(range(int(lo), int(hi) + 1))
            elif part:
                cpus.add(int(part))
    except ValueError:
        raise HarnessError(f"--cpus={spec!r} is not a CPU list; expected e.g. '0' or '0,1' "
                           f"or '0-3'") from None
    if not cpus or min(cpus) < 0:
        raise HarnessError(f"--cpus={spec!r} is not a CPU list; expected e.g. '0' or '0-3'")
    return sorted(cpus)


def available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    import psutil
    return list(range(psutil.cpu_count() or 1))


def apply_constraints(flag_values) -> dict:
    """Pin CPUs, choose threads and the memory budget from flags and profile.

    Returns {"cpus": [...], "threads": int, "memory_budget_mb": float|None,
    "profile": dict|None, "notes": [...]}. Raises HarnessError for CPUs that do
    not exist.
    """
    import psutil

    for name, low in (("episodes", 1), ("max_episode_steps", 1), ("warmup", 0)):
        if getattr(flag_values, name) < low:
            raise HarnessError(f"--{name} must be >= {low}, got {getattr(flag_values, name)}")
    notes = []
    have = available_cpus()
    profile = PROFILES[flag_values.profile] if flag_values.profile else None
    if flag_values.cpus is not None:
        cpus = parse_cpus(flag_values.cpus)
        missing = [c for c in cpus if c not in have]
        if missing:
            raise HarnessError(f"--cpus={flag_values.cpus}: CPU(s) {missing} do not exist or "
                               f"are not available here; available: {have}")
    elif profile is not None:
        cpus = have[:profile.cores]
        if len(have) < profile.cores:
            notes.append(f"profile {profile.name} has {profile.cores} cores but this machine "
                         f"offers {len(have)}; running on CPUs {cpus}")
    else:
        cpus = have
    if cpus != have:
        if not hasattr(psutil.Process, "cpu_affinity"):
            raise HarnessError(f"--cpus/--profile need CPU affinity, which this OS "
                               f"({platform.system()}) does not offer")
        psutil.Process().cpu_affinity(cpus)
    threads = flag_values.threads
    if profile is not None and not flags.FLAGS["threads"].present:
        threads = profile.threads
    if threads < 1:
        raise HarnessError(f"--threads must be >= 1, got {threads}")
    budget = flag_values.memory_budget_mb
    if budget is None and profile is not None:
        budget = float(profile.budget_mb)
    if budget is not None and budget <= 0:
        raise HarnessError(f"--memory_budget_mb must be > 0, got {budget}")
    if profile is not None:
        notes.append(PROFILE_NOTE)
    notes.extend(os_figure_notes())
    return {"cpus": cpus, "threads": int(threads), "memory_budget_mb": budget,
            "profile": dataclasses.asdict(profile) if profile else None, "notes": notes}


# --------------------------------------------------------------------------- OS figures
# The harness runs where /proc may be missing or not what it seems: a chroot without
# /proc mounted, or qemu-user, which passes the host's /proc/cpuinfo through and fills
# /proc/self/stat's CPU times with zeros. Figures that cannot be read are None (shown
# "n/a") with a note in the report, never a traceback or a wrong number.
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
    import psutil
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
    import psutil
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
    import psutil

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
    import json

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


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main``; a HarnessError becomes one line on stderr and its exit code."""
    try:
        rc = main()
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    sys.exit(rc or 0)


def run_child_cli(main: Callable[[], int | None], **env_defaults: str) -> None:
    """``python -m`` entry of a harness child process (video, reference rows): set
    ``env_defaults`` unless the caller's environment has them, parse the flags with
    absl (positional arguments are ignored) and run ``main`` under run_main."""
    from absl import app

    for key, value in env_defaults.items():
        os.environ.setdefault(key, value)
    app.run(lambda argv: run_main(main))

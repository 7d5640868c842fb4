"""What a harness run may use: Pi-like profiles, CPU affinity, interpreter threads,
a memory budget, and the flags that set them (shared by every harness process and
forwarded to the children)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform

import psutil
from absl import flags

from export.harness.errors import HarnessError
from export.harness.machine import os_figure_notes

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
    flags.DEFINE_integer("max_episode_steps", None, "Truncate episodes at this many steps "
                         "(default: the task's TimeLimit, 1000 for most).")
    flags.DEFINE_string("env", None, "The gymnasium task to run (default: the one the export "
                        "was made for, from its manifest.json; else Ant-v5).")
    flags.DEFINE_string("env_kwargs", None, "Keywords of the task as a JSON object (default: "
                        "the export's, from its manifest.json).")
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
                "max_episode_steps", "warmup", "env", "env_kwargs")


def forwarded_flags() -> list[str]:
    """The common flags, as given, for a child harness process."""
    out = []
    for name in COMMON_FLAGS:
        f = flags.FLAGS[name]
        if f.present or name in ("episodes", "seed", "max_episode_steps", "env",
                                 "env_kwargs"):
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
    return list(range(psutil.cpu_count() or 1))


def apply_constraints(flag_values) -> dict:
    """Pin CPUs, choose threads and the memory budget from flags and profile.

    Returns {"cpus": [...], "threads": int, "memory_budget_mb": float|None,
    "profile": dict|None, "notes": [...]}. Raises HarnessError for CPUs that do
    not exist.
    """
    for name, low in (("episodes", 1), ("max_episode_steps", 1), ("warmup", 0)):
        if getattr(flag_values, name) is not None and getattr(flag_values, name) < low:
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


DEFAULT_ENV = "Ant-v5"


def task(flag_values, manifest: dict | None) -> tuple[str, dict]:
    """(gymnasium id, keywords) to run: the flags', else the export's manifest's, else
    Ant-v5 with its defaults. One-line HarnessError for --env_kwargs that is not a JSON
    object."""
    env_id = flag_values.env or (manifest or {}).get("env") or DEFAULT_ENV
    if flag_values.env_kwargs:
        try:
            kwargs = json.loads(flag_values.env_kwargs)
        except ValueError as e:
            raise HarnessError(f"--env_kwargs is not valid JSON ({e})") from None
        if not isinstance(kwargs, dict):
            raise HarnessError(f"--env_kwargs must be a JSON object, got {flag_values.env_kwargs!r}")
    elif flag_values.env and flag_values.env != (manifest or {}).get("env"):
        kwargs = {}
    else:
        kwargs = dict((manifest or {}).get("env_kwargs") or {})
    return env_id, kwargs

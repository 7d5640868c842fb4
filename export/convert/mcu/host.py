"""Compile the generated C with the host's C compiler and run it on observations.

    exe = build(model_bytes, work_dir)        # gcc -O2 -std=c99 -ffp-contract=off
    actions = run(exe, obs)                    # float32 [N, obs_dim] -> float32 [N, act_dim]

The flags keep float arithmetic IEEE single precision, one rounding per
operation (no -ffast-math, no fused multiply-add), as TFLM's kernels do.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from export.convert.mcu import write_c_sources

_HERE = os.path.dirname(os.path.abspath(__file__))
CFLAGS = ("-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror")


class HostBuildError(RuntimeError):
    """The host C compiler is missing or rejected the generated code."""


def build(model: bytes, work_dir: str, cc: str | None = None) -> str:
    """Generate the C sources into work_dir and compile them with host_main.c; returns the
    executable's path."""
    cc = cc or os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise HostBuildError(f"C compiler {cc!r} not found (install gcc or set CC)")
    info = write_c_sources(model, work_dir)
    exe = os.path.join(work_dir, "actor_mcu_host")
    sources = [f for f in info["files"] if f.endswith(".c")] + [os.path.join(_HERE, "host_main.c")]
    proc = subprocess.run([cc, *CFLAGS, "-I", work_dir, *sources, "-o", exe, "-lm"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines() or ["(no output)"]
        raise HostBuildError(f"{cc} failed: {lines[0][:300]}")
    return exe


def run(exe: str, obs: np.ndarray, act_dim: int) -> np.ndarray:
    """Actions float32 [N, act_dim] for obs float32 [N, obs_dim], one invoke per row."""
    obs = np.ascontiguousarray(obs, np.float32)
    proc = subprocess.run([exe], input=obs.tobytes(), capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise HostBuildError(f"{exe} exited with {proc.returncode}")
    out = np.frombuffer(proc.stdout, np.float32)
    if out.size != len(obs) * act_dim:
        raise HostBuildError(f"{exe} wrote {out.size} floats, expected {len(obs) * act_dim}")
    return out.reshape(len(obs), act_dim)

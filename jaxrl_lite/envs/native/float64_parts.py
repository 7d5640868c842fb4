"""float64 values carried through JAX (float32 here) as three float32 parts.

:func:`split_f64` writes ``x`` as ``hi + mid + lo``; the round trip is exact
for every finite ``|x|`` in about [1e-29, 3e38] (below that, the error is
under 1e-44 absolute), so the native backend's float64 MuJoCo state survives
jit, scan and checkpoints bit for bit. NumPy only, no JAX.
"""
from __future__ import annotations

import numpy as np


def split_f64(x) -> np.ndarray:
    """float64 [...] -> float32 [..., 3] with ``hi + mid + lo == x``."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        hi = x.astype(np.float32)
        rest = np.where(np.isfinite(hi), x - hi.astype(np.float64), 0.0)
        mid = rest.astype(np.float32)
        lo = (rest - mid.astype(np.float64)).astype(np.float32)
    return np.stack([hi, mid, lo], axis=-1)


def join_f64(parts) -> np.ndarray:
    """float32 [..., 3] -> float64 [...]: the inverse of :func:`split_f64`."""
    p = np.asarray(parts).astype(np.float64)
    return (p[..., 0] + p[..., 1]) + p[..., 2]

"""The persistent JAX compilation cache, switched on from the environment.

``JAXRL_LITE_JAX_CACHE=<dir>`` turns it on (tests, benchmarks, repeated launches);
``JAXRL_LITE_JAX_CACHE_MIN_S`` (default 1.0) is the shortest compile worth writing. The
test suite sets 0: its many short processes would otherwise recompile the same
sub-second functions in every process.
"""
from __future__ import annotations

import os


def configure(default_dir: str | None = None) -> str | None:
    """Point JAX at the cache directory from the environment (else ``default_dir``);
    -> the directory, or None when no cache is configured."""
    cache = os.environ.get("JAXRL_LITE_JAX_CACHE", default_dir)
    if not cache:
        return None
    raw = os.environ.get("JAXRL_LITE_JAX_CACHE_MIN_S", "1.0")
    try:
        min_s = float(raw)
    except ValueError:
        raise ValueError(f"JAXRL_LITE_JAX_CACHE_MIN_S must be a number of seconds, "
                         f"got {raw!r}") from None
    import jax  # only when a cache is asked for

    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", max(min_s, 0.0))
    return cache

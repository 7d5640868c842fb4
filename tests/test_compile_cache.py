"""The persistent compilation cache switch (``jaxrl_lite.run.compile_cache``)."""
import os

import jax
import pytest

from jaxrl_lite.run import compile_cache


def test_configures_the_cache_from_the_environment(monkeypatch):
    # The suite's own settings (tests/conftest.py), so the process keeps its cache.
    cache = os.environ["JAXRL_LITE_JAX_CACHE"]
    monkeypatch.setenv("JAXRL_LITE_JAX_CACHE_MIN_S", "0")
    assert compile_cache.configure() == cache
    assert jax.config.jax_compilation_cache_dir == cache
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    monkeypatch.setenv("JAXRL_LITE_JAX_CACHE", "")
    assert compile_cache.configure() is None  # no cache asked for: nothing changes
    assert jax.config.jax_compilation_cache_dir == cache


def test_a_bad_minimum_is_one_line(monkeypatch):
    monkeypatch.setenv("JAXRL_LITE_JAX_CACHE_MIN_S", "soon")
    with pytest.raises(ValueError, match=r"^JAXRL_LITE_JAX_CACHE_MIN_S must be a number of "
                                         r"seconds, got 'soon'$"):
        compile_cache.configure("/nonexistent")

"""Optional test dependencies: skip without them locally, fail in CI.

``require("tensorflow")`` imports the module; where it is missing, the calling
test module is skipped, except when ``CI=true`` (set in CI), where a missing
dependency means a broken environment and must fail instead of hiding tests.
"""
import importlib
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(name: str):
    if in_ci():
        return importlib.import_module(name)
    return pytest.importorskip(name)

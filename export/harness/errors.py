"""The harness's one-line errors and the entry of each of its processes.

Every harness process (the evaluate CLI, each variant's measurement child, the video
and reference rows) ends a bad input or a failed constraint with one line on stderr
and a non-zero exit status; nothing here imports more than the standard library and
absl.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app

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
    for key, value in env_defaults.items():
        os.environ.setdefault(key, value)
    app.run(lambda argv: run_main(main))

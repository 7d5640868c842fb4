"""Why a run stops: one exception per cause, each a one-line message and the
CLI's exit status, and the one place that turns a failed write into such a line.

=================  ====  ====================================================
``ConfigError``       2  bad input (flags, out_dir, checkpoint to resume);
                         raised before anything is compiled or written
``Diverged``          3  a non-finite metric or policy parameter; the
                         checkpoints on disk are the last good ones
``OutputError``       4  a checkpoint or metrics write failed (out of disk,
                         permissions); what was written before stays valid
``PeerLost``          5  another process of a multi-process run died
=================  ====  ====================================================
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Callable

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_OUTPUT = 4
EXIT_PEER_LOST = 5


class TrainingError(RuntimeError):
    """A run that cannot start or go on; ``str(e)`` is one line, ``exit_code`` the
    CLI's exit status."""

    exit_code = 1


class ConfigError(TrainingError, ValueError):
    """Bad configuration, out_dir or checkpoint to resume (exit status 2)."""

    exit_code = EXIT_BAD_INPUT


class Diverged(TrainingError):
    """Non-finite metrics or policy parameters (exit status 3)."""

    exit_code = EXIT_DIVERGED


class OutputError(TrainingError):
    """A checkpoint or metrics write failed (exit status 4)."""

    exit_code = EXIT_OUTPUT


class PeerLost(TrainingError):
    """Multi-process run: a collective failed, typically because another process
    died (exit status 5). Exit with ``multihost.exit_now``: a normal exit would
    wait in jax's shutdown barrier for the process that is gone."""

    exit_code = EXIT_PEER_LOST


def os_error(e: BaseException | None) -> OSError | None:
    """The OSError behind ``e``, if any: orbax re-raises them wrapped, tensorstore
    as a ValueError whose text ends in ``[os_error_code='28']``."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError):
            return e
        m = re.search(r"os_error_code='(\d+)'", str(e))
        if m:
            code = int(m.group(1))
            return OSError(code, os.strerror(code))
        e = e.__cause__ or e.__context__
        seen += 1
    return None


@contextlib.contextmanager
def output_errors(what: str, out_dir: str, newest_checkpoint: Callable[[], int | None]):
    """Turn a failed write of ``what`` (ENOSPC, EACCES, ...) into one OutputError
    line that names the newest checkpoint and how to continue."""
    try:
        yield
    except (TrainingError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - orbax raises many types around an OSError
        err = os_error(e)
        if err is None:
            raise
        step = newest_checkpoint()
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        raise OutputError(
            f"cannot write {what} in {out_dir} ({err.strerror or type(err).__name__}{where}); "
            f"stopped. Newest checkpoint: {'none' if step is None else step}; free space or "
            f"fix permissions, then continue with the same flags and --resume") from None

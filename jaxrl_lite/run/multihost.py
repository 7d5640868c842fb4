"""Multi-process start-up and failure handling (``jax.distributed``).

One process per host (or per GPU): process 0 hosts the coordinator at
``--coordinator_address``; every process passes the same flags, which
:func:`check_consistent` verifies through the coordinator's key-value store.
Start-up is bounded: a process that cannot reach the coordinator, or a group
that does not fill up within the timeout, ends with one line on stderr and
exit status 2, not a hang or a C++ abort. Once running, a process whose peer
dies (SIGKILL, OOM, lost host) exits with one line and status 5
(:data:`EXIT_PEER_LOST`), whichever way jax notices: a failed collective
raises in Python (the trainer turns it into :class:`~jaxrl_lite.run.trainer.PeerLost`),
and the runtime's own C++ threads end in ``std::terminate``, which
:mod:`jaxrl_lite.run.fatal_exit` turns into the same line. The checkpoints on disk
stay intact; restarting every process with ``--resume`` continues the run.

How the batch is laid out over the processes' devices: :mod:`jaxrl_lite.blocks.sharding`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Callable

import jax
from jax._src import distributed as _dist
from jax.experimental import multihost_utils

from jaxrl_lite.run import fatal_exit

EXIT_TIMEOUT = 2          # exit status when processes do not all join in time
EXIT_PEER_LOST = 5        # exit status when another process of the run died
# Seconds without heartbeats after which the coordinator declares a process dead and
# every other process exits (jax's default, 100 s, keeps a survivor waiting long).
HEARTBEAT_TIMEOUT_S = 30
_XLA_TIMEOUT_MARGIN_S = 10  # XLA's own (aborting) timeout fires this much later

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")


class DistributedError(RuntimeError):
    """A coordinator that cannot be reached, or processes that disagree (one line)."""


def exit_now(message: str, code: int) -> None:
    """Write ``message`` as the process's one error line (once, whichever thread
    gets here first) and exit at once, skipping atexit handlers: jax's shutdown
    barrier would wait for a process that is gone."""
    fatal_exit.exit_now(message, code)


def peer_lost_message(process_id: int, detail: str) -> str:
    first = (detail.strip().splitlines() or [""])[0][:200]
    return (f"distributed: error: process {process_id}: another process of the run stopped "
            f"({first}); the checkpoints on disk are intact: restart every process with the "
            f"same flags and --resume")


def validate_process_args(coordinator_address: str | None, num_processes: int | None,
                          process_id: int | None) -> tuple[str, int, int]:
    """Check the three multi-host flags; one-line ValueError for the first bad one."""
    if not coordinator_address or not isinstance(coordinator_address, str):
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    m = _ADDRESS.match(coordinator_address)
    if m is None:
        raise ValueError(f"coordinator_address must be 'host:port' (e.g. 10.0.0.1:1234), got "
                         f"{coordinator_address!r}")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"coordinator_address port must be in 1..65535, got {port}")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) \
            or num_processes < 1:
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) \
            or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be an integer in [0, {num_processes}) "
                         f"(num_processes={num_processes}), got {process_id!r}")
    return coordinator_address, num_processes, process_id


def _split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Poll a TCP connect to the coordinator until it answers or ``timeout_s``
    passes; raise DistributedError (one line) then. Used by processes != 0 so an
    unreachable coordinator is a clear error, not a hang or an abort in C++."""
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            raise DistributedError(
                f"coordinator {address} unreachable after {timeout_s:g} s "
                f"({type(last).__name__}: {getattr(last, 'strerror', None) or last}); is "
                f"process 0 running and is the port open?")
        time.sleep(0.2)


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               timeout_s: float = 60.0, local_device_ids=None) -> None:
    """Validate the flags, then ``jax.distributed.initialize`` with a bounded wait.

    Must run before any JAX computation. ``num_processes == 1`` is a no-op
    (single-process run). Process 0 hosts the coordinator at
    ``coordinator_address``; others wait at most ``timeout_s`` seconds for it.
    Raises ValueError (bad flags) or DistributedError (unreachable coordinator,
    processes that do not form the announced group), each one line.
    """
    validate_process_args(coordinator_address, num_processes, process_id)
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if num_processes == 1:
        return
    if process_id != 0:
        wait_for_coordinator(coordinator_address, timeout_s)
    # Gloo gives CPU devices cross-process collectives (it is jax 0.10's default
    # on CPU; set explicitly so a changed default cannot silently break us).
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # We never use jax's preemption sync points (a run is resumed from its
    # checkpoints); its service only adds a thread whose failed RPC prints a
    # multi-line gRPC error when a peer dies.
    jax.config.update("jax_enable_preemption_service", False)
    # When not every process joins in time, XLA's client aborts the process from
    # C++ (LOG(FATAL) + stack dump), which Python cannot catch. A watchdog that
    # fires first turns that into one line on stderr and exit status 2.
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout_s):
            sys.stderr.write(
                f"distributed: error: process {process_id}: not all {num_processes} processes "
                f"joined the coordinator at {coordinator_address} within {timeout_s:g} s "
                f"(check --num_processes/--process_id on every process and that all "
                f"were started)\n")
            sys.stderr.flush()
            os._exit(EXIT_TIMEOUT)

    threading.Thread(target=watchdog, name="jax-distributed-watchdog", daemon=True).start()
    try:
        with _on_peer_lost(lambda status: exit_now(
                peer_lost_message(process_id, str(status)), EXIT_PEER_LOST)):
            jax.distributed.initialize(
                coordinator_address=coordinator_address, num_processes=num_processes,
                process_id=process_id, local_device_ids=local_device_ids,
                initialization_timeout=int(math.ceil(timeout_s)) + _XLA_TIMEOUT_MARGIN_S,
                heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    except Exception as e:  # XLA raises plain RuntimeError/XlaRuntimeError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DistributedError(
            f"jax.distributed.initialize(coordinator={coordinator_address}, "
            f"num_processes={num_processes}, process_id={process_id}) failed: {first}") from None
    finally:
        joined.set()
    # From here on jax's C++ threads can end the process (see _on_peer_lost):
    # make that the same one line and status as a failed collective.
    why_not = fatal_exit.arm(peer_lost_message(
        process_id, "jax's distributed runtime stopped this process, as it does when the "
        "coordinator or a peer is gone"), EXIT_PEER_LOST)
    if why_not:
        logging.warning("multi-process: a lost peer may end this process with a C++ abort "
                        "instead of one line (no std::terminate handler: %s)", why_not)
    # Publish our view first so that every process reports a disagreement.
    check_consistent({"num_processes": num_processes,
                      "coordinator_address": coordinator_address}, timeout_s, name="init")
    if jax.process_count() != num_processes:
        raise DistributedError(f"process {process_id} was told num_processes={num_processes} "
                               f"but the group has {jax.process_count()} processes")


@contextlib.contextmanager
def _on_peer_lost(callback: Callable[[Any], None]):
    """Give the jax.distributed client ``callback`` as its missed-heartbeat
    callback instead of XLA's default (a fatal log with a C++ stack dump).

    jaxlib 0.10 cannot convert the callback's ``absl::Status`` argument, so the
    call throws ``std::bad_cast`` in the client's C++ thread and ends in
    ``std::terminate``, which :func:`fatal_exit.arm` turns into our one line; a
    jaxlib that can make the call runs ``callback`` itself. Either way it is
    one line and :data:`EXIT_PEER_LOST`. jax.distributed.initialize has no
    argument for it, so the client factory is wrapped while it runs; without the
    private hook (another jax version) the default behaviour stays."""
    factory = getattr(getattr(_dist, "_jax", None), "get_distributed_runtime_client", None)
    if factory is None or "missed_heartbeat_callback" not in (factory.__doc__ or ""):
        yield
        return

    def with_callback(*args, **kwargs):
        kwargs.setdefault("missed_heartbeat_callback", callback)
        return factory(*args, **kwargs)

    _dist._jax.get_distributed_runtime_client = with_callback
    try:
        yield
    finally:
        _dist._jax.get_distributed_runtime_client = factory


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)`` (no-op with one process);
    e.g. all processes check --out_dir before process 0 writes config.json."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def is_primary() -> bool:
    """True on the one process (index 0) that writes metrics, plots and configs."""
    return jax.process_index() == 0


def check_consistent(settings: dict, timeout_s: float = 60.0, name: str = "run") -> None:
    """Raise DistributedError (one line, the same on every process) unless every
    process passes the same ``settings`` (e.g. the run's flags). No-op with one
    process. ``name`` distinguishes several checks in one run.

    Each process publishes its settings as JSON in the coordinator's key-value
    store, reads every other process's, and names the first key that differs.
    """
    if jax.process_count() == 1:
        return
    client = _dist.global_state.client
    if client is None:
        raise DistributedError("check_consistent needs jax.distributed to be initialised")
    me = jax.process_index()
    prefix = f"jaxrl_lite/settings/{name}/"
    client.key_value_set(prefix + str(me), json.dumps(settings, sort_keys=True, default=str))
    every = {}
    for pid in range(jax.process_count()):
        try:
            every[pid] = json.loads(client.blocking_key_value_get(prefix + str(pid),
                                                                  int(timeout_s * 1000)))
        except Exception as e:
            raise DistributedError(f"process {pid} did not publish its settings within "
                                   f"{timeout_s:g} s ({type(e).__name__})") from None
    ref = every[0]
    for pid in range(1, len(every)):
        other = every[pid]
        for k in sorted(set(ref) | set(other)):
            if ref.get(k, "<absent>") != other.get(k, "<absent>"):
                raise DistributedError(
                    f"inconsistent flags between processes: --{k}={ref.get(k, '<absent>')!r} "
                    f"on process 0 but {other.get(k, '<absent>')!r} on process {pid}; start "
                    f"every process with the same flags")

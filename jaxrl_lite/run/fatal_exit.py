"""Exit with one line on stderr, from any thread, including C++ threads that die.

A multi-process run has C++ threads of jax's distributed runtime that can end
the process on their own: when the coordinator goes away, jaxlib's error-poll
thread calls the client's ``missed_heartbeat_callback``; jaxlib 0.10 cannot
pass its ``absl::Status`` argument to a Python callable (no nanobind caster),
so the call throws ``std::bad_cast`` in a thread with no handler, and
``std::terminate`` aborts the process with a C++ message and a stack dump that
Python can never catch. :func:`arm` installs a ``std::terminate`` handler (a
few lines of C, :mod:`jaxrl_lite.native_build`) that writes a prepared line
and ``_exit``\\ s with a chosen status instead; :func:`exit_now` is the same
exit for Python code, and whichever thread gets there first is the only one
that writes. Without a C compiler :func:`arm` returns the reason and the
default (abort) behaviour stays.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

from jaxrl_lite import native_build

_SOURCE = r"""
#include <string.h>
#include <unistd.h>

static char armed_message[4096];
static int armed_status = 1;
static int claimed;

/* Write text to stderr and _exit(status). Only the first caller writes; any
   later caller (another thread) waits for that exit. */
void fe_exit(const char *text, int status) {
  if (__atomic_exchange_n(&claimed, 1, __ATOMIC_SEQ_CST))
    for (;;) pause();
  size_t n = text ? strlen(text) : 0;
  while (n > 0) {
    ssize_t w = write(2, text, n);
    if (w <= 0) break;
    text += w;
    n -= (size_t)w;
  }
  _exit(status);
}

void fe_arm(const char *text, int status) {
  strncpy(armed_message, text, sizeof armed_message - 1);
  armed_status = status;
}

static void fe_on_terminate(void) { fe_exit(armed_message, armed_status); }

void *fe_terminate_handler(void) { return (void *)fe_on_terminate; }
"""

_lib = None
_lock = threading.Lock()
_python_reported = threading.Lock()


def _load():
    global _lib
    with _lock:
        if _lib is None:
            lib = native_build.build_and_load("fatal_exit", _SOURCE,
                                              ["-O2", "-shared", "-fPIC"])
            lib.fe_exit.argtypes = [ctypes.c_char_p, ctypes.c_int]
            lib.fe_arm.argtypes = [ctypes.c_char_p, ctypes.c_int]
            lib.fe_terminate_handler.restype = ctypes.c_void_p
            _lib = lib
        return _lib


def _line(message: str) -> bytes:
    return (message.rstrip("\n") + "\n").encode("utf-8", "replace")


def arm(message: str, status: int) -> str | None:
    """From now on an uncaught C++ exception in any thread (``std::terminate``)
    writes ``message`` as one line on stderr and exits with ``status``.

    Returns None when armed, else why not (no C compiler, no libstdc++)."""
    try:
        lib = _load()
        libstdcxx = ctypes.CDLL(ctypes.util.find_library("stdc++") or "libstdc++.so.6")
        set_terminate = libstdcxx._ZSt13set_terminatePFvvE  # std::set_terminate
    except (OSError, AttributeError) as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]
    lib.fe_arm(_line(message), int(status))
    set_terminate.restype = ctypes.c_void_p
    set_terminate.argtypes = [ctypes.c_void_p]
    set_terminate(lib.fe_terminate_handler())
    return None


def exit_now(message: str, status: int) -> None:
    """Write ``message`` as the process's one error line (only the first thread
    to get here, or to ``std::terminate`` once armed, writes) and exit at once,
    skipping atexit handlers: jax's shutdown barrier would wait for a process
    that is gone."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if _lib is not None:
        _lib.fe_exit(_line(message), int(status))  # does not return
    if _python_reported.acquire(blocking=False):
        sys.stderr.write(_line(message).decode())
        sys.stderr.flush()
    os._exit(status)

"""fatal_exit: std::terminate in any thread (the way jax's C++ runtime threads die)
becomes one prepared line and a chosen exit status; racing exits write once."""
import subprocess
import sys
import textwrap

import pytest

from tests.cli_runs import ROOT

TERMINATE = """
import ctypes, ctypes.util, threading, time
from jaxrl_lite.run import fatal_exit
why = fatal_exit.arm("run: error: the runtime stopped", 5)
assert why is None, why
libstdcxx = ctypes.CDLL(ctypes.util.find_library("stdc++") or "libstdc++.so.6")
{body}
time.sleep(30)
print("not reached")
"""


def _run(body: str) -> subprocess.CompletedProcess:
    code = TERMINATE.format(body=textwrap.dedent(body))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})


def test_terminate_in_a_foreign_thread_is_one_line_and_the_status():
    # std::terminate called on a thread Python did not start the usual way
    # (ctypes releases the GIL, as in jaxlib's own threads).
    proc = _run("""
        t = threading.Thread(target=libstdcxx._ZSt9terminatev, daemon=True)
        t.start()
    """)
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr == "run: error: the runtime stopped\n"
    assert "not reached" not in proc.stdout


def test_unarmed_terminate_still_aborts():
    code = ("import ctypes, ctypes.util\n"
            "ctypes.CDLL(ctypes.util.find_library('stdc++'))._ZSt9terminatev()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -6  # SIGABRT: arming is what changes it


@pytest.mark.parametrize("rounds", [20])
def test_python_exit_racing_terminate_writes_exactly_one_line(rounds):
    for _ in range(rounds):
        proc = _run("""
            go = threading.Event()
            def die():
                go.wait()
                libstdcxx._ZSt9terminatev()
            threading.Thread(target=die, daemon=True).start()
            go.set()
            fatal_exit.exit_now("run: error: python saw it first", 7)
        """)
        assert proc.stderr in ("run: error: the runtime stopped\n",
                               "run: error: python saw it first\n"), proc.stderr
        assert proc.returncode == (5 if "runtime" in proc.stderr else 7)

"""``python -m MODULE ARGS`` for tests, without paying the interpreter's imports each time.

A command-line test starts the real CLI in a real process (its own exit status,
stdout, stderr, signals), but most of such a process's start-up is importing JAX,
Flax, orbax (2-3 s of CPU; TensorFlow more). A :class:`ForkServer` imports a CLI
module once in a server process that never initialises a JAX backend, and then
forks one child per command; the child re-runs the module as ``__main__`` (its
dependencies are already imported) with the command's argv, environment and
working directory, its stdout/stderr going to files. Everything after the imports
is the real command: flags parsing, backend start-up, compilation, training,
exit status (SIGKILL shows as -9 as with ``subprocess``).

Use :func:`run` (a drop-in for ``subprocess.run(capture_output=True, text=True)``
of ``python -m MODULE``); one server per (module, cwd) lives for the session.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future

_SERVER = r'''
import atexit, importlib, json, os, runpy, select, sys, traceback
module = sys.argv[1]
for name in sys.argv[1:]:                  # the expensive part, once (the module, then
    importlib.import_module(name)          # what its __main__ imports, if asked)
from absl import flags
own_flags = [f.name for f in flags.FLAGS.flags_by_module_dict().get(module, [])]
out = sys.stdout


def child(req):
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for name in own_flags:                 # the module defines them again as __main__
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    sys.modules.pop(req["module"], None)
    sys.argv = [req["module"], *req["args"]]
    code = 0
    try:
        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:   # as a real interpreter would at exit: e.g. jax.distributed's shutdown
        atexit._run_exitfuncs()   # barrier, without which process 0 may leave first
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


children, buf = {}, b""
while True:
    ready, _, _ = select.select([0], [], [], 0.02)
    if ready:
        data = os.read(0, 65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(req)
            children[pid] = req["id"]
            out.write(f"{req['id']} pid {pid}\n")
            out.flush()
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        out.write(f"{children.pop(pid)} exit {os.waitstatus_to_exitcode(status)}\n")
        out.flush()
'''


class ForkServer:
    """A server process that imported ``module`` (and ``preload``); :meth:`run` forks a
    command from it."""

    def __init__(self, module: str, cwd: str, env: dict, preload: tuple = ()):
        self.module = module
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER, module, *preload], cwd=cwd,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        self._lock = threading.Lock()
        self._next = 0
        self._pids: dict[int, Future] = {}
        self._exits: dict[int, Future] = {}
        threading.Thread(target=self._read, daemon=True, name=f"forkserver-{module}").start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            rid, kind, value = line.decode().split()
            futures = self._pids if kind == "pid" else self._exits
            with self._lock:
                fut = futures.pop(int(rid))
            fut.set_result(int(value))
        with self._lock:  # the server died: fail whoever waits
            for fut in list(self._pids.values()) + list(self._exits.values()):
                fut.set_exception(RuntimeError(f"fork server of {self.module} exited"))

    def start(self, args, cwd: str, env: dict) -> "Child":
        """Fork the command now; :meth:`Child.communicate` waits for it."""
        tmp = tempfile.TemporaryDirectory()
        paths = {k: os.path.join(tmp.name, k) for k in ("stdout", "stderr")}
        with self._lock:
            rid, self._next = self._next, self._next + 1
            pid_f, exit_f = Future(), Future()
            self._pids[rid], self._exits[rid] = pid_f, exit_f
            req = dict(id=rid, module=self.module, args=list(args), cwd=cwd, env=dict(env),
                       **paths)
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
        return Child([sys.executable, "-m", self.module, *args], pid_f.result(timeout=60),
                     exit_f, tmp, paths)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


class Child:
    """A forked command, like a ``subprocess.Popen`` with captured text output."""

    def __init__(self, argv, pid: int, exit_f: Future, tmp, paths: dict):
        self.args, self.pid, self.returncode = argv, pid, None
        self._exit_f, self._tmp, self._paths = exit_f, tmp, paths

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait (SIGKILL and raise TimeoutExpired after ``timeout`` s) -> (stdout, stderr)."""
        try:
            self.returncode = self._exit_f.result(timeout=timeout)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            self._exit_f.result(timeout=60)
            raise subprocess.TimeoutExpired(self.args, timeout) from None
        out, err = (open(self._paths[k], errors="replace").read()
                    for k in ("stdout", "stderr"))
        self._tmp.cleanup()
        return out, err

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        out, err = self.communicate(timeout)
        return subprocess.CompletedProcess(self.args, self.returncode, out, err)


_servers: dict[tuple, ForkServer] = {}
_servers_lock = threading.Lock()


def start(module: str, args, cwd: str, env: dict, preload: tuple = ()) -> Child:
    """``subprocess.Popen([python, "-m", module, *args], cwd=cwd, env=env, stdout=PIPE,
    stderr=PIPE, text=True)``, forked from a warm server.

    The server is started with ``env`` the first time (module, cwd) is asked for:
    what a module reads from the environment at import time (JAX_PLATFORMS,
    MALLOC_ARENA_MAX) is the first caller's; everything read later is per command.
    ``preload``: modules the server imports too (a package's ``__main__`` importing its
    dependencies lazily, e.g. ``export.convert`` -> ``export.convert.pipeline``).
    """
    key = (module, cwd, tuple(preload))
    with _servers_lock:
        if key not in _servers:
            _servers[key] = ForkServer(module, cwd, env, tuple(preload))
    return _servers[key].start(args, cwd, env)


def run(module: str, args, cwd: str, env: dict, timeout: float = 600, preload: tuple = ()
        ) -> subprocess.CompletedProcess:
    """``subprocess.run([python, "-m", module, *args], cwd=cwd, env=env,
    capture_output=True, text=True, timeout=timeout)``, forked from a warm server."""
    return start(module, args, cwd, env, preload).wait(timeout)


@atexit.register
def _close_all() -> None:
    for server in _servers.values():
        server.close()

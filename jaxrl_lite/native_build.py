"""Compile a few lines of C once per machine and load them with ctypes.

Used by the native backend's batched step (:mod:`jaxrl_lite.envs.native_cstep`)
and by :mod:`jaxrl_lite.run.fatal_exit`. A shared object is code this process
runs, so it is cached only in a per-user directory created 0700
(:func:`cache_dir`), named by a hash of the source, compiler and flags, and
loaded only if it and its directory belong to this user and are not writable
by group or others. Concurrent builders are harmless (atomic rename).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile


def cache_dir() -> str:
    """Per-user directory of compiled objects: $JAXRL_LITE_CACHE, else
    $XDG_CACHE_HOME/jaxrl_lite or ~/.cache/jaxrl_lite (created 0700)."""
    return os.environ.get("JAXRL_LITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jaxrl_lite")


def compiler() -> tuple[str, str]:
    """-> (C compiler path, its ``--version`` text): part of the cache key.
    $CC wins, then ``cc``/``gcc`` on PATH; OSError when there is none."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc/gcc) on PATH")
    try:
        proc = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise OSError(f"C compiler {cc} cannot run ({e.strerror or e})") from None
    return cc, proc.stdout


def check_private(path: str) -> None:
    """Raise PermissionError unless ``path`` is ours and not writable by others."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {st.st_uid}, not by this user "
                              f"({os.getuid()}); refusing to load code from it")
    if st.st_mode & 0o022:
        raise PermissionError(f"{path} is writable by group or others (mode "
                              f"{stat.S_IMODE(st.st_mode):o}); refusing to load code from it")


def private_dir(path: str) -> str:
    """Create ``path`` 0700 if absent; raise unless it is ours and not writable by others."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    check_private(path)
    return path


def build_and_load(name: str, source: str, flags: list[str],
                   key_extra: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile ``source`` (C) with ``cc -o X.so source *flags`` unless the cached
    object for this (source, compiler, flags, key_extra) exists; load it.

    ``name`` prefixes the cached file (``<name>_<hash>.so``). Raises OSError with
    one line (compiler missing or failing) or PermissionError (unsafe cache)."""
    cc, cc_version = compiler()
    key = "\0".join([source, cc, cc_version, *flags, *key_extra])
    so = os.path.join(private_dir(cache_dir()),
                      f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:24]}.so")
    if not os.path.exists(so):
        with tempfile.TemporaryDirectory(dir=os.path.dirname(so)) as tmp:
            src = os.path.join(tmp, f"{name}.c")
            with open(src, "w") as f:
                f.write(source)
            tmp_so = os.path.join(tmp, f"{name}.so")
            proc = subprocess.run([cc, "-o", tmp_so, src, *flags], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode != 0:
                raise OSError(f"compiling {name} failed: {proc.stderr.strip()[:300]}")
            os.chmod(tmp_so, 0o700)
            os.replace(tmp_so, so)  # atomic: concurrent builders are harmless
    check_private(so)
    return ctypes.CDLL(so)

"""What the command-line tests share: the small PointMass PPO run they all use,
``train`` (``python -m experiments.train``, forked from a warm server), and the
comparison of two runs (metrics and every state array)."""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp

from jaxrl_lite.run import checkpoint, metrics
from tests import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--algo=ppo", "--env=PointMass-v0", "--num_envs=8", "--unroll_length=8",
          "--num_minibatches=2", "--num_epochs=2", "--total_steps=1536",
          "--log_every_steps=256", "--checkpoint_every_steps=512", "--eval_every_steps=512",
          "--eval_envs=4", "--keep_checkpoints=2", "--policy_hidden=16,16",
          "--value_hidden=16,16", "--noprogress", "--plot_every_s=1000"]
# The two-process PointMass PPO run (test_faults' reference and victims, test_distributed's
# launcher test): one set of flags, so later processes find the compiles in the cache.
TWO_PROCESSES = ["--algo=ppo", "--env=PointMass-v0", "--num_envs=8", "--unroll_length=8",
                 "--num_minibatches=2", "--num_epochs=1", "--total_steps=512",
                 "--checkpoint_every_steps=256", "--log_every_steps=64",
                 "--eval_every_steps=0", "--eval_envs=2", "--policy_hidden=16,16",
                 "--value_hidden=16,16", "--noprogress", "--plot_every_s=1000",
                 "--num_processes=2", "--distributed_timeout_s=60"]
TIMING = ("wall_s", "env_steps_per_s")
LOG_LINE = re.compile(r"^[IWEF]\d{4} ")  # absl log lines


def xla_flags(devices: int) -> str:
    """This process's XLA_FLAGS (conftest's compile flags) with ``devices`` host CPU
    devices, for a child process that needs its own device count."""
    return f"{os.environ.get('XLA_FLAGS', '')} " \
           f"--xla_force_host_platform_device_count={devices}".strip()


def env():
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("JAXRL_LITE_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
    return env


def train(*args, timeout=240, env_extra=None, fork=True):
    """``python -m experiments.train ARGS`` -> CompletedProcess. ``fork``: start it
    from the warm fork server (tests/forkserver.py) instead of a new interpreter."""
    environ = dict(env(), **(env_extra or {}))
    if fork:
        return forkserver.run("experiments.train", args, cwd=ROOT, env=environ,
                              timeout=timeout)
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=timeout)


def snapshot(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def leaves(tree, prefix=""):
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(leaves(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(leaves(v, f"{prefix}/{i}"))
    else:
        out[prefix] = np.asarray(tree)
    return out


def strip_timing(recs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


def assert_same_run(a, b, step="1536"):
    """Same metrics (timing aside) and bit-identical state arrays at ``step``."""
    assert strip_timing(metrics.read(a)) == strip_timing(metrics.read(b))
    with ocp.StandardCheckpointer() as reader:
        sa = reader.restore(os.path.join(a, "checkpoints", step, "state"))
        sb = reader.restore(os.path.join(b, "checkpoints", step, "state"))
    la, lb = (leaves(sa), leaves(sb))
    assert la.keys() == lb.keys() and len(la) > 10
    for k in la:
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)
    # The best evaluated policy (--keep_best) too: the same step and arrays.
    best_a, best_b = (checkpoint.load_policy(checkpoint.best_dir(r)) for r in (a, b))
    pa, pb = leaves(best_a.actor_params), leaves(best_b.actor_params)
    assert best_a.step == best_b.step and pa.keys() == pb.keys() and pa
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=f"best/ {k}")


def _largest_file(d):
    files = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
    return max(files, key=os.path.getsize)


def damage(item, how):
    """Damage ``item`` (state | policy) of the newest checkpoint (1536) of a run."""
    def prepare(run_dir):
        d = os.path.join(run_dir, "checkpoints", "1536", item)
        if how == "missing":
            sub = sorted(e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e)))[0]
            shutil.rmtree(os.path.join(d, sub))
            return
        f = _largest_file(d)
        with open(f, "r+b") as fh:
            if how == "truncated":
                fh.truncate(os.path.getsize(f) // 2)
            else:  # one flipped byte: same size, other content
                fh.seek(os.path.getsize(f) // 2)
                byte = fh.read(1)
                fh.seek(-1, 1)
                fh.write(bytes([byte[0] ^ 0xFF]))
    return prepare


DAMAGE = {"flipped": r"has changed since it was written \(SHA-256 mismatch\)",
          "truncated": "bytes, .* were written", "missing": "is missing"}

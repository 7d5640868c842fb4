"""What the export tests share: a small trained-looking Ant-v5 actor, its checkpoint,
the committed trained policy's export, and the exporter's command line."""
import json
import os
import subprocess
import sys

import numpy as np

from tests import forkserver
from tests.deps import require

jax = require("jax")
require("tensorflow")

from export.convert import observations  # noqa: E402
from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params  # noqa: E402
from jaxrl_lite.run.checkpoint import Checkpointer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A briefly trained (64, 64) Ant-v5 PPO policy; tests/data/README.md has its command.
TRAINED_POLICY = os.path.join(REPO, "tests", "data", "ant_ppo_1m")
HIDDEN = (64, 64)


def make_actor(spec: PolicySpec, seed: int = 0):
    """A random actor whose actions span [-1, 1] like a trained one: orthogonal init,
    output layer scaled up (init uses 0.01), small random biases; its normaliser is
    fitted to real Ant-v5 observations of its own rollouts (as training would)."""
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(seed)))
    rng = np.random.default_rng(seed)
    for name, layer in params["params"].items():
        layer["bias"] = rng.normal(0, 0.1, layer["bias"].shape).astype(np.float32)
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 100.0
    zero = lambda o: np.zeros((len(o), spec.act_dim), np.float32)  # noqa: E731
    norm = observations.fit_normalizer(observations.collect_observations(zero, 600, seed + 11))
    for i in range(2):
        pol = observations.numpy_policy(spec, params, norm)
        norm = observations.fit_normalizer(
            observations.collect_observations(pol, 1500, seed + 12 + i, action_noise=0.1))
    return params, norm


def save_checkpoint(run_dir, spec, params, norm, step=1000):
    ckpt = Checkpointer(str(run_dir))
    ckpt.save(step, {"actor": params, "step": np.asarray(step)}, spec, params, norm, "ppo")
    ckpt.close()
    return str(run_dir)


def actor_run(run_dir):
    """Save a (64, 64) Ant-v5 actor in ``run_dir``: (run_dir, spec, params, normaliser).
    The export test modules get it as the ``actor_run`` fixture (conftest.py)."""
    spec = PolicySpec("Ant-v5", 105, 8, HIDDEN)
    params, norm = make_actor(spec)
    d = save_checkpoint(run_dir, spec, params, norm)
    return d, spec, params, norm


def trained_export(out_dir):
    """Export TRAINED_POLICY through the command line (every variant and study, at test
    sizes) to ``out_dir``: (out_dir, manifest). conftest's ``trained_export`` fixture."""
    proc = subprocess.run(
        [sys.executable, "-m", "export.convert", f"--run_dir={TRAINED_POLICY}",
         f"--out_dir={out_dir}", "--num_calibration=500", "--num_heldout=300",
         "--num_distill=3000", "--prune_steps=400", "--prune_rounds=2", "--dagger_rounds=1",
         "--qat=always", "--qat_steps=500", "--studies"],
        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out_dir, "manifest.json")) as f:
        return str(out_dir), json.load(f)


def mae(a, b):
    return float(np.mean(np.abs(np.asarray(a, np.float64) - b)))


def export_cli(*args, timeout=300):
    """``python -m export.convert ARGS`` from the repository root, forked from a warm
    server (tests/forkserver.py: TensorFlow, JAX and the exporter imported once)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return forkserver.run("export.convert", args, cwd=REPO, env=env, timeout=timeout,
                          preload=("export.convert.pipeline",))


def one_line_error(proc):
    """The single 'error:' line of a failed command (and no traceback)."""
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]

"""Comparison row: the JAX actor straight from the training checkpoint.

  python -m export.harness.reference_jax --checkpoint=RUN_DIR --episodes=5 --seed=0

action = jaxrl_lite.blocks.policy.deterministic_action(spec, params, norm, obs), jitted
on the CPU, with the same episodes, loop and measurements as the LiteRT rows,
in its own process. Started by ``export.evaluate --export_dir`` (checkpoint
from manifest.json's "source_checkpoint") where JAX is installed.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from export.harness import errors, machine, profiles, shared
from export.harness.errors import HarnessError
from export.harness import loop

profiles.define_common_flags()
_CKPT = flags.DEFINE_string("checkpoint", None, "Run dir, checkpoints/ dir or one step dir.")
DEFAULT_NAME = "JAX actor"


class JaxPolicy:
    """jit(deterministic_action) on float32 [1, obs_dim], blocking until ready."""

    runtime = "jax"

    def __init__(self, path: str):
        import jax
        from jaxrl_lite.run import checkpoint
        from jaxrl_lite.blocks import policy

        try:
            bundle = checkpoint.load_policy(path)
        except checkpoint.CheckpointError as e:
            raise HarnessError(str(e)) from None
        spec = bundle.spec
        self.source = bundle.source
        self._params = jax.device_put(bundle.actor_params)
        self._norm = jax.device_put(bundle.norm)
        self._fn = jax.jit(lambda p, n, x: policy.deterministic_action(spec, p, n, x))
        self.input_shape = (1, spec.obs_dim)
        self.output_shape = (1, spec.act_dim)
        self._np = np
        self._x = np.zeros(self.input_shape, np.float32)
        self._y = None

    def set_input(self, obs):
        self._x = obs.copy()

    def invoke(self):
        self._y = self._fn(self._params, self._norm, self._x).block_until_ready()

    def get_output(self):
        return self._np.asarray(self._y)


def _main() -> int:
    if not _CKPT.value or not os.path.exists(_CKPT.value):
        raise HarnessError(f"--checkpoint={_CKPT.value} does not exist")
    constraints = profiles.apply_constraints(flags.FLAGS)
    env_id, env_kwargs = profiles.task(flags.FLAGS, None)
    if constraints["threads"] == 1:  # before JAX is imported: one XLA CPU thread
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false").strip()
    f = flags.FLAGS
    holder = {}

    def import_runtime():
        import jax  # noqa: F401
        from jaxrl_lite.run import checkpoint  # noqa: F401 (orbax comes with it

    def load():
        holder["p"] = JaxPolicy(_CKPT.value)
        return holder["p"]

    def measure():
        report = loop.measure(
            (flags.FLAGS.name or DEFAULT_NAME), "jax", import_runtime, load, constraints,
            episodes=f.episodes, seed=f.seed, max_episode_steps=f.max_episode_steps,
            warmup=f.warmup, model_path=os.path.abspath(_CKPT.value), model_bytes=None,
            env_id=env_id, env_kwargs=env_kwargs)
        report["model"] = holder["p"].source
        report["model_bytes"] = shared.dir_bytes(os.path.join(holder["p"].source, "policy"))
        return report

    report = machine.measure_to_json(f.report, measure)
    print(report["name"], "ok")
    return 0


if __name__ == "__main__":
    errors.run_child_cli(_main, JAX_PLATFORMS="cpu")

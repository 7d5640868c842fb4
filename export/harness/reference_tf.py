"""Comparison row: the exported TensorFlow SavedModel run with full TensorFlow.

  python -m export.harness.reference_tf --saved_model=EXPORT/saved_model --episodes=5 --seed=0

Same episodes, loop and measurements as the LiteRT rows (export.harness.loop),
in its own process, so the memory and CPU cost of the full runtime shows next
to LiteRT's. Started by ``export.evaluate --export_dir`` where TF is installed.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from export.harness import errors, machine, profiles, shared
from export.harness.errors import HarnessError
from export.harness import loop

profiles.define_common_flags()
_SAVED = flags.DEFINE_string("saved_model", None, "SavedModel directory.")
DEFAULT_NAME = "TensorFlow SavedModel"


class TFPolicy:
    """A SavedModel's serving signature (or its __call__) on float32 [1, obs_dim]."""

    runtime = "tensorflow"

    def __init__(self, path: str, threads: int):
        import tensorflow as tf

        try:  # only possible before TF's runtime starts (always so in the harness process)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        try:
            self._module = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 (TF raises many types for bad dirs)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise HarnessError(f"TensorFlow cannot load {path}: {first[:200]}") from None
        sigs = dict(getattr(self._module, "signatures", {}) or {})
        fn = sigs.get("serving_default") or (next(iter(sigs.values())) if sigs else None)
        if fn is not None:
            _, kwargs = fn.structured_input_signature
            if len(kwargs) != 1:
                raise HarnessError(f"{path}: serving signature has inputs {sorted(kwargs)}; "
                                   f"expected one")
            (self._arg, spec), = kwargs.items()
            outs = fn.structured_outputs
            if len(outs) != 1:
                raise HarnessError(f"{path}: serving signature has outputs {sorted(outs)}; "
                                   f"expected one")
            self._out_key = next(iter(outs))
            self.output_shape = tuple(outs[self._out_key].shape)
            self._fn = lambda x: fn(**{self._arg: x})[self._out_key]
        elif callable(self._module):
            spec = self._module.__call__.input_signature[0]
            self._fn = self._module.__call__
            self.output_shape = None
        else:
            raise HarnessError(f"{path} has no serving signature and is not callable")
        self.input_shape = tuple(spec.shape)
        self._tf, self._np = tf, np
        self._x = self._y = None
        if self.output_shape is None or None in self.output_shape:
            self.output_shape = tuple(self._fn(tf.zeros(self.input_shape, tf.float32)).shape)

    def set_input(self, obs):
        self._x = self._tf.constant(obs)

    def invoke(self):
        self._y = self._fn(self._x)

    def get_output(self):
        return self._y.numpy()


def _main() -> int:
    if not _SAVED.value or not os.path.isdir(_SAVED.value):
        raise HarnessError(f"--saved_model={_SAVED.value} is not a directory")
    constraints = profiles.apply_constraints(flags.FLAGS)
    env_id, env_kwargs = profiles.task(flags.FLAGS, None)

    def import_runtime():
        import tensorflow  # noqa: F401

    def load():
        return TFPolicy(_SAVED.value, constraints["threads"])

    f = flags.FLAGS
    report = machine.measure_to_json(f.report, lambda: loop.measure(
        (f.name or DEFAULT_NAME), "tensorflow", import_runtime, load, constraints,
        episodes=f.episodes, seed=f.seed, max_episode_steps=f.max_episode_steps,
        warmup=f.warmup, model_path=os.path.abspath(_SAVED.value),
        model_bytes=shared.dir_bytes(_SAVED.value), env_id=env_id, env_kwargs=env_kwargs))
    print(report["name"], "ok")
    return 0


if __name__ == "__main__":
    errors.run_child_cli(_main, TF_CPP_MIN_LOG_LEVEL="2")

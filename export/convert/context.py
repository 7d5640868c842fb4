"""What every export step reads: the actor, the options, the observation sets, the
clock, and the artifacts earlier steps made.

Observation sets are rollouts of the checkpoint's own deterministic policy (plus
Gaussian action noise) in gymnasium's task, made once and only when a step asks:
``calib`` (quantization calibration), ``heldout`` (every variant's action error),
``distill`` (fine-tuning and pruning). ``ref`` / ``calib_ref`` / ``distill_ref`` are
the JAX actor's actions on them [n, act_dim].
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time

import numpy as np

from export.convert import jax2tf_bridge, observations


class Clock:
    """Times named pieces of work into ``times`` (seconds) and prints them."""

    def __init__(self, verbose: bool):
        self.times: dict[str, float] = {}
        self.verbose = verbose

    def __call__(self, name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = round(time.perf_counter() - t, 3)
        if self.verbose:
            print(f"[export] {name}: {self.times[name]:.2f} s", flush=True)
        return out


@dataclasses.dataclass
class Result:
    """One step's output: its manifest entry, the model bytes (TFLite steps) and its
    actions on the held-out observations."""

    entry: dict
    model: bytes | None = None
    actions: np.ndarray | None = None


@dataclasses.dataclass
class Context:
    """spec/params/norm: the actor; env_kwargs: the task's keywords; root: the export
    directory being written; scratch: a directory for intermediate SavedModels;
    options: ``pipeline.ExportOptions``; done: the results of the steps run so far."""

    spec: object
    params: object
    norm: object
    env_kwargs: dict
    root: str
    scratch: str
    options: object
    clock: Clock
    done: dict[str, Result] = dataclasses.field(default_factory=dict)

    def collect(self, n: int, seed: int, noise: float, policy=None) -> np.ndarray:
        """n observations [n, obs_dim] from rollouts of ``policy`` (default: the actor)."""
        policy = policy or observations.numpy_policy(self.spec, self.params, self.norm)
        return observations.collect_observations(policy, n, seed, env_id=self.spec.env,
                                                 env_kwargs=self.env_kwargs,
                                                 action_noise=noise)

    def actions(self, obs: np.ndarray, spec=None, params=None) -> np.ndarray:
        """The JAX actor's actions (or another spec/params with this normaliser)."""
        return jax2tf_bridge.jax_actions(spec or self.spec, self.params if params is None
                                         else params, self.norm, obs)

    @functools.cached_property
    def calib(self) -> np.ndarray:
        o = self.options
        return self.clock("collect_calibration_obs", self.collect, o.num_calibration,
                          o.seed * 3 + 1, o.action_noise)

    @functools.cached_property
    def heldout(self) -> np.ndarray:
        o = self.options
        return self.clock("collect_heldout_obs", self.collect, o.num_heldout, o.seed * 3 + 2,
                          o.heldout_action_noise)

    @functools.cached_property
    def ref(self) -> np.ndarray:
        return self.actions(self.heldout)

    @functools.cached_property
    def calib_clipped(self) -> np.ndarray:
        """Calibration observations clipped to the normaliser's +-10 std range."""
        return jax2tf_bridge.clip_to_normalizer_range(self.calib, self.norm)

    @functools.cached_property
    def calib_ref(self) -> np.ndarray:
        return self.actions(self.calib)

    @functools.cached_property
    def distill(self) -> np.ndarray:
        o = self.options
        return self.clock("collect_distill_obs", self.collect, o.num_distill, o.seed * 3 + 3,
                          o.action_noise)

    @functools.cached_property
    def distill_ref(self) -> np.ndarray:
        return self.actions(self.distill)

    def write(self, relpath: str, data: bytes) -> str:
        path = os.path.join(self.root, relpath)
        with open(path, "wb") as f:
            f.write(data)
        return path


def errors(actions: np.ndarray, ref: np.ndarray) -> dict:
    """Action error of ``actions`` against ``ref`` (both [n, act_dim])."""
    e = np.abs(np.asarray(actions, np.float64) - np.asarray(ref, np.float64))
    return {"action_mae_vs_jax": float(e.mean()), "action_max_err_vs_jax": float(e.max())}

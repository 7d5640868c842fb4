"""Checkpoints: orbax-checkpoint, atomic, keep-last-K, resumable; one module for
every algorithm and for the exporter.

Layout of ``<run_dir>/checkpoints/<step>/`` (one orbax step directory each):
  state/   the full train state pytree (params, optimiser state, normaliser,
           env state, PRNG keys, counters): everything ``--resume`` needs.
  policy/  what deployment needs: {"actor_params": ..., "norm": {mean, var, count}}.
  meta/    JSON: {"algo", "env", "step", "policy_spec": PolicySpec.to_json(), ...}.

Orbax writes each step into a temporary directory and renames it into place
when complete, so a process killed during a save never leaves a step directory
that looks complete; incomplete temporaries are ignored and cleaned up.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import numpy as np

from jaxrl_lite import normalizer
from jaxrl_lite.policy import PolicySpec

CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A missing, corrupt or incompatible checkpoint (one-line message)."""


@dataclasses.dataclass
class PolicyBundle:
    """Everything needed to run the deterministic actor.

    spec: PolicySpec; actor_params: Flax params pytree (numpy arrays);
    norm: NormalizerState; step: env steps at save time; source: the step
    directory it was read from; algo: "ppo" | "ac"; meta: the full meta JSON.
    """

    spec: PolicySpec
    actor_params: Any
    norm: normalizer.NormalizerState
    step: int
    source: str
    algo: str
    meta: dict


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: slow, and unused by the Pi harness
    return ocp


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CHECKPOINT_SUBDIR)


class Checkpointer:
    """Periodic, atomic checkpoints of a training run (keeps the last ``max_to_keep``)."""

    def __init__(self, run_dir: str, max_to_keep: int = 3, read_only: bool = False):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        ocp = _ocp()
        self.directory = checkpoint_dir(run_dir)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
                enable_async_checkpointing=False, cleanup_tmp_directories=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, train_state: Any, spec: PolicySpec, actor_params: Any,
             norm: normalizer.NormalizerState, algo: str, extra_meta: dict | None = None):
        """Write one checkpoint synchronously; returns when it is complete on disk."""
        ocp = _ocp()
        meta = {"algo": algo, "env": spec.env, "step": int(step),
                "policy_spec": spec.to_json(), **(extra_meta or {})}
        policy = {"actor_params": actor_params,
                  "norm": {"mean": norm.mean, "var": norm.var, "count": norm.count}}
        self._manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(train_state),
            policy=ocp.args.StandardSave(policy),
            meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore the train state (same structure/shapes as ``template``) and meta."""
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for damaged files
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} is corrupt or does not match this "
                f"run's configuration ({type(e).__name__}: {_first_line(e)})") from None
        return out["state"], dict(out["meta"])

    def close(self):
        self._manager.close()


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


def _resolve_step_dir(path: str, step: int | None) -> str:
    """Accept a run dir, its checkpoints/ dir, or one step dir; return a step dir."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint path does not exist: {path}")
    if os.path.isdir(os.path.join(path, "meta")):
        return path
    ckpt = path if os.path.basename(path) == CHECKPOINT_SUBDIR else checkpoint_dir(path)
    if not os.path.isdir(ckpt):
        raise CheckpointError(f"no checkpoints/ directory in {path}")
    steps = sorted(int(d) for d in os.listdir(ckpt)
                   if d.isdigit() and os.path.isdir(os.path.join(ckpt, d, "meta")))
    if not steps:
        raise CheckpointError(f"no complete checkpoint in {ckpt}")
    if step is not None:
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {ckpt}; have {steps}")
        return os.path.join(ckpt, str(step))
    return os.path.join(ckpt, str(steps[-1]))


def load_meta(path: str, step: int | None = None) -> tuple[str, dict]:
    """-> (step_dir, meta JSON) of the newest (or given) checkpoint."""
    step_dir = _resolve_step_dir(path, step)
    ocp = _ocp()
    try:
        # Context managers close orbax's worker threads even when a read fails,
        # so a corrupt checkpoint leaves no background tracebacks behind.
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as reader:
            meta = reader.restore(os.path.join(step_dir, "meta"))
    except Exception as e:
        raise CheckpointError(f"corrupt checkpoint metadata in {step_dir} "
                              f"({type(e).__name__}: {_first_line(e)})") from None
    return step_dir, dict(meta)


def load_policy(path: str, step: int | None = None) -> PolicyBundle:
    """Load the deployable actor from a run dir / checkpoints dir / step dir.

    Needs nothing from the training flags: spec and normaliser come with it.
    """
    step_dir, meta = load_meta(path, step)
    try:
        spec = PolicySpec.from_json(meta["policy_spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {step_dir} has no valid policy_spec ({e})") from None
    ocp = _ocp()
    try:
        with ocp.StandardCheckpointer() as reader:
            policy = reader.restore(os.path.join(step_dir, "policy"))
    except Exception as e:
        raise CheckpointError(f"corrupt or truncated checkpoint {step_dir} "
                              f"({type(e).__name__}: {_first_line(e)})") from None
    policy = jax.tree_util.tree_map(np.asarray, policy)
    norm = normalizer.NormalizerState(
        mean=policy["norm"]["mean"], var=policy["norm"]["var"], count=policy["norm"]["count"])
    if norm.mean.shape != (spec.obs_dim,):
        raise CheckpointError(f"checkpoint {step_dir}: normaliser has shape {norm.mean.shape}, "
                              f"policy spec says obs_dim={spec.obs_dim}")
    _check_actor_shapes(spec, policy["actor_params"], step_dir)
    return PolicyBundle(spec=spec, actor_params=policy["actor_params"], norm=norm,
                        step=int(meta.get("step", 0)), source=step_dir,
                        algo=str(meta.get("algo", "")), meta=meta)


def _check_actor_shapes(spec: PolicySpec, params, where: str):
    from jaxrl_lite.policy import init_actor_params
    expected = jax.eval_shape(lambda: init_actor_params(spec, jax.random.PRNGKey(0)))
    exp_shapes = jax.tree_util.tree_map(lambda x: tuple(x.shape), expected)
    got_shapes = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), params)
    if exp_shapes != got_shapes:
        raise CheckpointError(f"checkpoint {where}: actor parameters do not match its "
                              f"policy spec (hidden={spec.hidden_sizes}, obs_dim={spec.obs_dim}, "
                              f"act_dim={spec.act_dim})")
    logging.debug("actor params match spec %s", spec)

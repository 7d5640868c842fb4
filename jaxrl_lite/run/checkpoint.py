"""Checkpoints: orbax-checkpoint, atomic, keep-last-K, resumable; one module for
every algorithm and for the exporter.

Layout of ``<run_dir>/checkpoints/<step>/`` (one orbax step directory each):
  state/   the full train state pytree (params, optimiser state, normaliser,
           env state, PRNG keys, counters): everything ``--resume`` needs.
  policy/  what deployment needs: {"actor_params": ..., "norm": {mean, var, count}}.
  meta/    JSON: {"algo", "env", "step", "policy_spec": PolicySpec.to_json(), ...}.

  checksums.json  size and SHA-256 of every file above, written by process 0
           after orbax has finished the step.

``<run_dir>/best/<step>/`` (``--keep_best``): policy/, meta/ and checksums.json of the
policy whose in-training evaluation beat every earlier one of the run (meta's
``eval/return_mean``); one step directory, replaced on each improvement, so the newest
step there is the best. :func:`load_policy` (export, evaluation) reads it like a run.

Orbax writes each step into a temporary directory and renames it into place
when complete, so a process killed during a save never leaves a step directory
that looks complete; incomplete temporaries are ignored and cleaned up.
Orbax does not detect flipped bytes in array data, so resume and
:func:`load_policy` check ``checksums.json`` first and name the newest good
checkpoint when one is damaged. A step without ``checksums.json`` (the process
died between orbax's rename and the checksums, or an older run) is checked
only for its item directories.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import threading
from typing import Any

import jax
import numpy as np

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params

CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best"
MANIFEST = "checksums.json"
ITEMS = ("state", "policy", "meta")


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


def best_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), BEST_SUBDIR)


def _policy_items(step: int, spec: PolicySpec, actor_params: Any,
                  norm: normalizer.NormalizerState, algo: str, extra_meta: dict | None):
    meta = {"algo": algo, "env": spec.env, "step": int(step),
            "policy_spec": spec.to_json(), **(extra_meta or {})}
    policy = {"actor_params": actor_params,
              "norm": {"mean": norm.mean, "var": norm.var, "count": norm.count}}
    return policy, meta


class Checkpointer:
    """Periodic, atomic checkpoints of a training run (keeps the last ``max_to_keep``),
    and the best evaluated policy (:meth:`save_best`)."""

    def __init__(self, run_dir: str, max_to_keep: int = 3, read_only: bool = False):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        ocp = _ocp()
        self.directory = checkpoint_dir(run_dir)
        self.best_directory = best_dir(run_dir)
        self._best = None  # its manager, opened on the first save_best
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
                enable_async_checkpointing=False, cleanup_tmp_directories=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, train_state: Any, spec: PolicySpec, actor_params: Any,
             norm: normalizer.NormalizerState, algo: str, extra_meta: dict | None = None):
        """Write one checkpoint synchronously; returns when it is complete on disk."""
        ocp = _ocp()
        policy, meta = _policy_items(step, spec, actor_params, norm, algo, extra_meta)
        with _thread_errors() as errors:
            self._manager.save(int(step), args=ocp.args.Composite(
                state=ocp.args.StandardSave(train_state),
                policy=ocp.args.StandardSave(policy),
                meta=ocp.args.JsonSave(meta)), force=True)
            self._manager.wait_until_finished()
        if errors:  # a writer thread failed but orbax did not say so
            raise errors[0]
        if jax.process_index() == 0:
            write_manifest(os.path.join(self.directory, str(int(step))))

    def save_best(self, step: int, spec: PolicySpec, actor_params: Any,
                  norm: normalizer.NormalizerState, algo: str, extra_meta: dict) -> None:
        """Replace ``best/`` with this policy (no train state). orbax removes the older
        step only after the new one is complete: a kill leaves one intact at least."""
        ocp = _ocp()
        if self._best is None:
            self._best = ocp.CheckpointManager(
                self.best_directory, options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, create=True, enable_async_checkpointing=False,
                    cleanup_tmp_directories=True))
        policy, meta = _policy_items(step, spec, actor_params, norm, algo, extra_meta)
        with _thread_errors() as errors:
            self._best.save(int(step), args=ocp.args.Composite(
                policy=ocp.args.StandardSave(policy), meta=ocp.args.JsonSave(meta)),
                force=True)
            self._best.wait_until_finished()
        if errors:
            raise errors[0]
        if jax.process_index() == 0:
            write_manifest(os.path.join(self.best_directory, str(int(step))))

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
        if self._best is not None:
            self._best.close()


def best_eval_return(run_dir: str) -> float | None:
    """The in-training evaluation return of the policy in ``run_dir/best/`` (None when
    there is none, or it is damaged: the run's next evaluation then replaces it)."""
    if not _steps_in(best_dir(run_dir)):
        return None
    try:
        _, meta = load_meta(best_dir(run_dir))
        return float(meta["eval/return_mean"])
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        logging.warning("ignoring %s: %s", best_dir(run_dir), _first_line(e))
        return None


@contextlib.contextmanager
def _thread_errors():
    """Collect exceptions of orbax's writer threads instead of printing their
    tracebacks (orbax re-raises the failure in the caller; a full disk would
    otherwise print a traceback per thread besides the one-line error)."""
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        yield errors
    finally:
        threading.excepthook = previous


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


def _steps_in(ckpt: str) -> list[int]:
    if not os.path.isdir(ckpt):
        return []
    return sorted(int(d) for d in os.listdir(ckpt)
                  if d.isdigit() and os.path.isdir(os.path.join(ckpt, d)))


def list_steps_in(directory: str) -> list[int]:
    """Steps of the step directories in ``directory`` (a checkpoints/ or best/ dir)."""
    return _steps_in(directory)


def list_steps(run_dir: str) -> list[int]:
    """Steps of the checkpoints in ``run_dir/checkpoints`` (ascending; orbax's
    unfinished temporaries excluded)."""
    return _steps_in(checkpoint_dir(run_dir))


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(step_dir: str) -> None:
    """Record size and SHA-256 of every file of a finished step (atomic write)."""
    files = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, step_dir)
            if rel != MANIFEST:
                files[rel] = [os.path.getsize(p), _digest(p)]
    tmp = os.path.join(step_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files}, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, MANIFEST))


def check_step(step_dir: str, items: tuple[str, ...] = ITEMS) -> str | None:
    """-> None if the files of ``items`` in ``step_dir`` are intact, else what is
    wrong (one phrase naming the file)."""
    for item in items:
        if not os.path.isdir(os.path.join(step_dir, item)):
            return f"{item}/ is missing"
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return None  # unverifiable: an older run, or killed before its checksums
    try:
        with open(path) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} is unreadable ({type(e).__name__})"
    for rel, (size, digest) in sorted(files.items()):
        if rel.split(os.sep)[0] not in items:
            continue
        p = os.path.join(step_dir, rel)
        if not os.path.exists(p):
            return f"{rel} is missing"
        got = os.path.getsize(p)
        if got != size:
            return f"{rel} has {got} bytes, {size} were written"
        if _digest(p) != digest:
            return f"{rel} has changed since it was written (SHA-256 mismatch)"
    return None


def verify(run_dir: str, step: int, items: tuple[str, ...] = ITEMS,
           how_to_pick: str = "") -> str:
    """-> the step directory if intact; else raise CheckpointError naming the
    damage and the newest intact checkpoint (``how_to_pick`` + its step says how
    to use it, e.g. ``"--resume_step="``; default: its directory)."""
    return _verify_in(checkpoint_dir(run_dir), step, items, how_to_pick)


def _verify_in(ckpt: str, step: int, items: tuple[str, ...], how_to_pick: str) -> str:
    step_dir = os.path.join(ckpt, str(step))
    problem = check_step(step_dir, items)
    if problem is None:
        return step_dir
    good = next((s for s in reversed(_steps_in(ckpt))
                 if s != step and check_step(os.path.join(ckpt, str(s)), items) is None), None)
    if good is None:
        hint = "no intact checkpoint is left"
    else:
        use = f"{how_to_pick}{good}" if how_to_pick else os.path.join(ckpt, str(good))
        hint = f"newest intact checkpoint: step {good} (use {use})"
    raise CheckpointError(f"checkpoint {step_dir} is damaged: {problem}; {hint}")


def _resolve_step_dir(path: str, step: int | None) -> str:
    """Accept a run dir, its checkpoints/ or best/ dir, or one step dir; return a step dir."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint path does not exist: {path}")
    if os.path.isdir(os.path.join(path, "meta")) or os.path.exists(os.path.join(path, MANIFEST)):
        return path
    own = os.path.basename(path) in (CHECKPOINT_SUBDIR, BEST_SUBDIR)
    ckpt = path if own else checkpoint_dir(path)
    if not os.path.isdir(ckpt):
        raise CheckpointError(f"no checkpoints/ directory in {path}")
    steps = _steps_in(ckpt)
    if not steps:
        raise CheckpointError(f"no complete checkpoint in {ckpt}")
    if step is not None:
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {ckpt}; have {steps}")
        return os.path.join(ckpt, str(step))
    return os.path.join(ckpt, str(steps[-1]))


def _verified_step_dir(path: str, step: int | None, items: tuple[str, ...]) -> str:
    step_dir = _resolve_step_dir(path, step)
    ckpt, name = os.path.split(step_dir)
    if name.isdigit():
        return _verify_in(ckpt, int(name), items, "")
    problem = check_step(step_dir, items)
    if problem:
        raise CheckpointError(f"checkpoint {step_dir} is damaged: {problem}")
    return step_dir


def load_meta(path: str, step: int | None = None) -> tuple[str, dict]:
    """-> (step_dir, meta JSON) of the newest (or given) checkpoint."""
    step_dir = _verified_step_dir(path, step, ("meta",))
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
    ``policy/`` and ``meta/`` are checked against the step's checksums first.
    """
    step_dir = _verified_step_dir(path, step, ("policy", "meta"))
    step_dir, meta = load_meta(step_dir)
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
    expected = jax.eval_shape(lambda: init_actor_params(spec, jax.random.PRNGKey(0)))
    exp_shapes = jax.tree_util.tree_map(lambda x: tuple(x.shape), expected)
    got_shapes = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), params)
    if exp_shapes != got_shapes:
        raise CheckpointError(f"checkpoint {where}: actor parameters do not match its "
                              f"policy spec (hidden={spec.hidden_sizes}, obs_dim={spec.obs_dim}, "
                              f"act_dim={spec.act_dim})")
    logging.debug("actor params match spec %s", spec)

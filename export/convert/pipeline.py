"""The export pipeline behind ``python -m export.convert`` (its CLI is __main__.py).

``load_bundle`` reads and checks a training checkpoint; ``export_bundle`` runs the
steps of :data:`STEPS` (one per variant, in order, each ``step(ctx) -> Result``: see
``steps.py``) in a temporary directory next to ``out_dir``, writes ``manifest.json``
and renames the directory into place; ``fidelity_table`` renders the manifest's
per-variant figures as Markdown. ``--studies`` adds the measurements of
``export/studies`` (never part of what ships).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import tempfile
from typing import Callable, NamedTuple

import numpy as np

from export.convert import observations, steps
from export.convert.context import Clock, Context, Result
from export.convert.quantize import QAT_MODES
from export.harness.shared import MANIFEST
from jaxrl_lite.run.checkpoint import CheckpointError, load_policy

class Step(NamedTuple):
    """One exported variant: its name (``--variants``), the function that builds it,
    and the steps whose results it reads (built first, written only if asked for)."""

    name: str
    build: Callable[[Context], Result]
    needs: tuple[str, ...] = ()


# The export, in order. The SavedModel (the bridge every TFLite variant converts) is
# always built; the others when asked for or needed.
STEPS = (
    Step("saved_model", steps.saved_model),
    Step("fp32", steps.fp32),
    Step("fp16", steps.fp16),
    Step("dynamic", steps.dynamic),
    Step("int8", steps.int8),
    Step("pruned_int8", steps.pruned_int8),
    Step("int16x8", steps.int16x8),
    Step("onnx", steps.onnx, needs=("fp32",)),
    Step("micro", steps.micro_c_array, needs=("int8",)),
    Step("micro_int16x8", steps.micro_int16x8_c_array, needs=("int16x8",)),
    Step("mcu", steps.mcu_c_sources, needs=("int8",)),
)
ALL_VARIANTS = tuple(s.name for s in STEPS[1:])


class ExportError(ValueError):
    """Bad input or a failed export step (one-line message)."""


@dataclasses.dataclass
class ExportOptions:
    """Knobs of one export; defaults are the CLI's."""

    variants: tuple[str, ...] = ALL_VARIANTS
    prune_keep: float = 0.39
    prune_rounds: int = 4
    prune_steps: int = 3000
    dagger_rounds: int = 4
    qat: str = "auto"
    qat_steps: int = 3000
    int8_equalise: bool = True
    studies: bool = False
    prune_sparsity: float = 0.5
    num_calibration: int = 1000
    num_heldout: int = 1000
    num_distill: int = 8000
    action_noise: float = 0.3
    heldout_action_noise: float = 0.1
    seed: int = 0
    verbose: bool = True

    @property
    def everything(self) -> bool:
        """All variants (the default) rather than a chosen few."""
        return set(self.variants) == set(ALL_VARIANTS)

    def __post_init__(self):
        self.variants = tuple(self.variants)
        unknown = [v for v in self.variants if v not in ALL_VARIANTS]
        if unknown or not self.variants:
            raise ExportError(f"unknown variants {unknown or '(none given)'}; valid: "
                              f"{','.join(ALL_VARIANTS)}")
        if not (0.0 < float(self.prune_keep) <= 1.0):
            raise ExportError(f"--prune_keep must be in (0, 1], got {self.prune_keep}")
        if self.qat not in QAT_MODES:
            raise ExportError(f"--qat must be one of {', '.join(QAT_MODES)}, got {self.qat!r}")
        for name in ("prune_rounds", "qat_steps", "dagger_rounds"):
            if int(getattr(self, name)) < (1 if name == "prune_rounds" else 0):
                raise ExportError(f"--{name} must be >= {1 if name == 'prune_rounds' else 0}, "
                                  f"got {getattr(self, name)}")
        if not (0.0 <= float(self.prune_sparsity) < 1.0):
            raise ExportError(f"--prune_sparsity must be in [0, 1), got {self.prune_sparsity}")
        for name in ("num_calibration", "num_heldout", "num_distill"):
            if int(getattr(self, name)) < 1:
                raise ExportError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.prune_steps < 0:
            raise ExportError(f"--prune_steps must be >= 0, got {self.prune_steps}")


# ------------------------------------------------------------------ output dir

def prepare_out_dir(out_dir: str) -> str:
    """Check ``out_dir`` can be (re)placed; returns a fresh temp dir next to it."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ExportError(f"--out_dir={out_dir} exists and is not a directory")
        if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MANIFEST)):
            raise ExportError(f"--out_dir={out_dir} holds other files; expected an empty "
                              f"directory or a previous export (with {MANIFEST})")
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    except OSError as e:
        raise ExportError(f"--out_dir={out_dir} is not writable ({e.strerror or e})") from None


def commit_out_dir(tmp: str, out_dir: str):
    """Move the finished export into place (replacing a previous export)."""
    out_dir = os.path.abspath(out_dir)
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-",
                               dir=os.path.dirname(out_dir))
        os.rename(out_dir, os.path.join(old, "export"))
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------ inputs

def load_bundle(run_dir: str | None, checkpoint: str | None):
    """The checkpoint's PolicyBundle, checked to be an actor of its task's shape."""
    path = checkpoint or run_dir
    if not path:
        raise ExportError("give --run_dir=DIR (or --checkpoint=STEP_DIR)")
    if run_dir and not os.path.isdir(run_dir):
        raise ExportError(f"--run_dir={run_dir} does not exist or is not a directory")
    if checkpoint and not os.path.isdir(checkpoint):
        raise ExportError(f"--checkpoint={checkpoint} does not exist or is not a directory")
    try:
        bundle = load_policy(path)
    except CheckpointError as e:
        raise ExportError(str(e).splitlines()[0]) from None
    env = bundle.spec.env
    env_kwargs = bundle.meta.get("env_kwargs") or {}
    try:
        obs_dim, act_dim = observations.env_dims(env, env_kwargs)
    except Exception as e:  # noqa: BLE001 - gymnasium raises several types
        raise ExportError(f"checkpoint {bundle.source} is for env {env!r}, which gymnasium "
                          f"cannot make here ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160]})") from None
    if (bundle.spec.obs_dim, bundle.spec.act_dim) != (obs_dim, act_dim):
        raise ExportError(f"checkpoint {bundle.source} has obs_dim={bundle.spec.obs_dim}, "
                          f"act_dim={bundle.spec.act_dim}; {env} has "
                          f"obs_dim={obs_dim}, act_dim={act_dim}")
    return bundle


# ------------------------------------------------------------------ the export

def export_bundle(bundle, out_dir: str, options: ExportOptions | None = None) -> dict:
    """Write every requested artifact of ``bundle`` into ``out_dir``; returns the manifest."""
    options = options or ExportOptions()
    tmp = prepare_out_dir(out_dir)
    try:
        with _old_objects_frozen():
            manifest = _build(bundle, tmp, options)
        commit_out_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


@contextlib.contextmanager
def _old_objects_frozen():
    """Keep the objects that exist before the export out of the cyclic garbage
    collector's scans while it runs: TensorFlow's converter calls ``gc.collect()`` on
    every conversion, ~0.3 s each in a process that holds JAX and TensorFlow, 14 times
    in a full export. Nothing is leaked: ``gc.unfreeze`` hands them back afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def steps_to_run(variants: tuple[str, ...]) -> list[Step]:
    """The steps for ``variants`` and what they need, in STEPS order."""
    wanted = {"saved_model", *variants}
    for step in reversed(STEPS):
        if step.name in wanted:
            wanted.update(step.needs)
    return [s for s in STEPS if s.name in wanted]


def _build(bundle, root: str, opt: ExportOptions) -> dict:
    env_kwargs = bundle.meta.get("env_kwargs") or {}
    ctx = Context(spec=bundle.spec, params=bundle.actor_params, norm=bundle.norm,
                  env_kwargs=env_kwargs, root=root, scratch=tempfile.mkdtemp(dir=root),
                  options=opt, clock=Clock(opt.verbose))
    try:
        for step in steps_to_run(opt.variants):
            try:
                ctx.done[step.name] = step.build(ctx)
            except steps.StepError as e:
                raise ExportError(str(e)) from None
        if opt.studies:
            from export import studies  # a study, never imported by what ships
            study_results = studies.run(ctx)
        else:
            study_results = {}
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    variants = {name: r.entry for name, r in ctx.done.items()
                if name == "saved_model" or name in opt.variants}
    spec = bundle.spec
    manifest = {"env": spec.env, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                "source_checkpoint": bundle.source, "step": bundle.step, "algo": bundle.algo,
                "policy_spec": spec.to_json(), "env_kwargs": env_kwargs,
                "variants": variants, "studies": study_results,
                "observations": {"calibration": int(len(ctx.calib)),
                                 "heldout": int(len(ctx.heldout)),
                                 "action_noise": opt.action_noise,
                                 "heldout_action_noise": opt.heldout_action_noise,
                                 "seed": opt.seed,
                                 "source": f"gymnasium {spec.env} rollouts of this "
                                           f"checkpoint's deterministic policy + Gaussian "
                                           f"action noise"},
                "timings_s": ctx.clock.times}
    with open(os.path.join(root, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, default=_json_default)
    return manifest


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# ------------------------------------------------------------------ report

def fidelity_table(manifest: dict) -> str:
    """Markdown table: variant, file, bytes, gzip bytes, sparsity, MAE, max error, ops."""
    rows = ["| variant | file | bytes | gzip bytes | sparsity | action MAE vs JAX | "
            "max abs err | ops |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, v in manifest["variants"].items():
        extra = f" (arena {v['tensor_arena_bytes']} B)" if "tensor_arena_bytes" in v else ""
        rows.append(f"| {name} | {v['file']} | {v['bytes']} | {v.get('gzip_bytes', '')} | "
                    f"{v['sparsity']:.3f} | {v['action_mae_vs_jax']:.2e} | "
                    f"{v['action_max_err_vs_jax']:.2e} | {' '.join(v['ops'])}{extra} |")
    return "\n".join(rows)

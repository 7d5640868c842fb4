r"""Export a trained actor: SavedModel, TFLite variants, ONNX, TFLite-Micro C array.

    python -m export.convert --run_dir=DIR --out_dir=EXPORT \
        [--checkpoint=STEP_DIR] [--prune_sparsity=0.5] [--variants=fp32,fp16,...]

Everything is built in a temporary directory next to ``out_dir`` and renamed
into place at the end, so an interrupted export never looks complete. The
output (WORKSPACE.md, "Public interfaces"): ``saved_model/``, ``actor_{fp32,fp16,dynamic,
int8,pruned_int8}.tflite``, ``actor.onnx``, ``micro/actor_model.{h,cc}`` and
``manifest.json`` with per-variant bytes, gzip bytes, sparsity, ops and action
error against the JAX actor on held-out real Ant-v5 observations.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ALL_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "pruned_int8", "onnx", "micro")
TFLITE_FILES = {"fp32": "actor_fp32.tflite", "fp16": "actor_fp16.tflite",
                "dynamic": "actor_dynamic.tflite", "int8": "actor_int8.tflite",
                "pruned_int8": "actor_pruned_int8.tflite"}
ONNX_FILE = "actor.onnx"
MICRO_DIR = "micro"
SAVED_MODEL_DIR = "saved_model"
MANIFEST = "manifest.json"
SUPPORTED_ENV = "Ant-v5"
# The SavedModel must reproduce the JAX actor to float32 rounding.
SAVED_MODEL_TOL = 1e-5


class ExportError(ValueError):
    """Bad input or a failed export step (one-line message)."""


@dataclasses.dataclass
class ExportOptions:
    """Knobs of one export; defaults are the CLI's."""

    variants: tuple[str, ...] = ALL_VARIANTS
    prune_sparsity: float = 0.5
    prune_steps: int = 3000
    num_calibration: int = 1000
    num_heldout: int = 1000
    num_distill: int = 8000
    action_noise: float = 0.3
    heldout_action_noise: float = 0.1
    seed: int = 0
    sparse_storage_study: bool = True
    verbose: bool = True

    def __post_init__(self):
        self.variants = tuple(self.variants)
        unknown = [v for v in self.variants if v not in ALL_VARIANTS]
        if unknown or not self.variants:
            raise ExportError(f"unknown variants {unknown or '(none given)'}; valid: "
                              f"{','.join(ALL_VARIANTS)}")
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
    """The checkpoint's PolicyBundle, checked to be an Ant-v5 actor of the right shape."""
    path = checkpoint or run_dir
    if not path:
        raise ExportError("give --run_dir=DIR (or --checkpoint=STEP_DIR)")
    if run_dir and not os.path.isdir(run_dir):
        raise ExportError(f"--run_dir={run_dir} does not exist or is not a directory")
    if checkpoint and not os.path.isdir(checkpoint):
        raise ExportError(f"--checkpoint={checkpoint} does not exist or is not a directory")
    from jaxrl_lite.checkpoint import CheckpointError, load_policy
    from export import observations
    try:
        bundle = load_policy(path)
    except CheckpointError as e:
        raise ExportError(str(e).splitlines()[0]) from None
    if bundle.spec.env != SUPPORTED_ENV:
        raise ExportError(f"checkpoint {bundle.source} is for env {bundle.spec.env!r}; "
                          f"the exporter supports {SUPPORTED_ENV!r}")
    env_kwargs = bundle.meta.get("env_kwargs") or {}
    obs_dim, act_dim = observations.env_dims(SUPPORTED_ENV, env_kwargs)
    if (bundle.spec.obs_dim, bundle.spec.act_dim) != (obs_dim, act_dim):
        raise ExportError(f"checkpoint {bundle.source} has obs_dim={bundle.spec.obs_dim}, "
                          f"act_dim={bundle.spec.act_dim}; {SUPPORTED_ENV} has "
                          f"obs_dim={obs_dim}, act_dim={act_dim}")
    return bundle


# ------------------------------------------------------------------ the export

def _errors(actions: np.ndarray, ref: np.ndarray) -> dict:
    e = np.abs(np.asarray(actions, np.float64) - np.asarray(ref, np.float64))
    return {"action_mae_vs_jax": float(e.mean()), "action_max_err_vs_jax": float(e.max())}


class _Clock:
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


def export_bundle(bundle, out_dir: str, options: ExportOptions | None = None) -> dict:
    """Write every requested artifact of ``bundle`` into ``out_dir``; returns the manifest."""
    options = options or ExportOptions()
    tmp = prepare_out_dir(out_dir)
    try:
        manifest = _build(bundle, tmp, options)
        commit_out_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _build(bundle, root: str, opt: ExportOptions) -> dict:
    from export import jax2tf_bridge, observations, onnx_export, pruning, tflite

    clock = _Clock(opt.verbose)
    spec, params, norm = bundle.spec, bundle.actor_params, bundle.norm
    env_kwargs = bundle.meta.get("env_kwargs") or {}
    want = set(opt.variants)

    # Real observations: rollouts of this checkpoint's deterministic policy (+ noise).
    policy = observations.numpy_policy(spec, params, norm)

    def collect(n, seed, noise):
        return observations.collect_observations(policy, n, seed, env_kwargs=env_kwargs,
                                                 action_noise=noise)
    calib = clock("collect_calibration_obs", collect, opt.num_calibration, opt.seed * 3 + 1,
                  opt.action_noise)
    heldout = clock("collect_heldout_obs", collect, opt.num_heldout, opt.seed * 3 + 2,
                    opt.heldout_action_noise)
    ref = jax2tf_bridge.jax_actions(spec, params, norm, heldout)

    # The bridge.
    sm_dir = os.path.join(root, SAVED_MODEL_DIR)
    clock("jax2tf_saved_model", jax2tf_bridge.save_saved_model, spec, params, norm, sm_dir)
    sm_err = _errors(clock("saved_model_check", jax2tf_bridge.saved_model_actions,
                           sm_dir, heldout), ref)
    if sm_err["action_max_err_vs_jax"] > SAVED_MODEL_TOL:
        raise ExportError(f"SavedModel differs from the JAX actor by "
                          f"{sm_err['action_max_err_vs_jax']:.3g} > {SAVED_MODEL_TOL}")
    variants: dict[str, dict] = {}
    variants["saved_model"] = {"file": SAVED_MODEL_DIR,
                               "bytes": jax2tf_bridge.saved_model_bytes(sm_dir),
                               "sparsity": 0.0, "ops": ["XlaCallModule"], **sm_err}

    models: dict[str, bytes] = {}
    studies: dict[str, dict] = {}

    def add_tflite(name: str, model: bytes, reference=ref, sparsity=None):
        ops = tflite.check_ops(model, name, layer_norm=spec.layer_norm)
        actions = tflite.run(model, heldout)
        ws = tflite.weight_sparsity(model)
        entry = {"file": TFLITE_FILES[name], "bytes": len(model),
                 "gzip_bytes": tflite.gzip_bytes(model),
                 "sparsity": round(ws["sparsity"], 6) if sparsity is None else sparsity,
                 "weight_sparsity_per_layer": [round(s, 6) for s in ws["per_layer"]],
                 "ops": ops, **_errors(actions, reference)}
        if name in ("int8", "pruned_int8"):
            entry["integer_ops"] = tflite.integer_ops(model)
            counts = tflite.op_counts(model)
            entry["quantize_ops"] = {k: counts.get(k, 0) for k in ("QUANTIZE", "DEQUANTIZE")}
            bad = {k: v for k, v in entry["integer_ops"].items() if v != "INT8"}
            if bad:
                raise ExportError(f"{name}: ops not running in int8: {bad}")
        models[name] = model
        if name in want:
            with open(os.path.join(root, TFLITE_FILES[name]), "wb") as f:
                f.write(model)
            variants[name] = entry
        return entry, actions

    needs_fp32 = want & {"fp32", "onnx"}
    needs_int8 = want & {"int8", "micro"}
    if needs_fp32:
        add_tflite("fp32", clock("tflite_fp32", tflite.convert, sm_dir, "fp32"))
    if "fp16" in want:
        add_tflite("fp16", clock("tflite_fp16", tflite.convert, sm_dir, "fp16"))
    if "dynamic" in want:
        add_tflite("dynamic", clock("tflite_dynamic", tflite.convert, sm_dir, "dynamic"))
    int8_actions = None

    def int8_model(saved_model: str, name: str, reference) -> bytes:
        """Per-channel or per-tensor int8 weights, chosen on the CALIBRATION set:
        per-tensor (smaller) unless its action error is over 10% worse."""
        pc = clock(f"tflite_{name}", tflite.convert, saved_model, name, calib)
        pt = clock(f"tflite_{name}_per_tensor", tflite.convert, saved_model, name, calib,
                   per_channel=False)
        mae = {k: _errors(tflite.run(m, calib), reference)["action_mae_vs_jax"]
               for k, m in (("per_channel", pc), ("per_tensor", pt))}
        choice = "per_tensor" if mae["per_tensor"] <= 1.1 * mae["per_channel"] + 1e-4 \
            else "per_channel"
        studies[f"{name}_weight_granularity"] = {
            "chosen": choice, "calibration_mae": mae,
            "bytes": {"per_channel": len(pc), "per_tensor": len(pt)}}
        return pt if choice == "per_tensor" else pc

    if needs_int8:
        calib_ref = jax2tf_bridge.jax_actions(spec, params, norm, calib)
        _, int8_actions = add_tflite("int8", int8_model(sm_dir, "int8", calib_ref))
        # Before/after: the same recipe with the normalisation quantized as well.
        naive = clock("tflite_int8_normalize_in_int8", tflite.convert, sm_dir, "int8", calib,
                      normalize_in_int8=True)
        studies["int8_normalisation"] = {
            "normalize_in_float (exported)": {
                k: variants.get("int8", {}).get(k) for k in ("action_mae_vs_jax",
                                                             "action_max_err_vs_jax")}
            if "int8" in want else _errors(int8_actions, ref),
            "normalize_in_int8 (raw obs quantized)": {**_errors(tflite.run(naive, heldout), ref),
                                                      "ops": tflite.model_ops(naive)}}

    if "pruned_int8" in want:
        distill = clock("collect_distill_obs", collect, opt.num_distill, opt.seed * 3 + 3,
                        opt.action_noise)
        cfg = pruning.PruneConfig(sparsity=opt.prune_sparsity, steps=opt.prune_steps,
                                  seed=opt.seed)
        pruned, prep = clock("prune_and_distill", pruning.prune_and_distill, spec, params,
                             norm, distill, cfg)
        one_shot = pruning.apply_masks(params, pruning.magnitude_masks(params, cfg.sparsity))
        pruned_ref = jax2tf_bridge.jax_actions(spec, pruned, norm, heldout)
        prep["heldout"] = {
            "one_shot_mae_vs_jax": _errors(jax2tf_bridge.jax_actions(
                spec, one_shot, norm, heldout), ref)["action_mae_vs_jax"],
            "distilled_mae_vs_jax": _errors(pruned_ref, ref)["action_mae_vs_jax"]}
        with tempfile.TemporaryDirectory(dir=root) as ptmp:
            psm = os.path.join(ptmp, "saved_model")
            clock("jax2tf_pruned_saved_model", jax2tf_bridge.save_saved_model, spec, pruned,
                  norm, psm)
            pmodel = int8_model(psm, "pruned_int8",
                                jax2tf_bridge.jax_actions(spec, pruned, norm, calib))
        if opt.sparse_storage_study:
            studies["sparse_storage"] = clock("sparse_storage_study", _sparse_study,
                                              pmodel, heldout, ref)
        entry, pact = add_tflite("pruned_int8", pmodel)
        entry["action_mae_vs_pruned_jax"] = _errors(pact, pruned_ref)["action_mae_vs_jax"]
        entry["target_sparsity"] = opt.prune_sparsity
        if entry["sparsity"] + 0.01 < opt.prune_sparsity:
            raise ExportError(f"pruned_int8 weights are {entry['sparsity']:.3f} sparse, "
                              f"expected >= {opt.prune_sparsity}")
        entry["pruning"] = prep

    if "onnx" in want:
        path = os.path.join(root, ONNX_FILE)
        ops = clock("onnx_from_tflite", onnx_export.from_tflite, models["fp32"], path)
        variants["onnx"] = {"file": ONNX_FILE, "bytes": os.path.getsize(path),
                            "gzip_bytes": tflite.gzip_bytes(_read_bytes(path)),
                            "sparsity": 0.0, "ops": ops, "source": "actor_fp32.tflite",
                            **_errors(onnx_export.run(path, heldout), ref)}

    if "micro" in want:
        variants["micro"] = clock("micro", _micro, models["int8"], int8_actions, heldout, ref,
                                  spec.obs_dim, os.path.join(root, MICRO_DIR))

    manifest = {"env": SUPPORTED_ENV, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                "source_checkpoint": bundle.source, "step": bundle.step, "algo": bundle.algo,
                "policy_spec": spec.to_json(), "env_kwargs": env_kwargs,
                "variants": variants, "studies": studies,
                "observations": {"calibration": int(len(calib)), "heldout": int(len(heldout)),
                                 "action_noise": opt.action_noise,
                                 "heldout_action_noise": opt.heldout_action_noise,
                                 "seed": opt.seed,
                                 "source": "gymnasium Ant-v5 rollouts of this checkpoint's "
                                           "deterministic policy + Gaussian action noise"},
                "timings_s": clock.times}
    with open(os.path.join(root, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, default=_json_default)
    return manifest


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _micro(model: bytes, litert_actions, heldout, ref, obs_dim: int, out_dir: str) -> dict:
    from export import micro, tflite
    ops = tflite.model_ops(model)
    unsupported = sorted(set(ops) - tflite.TFLM_OPS)
    if unsupported:
        raise ExportError(f"int8 model uses ops TFLite Micro lacks: {unsupported}")
    io = tflite.io_details(model)
    arena = micro.min_arena_bytes(model, obs_dim)
    actions = micro.run(model, heldout, arena, io)
    recommended = arena + micro.ARENA_MARGIN
    _, cc = micro.write_c_array(model, out_dir, arena_bytes=recommended, io=io, ops=ops)
    if micro.parse_c_array(cc) != model:
        raise ExportError(f"{cc} does not round-trip to the int8 model")
    diff = np.abs(actions - litert_actions)
    # For scale: LiteRT's own two int8 kernel sets (XNNPACK vs builtin) also differ.
    litert_internal = np.abs(tflite.run(model, heldout, delegates=False) - litert_actions)
    quant = {side: {"dtype": io[f"{side}_dtype"],
                    "scale": io[f"{side}_quant"][0] if io[f"{side}_dtype"] == "int8" else None,
                    "zero_point": int(io[f"{side}_quant"][1])
                    if io[f"{side}_dtype"] == "int8" else None} for side in ("input", "output")}
    return {"file": f"{MICRO_DIR}/actor_model.cc", "header": f"{MICRO_DIR}/actor_model.h",
            "bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
            "sparsity": round(tflite.weight_sparsity(model)["sparsity"], 6), "ops": ops,
            "tensor_arena_bytes": int(arena), "tensor_arena_bytes_recommended": int(recommended),
            "quantization": quant, "runtime": "tflite_micro (host Python interpreter)",
            "same_model_as": "actor_int8.tflite",
            "max_abs_diff_vs_litert_int8": float(diff.max()),
            "mean_abs_diff_vs_litert_int8": float(diff.mean()),
            "litert_builtin_vs_xnnpack_max_abs_diff": float(litert_internal.max()),
            **_errors(actions, ref)}


def _sparse_study(pruned_model: bytes, heldout, ref) -> dict:
    """The converter's sparse weight storage applied to the exported pruned int8
    model (the pass TFLiteConverter runs for Optimize.EXPERIMENTAL_SPARSITY): its
    size, and which runtimes still run it (sparse tensors need DENSIFY or a
    sparse FULLY_CONNECTED kernel)."""
    from tensorflow.lite.python import convert as tfl_convert

    from export import micro, tflite
    try:
        model = tfl_convert.mlir_sparsify(pruned_model)
    except Exception as e:  # noqa: BLE001 - a study: record, don't fail the export
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    out: dict = {"bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
                 "ops": tflite.model_ops(model),
                 "recipe": "mlir_sparsify(actor_pruned_int8.tflite)"}
    n = min(50, len(heldout))
    for name, run in (("litert_xnnpack", lambda: tflite.run(model, heldout[:n])),
                      ("litert_no_delegate",
                       lambda: tflite.run(model, heldout[:n], delegates=False)),
                      ("tflite_micro", lambda: micro.run(model, heldout[:n], 1 << 20))):
        try:
            a = run()
            out[name] = {"runs": True,
                         "action_mae_vs_jax": _errors(a, ref[:n])["action_mae_vs_jax"]}
        except Exception as e:  # noqa: BLE001
            out[name] = {"runs": False, "error": f"{type(e).__name__}: "
                                                  f"{(str(e).strip().splitlines() or [''])[0][:160]}"}
    return out


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


# ------------------------------------------------------------------ CLI

def _define_flags():
    from absl import flags
    flags.DEFINE_string("run_dir", None, "Training run directory (with checkpoints/).")
    flags.DEFINE_string("out_dir", None, "Export directory to create (or replace).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint step directory (default: the newest "
                        "checkpoint of --run_dir).")
    flags.DEFINE_float("prune_sparsity", 0.5, "Target weight sparsity of pruned_int8, in [0, 1).")
    flags.DEFINE_integer("prune_steps", 3000, "Distillation fine-tuning steps while pruning.")
    flags.DEFINE_list("variants", list(ALL_VARIANTS), "Artifacts to write: "
                      + ",".join(ALL_VARIANTS) + " (saved_model/ and manifest.json always).")
    flags.DEFINE_integer("num_calibration", 1000, "Real observations for int8 calibration.")
    flags.DEFINE_integer("num_heldout", 1000, "Held-out real observations for the fidelity report.")
    flags.DEFINE_integer("num_distill", 8000, "Real observations for pruning distillation.")
    flags.DEFINE_integer("seed", 0, "Seed of the observation rollouts and the pruning.")


class _stderr_quieted:
    """Send fd 2 to /dev/null inside the block. A failed orbax restore leaves
    background threads that print 'Event loop is closed' tracebacks shortly after;
    on error, wait ``settle_s_on_error`` for them before restoring stderr."""

    def __init__(self, settle_s_on_error: float = 1.0):
        self.settle = settle_s_on_error

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            time.sleep(self.settle)
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


def main(argv):
    from absl import flags
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    f = flags.FLAGS
    try:
        if not f.out_dir:
            raise ExportError("give --out_dir=EXPORT")
        options = ExportOptions(variants=tuple(f.variants), prune_sparsity=f.prune_sparsity,
                                prune_steps=f.prune_steps, num_calibration=f.num_calibration,
                                num_heldout=f.num_heldout, num_distill=f.num_distill,
                                seed=f.seed)
        # Fail on an unwritable out_dir before the slow work.
        shutil.rmtree(prepare_out_dir(f.out_dir), ignore_errors=True)
        with _stderr_quieted(settle_s_on_error=1.0):
            bundle = load_bundle(f.run_dir, f.checkpoint)
        t = time.perf_counter()
        manifest = export_bundle(bundle, f.out_dir, options)
    except (ExportError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a CLI prints one line, not a traceback
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"error: export failed ({type(e).__name__}: {first})", file=sys.stderr)
        return 1
    print(fidelity_table(manifest))
    print(f"[export] wrote {os.path.abspath(f.out_dir)} from {bundle.source} "
          f"in {time.perf_counter() - t:.1f} s")
    return 0


def run():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from absl import app
    _define_flags()
    app.run(_main_and_exit)


def _main_and_exit(argv):
    code = main(argv)
    if code:
        # After a failed orbax restore, orbax's background threads print
        # "Event loop is closed" tracebacks at interpreter exit: leave at once,
        # the one-line error is all a user should see (nothing is left to clean up).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(0)


if __name__ == "__main__":
    run()

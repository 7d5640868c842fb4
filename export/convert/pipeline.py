"""The export pipeline behind ``python -m export.convert`` (its CLI is __main__.py).

load_bundle reads and checks a training checkpoint; export_bundle builds every
artifact in a temporary directory next to ``out_dir`` and renames it into place;
fidelity_table renders the manifest's per-variant figures as Markdown.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time

import numpy as np

from export.harness.common import dir_bytes

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
# Quantization-aware fine-tuning runs (--qat=auto) when post-training int8 misses
# either figure on the calibration observations (action units, actions in [-1, 1]).
QAT_MODES = ("auto", "always", "never")
QAT_TARGET_MAE = 0.01
QAT_TARGET_MAX = 0.1


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
    studies: bool = False
    prune_sparsity: float = 0.5
    num_calibration: int = 1000
    num_heldout: int = 1000
    num_distill: int = 8000
    action_noise: float = 0.3
    heldout_action_noise: float = 0.1
    seed: int = 0
    verbose: bool = True

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
    """The checkpoint's PolicyBundle, checked to be an Ant-v5 actor of the right shape."""
    path = checkpoint or run_dir
    if not path:
        raise ExportError("give --run_dir=DIR (or --checkpoint=STEP_DIR)")
    if run_dir and not os.path.isdir(run_dir):
        raise ExportError(f"--run_dir={run_dir} does not exist or is not a directory")
    if checkpoint and not os.path.isdir(checkpoint):
        raise ExportError(f"--checkpoint={checkpoint} does not exist or is not a directory")
    from jaxrl_lite.run.checkpoint import CheckpointError, load_policy
    from export.convert import observations
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
    from export.convert import (jax2tf_bridge, micro, observations, onnx_export, qat,
                                structured, tflite)

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
                               "bytes": dir_bytes(sm_dir),
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

    def meets(err: dict) -> bool:
        return err["action_mae_vs_jax"] <= QAT_TARGET_MAE and \
            err["action_max_err_vs_jax"] <= QAT_TARGET_MAX

    def quantized(name: str, q_spec, q_params, tmpdir: str) -> tuple[bytes, dict]:
        """Full-int8 model of (q_spec, q_params). Candidates: post-training quantization
        with per-tensor and per-channel weights, and, when neither meets the fidelity
        target (--qat=auto) or always (--qat=always), quantization-aware fine-tuning for
        each granularity. Ships the smallest candidate that meets the target, else the
        smallest within 10 % of the most accurate. Errors are against the ORIGINAL actor on calibration observations."""
        sm = os.path.join(tmpdir, f"{name}_saved_model")
        clock(f"jax2tf_{name}_saved_model", jax2tf_bridge.save_saved_model, q_spec, q_params,
              norm, sm, clip_observations=False)
        cands: dict[str, tuple[bytes, dict]] = {}
        for gran, per_channel in (("per_tensor", False), ("per_channel", True)):
            m = clock(f"tflite_{name}_{gran}", tflite.convert, sm, name, calib_clipped,
                      per_channel=per_channel)
            cands[f"post_training_{gran}"] = (m, _errors(tflite.run(m, calib), calib_ref))
        info: dict = {"target": {"mae": QAT_TARGET_MAE, "max": QAT_TARGET_MAX}}
        missed = not any(meets(e) for _, e in cands.values())
        why_not = qat.supported(q_spec)
        if opt.qat == "always" or (opt.qat == "auto" and missed):
            if why_not:
                info["qat_skipped"] = why_not
            else:
                for gran, per_channel in (("per_tensor", False), ("per_channel", True)):
                    tuned, rep = clock(f"qat_{name}_{gran}", qat.finetune, q_spec, q_params,
                                       norm, distill_obs, distill_ref, calib_clipped,
                                       qat.QATConfig(steps=opt.qat_steps,
                                                     per_channel=per_channel, seed=opt.seed))
                    sm_q = os.path.join(tmpdir, f"{name}_qat_{gran}")
                    jax2tf_bridge.save_saved_model(q_spec, tuned, norm, sm_q,
                                                   clip_observations=False)
                    m = clock(f"tflite_{name}_qat_{gran}", tflite.convert, sm_q, name,
                              calib_clipped, per_channel=per_channel)
                    cands[f"quantization_aware_{gran}"] = (
                        m, {**_errors(tflite.run(m, calib), calib_ref), "finetune": rep})
        good = [k for k, (_, e) in cands.items() if meets(e)]
        info["meets_target"] = bool(good)
        if not good:  # then the smallest within 10 % of the most accurate
            best = min(e["action_mae_vs_jax"] for _, e in cands.values())
            good = [k for k, (_, e) in cands.items() if e["action_mae_vs_jax"] <= 1.1 * best]
        chosen = min(good, key=lambda k: (len(cands[k][0]), cands[k][1]["action_mae_vs_jax"]))
        info["candidates"] = {k: {**e, "bytes": len(m)} for k, (m, e) in cands.items()}
        info["chosen"] = chosen
        return cands[chosen][0], info

    def add_arena(entry: dict, model: bytes):
        try:
            entry["tensor_arena_bytes"] = int(micro.min_arena_bytes(model, spec.obs_dim))
        except (ImportError, micro.MicroError) as e:
            entry["tensor_arena_bytes"] = None
            entry["tensor_arena_note"] = str(e).splitlines()[0][:200]

    needs_int8_any = want & {"int8", "micro", "pruned_int8"}
    if needs_int8_any:
        calib_clipped = jax2tf_bridge.clip_to_normalizer_range(calib, norm)
        calib_ref = jax2tf_bridge.jax_actions(spec, params, norm, calib)
        distill_obs = clock("collect_distill_obs", collect, opt.num_distill, opt.seed * 3 + 3,
                            opt.action_noise)
        distill_ref = jax2tf_bridge.jax_actions(spec, params, norm, distill_obs)
    qtmp = tempfile.mkdtemp(dir=root)
    if needs_int8:
        model, qinfo = quantized("int8", spec, params, qtmp)
        entry, int8_actions = add_tflite("int8", model)
        entry["quantization_recipe"] = qinfo
        add_arena(entry, model)
        if opt.studies:  # before/after: the same recipe with the normalisation quantized too
            naive = clock("tflite_int8_normalize_in_int8", tflite.convert, sm_dir, "int8",
                          calib, normalize_in_int8=True)
            studies["int8_normalisation"] = {
                "normalize_in_float (exported)": _errors(int8_actions, ref),
                "normalize_in_int8 (raw obs quantized)": {
                    **_errors(tflite.run(naive, heldout), ref), "ops": tflite.model_ops(naive)}}

    if "pruned_int8" in want:
        cfg = structured.StructuredConfig(keep=opt.prune_keep, rounds=opt.prune_rounds,
                                          steps=opt.prune_steps,
                                          dagger_rounds=opt.dagger_rounds, seed=opt.seed)

        def collect_student(policy_fn, n, seed):
            return observations.collect_observations(policy_fn, n, seed, env_kwargs=env_kwargs,
                                                     action_noise=cfg.dagger_noise)
        p_spec, pruned, prep = clock("structured_prune", structured.structured_prune, spec,
                                     params, norm, distill_obs, cfg, collect_student)
        pruned_ref = jax2tf_bridge.jax_actions(p_spec, pruned, norm, heldout)
        prep["heldout_mae_float_vs_jax"] = _errors(pruned_ref, ref)["action_mae_vs_jax"]
        pmodel, pinfo = quantized("pruned_int8", p_spec, pruned, qtmp)
        entry, pact = add_tflite("pruned_int8", pmodel)
        entry["action_mae_vs_pruned_jax"] = _errors(pact, pruned_ref)["action_mae_vs_jax"]
        entry["architecture"] = {
            "before": [spec.obs_dim, *spec.hidden_sizes, spec.act_dim],
            "after": [p_spec.obs_dim, *p_spec.hidden_sizes, p_spec.act_dim],
            "kept_fraction": opt.prune_keep,
            "parameters_before": _num_params(params), "parameters_after": _num_params(pruned)}
        entry["policy_spec"] = p_spec.to_json()
        entry["pruning"] = prep
        entry["quantization_recipe"] = pinfo
        add_arena(entry, pmodel)
        if opt.studies:
            studies["unstructured_pruning"] = clock(
                "unstructured_pruning_study", _unstructured_study, spec, params, norm,
                distill_obs, heldout, ref, calib, calib_clipped, opt, qtmp)
    shutil.rmtree(qtmp, ignore_errors=True)

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
    from export.convert import micro, tflite
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
    step = tflite.output_step(model)
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
            "output_step": step,
            "max_diff_vs_litert_int8_output_lsb": float(diff.max() / step) if step else None,
            "fraction_over_2_lsb_vs_litert_int8": float(np.mean(diff > 2.01 * step))
            if step else None,
            "mean_abs_diff_vs_litert_int8": float(diff.mean()),
            "litert_builtin_vs_xnnpack_max_abs_diff": float(litert_internal.max()),
            **_errors(actions, ref)}


def _num_params(params) -> int:
    import jax
    return int(sum(np.asarray(x).size for x in jax.tree_util.tree_leaves(params)))


def _unstructured_study(spec, params, norm, distill_obs, heldout, ref, calib, calib_clipped,
                        opt: ExportOptions, tmpdir: str) -> dict:
    """The earlier recipe, kept for comparison: 50 % magnitude pruning (unstructured
    zeros, gradual cubic schedule + distillation) then int8. Zeros leave every tensor
    its shape, so the file, arena and latency stay the dense int8 model's."""
    from export.convert import jax2tf_bridge, micro, pruning, tflite
    cfg = pruning.PruneConfig(sparsity=opt.prune_sparsity, steps=2 * opt.prune_steps,
                              seed=opt.seed)
    pruned, prep = pruning.prune_and_distill(spec, params, norm, distill_obs, cfg)
    sm = os.path.join(tmpdir, "unstructured_saved_model")
    jax2tf_bridge.save_saved_model(spec, pruned, norm, sm, clip_observations=False)
    model = tflite.convert(sm, "int8", calib_clipped, per_channel=False)
    ws = tflite.weight_sparsity(model)
    out = {"recipe": f"magnitude pruning to {opt.prune_sparsity} sparsity, per-tensor int8",
           "bytes": len(model), "gzip_bytes": tflite.gzip_bytes(model),
           "sparsity": round(ws["sparsity"], 6), **_errors(tflite.run(model, heldout), ref),
           "pruning": prep}
    try:
        out["tensor_arena_bytes"] = int(micro.min_arena_bytes(model, spec.obs_dim))
    except (ImportError, micro.MicroError) as e:
        out["tensor_arena_bytes"] = None
        out["tensor_arena_note"] = str(e).splitlines()[0][:200]
    out["sparse_storage"] = _sparse_study(model, heldout, ref)
    return out


def _sparse_study(pruned_model: bytes, heldout, ref) -> dict:
    """The converter's sparse weight storage applied to the exported pruned int8
    model (the pass TFLiteConverter runs for Optimize.EXPERIMENTAL_SPARSITY): its
    size, and which runtimes still run it (sparse tensors need DENSIFY or a
    sparse FULLY_CONNECTED kernel)."""
    from tensorflow.lite.python import convert as tfl_convert

    from export.convert import micro, tflite
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

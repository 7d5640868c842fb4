r"""Export a trained actor: SavedModel, TFLite variants, ONNX, TFLite-Micro C array.

    python -m export.convert --run_dir=DIR --out_dir=EXPORT \
        [--checkpoint=STEP_DIR] [--prune_keep=0.39] [--qat=auto] [--studies] \
        [--variants=fp32,fp16,...]

Everything is built in a temporary directory next to ``out_dir`` and renamed
into place at the end, so an interrupted export never looks complete. The
output (WORKSPACE.md, "Public interfaces"): ``saved_model/``, ``actor_{fp32,fp16,dynamic,
int8,pruned_int8}.tflite``, ``actor.onnx``, ``micro/actor_model.{h,cc}`` and
``manifest.json`` with per-variant bytes, gzip bytes, sparsity, ops, TFLM arena
(int8 models) and action error against the JAX actor on held-out real Ant-v5
observations.

``pruned_int8`` is a genuinely smaller dense actor (export/convert/structured.py: whole
hidden units removed, then distilled); the int8 models are quantization-aware
fine-tuned (export/convert/qat.py) when post-training quantization misses the fidelity
target. Research studies (export/studies: unstructured pruning, sparse storage,
normalisation placement) run only with ``--studies``.
"""
from __future__ import annotations

import os

# Before TensorFlow and JAX are imported (by the pipeline): quiet TF, JAX on the CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

from export.convert.pipeline import (ALL_VARIANTS, ExportError, ExportOptions, export_bundle,
                                     fidelity_table, load_bundle, prepare_out_dir)  # noqa: E402
from export.convert.quantize import QAT_MODES, QAT_TARGET_MAE, QAT_TARGET_MAX  # noqa: E402


def _define_flags():
    flags.DEFINE_string("run_dir", None, "Training run directory (with checkpoints/), or "
                        "its best/ directory (the best evaluated policy).")
    flags.DEFINE_string("out_dir", None, "Export directory to create (or replace).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint step directory (default: the newest "
                        "checkpoint of --run_dir).")
    flags.DEFINE_float("prune_keep", 0.39, "pruned_int8: fraction of hidden units kept per "
                       "layer (structured pruning), in (0, 1].")
    flags.DEFINE_integer("prune_rounds", 4, "pruned_int8: cuts from full to kept width.")
    flags.DEFINE_integer("prune_steps", 3000, "pruned_int8: distillation Adam steps per cut.")
    flags.DEFINE_integer("dagger_rounds", 4, "pruned_int8: rounds of distillation on the "
                         "pruned actor's own visited observations (DAgger).")
    flags.DEFINE_enum("qat", "auto", list(QAT_MODES), "Quantization-aware fine-tuning of the "
                      f"int8 models: auto = when post-training int8 misses MAE <= "
                      f"{QAT_TARGET_MAE} or max error <= {QAT_TARGET_MAX}.")
    flags.DEFINE_integer("qat_steps", 3000, "Quantization-aware fine-tuning Adam steps.")
    flags.DEFINE_bool("int8_equalise", True, "int8 models of tanh/ReLU actors: per-feature "
                      "input gains folded into the float normaliser and the first layer, "
                      "FULLY_CONNECTED ranges before TANH cut to +-4, and bias-corrected "
                      "candidates (export/convert/int8_recipe.py).")
    flags.DEFINE_bool("studies", False, "Also run the research studies (unstructured "
                      "magnitude pruning, sparse storage, int8 normalisation placement) and "
                      "record them under manifest['studies'].")
    flags.DEFINE_float("prune_sparsity", 0.5, "Unstructured-pruning study (--studies): target "
                       "weight sparsity, in [0, 1).")
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
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    f = flags.FLAGS
    try:
        if not f.out_dir:
            raise ExportError("give --out_dir=EXPORT")
        options = ExportOptions(variants=tuple(f.variants), prune_keep=f.prune_keep,
                                prune_rounds=f.prune_rounds, prune_steps=f.prune_steps,
                                dagger_rounds=f.dagger_rounds, qat=f.qat,
                                qat_steps=f.qat_steps, int8_equalise=f.int8_equalise,
                                studies=f.studies,
                                prune_sparsity=f.prune_sparsity,
                                num_calibration=f.num_calibration, num_heldout=f.num_heldout,
                                num_distill=f.num_distill, seed=f.seed)
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

"""The TensorFlow side: everything that turns a training checkpoint into the artifacts.

Needs the [export] extra (JAX, TensorFlow, tf2onnx, TFLite Micro), so it runs on
the GPU box or a workstation, never on the Pi. ``python -m export.convert`` is
its CLI (__main__.py); pipeline.py builds an export directory from
jax2tf_bridge (SavedModel), tflite, structured / pruning / qat (smaller and
quantization-aware actors; finetune: their shared Adam settings), onnx_export
and micro (TFLite Micro C array), with observations for calibration and
held-out fidelity data.
"""

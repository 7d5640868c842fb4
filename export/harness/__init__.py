"""The Pi side: what runs on the board to evaluate an exported model.

Runtimes (LiteRT, TFLite Micro), the episode loop and its measurements, the
manifest reader, reports, return fidelity, cross-platform agreement and video.
Every module imports only numpy, gymnasium, mujoco, ai_edge_litert, psutil and
absl at import time: no JAX, no TensorFlow (tested). ``reference_jax`` and
``reference_tf`` measure the JAX actor and the TensorFlow SavedModel as
comparison rows, each in its own process, and import those packages only there.
"""

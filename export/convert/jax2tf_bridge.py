"""JAX -> TensorFlow: the deployed actor as a SavedModel with a static signature.

The exported function is exactly ``jaxrl_lite.blocks.policy.deterministic_action``
with the checkpoint's params and frozen normaliser baked in as constants:

    raw obs float32 [1, obs_dim] -> tanh(torso(normalize(obs))) float32 [1, act_dim]

The batch dimension is static (1): a polymorphic batch makes the TFLite
converter emit SHAPE/GATHER/... ops that TensorFlow Lite Micro cannot run.
Current jax2tf always uses native serialization, so the SavedModel holds one
``XlaCallModule`` op; the TFLite converter lowers its StableHLO itself.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import PolicySpec, deterministic_action

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"


def actor_fn(spec: PolicySpec, actor_params, norm, clip_observations: bool = True):
    """JAX function obs [B, obs_dim] -> action [B, act_dim] with constants closed over.

    ``clip_observations=False`` leaves the normalised-feature clip out of the graph:
    the int8 models need no MAXIMUM/MINIMUM because their input QUANTIZE saturates at
    a calibrated range that lies inside [-CLIP, CLIP] (calibration observations are
    clipped beforehand, see ``clip_to_normalizer_range``)."""
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), actor_params)
    norm = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), norm)

    def fn(obs):
        return deterministic_action(spec, params, norm, obs, clip_observations)

    return fn


def jax_actions(spec: PolicySpec, actor_params, norm, obs: np.ndarray) -> np.ndarray:
    """The reference: JAX actor on obs [N, obs_dim] -> float32 [N, act_dim] (jitted)."""
    return np.asarray(jax.jit(actor_fn(spec, actor_params, norm))(np.asarray(obs, np.float32)))


def clip_to_normalizer_range(obs: np.ndarray, norm) -> np.ndarray:
    """Raw obs [N, obs_dim] clipped per feature to mean +- CLIP * std, so that their
    normalised features lie in [-CLIP, CLIP] (calibration data of unclipped graphs)."""
    mean = np.asarray(norm.mean, np.float32)
    std = np.sqrt(np.maximum(np.asarray(norm.var, np.float32), 0.0)) + normalizer.STD_EPS
    # 0.999: float rounding must not carry a clipped feature past CLIP.
    half = 0.999 * normalizer.CLIP * std
    return np.clip(np.asarray(obs, np.float32), mean - half, mean + half).astype(np.float32)


def to_tf_module(spec: PolicySpec, actor_params, norm, clip_observations: bool = True):
    """A ``tf.Module`` whose ``serve`` takes float32 [1, obs_dim] named ``obs``."""
    converted = jax2tf.convert(actor_fn(spec, actor_params, norm, clip_observations),
                               with_gradient=False)
    module = tf.Module()

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([1, spec.obs_dim], tf.float32, name=INPUT_NAME)])
    def serve(obs):
        return {OUTPUT_NAME: tf.identity(converted(obs), name=OUTPUT_NAME)}

    module.serve = serve
    return module


def save_saved_model(spec: PolicySpec, actor_params, norm, path: str,
                     clip_observations: bool = True) -> str:
    """Convert and write the SavedModel into ``path`` (a new directory); returns path."""
    module = to_tf_module(spec, actor_params, norm, clip_observations)
    tf.saved_model.save(module, path,
                        signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
    return path


def saved_model_actions(path: str, obs: np.ndarray) -> np.ndarray:
    """Run the SavedModel's serving signature row by row: [N, obs_dim] -> [N, act_dim]."""
    fn = tf.saved_model.load(path).signatures[SIGNATURE_KEY]
    obs = np.asarray(obs, np.float32)
    return np.concatenate([fn(**{INPUT_NAME: tf.constant(o[None])})[OUTPUT_NAME].numpy()
                           for o in obs], 0)

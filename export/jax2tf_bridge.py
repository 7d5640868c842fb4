"""JAX -> TensorFlow: the deployed actor as a SavedModel with a static signature.

The exported function is exactly ``jaxrl_lite.policy.deterministic_action``
with the checkpoint's params and frozen normaliser baked in as constants:

    raw obs float32 [1, obs_dim] -> tanh(torso(normalize(obs))) float32 [1, act_dim]

The batch dimension is static (1): a polymorphic batch makes the TFLite
converter emit SHAPE/GATHER/... ops that TensorFlow Lite Micro cannot run.
Current jax2tf always uses native serialization, so the SavedModel holds one
``XlaCallModule`` op; the TFLite converter lowers its StableHLO itself.
"""
from __future__ import annotations

import os

import numpy as np

from jaxrl_lite.policy import PolicySpec, deterministic_action

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"


def actor_fn(spec: PolicySpec, actor_params, norm):
    """JAX function obs [B, obs_dim] -> action [B, act_dim] with constants closed over."""
    import jax
    import jax.numpy as jnp
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), actor_params)
    norm = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), norm)

    def fn(obs):
        return deterministic_action(spec, params, norm, obs)

    return fn


def jax_actions(spec: PolicySpec, actor_params, norm, obs: np.ndarray) -> np.ndarray:
    """The reference: JAX actor on obs [N, obs_dim] -> float32 [N, act_dim] (jitted)."""
    import jax
    return np.asarray(jax.jit(actor_fn(spec, actor_params, norm))(np.asarray(obs, np.float32)))


def to_tf_module(spec: PolicySpec, actor_params, norm):
    """A ``tf.Module`` whose ``serve`` takes float32 [1, obs_dim] named ``obs``."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    converted = jax2tf.convert(actor_fn(spec, actor_params, norm), with_gradient=False)
    module = tf.Module()

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([1, spec.obs_dim], tf.float32, name=INPUT_NAME)])
    def serve(obs):
        return {OUTPUT_NAME: tf.identity(converted(obs), name=OUTPUT_NAME)}

    module.serve = serve
    return module


def save_saved_model(spec: PolicySpec, actor_params, norm, path: str) -> str:
    """Convert and write the SavedModel into ``path`` (a new directory); returns path."""
    import tensorflow as tf
    module = to_tf_module(spec, actor_params, norm)
    tf.saved_model.save(module, path,
                        signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
    return path


def saved_model_actions(path: str, obs: np.ndarray) -> np.ndarray:
    """Run the SavedModel's serving signature row by row: [N, obs_dim] -> [N, act_dim]."""
    import tensorflow as tf
    fn = tf.saved_model.load(path).signatures[SIGNATURE_KEY]
    obs = np.asarray(obs, np.float32)
    return np.concatenate([fn(**{INPUT_NAME: tf.constant(o[None])})[OUTPUT_NAME].numpy()
                           for o in obs], 0)


def saved_model_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)

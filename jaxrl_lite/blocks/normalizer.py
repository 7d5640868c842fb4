"""Running observation normalisation (mean/variance), a pure pytree.

Statistics are updated from rollouts during training and frozen for
evaluation and export; the exported model applies exactly ``normalize``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

CLIP = 10.0      # normalised features are clipped to [-CLIP, CLIP]
STD_EPS = 1e-6   # floor on the standard deviation (features that never move)


@struct.dataclass
class NormalizerState:
    """mean, var: float32 [obs_dim]; count: float32 [] (samples seen)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init(obs_dim: int) -> NormalizerState:
    return NormalizerState(mean=jnp.zeros((obs_dim,), jnp.float32),
                           var=jnp.ones((obs_dim,), jnp.float32),
                           count=jnp.zeros((), jnp.float32))


def update(state: NormalizerState, batch: jax.Array) -> NormalizerState:
    """Merge a batch [..., obs_dim] into the running moments (Chan et al.)."""
    batch = batch.reshape(-1, batch.shape[-1]).astype(jnp.float32)
    n = jnp.asarray(batch.shape[0], jnp.float32)
    b_mean = jnp.mean(batch, 0)
    b_var = jnp.var(batch, 0)
    total = state.count + n
    delta = b_mean - state.mean
    mean = state.mean + delta * n / total
    m2 = state.var * state.count + b_var * n + delta ** 2 * state.count * n / total
    var = jnp.where(state.count > 0, m2 / total, b_var)
    return NormalizerState(mean=mean, var=var, count=total)


def normalize(state: NormalizerState, obs: jax.Array, clip: bool = True) -> jax.Array:
    """obs [..., obs_dim] -> clip((obs - mean) / std, -CLIP, CLIP) (no clip: ``clip=False``,
    for int8 export graphs whose input quantization saturates inside [-CLIP, CLIP])."""
    std = jnp.sqrt(jnp.maximum(state.var, 0.0)) + STD_EPS
    z = (obs - state.mean) / std
    return jnp.clip(z, -CLIP, CLIP) if clip else z

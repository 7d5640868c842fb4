"""Networks of the deterministic actor-critic (DDPG / TD3).

Actor: exactly the deployable policy of :mod:`jaxrl_lite.blocks.policy`,
    action = tanh(actor_torso(spec)(normalize(obs)))      [..., act_dim] in [-1, 1]
so the exporter needs nothing specific to this algorithm.

Critics: K independent Q-networks (K=2 for TD3's clipped double-Q, K=1 for
DDPG), each an MLP on concat(normalize(obs), action) with one output. Their params
are stacked along a leading axis of size K and applied with ``jax.vmap`` (one
batched matmul per layer for all critics).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import MLP, PolicySpec, actor_torso


def actor_action(spec: PolicySpec, actor_params, norm: normalizer.NormalizerState,
                 obs: jax.Array) -> jax.Array:
    """obs [..., obs_dim] (raw) -> deterministic action [..., act_dim] in [-1, 1]."""
    return jnp.tanh(actor_torso(spec).apply(actor_params, normalizer.normalize(norm, obs)))


def skipped_rows(observation_features: int, obs_dim: int) -> tuple[int, int]:
    """Rows [start, stop) of a critic's first kernel (inputs [obs; action]) that it never
    reads: the observation features past ``observation_features`` (0 = all read)."""
    if 0 < observation_features < obs_dim:
        return (observation_features, obs_dim)
    return (0, 0)


def critic_module(hidden_sizes: Sequence[int], activation: str, layer_norm: bool,
                  skip_input_rows: tuple[int, int] = (0, 0)) -> MLP:
    """One critic: an MLP from [obs; action] to Q (one output); its first layer leaves
    the input rows ``skip_input_rows`` out of the product (see :func:`skipped_rows`)."""
    return MLP(hidden_sizes=tuple(hidden_sizes), out_size=1, activation=activation,
               layer_norm=layer_norm, out_scale=1.0, skip_input_rows=tuple(skip_input_rows))


def init_critics(module: nn.Module, key: jax.Array, num_critics: int, obs_dim: int,
                 act_dim: int):
    """-> params pytree stacked over a leading axis of size ``num_critics``."""
    dummy = jnp.zeros((1, obs_dim + act_dim), jnp.float32)
    keys = jax.random.split(key, num_critics)
    # Not jax.vmap: a batched orthogonal init is a batched QR, which jaxlib's CPU
    # LAPACK kernel splits over the intra-op thread pool; two of those running at
    # once on a 2-thread pool wait on each other forever (seen under jit here).
    params = [module.init(keys[i], dummy) for i in range(num_critics)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params)


def critic_inputs(norm: normalizer.NormalizerState, obs: jax.Array,
                  action: jax.Array) -> jax.Array:
    """obs [B, obs_dim] (raw), action [B, act_dim] -> [B, obs_dim + act_dim]."""
    return jnp.concatenate([normalizer.normalize(norm, obs), action], axis=-1)


def critic_values(module: nn.Module, critic_params, norm: normalizer.NormalizerState,
                  obs: jax.Array, action: jax.Array) -> jax.Array:
    """obs [B, obs_dim] (raw), action [B, act_dim] -> Q values [K, B] of the K critics."""
    x = critic_inputs(norm, obs, action)
    return jax.vmap(lambda p: module.apply(p, x))(critic_params)[..., 0]

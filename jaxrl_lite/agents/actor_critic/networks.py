"""Networks of the deterministic actor-critic (DDPG / TD3).

Actor: exactly the deployable policy of :mod:`jaxrl_lite.blocks.policy`,
    action = tanh(actor_torso(spec)(normalize(obs)))      [..., act_dim] in [-1, 1]
so the exporter needs nothing specific to this algorithm.

Critics: K independent Q-networks (K=2 for TD3's clipped double-Q, K=1 for
DDPG), each an MLP on concat(normalize(obs), action). Their params are stacked
along a leading axis of size K and applied with ``jax.vmap`` (one batched
matmul per layer for both critics). A critic outputs either one scalar Q, or
(distributional, C51) logits over A fixed return atoms ``support`` [A], whose
softmax-weighted mean is Q.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import ACTIVATIONS, MLP, PolicySpec, actor_torso


def actor_action(spec: PolicySpec, actor_params, norm: normalizer.NormalizerState,
                 obs: jax.Array) -> jax.Array:
    """obs [..., obs_dim] (raw) -> deterministic action [..., act_dim] in [-1, 1]."""
    return jnp.tanh(actor_torso(spec).apply(actor_params, normalizer.normalize(norm, obs)))


class BatchRenorm(nn.Module):
    """Batch renormalisation (Ioffe 2017) over the batch axis 0, as CrossQ uses it.

    Training: x_hat = (x - mu_B) / sigma_B * r + d with r = clip(sigma_B / sigma, 1/r_max,
    r_max) and d = clip((mu_B - mu) / sigma, -d_max, d_max) held constant (no
    gradient), so the output matches what the running statistics (mu, sigma) give
    while the gradient still sees the batch; plain batch norm (r=1, d=0) for the
    first ``warmup`` training calls. Evaluation: the running statistics. Running
    statistics live in the ``batch_stats`` collection (float32, incl. the call count).
    """

    momentum: float = 0.99
    epsilon: float = 1e-3
    r_max: float = 3.0
    d_max: float = 5.0
    warmup: int = 10_000

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = x.shape[-1]
        mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        calls = self.variable("batch_stats", "calls", jnp.zeros, (), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        std = jnp.sqrt(var.value + self.epsilon)
        if not train:
            return (x - mean.value) / std * scale + bias
        b_mean, b_var = jnp.mean(x, 0), jnp.var(x, 0)
        b_std = jnp.sqrt(b_var + self.epsilon)
        warm = calls.value < self.warmup
        r = jnp.where(warm, 1.0, jnp.clip(b_std / std, 1.0 / self.r_max, self.r_max))
        d = jnp.where(warm, 0.0, jnp.clip((b_mean - mean.value) / std, -self.d_max, self.d_max))
        y = (x - b_mean) / b_std * jax.lax.stop_gradient(r) + jax.lax.stop_gradient(d)
        if not self.is_initializing():
            m = self.momentum
            mean.value = m * mean.value + (1 - m) * jax.lax.stop_gradient(b_mean)
            var.value = m * var.value + (1 - m) * jax.lax.stop_gradient(b_var)
            calls.value = calls.value + 1.0
        return y * scale + bias


class BatchRenormMLP(nn.Module):
    """CrossQ's critic torso: BRN(input), then Dense -> activation -> BRN per hidden
    layer, then a linear output."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x, train: bool = False):
        act = ACTIVATIONS[self.activation]
        x = BatchRenorm(name="norm_in")(x, train)
        for i, h in enumerate(self.hidden_sizes):
            x = nn.Dense(h, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)),
                         name=f"hidden_{i}")(x)
            x = BatchRenorm(name=f"norm_{i}")(act(x), train)
        return nn.Dense(self.out_size, name="out")(x)


def critic_module(hidden_sizes: Sequence[int], activation: str, layer_norm: bool,
                  num_atoms: int = 1, batch_renorm: bool = False) -> nn.Module:
    """num_atoms=1: scalar Q; > 1: C51 logits over that many atoms. batch_renorm:
    CrossQ's BatchRenorm torso (its running statistics are part of the params)."""
    if batch_renorm:
        return BatchRenormMLP(hidden_sizes=tuple(hidden_sizes), out_size=num_atoms,
                              activation=activation)
    return MLP(hidden_sizes=tuple(hidden_sizes), out_size=num_atoms, activation=activation,
               layer_norm=layer_norm, out_scale=1.0)


def critic_outputs_train(module: nn.Module, critic_params, norm: normalizer.NormalizerState,
                         obs: jax.Array, action: jax.Array):
    """As ``critic_outputs`` in training mode: -> (outputs [K, B, out], new params with
    updated batch statistics; the same params for critics without batch statistics)."""
    if "batch_stats" not in critic_params:
        return critic_outputs(module, critic_params, norm, obs, action), critic_params
    x = jnp.concatenate([normalizer.normalize(norm, obs), action], axis=-1)
    out, stats = jax.vmap(lambda p: module.apply(p, x, train=True, mutable=["batch_stats"]))(
        critic_params)
    return out, dict(critic_params, batch_stats=stats["batch_stats"])


def init_critics(module: MLP, key: jax.Array, num_critics: int, obs_dim: int, act_dim: int):
    """-> params pytree stacked over a leading axis of size ``num_critics``."""
    dummy = jnp.zeros((1, obs_dim + act_dim), jnp.float32)
    keys = jax.random.split(key, num_critics)
    # Not jax.vmap: a batched orthogonal init is a batched QR, which jaxlib's CPU
    # LAPACK kernel splits over the intra-op thread pool; two of those running at
    # once on a 2-thread pool wait on each other forever (seen under jit here).
    params = [module.init(keys[i], dummy) for i in range(num_critics)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params)


def critic_outputs(module: MLP, critic_params, norm: normalizer.NormalizerState,
                   obs: jax.Array, action: jax.Array) -> jax.Array:
    """obs [B, obs_dim] (raw), action [B, act_dim] -> raw outputs [K, B, out] of the K
    critics (out = 1 for scalar critics, A logits for C51)."""
    x = jnp.concatenate([normalizer.normalize(norm, obs), action], axis=-1)
    return jax.vmap(lambda p: module.apply(p, x))(critic_params)


def expected_q(outputs: jax.Array, support: jax.Array | None) -> jax.Array:
    """Critic outputs [K, B, out] -> Q [K, B]: the scalar, or the C51 mean over support [A]."""
    if support is None:
        return outputs[..., 0]
    return jnp.sum(jax.nn.softmax(outputs, axis=-1) * support, axis=-1)


def critic_values(module: MLP, critic_params, norm: normalizer.NormalizerState,
                  obs: jax.Array, action: jax.Array, support: jax.Array | None = None
                  ) -> jax.Array:
    """obs [B, obs_dim] (raw), action [B, act_dim] -> Q values [K, B] of the K critics."""
    return expected_q(critic_outputs(module, critic_params, norm, obs, action), support)

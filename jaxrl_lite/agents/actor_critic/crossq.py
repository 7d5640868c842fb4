"""The CrossQ critic (Bhatt et al. 2024): no target networks, batch-renormalised critics.

One training-mode pass of the critics over [s; s'] with [a; a'] (2B rows, so both
halves share the batch statistics); the target comes from the s' half with its
gradient stopped; a' is the *online* actor's (smoothed) action. The running
statistics of the BatchRenorm layers live in the critic params (``batch_stats``)
and are updated by the pass, not by the optimiser. Selected by ``--crossq``;
measured against TD3 in ``experiments/results/actor_critic.md``.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_lite.agents.actor_critic import losses, networks
from jaxrl_lite.agents.actor_critic.variant import CriticVariant
from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import ACTIVATIONS, PolicySpec, hidden_dense
from jaxrl_lite.blocks.replay import Transition


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
    layer, then a linear output. The first Dense leaves ``skip_input_rows`` out of its
    product (their kernel rows stay zero; see ``networks.skipped_rows``)."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "relu"
    skip_input_rows: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x, train: bool = False):
        act = ACTIVATIONS[self.activation]
        x = BatchRenorm(name="norm_in")(x, train)
        for i, h in enumerate(self.hidden_sizes):
            x = hidden_dense(h, i, self.skip_input_rows)(x)
            x = BatchRenorm(name=f"norm_{i}")(act(x), train)
        return nn.Dense(self.out_size, name="out")(x)


def critic_loss(critic_params, critic: nn.Module, norm: normalizer.NormalizerState,
                batch: Transition, next_action: jax.Array, *, gamma: float,
                clipped_double_q: bool):
    """-> (loss, {"q_mean", "target", "batch_stats": the updated running statistics})."""
    b = batch.reward.shape[0]
    x = networks.critic_inputs(norm, jnp.concatenate([batch.obs, batch.next_obs]),
                               jnp.concatenate([batch.action, next_action]))
    out, stats = jax.vmap(lambda p: critic.apply(p, x, train=True, mutable=["batch_stats"]))(
        critic_params)
    q_all = out[..., 0]                                                    # [K, 2B]
    target = losses.bellman_target(batch.reward, batch.terminated, q_all[:, b:], gamma,
                                   clipped_double_q)
    q = q_all[:, :b]
    loss = jnp.sum(jnp.mean((q - target[None]) ** 2, axis=1))
    return loss, {"q_mean": jnp.mean(q[0]), "target": target,
                  "batch_stats": stats["batch_stats"]}


def _crossq_critic_loss(config, spec: PolicySpec, critic: nn.Module, ts, batch: Transition,
                        key: jax.Array):
    """CrossQ: a' from the online actor (smoothed); targets from the same pass."""
    noise = config.target_noise if config.target_smoothing else 0.0
    next_action = losses.next_actions(spec, ts.actor_params, ts.norm, batch.next_obs, key,
                                      noise, config.target_noise_clip)
    return lambda params: critic_loss(params, critic, ts.norm, batch, next_action,
                                      gamma=config.discount,
                                      clipped_double_q=config.twin_critics)


CROSSQ = CriticVariant(
    name="crossq", uses_targets=False, loss=_crossq_critic_loss,
    module=lambda config, obs_dim: BatchRenormMLP(
        hidden_sizes=config.critic_sizes(), out_size=1, activation=config.activation,
        skip_input_rows=networks.skipped_rows(config.observation_features, obs_dim)))

"""TD3 / DDPG targets and losses, as pure functions of params and a batch.

Notation: B = batch size, K = number of critics (2 for TD3, 1 for DDPG).

Critic target (TD3, Fujimoto et al. 2018):
    a'  = clip(pi_targ(s') + clip(sigma * eps, -c, c), -1, 1)     eps ~ N(0, I)
    y   = r + gamma * (1 - terminated) * min_k Q_targ_k(s', a')
Only *termination* stops bootstrapping: a transition cut by the time limit
bootstraps from its pre-reset ``next_obs``. With ``clipped_double_q=False`` the
first target critic is used instead of the minimum; with no smoothing noise
(``noise_scale=0``) it is plain DDPG's target.

Critic loss: sum_k mean_B (Q_k(s, a) - y)^2   (y is a constant).
Actor loss: -mean_B Q_1(s, pi(s))             (gradient flows into the actor
through the action; the critic params are held fixed by differentiating only
w.r.t. the actor params).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_lite.agents.actor_critic import networks
from jaxrl_lite.agents.actor_critic.variant import CriticVariant
from jaxrl_lite.blocks import normalizer
from jaxrl_lite.blocks.policy import PolicySpec
from jaxrl_lite.blocks.replay import Transition


def smooth_action(action: jax.Array, noise: jax.Array, noise_scale: float,
                  noise_clip: float) -> jax.Array:
    """Target policy smoothing: clip(a + clip(scale * noise, -c, c), -1, 1).

    action, noise: [B, act_dim]; noise is standard normal.
    """
    eps = jnp.clip(noise_scale * noise, -noise_clip, noise_clip)
    return jnp.clip(action + eps, -1.0, 1.0)


def next_actions(spec: PolicySpec, actor_params, norm: normalizer.NormalizerState,
                 next_obs: jax.Array, key: jax.Array, noise_scale: float,
                 noise_clip: float) -> jax.Array:
    """a' = pi(s'), smoothed with clipped Gaussian noise when noise_scale > 0. [B, act_dim]"""
    action = networks.actor_action(spec, actor_params, norm, next_obs)
    if noise_scale <= 0:
        return action
    noise = jax.random.normal(key, action.shape, action.dtype)
    return smooth_action(action, noise, noise_scale, noise_clip)


def bellman_target(reward: jax.Array, terminated: jax.Array, next_q: jax.Array,
                   gamma: float, clipped_double_q: bool) -> jax.Array:
    """reward, terminated [B]; next_q [K, B] target-critic values -> y [B]
    (no gradient)."""
    q = jnp.min(next_q, axis=0) if clipped_double_q else next_q[0]
    return jax.lax.stop_gradient(reward + gamma * (1.0 - terminated) * q)


def td3_target(critic: nn.Module, target_critic_params, norm: normalizer.NormalizerState,
               batch: Transition, next_action: jax.Array, *, gamma: float,
               clipped_double_q: bool) -> jax.Array:
    """y [B] from the target critics at (s', a') (a' from ``next_actions``)."""
    next_q = networks.critic_values(critic, target_critic_params, norm, batch.next_obs,
                                    next_action)
    return bellman_target(batch.reward, batch.terminated, next_q, gamma, clipped_double_q)


def critic_loss(critic_params, critic: nn.Module, norm: normalizer.NormalizerState,
                batch: Transition, target: jax.Array) -> tuple[jax.Array, dict]:
    """-> (sum over critics of the mean squared TD error, {"q_mean", "target"})."""
    q = networks.critic_values(critic, critic_params, norm, batch.obs, batch.action)
    loss = jnp.sum(jnp.mean((q - target[None]) ** 2, axis=1))
    return loss, {"q_mean": jnp.mean(q[0]), "target": target}


def actor_loss(actor_params, spec: PolicySpec, critic: nn.Module, critic_params,
               norm: normalizer.NormalizerState, obs: jax.Array) -> jax.Array:
    """-mean Q_1(s, pi(s)) over obs [B, obs_dim]; differentiate w.r.t. actor_params."""
    action = networks.actor_action(spec, actor_params, norm, obs)
    first_critic = jax.tree_util.tree_map(lambda p: p[:1], critic_params)
    q = networks.critic_values(critic, first_critic, norm, obs, action)[0]
    return -jnp.mean(q)


def _td3_critic_loss(config, spec: PolicySpec, critic: nn.Module, ts, batch: Transition,
                     key: jax.Array):
    """TD3: the target from the target actor (smoothed) and the target critics."""
    noise = config.target_noise if config.target_smoothing else 0.0
    next_action = next_actions(spec, ts.target_actor_params, ts.norm, batch.next_obs, key,
                               noise, config.target_noise_clip)
    target = td3_target(critic, ts.target_critic_params, ts.norm, batch, next_action,
                        gamma=config.discount, clipped_double_q=config.twin_critics)
    return lambda params: critic_loss(params, critic, ts.norm, batch, target)


TD3 = CriticVariant(
    name="td3", uses_targets=True, loss=_td3_critic_loss,
    module=lambda config, obs_dim: networks.critic_module(
        config.critic_sizes(), config.activation, config.critic_layer_norm,
        networks.skipped_rows(config.observation_features, obs_dim)))

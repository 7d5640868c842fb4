"""TD3 / DDPG targets and losses, as pure functions of params and a batch.

Notation: B = batch size, K = number of critics (2 for TD3, 1 for DDPG).

Critic target (TD3, Fujimoto et al. 2018):
    a'  = clip(pi_targ(s') + clip(sigma * eps, -c, c), -1, 1)     eps ~ N(0, I)
    y   = r + gamma * (1 - terminated) * min_k Q_targ_k(s', a')
Only *termination* stops bootstrapping: a transition cut by the time limit
bootstraps from its pre-reset ``next_obs``. With ``clipped_double_q=False`` the
first target critic is used instead of the minimum; with
``target_smoothing=False`` the noise is omitted (plain DDPG).

Critic loss: sum_k mean_B (Q_k(s, a) - y)^2   (y is a constant).
Actor loss: -mean_B Q_1(s, pi(s))             (gradient flows into the actor
through the action; the critic params are held fixed by differentiating only
w.r.t. the actor params).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_lite import normalizer
from jaxrl_lite.agents.actor_critic import networks
from jaxrl_lite.policy import MLP, PolicySpec
from jaxrl_lite.replay import Transition


def smooth_action(action: jax.Array, noise: jax.Array, noise_scale: float,
                  noise_clip: float) -> jax.Array:
    """Target policy smoothing: clip(a + clip(scale * noise, -c, c), -1, 1).

    action, noise: [B, act_dim]; noise is standard normal.
    """
    eps = jnp.clip(noise_scale * noise, -noise_clip, noise_clip)
    return jnp.clip(action + eps, -1.0, 1.0)


def bellman_target(reward: jax.Array, terminated: jax.Array, next_q: jax.Array,
                   gamma: float, clipped_double_q: bool) -> jax.Array:
    """reward, terminated [B]; next_q [K, B] target-critic values -> y [B]."""
    q = jnp.min(next_q, axis=0) if clipped_double_q else next_q[0]
    return reward + gamma * (1.0 - terminated) * q


def td3_target(spec: PolicySpec, critic: MLP, target_actor_params, target_critic_params,
               norm: normalizer.NormalizerState, batch: Transition, key: jax.Array, *,
               gamma: float, target_noise: float, noise_clip: float,
               target_smoothing: bool, clipped_double_q: bool) -> jax.Array:
    """The critic regression target y [B] (no gradient)."""
    next_action = networks.actor_action(spec, target_actor_params, norm, batch.next_obs)
    if target_smoothing:
        noise = jax.random.normal(key, next_action.shape, next_action.dtype)
        next_action = smooth_action(next_action, noise, target_noise, noise_clip)
    next_q = networks.critic_values(critic, target_critic_params, norm, batch.next_obs,
                                    next_action)
    y = bellman_target(batch.reward, batch.terminated, next_q, gamma, clipped_double_q)
    return jax.lax.stop_gradient(y)


def critic_loss(critic_params, critic: MLP, norm: normalizer.NormalizerState,
                batch: Transition, target: jax.Array) -> tuple[jax.Array, dict]:
    """-> (sum over critics of the mean squared TD error, {"q_mean": ...})."""
    q = networks.critic_values(critic, critic_params, norm, batch.obs, batch.action)  # [K, B]
    loss = jnp.sum(jnp.mean((q - target[None]) ** 2, axis=1))
    return loss, {"q_mean": jnp.mean(q[0])}


def actor_loss(actor_params, spec: PolicySpec, critic: MLP, critic_params,
               norm: normalizer.NormalizerState, obs: jax.Array) -> jax.Array:
    """-mean Q_1(s, pi(s)) over obs [B, obs_dim]; differentiate w.r.t. actor_params."""
    action = networks.actor_action(spec, actor_params, norm, obs)
    first_critic = jax.tree_util.tree_map(lambda p: p[:1], critic_params)
    q = networks.critic_values(critic, first_critic, norm, obs, action)[0]
    return -jnp.mean(q)

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

n-step returns: ``reward`` is the discounted sum of up to n rewards and the
discount is gamma^m per transition (m steps summed), so ``gamma`` may be a
float or an array [B].

Distributional critics (C51, Bellemare et al. 2017, as used by FastTD3): each
critic gives logits over A atoms ``support`` [A] (evenly spaced in
[v_min, v_max]). The target is the distribution of r + discount * (1 - term) * Z'
projected back onto the support, where Z' is the target critic whose mean is
smaller (clipped double-Q per transition); the loss is the cross-entropy
sum_k mean_B -sum_A target * log softmax(logits_k).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_lite.blocks import normalizer
from jaxrl_lite.agents.actor_critic import networks
from jaxrl_lite.blocks.policy import MLP, PolicySpec
from jaxrl_lite.blocks.replay import Transition


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


def c51_projection(support: jax.Array, probs: jax.Array, reward: jax.Array,
                   bootstrap: jax.Array) -> jax.Array:
    """Project the distribution of reward + bootstrap * Z onto ``support``.

    support [A] evenly spaced; probs [B, A] (Z's probabilities on the support);
    reward, bootstrap [B] (bootstrap = discount * (1 - terminated)) -> [B, A].
    Each shifted atom splits its mass between the two nearest atoms in
    proportion to closeness (the triangular kernel max(0, 1 - |b - i|)), after
    clipping to [v_min, v_max].
    """
    v_min, v_max = support[0], support[-1]
    delta = support[1] - support[0]
    shifted = jnp.clip(reward[:, None] + bootstrap[:, None] * support[None, :], v_min, v_max)
    position = (shifted - v_min) / delta                                   # [B, A] in [0, A-1]
    atoms = jnp.arange(support.shape[0], dtype=position.dtype)
    weight = jnp.clip(1.0 - jnp.abs(position[:, :, None] - atoms[None, None, :]), 0.0, 1.0)
    return jnp.einsum("bj,bji->bi", probs, weight)


def target_from_next(next_out: jax.Array, batch: Transition, gamma, clipped_double_q: bool,
                     support: jax.Array | None) -> jax.Array:
    """Critic outputs at (s', a') [K, B, out] -> the target, no gradient: y [B] for
    scalar critics, the projected distribution [B, A] for C51 (``support`` [A])."""
    if support is None:
        y = bellman_target(batch.reward, batch.terminated, next_out[..., 0], gamma,
                           clipped_double_q)
    else:
        probs = jax.nn.softmax(next_out, axis=-1)                          # [K, B, A]
        q = jnp.sum(probs * support, axis=-1)                              # [K, B]
        pick = jnp.argmin(q, axis=0) if clipped_double_q else jnp.zeros(q.shape[1:], jnp.int32)
        chosen = jnp.take_along_axis(probs, pick[None, :, None], axis=0)[0]
        bootstrap = jnp.broadcast_to(gamma * (1.0 - batch.terminated), batch.reward.shape)
        y = c51_projection(support, chosen, batch.reward, bootstrap)
    return jax.lax.stop_gradient(y)


def td3_target(spec: PolicySpec, critic: MLP, target_actor_params, target_critic_params,
               norm: normalizer.NormalizerState, batch: Transition, key: jax.Array, *,
               gamma, target_noise: float, noise_clip: float,
               target_smoothing: bool, clipped_double_q: bool,
               support: jax.Array | None = None) -> jax.Array:
    """The critic target from the target networks (see ``target_from_next``).
    gamma: float or [B]."""
    next_action = next_actions(spec, target_actor_params, norm, batch.next_obs, key,
                               target_noise if target_smoothing else 0.0, noise_clip)
    out = networks.critic_outputs(critic, target_critic_params, norm, batch.next_obs,
                                  next_action)
    return target_from_next(out, batch, gamma, clipped_double_q, support)


def next_actions(spec: PolicySpec, actor_params, norm: normalizer.NormalizerState,
                 next_obs: jax.Array, key: jax.Array, noise_scale: float,
                 noise_clip: float) -> jax.Array:
    """a' = pi(s'), smoothed with clipped Gaussian noise when noise_scale > 0. [B, act_dim]"""
    action = networks.actor_action(spec, actor_params, norm, next_obs)
    if noise_scale <= 0:
        return action
    noise = jax.random.normal(key, action.shape, action.dtype)
    return smooth_action(action, noise, noise_scale, noise_clip)


def _regression_loss(out: jax.Array, target: jax.Array, support: jax.Array | None):
    """out [K, B, out] vs target -> (loss, Q [K, B]): summed MSE or C51 cross-entropy."""
    q = networks.expected_q(out, support)
    if support is None:
        return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=1)), q
    log_p = jax.nn.log_softmax(out, axis=-1)
    return jnp.sum(jnp.mean(-jnp.sum(target[None] * log_p, axis=-1), axis=1)), q


def crossq_critic_loss(critic_params, critic, norm: normalizer.NormalizerState,
                       batch: Transition, next_action: jax.Array, *, gamma,
                       clipped_double_q: bool, support: jax.Array | None = None):
    """CrossQ (Bhatt et al. 2024): no target networks. One training-mode pass of
    the batch-renormalised critics over [s; s'] with [a; a'] (2B rows, so both
    halves share the batch statistics); the target comes from the s' half with
    its gradient stopped. -> (loss, {"q_mean", "target", "params": critic params
    with the updated batch statistics})."""
    b = batch.reward.shape[0]
    out, new_params = networks.critic_outputs_train(
        critic, critic_params, norm, jnp.concatenate([batch.obs, batch.next_obs]),
        jnp.concatenate([batch.action, next_action]))
    target = target_from_next(out[:, b:], batch, gamma, clipped_double_q, support)
    loss, q = _regression_loss(out[:, :b], target, support)
    return loss, {"q_mean": jnp.mean(q[0]), "target": target, "params": new_params}


def critic_loss(critic_params, critic: MLP, norm: normalizer.NormalizerState,
                batch: Transition, target: jax.Array, support: jax.Array | None = None
                ) -> tuple[jax.Array, dict]:
    """-> (sum over critics of the mean squared TD error, or of the mean C51
    cross-entropy, {"q_mean": ...})."""
    out = networks.critic_outputs(critic, critic_params, norm, batch.obs, batch.action)
    loss, q = _regression_loss(out, target, support)
    return loss, {"q_mean": jnp.mean(q[0])}


def actor_loss(actor_params, spec: PolicySpec, critic: MLP, critic_params,
               norm: normalizer.NormalizerState, obs: jax.Array,
               support: jax.Array | None = None) -> jax.Array:
    """-mean Q_1(s, pi(s)) over obs [B, obs_dim]; differentiate w.r.t. actor_params."""
    action = networks.actor_action(spec, actor_params, norm, obs)
    first_critic = jax.tree_util.tree_map(lambda p: p[:1], critic_params)
    q = networks.critic_values(critic, first_critic, norm, obs, action, support)[0]
    return -jnp.mean(q)

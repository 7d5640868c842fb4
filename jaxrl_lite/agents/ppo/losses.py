"""PPO losses: GAE(lambda) with truncation bootstrapping, and the clipped
surrogate objective with value loss and entropy bonus.

Time axis first: arrays are [T, N] (unroll steps, envs) unless stated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_lite.agents.ppo import networks


def gae(rewards, values, next_values, terminated, done, discount: float, gae_lambda: float):
    """Generalised advantage estimation over one rollout.

    rewards [T, N]      (already scaled) reward of step t.
    values [T, N]       V(s_t).
    next_values [T, N]  V(s'_t) of the observation step t *produced* (before any
                        auto-reset: ``info["final_obs"]``), so a truncated
                        episode bootstraps from its real last state.
    terminated [T, N]   1.0 where s'_t is terminal (no bootstrap).
    done [T, N]         1.0 where the episode ended (terminated or truncated):
                        the advantage recursion does not cross it.
    Returns (advantages [T, N], value targets [T, N] = advantages + values).
    """
    deltas = rewards + discount * (1.0 - terminated) * next_values - values

    def backward(carry, xs):
        delta, d = xs
        adv = delta + discount * gae_lambda * (1.0 - d) * carry
        return adv, adv

    _, adv = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, done), reverse=True)
    return adv, adv + values


def clipped_surrogate(log_prob, old_log_prob, advantages, clip_eps: float):
    """-> (loss = -mean(min(r A, clip(r, 1-eps, 1+eps) A)), clip fraction, approx KL)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    clip_frac = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    approx_kl = jnp.mean((ratio - 1.0) - log_ratio)  # k3 estimator, >= 0
    return loss, clip_frac, approx_kl


def value_loss(values, old_values, targets, clip_eps: float | None):
    """0.5 * mean squared error; with ``clip_eps`` the PPO2 clipped variant."""
    err = (values - targets) ** 2
    if clip_eps is not None:
        v_clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        err = jnp.maximum(err, (v_clipped - targets) ** 2)
    return 0.5 * jnp.mean(err)


def normalize_advantages(adv):
    return (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)


def ppo_loss(params, norm, batch: dict, key, *, spec, value_hidden, clip_eps: float,
             value_clip_eps: float | None, vf_coef: float, entropy_coef: float,
             normalize_adv: bool):
    """Total PPO loss on one minibatch.

    batch (flat [B, ...]): obs [B, obs_dim] raw, u [B, act_dim] pre-squash
    actions, log_prob [B], advantages [B], targets [B], values [B] (old).
    Returns (loss, metrics dict of scalars).
    """
    loc = networks.policy_loc(spec, params, norm, batch["obs"])
    log_std = params["log_std"]
    log_prob = networks.squashed_log_prob(batch["u"], loc, log_std)
    adv = batch["advantages"]
    if normalize_adv:
        adv = normalize_advantages(adv)
    pg_loss, clip_frac, approx_kl = clipped_surrogate(
        log_prob, batch["log_prob"], adv, clip_eps)
    v = networks.value(spec, value_hidden, params, norm, batch["obs"])
    v_loss = value_loss(v, batch["values"], batch["targets"], value_clip_eps)
    ent = jnp.mean(networks.entropy(key, loc, log_std))
    total = pg_loss + vf_coef * v_loss - entropy_coef * ent
    return total, {"loss/total": total, "loss/policy": pg_loss, "loss/value": v_loss,
                   "entropy": ent, "clip_fraction": clip_frac, "approx_kl": approx_kl}

"""Reward normalisation by the running std of the discounted return, a pure pytree.

What SB3's ``VecNormalize(norm_reward=True)`` and CleanRL's ``NormalizeReward`` do:
each env keeps its discounted return ``G <- gamma * G + r`` (zeroed where an episode
ends), the variance of every ``G`` seen is tracked, and rewards are divided by its std
(then clipped). Rewards keep their sign and their mean (no centring), so an alive bonus
stays a bonus. Used by PPO's ``--normalize_rewards``; evaluation and export never see it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_lite.blocks import normalizer

CLIP = 10.0    # normalised rewards are clipped to [-CLIP, CLIP] (SB3's clip_reward)
EPS = 1e-8     # added to the variance (SB3's epsilon)


@struct.dataclass
class ReturnNormState:
    """returns: float32 [num_envs], each env's running discounted return;
    moments: running mean/var of all returns seen (a 1-feature normaliser)."""

    returns: jax.Array
    moments: normalizer.NormalizerState


def init(num_envs: int) -> ReturnNormState:
    return ReturnNormState(returns=jnp.zeros((num_envs,), jnp.float32),
                           moments=normalizer.init(1))


def update(state: ReturnNormState, rewards: jax.Array, done: jax.Array,
           discount: float) -> ReturnNormState:
    """Advance the returns over a rollout and merge them into the moments.

    rewards, done: [T, num_envs] (raw rewards; done = 1.0 where the episode ended at
    step t, so the return restarts at t + 1). Returns the new state.
    """
    def step(ret, xs):
        r, d = xs
        ret = discount * ret + r
        return ret * (1.0 - d), ret

    returns, seen = jax.lax.scan(step, state.returns, (rewards.astype(jnp.float32),
                                                       done.astype(jnp.float32)))
    return ReturnNormState(returns=returns,
                           moments=normalizer.update(state.moments, seen[..., None]))


def normalize(state: ReturnNormState, rewards: jax.Array) -> jax.Array:
    """rewards [...] -> clip(rewards / sqrt(var + EPS), -CLIP, CLIP)."""
    return jnp.clip(rewards / jnp.sqrt(state.moments.var[0] + EPS), -CLIP, CLIP)

"""PPO networks: a tanh-squashed Gaussian policy around the shared actor torso,
and a value MLP.

Policy: ``u ~ N(loc, exp(log_std))`` with ``loc = actor_torso(normalize(obs))``
and a learned, state-independent ``log_std [act_dim]``; the action sent to the
environment is ``a = tanh(u)`` in (-1, 1). The deterministic (eval/export)
action is ``tanh(loc)`` = :func:`jaxrl_lite.blocks.policy.deterministic_action`.
Rollouts store the pre-squash sample ``u`` so log-probabilities never need
``atanh`` of a saturated action.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrl_lite.blocks import normalizer, policy
from jaxrl_lite.blocks.policy import MLP, PolicySpec

_LOG_2PI = math.log(2.0 * math.pi)


def value_net(hidden_sizes, activation: str) -> MLP:
    return MLP(hidden_sizes=tuple(hidden_sizes), out_size=1, activation=activation,
               out_scale=1.0)


def init_params(spec: PolicySpec, value_hidden, init_log_std: float, key) -> dict:
    """-> {"actor": torso params, "log_std": [act_dim], "value": value params}."""
    k_actor, k_value = jax.random.split(key)
    dummy = jnp.zeros((1, spec.obs_dim), jnp.float32)
    return {
        "actor": policy.init_actor_params(spec, k_actor),
        "log_std": jnp.full((spec.act_dim,), init_log_std, jnp.float32),
        "value": value_net(value_hidden, spec.activation).init(k_value, dummy),
    }


def policy_loc(spec: PolicySpec, params, norm, obs):
    """Raw obs [..., obs_dim] -> Gaussian mean ``loc`` [..., act_dim] (pre-tanh)."""
    return policy.actor_torso(spec).apply(params["actor"], normalizer.normalize(norm, obs))


def value(spec: PolicySpec, value_hidden, params, norm, obs):
    """Raw obs [..., obs_dim] -> state value [...] (in scaled-reward units)."""
    x = normalizer.normalize(norm, obs)
    return value_net(value_hidden, spec.activation).apply(params["value"], x)[..., 0]


def gaussian_log_prob(u, loc, log_std):
    """log N(u; loc, exp(log_std)) summed over the last axis."""
    z = (u - loc) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * _LOG_2PI, -1)


def tanh_log_det_jacobian(u):
    """sum log|d tanh(u)/du| = sum log(1 - tanh(u)^2), computed stably."""
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), -1)


def squashed_log_prob(u, loc, log_std):
    """Log-density of the action ``a = tanh(u)`` given the pre-squash sample u."""
    return gaussian_log_prob(u, loc, log_std) - tanh_log_det_jacobian(u)


def sample(key, loc, log_std):
    """-> (u pre-squash [..., act_dim], action tanh(u), log-prob of the action)."""
    u = loc + jnp.exp(log_std) * jax.random.normal(key, loc.shape, loc.dtype)
    return u, jnp.tanh(u), squashed_log_prob(u, loc, log_std)


def entropy(key, loc, log_std):
    """Single-sample estimate of the squashed policy's entropy [...].

    H[tanh(u)] = H[N(loc, std)] + E[log|det d tanh/du|]; the Gaussian part is
    exact, the Jacobian part uses one reparameterised sample (differentiable).
    """
    gauss = jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), -1) * jnp.ones(loc.shape[:-1])
    u = loc + jnp.exp(log_std) * jax.random.normal(key, loc.shape, loc.dtype)
    return gauss + tanh_log_det_jacobian(u)

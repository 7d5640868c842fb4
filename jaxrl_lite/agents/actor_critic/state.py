"""The actor-critic's train state: what it holds, how it starts, what the trainer saves
and deploys from it (the agent interface's ``init``, ``policy_parts``,
``checkpoint_state``, ``restore_state``, ``check_env``).

Networks may read only the first ``observation_features`` inputs
(:func:`ignore_input_rows`): the other input rows of the first layers start at zero
and their gradients are zeroed, so the exported policy still takes the whole
observation and ignores those features.
"""
from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_lite.agents.actor_critic import crossq, losses, networks
from jaxrl_lite.agents.actor_critic.config import Config
from jaxrl_lite.blocks import normalizer, replay
from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params


@struct.dataclass
class TrainState:
    """Everything a bit-exact resume needs.

    actor_params / target_actor_params: Flax params of the actor torso;
    critic_params / target_critic_params: K critics stacked on axis 0;
    actor_opt_state / critic_opt_state: optax Adam states;
    norm: NormalizerState [obs_dim]; buffer: ReplayBuffer (C transitions);
    env_state: envs.State over N envs; key: PRNG key uint32 [2];
    env_steps, iteration, updates: int32 [] counters (updates = critic updates).
    """

    actor_params: Any
    critic_params: Any
    target_actor_params: Any
    target_critic_params: Any
    actor_opt_state: Any
    critic_opt_state: Any
    norm: normalizer.NormalizerState
    buffer: replay.ReplayBuffer
    env_state: Any
    key: jax.Array
    env_steps: jax.Array
    iteration: jax.Array
    updates: jax.Array


def critic_variant(config: Config):
    return crossq.CROSSQ if config.crossq else losses.TD3


def env_steps_per_iteration(config: Config) -> int:
    return config.num_envs * config.steps_per_iteration


def policy_spec(config: Config, obs_dim: int, act_dim: int, env_name: str = "") -> PolicySpec:
    return PolicySpec(env=env_name, obs_dim=obs_dim, act_dim=act_dim,
                      hidden_sizes=tuple(config.hidden), activation=config.activation,
                      layer_norm=config.actor_layer_norm)


def optimizer(config: Config, learning_rate: float):
    adam = optax.adam(learning_rate, b1=config.adam_b1)
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)
    return adam


def check_env(config: Config, env) -> None:
    """Config-vs-env facts (the config itself was validated once, by the trainer)."""
    if config.observation_features > env.observation_size:
        raise ValueError(f"observation_features ({config.observation_features}) exceeds the "
                         f"observation size {env.observation_size}")
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has num_envs={env.num_envs}, config says {config.num_envs}")
    if not env.auto_reset:
        raise ValueError("the actor-critic needs an env built with auto_reset=True")


def init(config: Config, env, key: jax.Array) -> TrainState:
    """Fresh params, optimisers, empty buffer, reset envs. key: PRNGKey."""
    obs_dim, act_dim = env.observation_size, env.action_size
    spec = policy_spec(config, obs_dim, act_dim)
    buffer = replay.init(config.buffer_size, obs_dim, act_dim)
    logging.info("replay buffer: %d transitions x %d B = %.1f MB; %s", config.buffer_size,
                 replay.nbytes(buffer) // config.buffer_size, replay.nbytes(buffer) / 1e6,
                 "saved in checkpoints (bit-exact resume)" if config.checkpoint_replay_buffer
                 else "NOT saved in checkpoints (resume refills it; not bit-exact)")
    k_actor, k_critic, k_env, k_run = jax.random.split(key, 4)
    actor_params = ignore_input_rows(config, init_actor_params(spec, k_actor), obs_dim)
    critic_params = ignore_input_rows(config, networks.init_critics(
        critic_variant(config).module(config, obs_dim), k_critic, config.num_critics(), obs_dim,
        act_dim), obs_dim)
    ts = TrainState(
        actor_params=actor_params, critic_params=critic_params,
        target_actor_params=actor_params, target_critic_params=critic_params,
        actor_opt_state=optimizer(config, config.actor_learning_rate).init(actor_params),
        critic_opt_state=optimizer(config, config.critic_learning_rate).init(critic_params),
        norm=normalizer.init(obs_dim), buffer=buffer, env_state=env.reset(k_env), key=k_run,
        env_steps=jnp.zeros((), jnp.int32), iteration=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32))
    # Targets start as copies of the online nets and the env state may alias
    # arrays (final_obs is obs): give every leaf its own buffer so that the
    # train iteration can donate its input.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), ts)


def ignore_input_rows(config: Config, params, obs_dim: int):
    """Zero the first layer's input rows of the ignored observation features
    (rows observation_features .. obs_dim-1; a critic's action rows after them stay).
    params: actor or stacked-critic Flax params, or their gradients (first kernel
    [..., inputs, hidden])."""
    if not config.observation_features or config.observation_features >= obs_dim:
        return params
    first = params["params"]["hidden_0"]
    rows = jnp.arange(first["kernel"].shape[-2])
    drop = (rows >= config.observation_features) & (rows < obs_dim)
    kernel = jnp.where(drop[:, None], 0.0, first["kernel"])
    return dict(params, params=dict(params["params"], hidden_0=dict(first, kernel=kernel)))


def policy_parts(config: Config, train_state: TrainState):
    """-> (PolicySpec, actor_params, NormalizerState); spec.env is a placeholder."""
    obs_dim = train_state.norm.mean.shape[-1]
    act_dim = train_state.actor_params["params"]["out"]["bias"].shape[-1]
    return policy_spec(config, obs_dim, act_dim), train_state.actor_params, train_state.norm


def checkpoint_state(config: Config, train_state: TrainState):
    """The train state to save; without the replay buffer's data unless
    ``checkpoint_replay_buffer`` (then --resume refills it from scratch and is
    not bit-exact)."""
    return train_state if config.checkpoint_replay_buffer else train_state.replace(buffer=None)


def restore_state(config: Config, template: TrainState, restored) -> TrainState:
    return restored if config.checkpoint_replay_buffer else restored.replace(
        buffer=template.buffer)

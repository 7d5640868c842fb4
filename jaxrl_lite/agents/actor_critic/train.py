"""Deterministic actor-critic (DDPG with TD3's corrections), vectorised and compiled.

One training iteration (one ``jax.jit`` call, no Python loop per step) is a
``lax.scan`` over ``steps_per_iteration`` vectorised env steps; each step:

1. updates the observation normaliser with the current observations;
2. acts: uniform random actions during the first ``warmup_steps`` env steps,
   then ``clip(tanh(actor(normalize(obs))) + sigma_t * eps, -1, 1)`` with a
   Gaussian exploration std ``sigma_t`` decaying linearly from
   ``exploration_noise`` to ``exploration_noise_final``;
3. steps ``num_envs`` environments and inserts the N transitions (next_obs =
   the pre-reset ``final_obs``, ``terminated`` and ``truncated`` flags);
4. once past the warm-up, runs ``updates_per_step`` gradient updates
   (``lax.scan``): a critic update each time, and every ``policy_delay``-th
   time an actor update followed by Polyak target updates (TD3).

Plain DDPG is ``--twin_critics=false --target_smoothing=false --policy_delay=1``;
plain TD3 is the defaults. Later ideas are flags, each measured in WORKSPACE.md's
recipe table (``experiments/configs/ac_recipes/``): ``n_step`` returns,
distributional C51 critics (``num_atoms``, ``v_min``, ``v_max``), a FastTD3
per-env exploration ladder (``exploration_noise_ladder``), CrossQ's target-free
BatchRenorm critics (``crossq``, ``adam_b1``), critics sized apart from the
deployed actor (``critic_hidden``), and networks that read only the first
``observation_features`` inputs (their other input weights stay exactly zero, so
the exported policy still takes the whole observation).
Shapes: N = num_envs, T = steps_per_iteration, B = batch_size, C = buffer_size.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_lite.blocks import normalizer, replay
from jaxrl_lite.agents.interface import flag_field as _f
from jaxrl_lite.agents.actor_critic import losses, networks
from jaxrl_lite.envs.core import episode_metrics
from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params

NAME = "ac"


@dataclasses.dataclass(frozen=True)
class Config:
    """Hyper-parameters of the actor-critic (each field is an absl flag)."""

    num_envs: int = _f(16, "parallel training environments")
    total_steps: int = _f(1_000_000, "env steps to train for (sets the noise decay horizon)")
    steps_per_iteration: int = _f(
        50, "vectorised env steps per compiled iteration (env steps = num_envs x this)")
    buffer_size: int = _f(1_000_000, "replay buffer capacity in transitions "
                          "(Ant: 4*(2*105+8+3) B = 884 B each, 1M ~ 0.9 GB)")
    batch_size: int = _f(256, "transitions per gradient update")
    hidden: tuple[int, ...] = _f((256, 256), "hidden layer sizes of the actor (and of the "
                                 "critics unless critic_hidden is set)")
    critic_hidden: tuple[int, ...] = _f((), "hidden layer sizes of the critics "
                                        "(empty = same as hidden)")
    activation: str = _f("relu", "hidden activation: relu|tanh|elu|silu")
    actor_layer_norm: bool = _f(False, "LayerNorm in the actor's hidden layers "
                                "(exported with the actor)")
    critic_layer_norm: bool = _f(True, "LayerNorm in the critics' hidden layers")
    actor_learning_rate: float = _f(3e-4, "Adam learning rate of the actor")
    critic_learning_rate: float = _f(3e-4, "Adam learning rate of the critics")
    max_grad_norm: float = _f(0.0, "clip gradients to this global norm (0 = no clipping)")
    discount: float = _f(0.99, "discount factor gamma, in [0, 1)")
    tau: float = _f(0.005, "Polyak factor of the target networks, in (0, 1]")
    reward_scale: float = _f(1.0, "multiply rewards by this before learning")
    n_step: int = _f(1, "n-step returns: sum up to n discounted rewards before bootstrapping "
                     "(stops at episode ends); needs buffer_size divisible by num_envs")
    num_atoms: int = _f(0, "0 = scalar critics (MSE); > 1 = distributional C51 critics with "
                        "this many return atoms in [v_min, v_max] (cross-entropy loss)")
    v_min: float = _f(-10.0, "C51: lowest return atom (in reward_scale'd units)")
    v_max: float = _f(100.0, "C51: highest return atom (in reward_scale'd units)")
    crossq: bool = _f(False, "CrossQ: no target networks; BatchRenorm critics evaluated on "
                      "[s; s'] in one pass (target from the s' half, gradient stopped)")
    adam_b1: float = _f(0.9, "Adam beta1 of both optimisers (CrossQ uses 0.5)")
    twin_critics: bool = _f(True, "TD3 clipped double-Q: two critics, target uses their min")
    target_smoothing: bool = _f(True, "TD3 target policy smoothing noise")
    target_noise: float = _f(0.2, "std of the target policy smoothing noise")
    target_noise_clip: float = _f(0.5, "clip of the target policy smoothing noise")
    policy_delay: int = _f(2, "critic updates per actor/target update (TD3: 2, DDPG: 1)")
    exploration_noise: float = _f(0.2, "initial std of the Gaussian exploration noise")
    exploration_noise_final: float = _f(0.05, "final std of the exploration noise")
    exploration_decay_steps: int = _f(
        0, "env steps of linear exploration-noise decay after warm-up (0 = total_steps)")
    exploration_noise_ladder: bool = _f(
        False, "per-env exploration std (FastTD3): env i uses a fixed std spread linearly "
        "from exploration_noise_final (env 0) to exploration_noise (env N-1), no decay")
    warmup_steps: int = _f(25_000, "env steps of uniform random actions before learning")
    updates_per_step: int = _f(
        0, "gradient updates per vectorised env step (0 = round(utd_ratio * num_envs))")
    utd_ratio: float = _f(1.0, "gradient updates per collected transition, used when "
                          "updates_per_step=0")
    observation_features: int = _f(
        0, "use only the first K observation features (0 = all): the input rows of the "
        "other features stay zero in actor and critics, so the exported policy still takes "
        "the full observation and ignores them exactly (Ant-v5: 27 = positions and "
        "velocities, without the 78 contact forces)")
    normalize_observations: bool = _f(True, "running mean/std observation normalisation")
    checkpoint_replay_buffer: bool = _f(
        True, "save the replay buffer in checkpoints (needed for a bit-exact --resume; "
        "costs buffer_size x transition bytes)")

    def validate(self) -> None:
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        def positive(name):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")

        def non_negative(name):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")

        for name in ("num_envs", "total_steps", "steps_per_iteration", "buffer_size",
                     "batch_size", "policy_delay", "n_step"):
            positive_int(name)
        for name in ("actor_learning_rate", "critic_learning_rate", "reward_scale"):
            positive(name)
        for name in ("max_grad_norm", "target_noise", "target_noise_clip",
                     "exploration_noise", "exploration_noise_final", "exploration_decay_steps",
                     "warmup_steps", "updates_per_step", "utd_ratio"):
            non_negative(name)
        for name in ("exploration_decay_steps", "warmup_steps", "updates_per_step", "num_atoms",
                     "observation_features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, got {v!r}")
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1
                                  for h in self.hidden):
            raise ValueError(f"hidden must be positive layer sizes like 256,256, "
                             f"got {self.hidden!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1
               for h in self.critic_hidden):
            raise ValueError(f"critic_hidden must be positive layer sizes like 256,256 (or "
                             f"empty), got {self.critic_hidden!r}")
        if self.n_step > 1 and self.buffer_size % self.num_envs:
            raise ValueError(f"n_step > 1 needs buffer_size ({self.buffer_size}) divisible by "
                             f"num_envs ({self.num_envs})")
        if self.n_step > 1 and self.buffer_size < (self.n_step + 1) * self.num_envs:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold n_step + 1 = "
                             f"{self.n_step + 1} vectorised steps of {self.num_envs} envs")
        if not (0.0 <= self.adam_b1 < 1.0):
            raise ValueError(f"adam_b1 must be in [0, 1), got {self.adam_b1!r}")
        if self.num_atoms == 1:
            raise ValueError("num_atoms must be 0 (scalar critics) or >= 2 (C51), got 1")
        if self.num_atoms > 1 and not (math.isfinite(self.v_min) and math.isfinite(self.v_max)
                                       and self.v_min < self.v_max):
            raise ValueError(f"C51 needs finite v_min < v_max, got v_min={self.v_min!r}, "
                             f"v_max={self.v_max!r}")
        if not (0.0 < self.tau <= 1.0):
            raise ValueError(f"tau must be in (0, 1], got {self.tau!r}")
        if not (0.0 <= self.discount < 1.0):
            raise ValueError(f"discount must be in [0, 1), got {self.discount!r}")
        if self.buffer_size < self.batch_size:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be >= batch_size "
                             f"({self.batch_size})")
        if self.buffer_size < self.num_envs:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be >= num_envs "
                             f"({self.num_envs}): one env step inserts num_envs transitions")
        if self.updates_per_step == 0 and round(self.utd_ratio * self.num_envs) < 1:
            raise ValueError(f"utd_ratio * num_envs must round to >= 1 update per step, got "
                             f"{self.utd_ratio} * {self.num_envs}; raise utd_ratio or set "
                             f"updates_per_step")
        if self.exploration_noise_final > self.exploration_noise:
            raise ValueError(f"exploration_noise_final ({self.exploration_noise_final}) must "
                             f"be <= exploration_noise ({self.exploration_noise})")
        from jaxrl_lite.blocks.policy import ACTIVATIONS
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")

    # -- derived ------------------------------------------------------------
    def num_updates_per_step(self) -> int:
        if self.updates_per_step > 0:
            return self.updates_per_step
        return max(1, round(self.utd_ratio * self.num_envs))

    def num_critics(self) -> int:
        return 2 if self.twin_critics else 1

    def critic_sizes(self) -> tuple[int, ...]:
        return tuple(self.critic_hidden) or tuple(self.hidden)

    def support(self) -> jax.Array | None:
        """C51 return atoms [num_atoms], or None for scalar critics."""
        if self.num_atoms < 2:
            return None
        return jnp.linspace(self.v_min, self.v_max, self.num_atoms, dtype=jnp.float32)


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


def env_steps_per_iteration(config: Config) -> int:
    return config.num_envs * config.steps_per_iteration


def policy_spec(config: Config, obs_dim: int, act_dim: int, env_name: str = "") -> PolicySpec:
    return PolicySpec(env=env_name, obs_dim=obs_dim, act_dim=act_dim,
                      hidden_sizes=tuple(config.hidden), activation=config.activation,
                      layer_norm=config.actor_layer_norm)


def _critic(config: Config):
    return networks.critic_module(config.critic_sizes(), config.activation,
                                  config.critic_layer_norm, max(config.num_atoms, 1),
                                  batch_renorm=config.crossq)


def _optimizer(config: Config, learning_rate: float):
    adam = optax.adam(learning_rate, b1=config.adam_b1)
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)
    return adam


def check_env(config: Config, env) -> None:
    if config.observation_features > env.observation_size:
        raise ValueError(f"observation_features ({config.observation_features}) exceeds the "
                         f"observation size {env.observation_size}")
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has num_envs={env.num_envs}, config says {config.num_envs}")
    if not env.auto_reset:
        raise ValueError("the actor-critic needs an env built with auto_reset=True")


def init(config: Config, env, key: jax.Array) -> TrainState:
    """Fresh params, optimisers, empty buffer, reset envs. key: PRNGKey."""
    config.validate()
    check_env(config, env)
    obs_dim, act_dim = env.observation_size, env.action_size
    spec = policy_spec(config, obs_dim, act_dim)
    critic = _critic(config)
    buffer = replay.init(config.buffer_size, obs_dim, act_dim)
    logging.info("replay buffer: %d transitions x %d B = %.1f MB; %s", config.buffer_size,
                 replay.nbytes(buffer) // config.buffer_size, replay.nbytes(buffer) / 1e6,
                 "saved in checkpoints (bit-exact resume)" if config.checkpoint_replay_buffer
                 else "NOT saved in checkpoints (resume refills it; not bit-exact)")
    k_actor, k_critic, k_env, k_run = jax.random.split(key, 4)
    actor_params = ignore_input_rows(config, init_actor_params(spec, k_actor), obs_dim)
    critic_params = ignore_input_rows(config, networks.init_critics(
        critic, k_critic, config.num_critics(), obs_dim, act_dim), obs_dim)
    ts = TrainState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=actor_params,
        target_critic_params=critic_params,
        actor_opt_state=_optimizer(config, config.actor_learning_rate).init(actor_params),
        critic_opt_state=_optimizer(config, config.critic_learning_rate).init(critic_params),
        norm=normalizer.init(obs_dim),
        buffer=buffer,
        env_state=env.reset(k_env),
        key=k_run,
        env_steps=jnp.zeros((), jnp.int32),
        iteration=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
    )
    # Targets start as copies of the online nets and the env state may alias
    # arrays (final_obs is obs): give every leaf its own buffer so that the
    # train iteration can donate its input.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), ts)


def ignore_input_rows(config: Config, params, obs_dim: int):
    """Zero the first layer's input rows of the ignored observation features
    (rows observation_features .. obs_dim-1; a critic's action rows after them stay).
    params: actor or stacked-critic Flax params, or their gradients (first kernel
    [..., inputs, hidden]). Applied to the initial params and to every gradient, so
    those rows stay exactly zero and the deployed policy ignores those features."""
    if not config.observation_features or config.observation_features >= obs_dim:
        return params
    first = params["params"]["hidden_0"]
    rows = jnp.arange(first["kernel"].shape[-2])
    drop = (rows >= config.observation_features) & (rows < obs_dim)
    kernel = jnp.where(drop[:, None], 0.0, first["kernel"])
    return dict(params, params=dict(params["params"], hidden_0=dict(first, kernel=kernel)))


def exploration_std(config: Config, env_steps: jax.Array) -> jax.Array:
    """Exploration std: [] decaying linearly from exploration_noise to
    exploration_noise_final over exploration_decay_steps (0 = total_steps) env
    steps after the warm-up; or, with exploration_noise_ladder, a fixed [N, 1]
    ladder from exploration_noise_final (env 0) to exploration_noise (env N-1)."""
    if config.exploration_noise_ladder:
        frac = jnp.linspace(0.0, 1.0, config.num_envs, dtype=jnp.float32)[:, None]
        return (config.exploration_noise_final
                + frac * (config.exploration_noise - config.exploration_noise_final))
    horizon = config.exploration_decay_steps or max(config.total_steps - config.warmup_steps, 1)
    frac = jnp.clip((env_steps - config.warmup_steps) / horizon, 0.0, 1.0)
    return (config.exploration_noise
            + frac * (config.exploration_noise_final - config.exploration_noise)
            ).astype(jnp.float32)


def _polyak(target, online, tau: float):
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def make_update(config: Config, spec: PolicySpec):
    """-> update(train_state, key) -> (train_state, metrics): one critic update,
    plus (every ``policy_delay``-th call) an actor update and target updates."""
    critic = _critic(config)
    support = config.support()
    actor_opt = _optimizer(config, config.actor_learning_rate)
    critic_opt = _optimizer(config, config.critic_learning_rate)

    def update(ts: TrainState, key: jax.Array):
        k_sample, k_target = jax.random.split(key)
        if config.n_step > 1:
            batch, discount = replay.sample_n_step(ts.buffer, k_sample, config.batch_size,
                                                   config.n_step, config.num_envs,
                                                   config.discount)
        else:
            batch, discount = replay.sample(ts.buffer, k_sample, config.batch_size), \
                config.discount
        batch = batch.replace(reward=batch.reward * config.reward_scale)
        if config.crossq:
            noise = config.target_noise if config.target_smoothing else 0.0
            next_action = losses.next_actions(spec, ts.actor_params, ts.norm, batch.next_obs,
                                              k_target, noise, config.target_noise_clip)
            (c_loss, aux), c_grads = jax.value_and_grad(losses.crossq_critic_loss,
                                                        has_aux=True)(
                ts.critic_params, critic, ts.norm, batch, next_action, gamma=discount,
                clipped_double_q=config.twin_critics, support=support)
            target = aux["target"]
        else:
            target = losses.td3_target(
                spec, critic, ts.target_actor_params, ts.target_critic_params, ts.norm, batch,
                k_target, gamma=discount, target_noise=config.target_noise,
                noise_clip=config.target_noise_clip, target_smoothing=config.target_smoothing,
                clipped_double_q=config.twin_critics, support=support)
            (c_loss, aux), c_grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
                ts.critic_params, critic, ts.norm, batch, target, support)
        c_grads = ignore_input_rows(config, c_grads, spec.obs_dim)
        c_updates, critic_opt_state = critic_opt.update(c_grads, ts.critic_opt_state,
                                                        ts.critic_params)
        critic_params = optax.apply_updates(ts.critic_params, c_updates)
        if config.crossq:   # running statistics come from the pass, not the optimiser
            critic_params = dict(critic_params, batch_stats=aux["params"]["batch_stats"])
        updates = ts.updates + 1
        ts = ts.replace(critic_params=critic_params, critic_opt_state=critic_opt_state,
                        updates=updates)

        def actor_and_targets(ts: TrainState):
            a_loss, a_grads = jax.value_and_grad(losses.actor_loss)(
                ts.actor_params, spec, critic, ts.critic_params, ts.norm, batch.obs, support)
            a_grads = ignore_input_rows(config, a_grads, spec.obs_dim)
            a_updates, actor_opt_state = actor_opt.update(a_grads, ts.actor_opt_state,
                                                          ts.actor_params)
            actor_params = optax.apply_updates(ts.actor_params, a_updates)
            if config.crossq:   # no target networks
                return ts.replace(actor_params=actor_params,
                                  actor_opt_state=actor_opt_state), a_loss
            return ts.replace(
                actor_params=actor_params, actor_opt_state=actor_opt_state,
                target_actor_params=_polyak(ts.target_actor_params, actor_params, config.tau),
                target_critic_params=_polyak(ts.target_critic_params, ts.critic_params,
                                             config.tau)), a_loss

        def skip(ts: TrainState):
            return ts, jnp.zeros((), jnp.float32)

        do_actor = (updates % config.policy_delay) == 0
        # The buffer stays out of the cond (read-only here; no copy of C transitions).
        small, a_loss = jax.lax.cond(do_actor, actor_and_targets, skip,
                                     ts.replace(buffer=None, env_state=None))
        ts = small.replace(buffer=ts.buffer, env_state=ts.env_state)
        target_mean = (jnp.mean(target) if support is None
                       else jnp.mean(jnp.sum(target * support, -1)))
        metrics = {"loss/critic": c_loss, "loss/actor": a_loss,
                   "actor_updates": do_actor.astype(jnp.float32), "q_mean": aux["q_mean"],
                   "target_mean": target_mean}
        return ts, metrics

    return update


def make_collect_step(config: Config, env, spec: PolicySpec):
    """-> step(train_state, key) -> (train_state, transition): one vectorised env
    step with exploration, normaliser update and buffer insertion."""

    def step(ts: TrainState, key: jax.Array):
        k_noise, k_random = jax.random.split(key)
        obs = ts.env_state.obs
        norm = normalizer.update(ts.norm, obs) if config.normalize_observations else ts.norm
        greedy = networks.actor_action(spec, ts.actor_params, norm, obs)
        std = exploration_std(config, ts.env_steps)
        noisy = jnp.clip(greedy + std * jax.random.normal(k_noise, greedy.shape), -1.0, 1.0)
        uniform = jax.random.uniform(k_random, greedy.shape, minval=-1.0, maxval=1.0)
        action = jnp.where(ts.env_steps < config.warmup_steps, uniform, noisy)
        env_state = env.step(ts.env_state, action)
        transition = replay.Transition(
            obs=obs, action=action, reward=env_state.reward,
            next_obs=env_state.info["final_obs"],
            terminated=env_state.info["terminated"], truncated=env_state.info["truncated"])
        ts = ts.replace(norm=norm, env_state=env_state,
                        buffer=replay.insert(ts.buffer, transition),
                        env_steps=ts.env_steps + config.num_envs)
        return ts, transition

    return step


def make_train_iteration(config: Config, env):
    """-> jitted fn(train_state) -> (train_state, metrics); the input state is
    donated (do not reuse it after the call)."""
    config.validate()
    check_env(config, env)
    spec = policy_spec(config, env.observation_size, env.action_size)
    update = make_update(config, spec)
    collect = make_collect_step(config, env, spec)
    n_updates = config.num_updates_per_step()
    update_metric_names = ("loss/critic", "loss/actor", "actor_updates", "q_mean",
                           "target_mean")

    def env_step(ts: TrainState, _):
        key, k_collect, k_update = jax.random.split(ts.key, 3)
        ts = ts.replace(key=key)
        ts, _ = collect(ts, k_collect)
        # The updates read the buffer but never write it: keep it (and the env
        # state) out of the cond/scan carries, or XLA copies C transitions per step.
        buffer, env_state = ts.buffer, ts.env_state

        def update_from_buffer(small: TrainState, key):
            out, m = update(small.replace(buffer=buffer), key)
            return out.replace(buffer=None), m

        def learn(ts):
            ts, m = jax.lax.scan(update_from_buffer, ts, jax.random.split(k_update, n_updates))
            n_actor = jnp.sum(m["actor_updates"])
            out = {k: jnp.mean(v) for k, v in m.items()}
            out["loss/actor"] = jnp.sum(m["loss/actor"]) / jnp.maximum(n_actor, 1.0)
            out["actor_updates"] = n_actor
            out["learned"] = jnp.ones((), jnp.float32)
            return ts, out

        def wait(ts):
            # Zeros made inside the trace: a concrete array captured here would be
            # read back during lowering, waiting on any pending host callback.
            zeros = {k: jnp.zeros((), jnp.float32) for k in update_metric_names}
            return ts, dict(zeros, learned=jnp.zeros((), jnp.float32))

        ready = ((ts.env_steps >= config.warmup_steps) & (buffer.size >= config.batch_size)
                 & (buffer.size >= config.n_step * config.num_envs))
        small, m = jax.lax.cond(ready, learn, wait, ts.replace(buffer=None, env_state=None))
        return small.replace(buffer=buffer, env_state=env_state), m

    def iteration(ts: TrainState):
        ts, m = jax.lax.scan(env_step, ts, None, length=config.steps_per_iteration)
        learned = jnp.sum(m["learned"])
        metrics = {}
        for k in ("loss/critic", "q_mean", "target_mean"):
            metrics[k] = jnp.sum(m[k]) / jnp.maximum(learned, 1.0)
        n_actor = jnp.sum(m["actor_updates"])
        metrics["loss/actor"] = (jnp.sum(m["loss/actor"] * m["actor_updates"])
                                 / jnp.maximum(n_actor, 1.0))
        metrics["actor_updates"] = n_actor
        metrics["critic_updates"] = learned * n_updates
        metrics["exploration_std"] = jnp.mean(exploration_std(config, ts.env_steps))
        metrics["buffer_size"] = ts.buffer.size
        metrics.update(episode_metrics(ts.env_state))
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        return ts.replace(iteration=ts.iteration + 1), metrics

    return jax.jit(iteration, donate_argnums=0)


def policy_parts(config: Config, train_state: TrainState):
    """-> (PolicySpec, actor_params, NormalizerState); spec.env is a placeholder."""
    obs_dim = train_state.norm.mean.shape[-1]
    act_dim = jax.tree_util.tree_leaves(train_state.actor_params["params"]["out"]["bias"])[0]
    return (policy_spec(config, obs_dim, act_dim.shape[-1]), train_state.actor_params,
            train_state.norm)


def checkpoint_state(config: Config, train_state: TrainState):
    """The train state to save; without the replay buffer's data unless
    ``checkpoint_replay_buffer`` (then --resume refills it from scratch and is
    not bit-exact)."""
    if config.checkpoint_replay_buffer:
        return train_state
    return train_state.replace(buffer=None)


def restore_state(config: Config, template: TrainState, restored) -> TrainState:
    if config.checkpoint_replay_buffer:
        return restored
    return restored.replace(buffer=template.buffer)

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
   (``lax.scan``): a critic update each time (how the critic learns is the
   :class:`~jaxrl_lite.agents.actor_critic.variant.CriticVariant`'s: TD3's target
   networks, or CrossQ's), and every ``policy_delay``-th time an actor update
   followed by Polyak target updates.

The train state, its initialisation and what is saved and deployed from it:
``state.py``. Shapes: N = num_envs, T = steps_per_iteration, B = batch_size, C = buffer_size.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxrl_lite.agents.actor_critic import losses, networks
from jaxrl_lite.agents.actor_critic.config import Config
from jaxrl_lite.agents.actor_critic.state import (TrainState, critic_variant,
                                                   ignore_input_rows, optimizer, policy_spec)
from jaxrl_lite.blocks import normalizer, replay
from jaxrl_lite.blocks.policy import PolicySpec
from jaxrl_lite.envs.core import episode_metrics

UPDATE_METRICS = ("loss/critic", "loss/actor", "actor_updates", "q_mean", "target_mean")


def exploration_std(config: Config, env_steps: jax.Array) -> jax.Array:
    """[]: linear from exploration_noise to exploration_noise_final over
    exploration_decay_steps (0 = total_steps) env steps after the warm-up."""
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
    variant = critic_variant(config)
    critic = variant.module(config, spec.obs_dim)
    actor_opt = optimizer(config, config.actor_learning_rate)
    critic_opt = optimizer(config, config.critic_learning_rate)

    def update(ts: TrainState, key: jax.Array):
        k_sample, k_target = jax.random.split(key)
        batch = replay.sample(ts.buffer, k_sample, config.batch_size)
        batch = batch.replace(reward=batch.reward * config.reward_scale)
        loss_fn = variant.loss(config, spec, critic, ts, batch, k_target)
        (c_loss, aux), c_grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.critic_params)
        c_grads = ignore_input_rows(config, c_grads, spec.obs_dim)
        c_updates, critic_opt_state = critic_opt.update(c_grads, ts.critic_opt_state,
                                                        ts.critic_params)
        critic_params = optax.apply_updates(ts.critic_params, c_updates)
        if "batch_stats" in aux:  # running statistics come from the pass, not the optimiser
            critic_params = dict(critic_params, batch_stats=aux["batch_stats"])
        updates = ts.updates + 1
        ts = ts.replace(critic_params=critic_params, critic_opt_state=critic_opt_state,
                        updates=updates)

        def actor_and_targets(ts: TrainState):
            a_loss, a_grads = jax.value_and_grad(losses.actor_loss)(
                ts.actor_params, spec, critic, ts.critic_params, ts.norm, batch.obs)
            a_grads = ignore_input_rows(config, a_grads, spec.obs_dim)
            a_updates, actor_opt_state = actor_opt.update(a_grads, ts.actor_opt_state,
                                                          ts.actor_params)
            actor_params = optax.apply_updates(ts.actor_params, a_updates)
            ts = ts.replace(actor_params=actor_params, actor_opt_state=actor_opt_state)
            if variant.uses_targets:
                ts = ts.replace(
                    target_actor_params=_polyak(ts.target_actor_params, actor_params,
                                                config.tau),
                    target_critic_params=_polyak(ts.target_critic_params, ts.critic_params,
                                                 config.tau))
            return ts, a_loss

        def skip(ts: TrainState):
            return ts, jnp.zeros((), jnp.float32)

        do_actor = (updates % config.policy_delay) == 0
        # The buffer stays out of the cond (read-only here; no copy of C transitions).
        small, a_loss = jax.lax.cond(do_actor, actor_and_targets, skip,
                                     ts.replace(buffer=None, env_state=None))
        ts = small.replace(buffer=ts.buffer, env_state=ts.env_state)
        return ts, {"loss/critic": c_loss, "loss/actor": a_loss,
                    "actor_updates": do_actor.astype(jnp.float32), "q_mean": aux["q_mean"],
                    "target_mean": jnp.mean(aux["target"])}

    return update


def make_collect_step(config: Config, env, spec: PolicySpec):
    """-> step(train_state, key) -> train_state: one vectorised env step with
    exploration, normaliser update and buffer insertion."""

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
        return ts.replace(norm=norm, env_state=env_state,
                          buffer=replay.insert(ts.buffer, transition),
                          env_steps=ts.env_steps + config.num_envs)

    return step


def make_train_iteration(config: Config, env):
    """-> jitted fn(train_state) -> (train_state, metrics); the input state is
    donated (do not reuse it after the call)."""
    spec = policy_spec(config, env.observation_size, env.action_size)
    update = make_update(config, spec)
    collect = make_collect_step(config, env, spec)
    n_updates = config.num_updates_per_step()

    def env_step(ts: TrainState, _):
        key, k_collect, k_update = jax.random.split(ts.key, 3)
        ts = collect(ts.replace(key=key), k_collect)
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
            zeros = {k: jnp.zeros((), jnp.float32) for k in UPDATE_METRICS}
            return ts, dict(zeros, learned=jnp.zeros((), jnp.float32))

        ready = (ts.env_steps >= config.warmup_steps) & (buffer.size >= config.batch_size)
        small, m = jax.lax.cond(ready, learn, wait, ts.replace(buffer=None, env_state=None))
        return small.replace(buffer=buffer, env_state=env_state), m

    def iteration(ts: TrainState):
        ts, m = jax.lax.scan(env_step, ts, None, length=config.steps_per_iteration)
        learned = jnp.sum(m["learned"])
        metrics = {k: jnp.sum(m[k]) / jnp.maximum(learned, 1.0)
                   for k in ("loss/critic", "q_mean", "target_mean")}
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

"""PPO training: config, train state, and the one jitted training iteration.

One iteration = a ``lax.scan`` rollout of ``unroll_length`` steps in each of
``num_envs`` environments, an observation-normaliser update, GAE with
truncation bootstrapping, then ``num_epochs`` x ``num_minibatches`` Adam steps
(``lax.scan`` over both), all inside one ``jax.jit``.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_lite.blocks import normalizer, return_norm, sharding
from jaxrl_lite.agents.ppo import losses, networks
from jaxrl_lite.agents.interface import flag_field as _f
from jaxrl_lite.envs.core import Env, State, episode_metrics
from jaxrl_lite.blocks.policy import ACTIVATIONS, PolicySpec

NAME = "ppo"


@dataclasses.dataclass(frozen=True)
class Config:
    """PPO hyperparameters (defaults: Ant-v5 on a 2-core CPU, native backend)."""

    num_envs: int = _f(128, "Parallel training environments.")
    total_steps: int = _f(12_000_000, "Environment steps to train for.")
    unroll_length: int = _f(16, "Env steps per env per iteration (rollout length).")
    num_minibatches: int = _f(8, "Minibatches per epoch; num_envs*unroll_length must divide.")
    num_epochs: int = _f(4, "Passes over each rollout batch.")
    learning_rate: float = _f(3e-4, "Adam learning rate (initial value).")
    lr_schedule: str = _f("linear", "'constant' or 'linear' (decay to 0 at total_steps).")
    max_grad_norm: float = _f(0.5, "Global gradient-norm clip, applied to actor and "
                                   "critic gradients separately (0 = no clipping).")
    discount: float = _f(0.99, "Discount factor gamma, in [0, 1].")
    gae_lambda: float = _f(0.95, "GAE lambda.")
    clip_eps: float = _f(0.2, "PPO ratio clip epsilon.")
    clip_value: bool = _f(False, "Clip the value loss (PPO2 style) with value_clip_eps.")
    value_clip_eps: float = _f(0.2, "Value clipping range (scaled-reward units).")
    vf_coef: float = _f(0.5, "Value-loss coefficient.")
    entropy_coef: float = _f(1e-3, "Entropy bonus coefficient.")
    normalize_advantages: bool = _f(True, "Normalise advantages per minibatch.")
    normalize_observations: bool = _f(True, "Running mean/var observation normalisation.")
    reward_scale: float = _f(0.1, "Rewards are multiplied by this before learning.")
    normalize_rewards: bool = _f(False, "Divide rewards by the running std of the discounted "
                                        "return (SB3 VecNormalize, CleanRL NormalizeReward; "
                                        "clipped to +-10) before reward_scale.")
    init_log_std: float = _f(-0.5, "Initial log std of the pre-tanh Gaussian.")
    policy_hidden: tuple[int, ...] = _f((64, 64), "Actor hidden layer sizes.")
    value_hidden: tuple[int, ...] = _f((128, 128), "Critic hidden layer sizes.")
    activation: str = _f("tanh", "Hidden activation: " + ", ".join(ACTIVATIONS) + ".")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.unroll_length

    def validate(self) -> None:
        """Raise a one-line ValueError for the first bad field."""
        for name in ("num_envs", "total_steps", "unroll_length", "num_minibatches",
                     "num_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("learning_rate", "clip_eps", "value_clip_eps",
                     "reward_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        for name in ("vf_coef", "entropy_coef", "max_grad_norm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        for name in ("discount", "gae_lambda"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not math.isfinite(self.init_log_std):
            raise ValueError(f"init_log_std must be finite, got {self.init_log_std!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be 'constant' or 'linear', "
                             f"got {self.lr_schedule!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        for name in ("policy_hidden", "value_hidden"):
            v = getattr(self, name)
            if not v or any(not isinstance(h, int) or h < 1 for h in v):
                raise ValueError(f"{name} must be a non-empty list of positive integers, "
                                 f"got {v!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"batch num_envs*unroll_length = {self.num_envs}*{self.unroll_length} = "
                f"{self.batch_size} does not divide into num_minibatches="
                f"{self.num_minibatches}")


@struct.dataclass
class TrainState:
    params: dict            # {"actor", "log_std", "value"}
    opt_state: optax.OptState
    norm: normalizer.NormalizerState
    env_state: State
    key: jax.Array          # uint32 [2]
    env_steps: jax.Array    # int32 []
    iteration: jax.Array    # int32 []
    # --normalize_rewards only (None otherwise, so other runs keep their checkpoint layout)
    ret_norm: return_norm.ReturnNormState | None = None


def env_steps_per_iteration(config: Config) -> int:
    return config.batch_size


def num_iterations(config: Config) -> int:
    return max(1, -(-config.total_steps // config.batch_size))


def _spec(config: Config, obs_dim: int, act_dim: int) -> PolicySpec:
    return PolicySpec(env="", obs_dim=obs_dim, act_dim=act_dim,
                      hidden_sizes=tuple(config.policy_hidden), activation=config.activation)


def _schedule(config: Config):
    if config.lr_schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    updates = num_iterations(config) * config.num_epochs * config.num_minibatches
    return optax.linear_schedule(config.learning_rate, 0.0, updates)


def _optimizer(config: Config) -> optax.GradientTransformation:
    """Per-network global-norm clipping (a huge critic gradient must not shrink
    the actor's), then Adam with the LR schedule."""
    adam = optax.adam(_schedule(config), eps=1e-5)
    if config.max_grad_norm == 0:
        return adam
    clip = optax.clip_by_global_norm(config.max_grad_norm)
    labels = {"actor": "actor", "log_std": "actor", "value": "value"}
    return optax.chain(optax.multi_transform({"actor": clip, "value": clip}, labels), adam)


def init(config: Config, env: Env, key) -> TrainState:
    """Fresh train state: params, Adam state, normaliser, reset envs, key."""
    if env.num_envs != config.num_envs:
        raise ValueError(f"env has num_envs={env.num_envs}, config says {config.num_envs}")
    key = jnp.asarray(key)
    k_params, k_env, k_train = jax.random.split(key, 3)
    spec = _spec(config, env.observation_size, env.action_size)
    params = networks.init_params(spec, config.value_hidden, config.init_log_std, k_params)
    return TrainState(
        params=params, opt_state=_optimizer(config).init(params),
        norm=normalizer.init(env.observation_size), env_state=env.reset(k_env),
        key=k_train, env_steps=jnp.zeros((), jnp.int32), iteration=jnp.zeros((), jnp.int32),
        ret_norm=return_norm.init(config.num_envs) if config.normalize_rewards else None)


def policy_parts(config: Config, train_state: TrainState):
    """-> (PolicySpec, actor params, NormalizerState) of the deployable actor."""
    obs_dim = train_state.norm.mean.shape[-1]
    act_dim = train_state.params["log_std"].shape[-1]
    return _spec(config, obs_dim, act_dim), train_state.params["actor"], train_state.norm


def rollout(config: Config, env: Env, spec: PolicySpec, params, norm, env_state, key):
    """Scan ``unroll_length`` env steps with the stochastic policy.

    Returns (final env state, data dict of [T, N, ...] arrays).
    """
    def step(carry, k):
        env_state = carry
        loc = networks.policy_loc(spec, params, norm, env_state.obs)
        u, action, log_prob = networks.sample(k, loc, params["log_std"])
        nxt = env.step(env_state, action)
        data = {"obs": env_state.obs, "u": u, "log_prob": log_prob,
                "reward": nxt.reward, "terminated": nxt.info["terminated"],
                "done": nxt.done, "final_obs": nxt.info["final_obs"]}
        return nxt, data

    keys = jax.random.split(key, config.unroll_length)
    return jax.lax.scan(step, env_state, keys)


def advantages(config: Config, spec: PolicySpec, params, norm, data: dict,
               ret_norm: return_norm.ReturnNormState | None = None):
    """Rollout data [T, N, ...] -> (values, advantages, value targets), each [T, N].

    Rewards are divided by the return std of ``ret_norm`` when given, then multiplied
    by ``reward_scale``: values and targets are in those units.

    Bootstraps every step from V(info["final_obs"]) -- the observation the step
    produced before any auto-reset -- masked only by ``terminated``: a time
    limit is not death.
    """
    values = networks.value(spec, config.value_hidden, params, norm, data["obs"])
    next_values = networks.value(spec, config.value_hidden, params, norm, data["final_obs"])
    rewards = data["reward"]
    if ret_norm is not None:
        rewards = return_norm.normalize(ret_norm, rewards)
    rewards = rewards * config.reward_scale
    adv, targets = losses.gae(rewards, values, next_values, data["terminated"], data["done"],
                              config.discount, config.gae_lambda)
    return values, adv, targets


def make_train_iteration(config: Config, env: Env):
    """-> jitted ``fn(TrainState) -> (TrainState, metrics)`` (one PPO iteration)."""
    config.validate()
    spec = _spec(config, env.observation_size, env.action_size)
    optimizer = _optimizer(config)
    schedule = _schedule(config)
    value_clip = config.value_clip_eps if config.clip_value else None
    loss_fn = jax.value_and_grad(
        lambda p, norm, batch, k: losses.ppo_loss(
            p, norm, batch, k, spec=spec, value_hidden=config.value_hidden,
            clip_eps=config.clip_eps, value_clip_eps=value_clip, vf_coef=config.vf_coef,
            entropy_coef=config.entropy_coef, normalize_adv=config.normalize_advantages),
        has_aux=True)
    mb_size = config.batch_size // config.num_minibatches
    updates_per_iter = config.num_epochs * config.num_minibatches

    def iteration(ts: TrainState):
        key, k_roll, k_epochs = jax.random.split(ts.key, 3)
        env_state, data = rollout(config, env, spec, ts.params, ts.norm, ts.env_state, k_roll)
        norm = normalizer.update(ts.norm, data["obs"]) if config.normalize_observations \
            else ts.norm
        ret_norm = ts.ret_norm
        if config.normalize_rewards:
            ret_norm = return_norm.update(ret_norm, data["reward"], data["done"],
                                          config.discount)
        values, adv, targets = advantages(config, spec, ts.params, norm, data, ret_norm)
        flat = {"obs": data["obs"], "u": data["u"], "log_prob": data["log_prob"],
                "advantages": adv, "targets": targets, "values": values}
        flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), flat)

        def sgd_step(carry, mb):
            params, opt_state = carry
            batch, k = mb
            (_, m), grads = loss_fn(params, norm, batch, k)
            upd, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, upd)
            m["grad_norm"] = optax.tree.norm(grads)
            return (params, opt_state), m

        def epoch(carry, k):
            k_perm, k_mb = jax.random.split(k)
            perm = jax.random.permutation(k_perm, config.batch_size)
            shuffled = jax.tree_util.tree_map(
                lambda x: x[perm].reshape((config.num_minibatches, mb_size) + x.shape[1:]),
                flat)
            # Under a data mesh, split each minibatch over devices (a layout hint
            # only: a no-op on one device, same math either way).
            shuffled = sharding.constrain(shuffled, axis=1)
            mb_keys = jax.random.split(k_mb, config.num_minibatches)
            return jax.lax.scan(sgd_step, carry, (shuffled, mb_keys))

        (params, opt_state), m = jax.lax.scan(
            epoch, (ts.params, ts.opt_state), jax.random.split(k_epochs, config.num_epochs))
        metrics = jax.tree_util.tree_map(jnp.mean, m)
        metrics.update(episode_metrics(env_state))
        metrics["policy_std"] = jnp.mean(jnp.exp(params["log_std"]))
        metrics["learning_rate"] = jnp.asarray(
            schedule(ts.iteration * updates_per_iter), jnp.float32)
        metrics["value_mean"] = jnp.mean(values)
        metrics["reward_mean"] = jnp.mean(data["reward"])
        if ret_norm is not None:
            metrics["return_std"] = jnp.sqrt(ret_norm.moments.var[0])
        new = TrainState(params=params, opt_state=opt_state, norm=norm, env_state=env_state,
                         key=key, env_steps=ts.env_steps + config.batch_size,
                         iteration=ts.iteration + 1, ret_norm=ret_norm)
        return new, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return jax.jit(iteration)

"""The batched, functional environment API shared by every backend.

An environment object holds only static configuration; all mutable data lives
in a :class:`State` pytree, so ``reset``/``step`` can be traced by ``jax.jit``
and carried through ``jax.lax.scan``.

Shapes use ``N`` for the number of parallel environments (``num_envs``).
"""
from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class State:
    """Batched environment state.

    obs:      float32 [N, obs_dim]  observation after the step (after auto-reset,
                                    the first observation of the new episode).
    reward:   float32 [N]           reward of the step just taken.
    done:     float32 [N]           1.0 when the step terminated or truncated.
    info:     dict of [N, ...] arrays. Always present:
                "terminated", "truncated" float32 [N];
                "final_obs" float32 [N, obs_dim]: the observation the step
                    produced *before* any auto-reset (use it to bootstrap
                    truncated episodes);
                "steps" int32 [N]: steps taken in the current episode;
                "episode_return" float32 [N], "episode_length" int32 [N]:
                    running totals of the current episode;
                "completed_return" float32 [N], "completed_length" int32 [N]:
                    totals of the most recently finished episode (valid where
                    "completed_count" > 0);
                "completed_count" int32 [N]: episodes finished so far.
              Backends add their own keys (Ant: reward terms, x_velocity, ...).
    physics:  backend-specific pytree (MJX Data, float64 state halves, ...).
    rng:      uint32 [N, 2] per-environment PRNG keys for resets.
    """

    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict
    physics: Any
    rng: jax.Array


class Env(abc.ABC):
    """Base class for batched functional environments.

    Subclasses implement ``_reset_batch`` and ``_step_batch`` (no auto-reset);
    this class adds input validation, episode bookkeeping, truncation and
    auto-reset so every backend behaves the same.
    """

    def __init__(self, num_envs: int, auto_reset: bool, max_episode_steps: int):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be a positive int, got {max_episode_steps!r}")
        self.num_envs = num_envs
        self.auto_reset = bool(auto_reset)
        self.max_episode_steps = max_episode_steps

    # -- to implement -------------------------------------------------------
    @property
    @abc.abstractmethod
    def observation_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def action_size(self) -> int: ...

    @abc.abstractmethod
    def _reset_batch(self, rng: jax.Array, needed: jax.Array | None = None
                     ) -> tuple[jax.Array, Any, dict]:
        """rng uint32 [N, 2] -> (obs [N, obs_dim], physics, backend info).

        needed: optional bool [N], the envs whose results are used (auto-reset passes
        the finished ones); a backend may return placeholders for the others."""

    @abc.abstractmethod
    def _step_batch(self, physics: Any, action: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array, Any, dict]:
        """-> (obs, reward [N], terminated [N] float32, physics, backend info)."""

    # -- public API ---------------------------------------------------------
    def reset(self, key: jax.Array) -> State:
        """key: a single PRNG key -> State batched over ``num_envs``."""
        key = jnp.asarray(key)
        if key.shape != (2,) or key.dtype != jnp.uint32:
            if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                raise TypeError(
                    f"reset expects one jax.random.PRNGKey (uint32 [2]), got "
                    f"{key.dtype} {key.shape}")
            key = jax.random.key_data(key)
        # Key 0 of the split is unused; splitting num_envs + 1 keeps every seed's
        # episodes what they have always been.
        reset_keys = jax.random.split(key, self.num_envs + 1)[1:]
        # Each env keeps its own stream: key for this reset, next key for the next.
        env_keys = jax.vmap(lambda k: jax.random.split(k, 2))(reset_keys)
        obs, physics, binfo = self._reset_batch(env_keys[:, 0])
        return self._initial_state(obs, physics, binfo, env_keys[:, 1])

    def step(self, state: State, action: jax.Array) -> State:
        """action float32 [N, action_size] -> next State (auto-reset if enabled)."""
        action = self._check_action(action)
        obs, reward, terminated, physics, binfo = self._step_batch(state.physics, action)
        info = dict(state.info)
        info.update(binfo)
        steps = state.info["steps"] + 1
        truncated = jnp.where(terminated > 0, 0.0,
                              (steps >= self.max_episode_steps).astype(jnp.float32))
        done = jnp.maximum(terminated, truncated)
        ep_ret = state.info["episode_return"] + reward
        ep_len = state.info["episode_length"] + 1
        done_b = done > 0
        info.update(
            terminated=terminated, truncated=truncated, final_obs=obs, steps=steps,
            episode_return=ep_ret, episode_length=ep_len,
            completed_return=jnp.where(done_b, ep_ret, state.info["completed_return"]),
            completed_length=jnp.where(done_b, ep_len, state.info["completed_length"]),
            completed_count=state.info["completed_count"] + done_b.astype(jnp.int32),
        )
        new = State(obs=obs, reward=reward, done=done, info=info, physics=physics,
                    rng=state.rng)
        if not self.auto_reset:
            return new
        return self._auto_reset(new)

    def reset_to(self, qpos, qvel) -> State:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} does not support reset_to")

    # -- helpers ------------------------------------------------------------
    def _initial_state(self, obs, physics, binfo, rng) -> State:
        n = self.num_envs
        zeros_f = jnp.zeros((n,), jnp.float32)
        zeros_i = jnp.zeros((n,), jnp.int32)
        info = dict(binfo)
        info.update(
            terminated=zeros_f, truncated=zeros_f, final_obs=obs, steps=zeros_i,
            episode_return=zeros_f, episode_length=zeros_i,
            completed_return=zeros_f, completed_length=zeros_i,
            completed_count=zeros_i)
        return State(obs=obs, reward=zeros_f, done=zeros_f, info=info,
                     physics=physics, rng=rng)

    def _auto_reset(self, state: State) -> State:
        """Replace finished envs by fresh ones; keep final_obs and totals."""
        split = jax.vmap(lambda k: jax.random.split(k, 2))(state.rng)
        done_b = state.done > 0

        # Most steps finish no episode: skip the reset work then. The skipped
        # branch returns placeholders that the masks below never select, so
        # the result is the same as always resetting.
        def fresh():
            return self._reset_batch(split[:, 0], done_b)

        def skip():
            shapes = jax.eval_shape(fresh)
            return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        reset_obs, reset_physics, reset_binfo = jax.lax.cond(jnp.any(done_b), fresh, skip)

        def pick(fresh, old):
            mask = done_b.reshape((-1,) + (1,) * (old.ndim - 1))
            return jnp.where(mask, fresh, old)

        physics = jax.tree_util.tree_map(pick, reset_physics, state.physics)
        info = dict(state.info)
        for k, v in reset_binfo.items():
            if k in info and getattr(info[k], "shape", None) == getattr(v, "shape", None):
                # Backend per-step diagnostics keep the finished step's values.
                continue
            info[k] = v
        info["steps"] = jnp.where(done_b, 0, state.info["steps"])
        info["episode_return"] = jnp.where(done_b, 0.0, state.info["episode_return"])
        info["episode_length"] = jnp.where(done_b, 0, state.info["episode_length"])
        rng = jnp.where(done_b[:, None], split[:, 1], state.rng)
        return state.replace(obs=pick(reset_obs, state.obs), physics=physics,
                             info=info, rng=rng)

    def _check_action(self, action) -> jax.Array:
        shape = getattr(action, "shape", None)
        dtype = getattr(action, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(f"action must be an array, got {type(action).__name__}")
        expected = (self.num_envs, self.action_size)
        if tuple(shape) != expected:
            raise ValueError(f"action has shape {tuple(shape)}, expected {expected} "
                             f"(num_envs, action_size)")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"action has dtype {dtype}, expected float32")
        return jnp.asarray(action, jnp.float32)


def check_state_array(name: str, value, expected: tuple[int, ...], width: str):
    """Validate a ``reset_to`` input: an array of shape ``expected`` with a float
    dtype; one-line TypeError/ValueError otherwise. Returns ``value`` unchanged
    (each backend casts to its own precision)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"reset_to {name} must be an array of shape {expected}, "
                        f"got {type(value).__name__}")
    if tuple(shape) != expected:
        raise ValueError(f"reset_to {name} has shape {tuple(shape)}, expected {expected} "
                         f"(num_envs, {width})")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"reset_to {name} has dtype {dtype}, expected a float dtype")
    return value


def episode_metrics(state: State) -> dict:
    """The agents' required episode metrics from a batched State's info, float32:
    mean return / length of each env's most recently completed episode (over envs
    that completed one; 0.0 while none has) and episodes completed in all."""
    info = state.info
    has = info["completed_count"] > 0
    n = jnp.maximum(jnp.sum(has), 1).astype(jnp.float32)
    return {
        "episode_return_mean": jnp.sum(jnp.where(has, info["completed_return"], 0.0)) / n,
        "episode_length_mean": jnp.sum(
            jnp.where(has, info["completed_length"], 0).astype(jnp.float32)) / n,
        "episodes_completed": jnp.sum(info["completed_count"]).astype(jnp.float32),
    }

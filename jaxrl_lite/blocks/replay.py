"""A circular replay buffer held on device as a pytree of JAX arrays.

The buffer has a fixed ``capacity`` C (static: it is the leading dimension of
every array), so ``insert`` and ``sample`` trace once and run inside
``jit``/``lax.scan``. One vectorised env step inserts a whole batch of N
transitions at once; positions wrap around, overwriting the oldest entries.

Truncation vs termination: ``next_obs`` is the observation the step produced
*before* any auto-reset (``State.info["final_obs"]``), so a transition cut by
a time limit can bootstrap from it; only ``terminated`` stops bootstrapping.
``truncated`` is stored for diagnostics and tests.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """A batch of transitions [B, ...].

    obs float32 [B, obs_dim]; action float32 [B, act_dim] in [-1, 1];
    reward float32 [B]; next_obs float32 [B, obs_dim] (pre-reset observation);
    terminated, truncated float32 [B] (1.0 / 0.0).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@struct.dataclass
class ReplayBuffer:
    """data: Transition with leading dim C; position: int32 [] next write index;
    size: int32 [] number of filled entries (<= C)."""

    data: Transition
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def init(capacity: int, obs_dim: int, act_dim: int) -> ReplayBuffer:
    """An empty buffer of ``capacity`` transitions (all arrays zero)."""
    _check_positive_int("capacity", capacity)
    _check_positive_int("obs_dim", obs_dim)
    _check_positive_int("act_dim", act_dim)
    f32 = jnp.float32
    data = Transition(
        obs=jnp.zeros((capacity, obs_dim), f32),
        action=jnp.zeros((capacity, act_dim), f32),
        reward=jnp.zeros((capacity,), f32),
        next_obs=jnp.zeros((capacity, obs_dim), f32),
        terminated=jnp.zeros((capacity,), f32),
        truncated=jnp.zeros((capacity,), f32),
    )
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32),
                        size=jnp.zeros((), jnp.int32))


def nbytes(buffer: ReplayBuffer) -> int:
    """Bytes held by the buffer's arrays (what a checkpoint of it costs)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(buffer)))


def insert(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Write a batch [N, ...] at ``position`` (wrapping around); N <= capacity."""
    n = batch.reward.shape[0]
    cap = buffer.capacity
    if n > cap:
        raise ValueError(f"cannot insert {n} transitions into a buffer of capacity {cap}")
    for name, new, old in zip(Transition.__dataclass_fields__, jax.tree_util.tree_leaves(batch),
                              jax.tree_util.tree_leaves(buffer.data)):
        if tuple(new.shape[1:]) != tuple(old.shape[1:]):
            raise ValueError(f"transition field {name!r} has per-item shape {new.shape[1:]}, "
                             f"buffer expects {old.shape[1:]}")
    idx = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % cap
    data = jax.tree_util.tree_map(
        lambda store, new: store.at[idx].set(new.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(data=data, position=(buffer.position + n) % cap,
                        size=jnp.minimum(buffer.size + n, cap))


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """Uniformly sample ``batch_size`` transitions (with replacement) among the
    filled entries [0, size). Sampling an empty buffer returns entry 0 (zeros):
    callers must not update before the buffer holds data."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree_util.tree_map(lambda x: x[idx], buffer.data)

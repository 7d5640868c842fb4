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


def sample_n_step(buffer: ReplayBuffer, key: jax.Array, batch_size: int, n: int,
                  num_envs: int, gamma: float) -> tuple[Transition, jax.Array]:
    """Uniformly sample ``batch_size`` n-step transitions.

    The buffer must be filled by whole vectorised steps of ``num_envs``
    transitions with ``capacity % num_envs == 0``, so slot i always holds env
    ``i % num_envs`` and the same env's next step sits ``num_envs`` slots later.
    A start is drawn among the entries that already have n-1 successors; the
    returned transition has

        reward   = sum_{k<m} gamma^k r_{t+k}        (m <= n: stops after a done)
        next_obs, terminated = those of step t+m-1 (pre-reset obs: a time-limit
                               cut still bootstraps; a termination does not)

    and the second output is the bootstrap discount gamma^m [B]. With n=1 this
    is ``sample`` with discount gamma.
    """
    if buffer.capacity % num_envs:
        raise ValueError(f"n-step sampling needs capacity ({buffer.capacity}) divisible by "
                         f"num_envs ({num_envs})")
    span = (n - 1) * num_envs                        # successors a start needs
    count = jnp.maximum(buffer.size - span, 1)
    oldest = (buffer.position - buffer.size) % buffer.capacity
    start = (oldest + jax.random.randint(key, (batch_size,), 0, count)) % buffer.capacity
    steps = (start[:, None] + num_envs * jnp.arange(n)[None, :]) % buffer.capacity   # [B, n]
    reward = buffer.data.reward[steps]
    done = jnp.maximum(buffer.data.terminated[steps], buffer.data.truncated[steps])
    # alive[:, k] = 1 while no done happened strictly before step k.
    alive = jnp.cumprod(jnp.concatenate([jnp.ones_like(done[:, :1]), 1.0 - done[:, :-1]], 1), 1)
    discounts = gamma ** jnp.arange(n, dtype=jnp.float32)
    last = jnp.take_along_axis(steps, (jnp.sum(alive, 1, dtype=jnp.int32) - 1)[:, None], 1)[:, 0]
    data = buffer.data
    out = Transition(obs=data.obs[start], action=data.action[start],
                     reward=jnp.sum(reward * alive * discounts, 1),
                     next_obs=data.next_obs[last], terminated=data.terminated[last],
                     truncated=data.truncated[last])
    return out, gamma ** jnp.sum(alive, 1)

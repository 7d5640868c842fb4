"""Data-parallel training over all local devices and over several hosts: the mesh.

One 1-D device mesh with axis ``"data"`` spans every device of every process.
The environment batch (the leading ``num_envs`` axis of the env state, and so
of every rollout) is sharded over it; parameters, optimiser state, normaliser,
PRNG key and counters are replicated. The agent's own jitted iteration is
re-jitted with these shardings (sharded ``jit``, GSPMD): XLA partitions the
rollout across devices and inserts the collectives, so every mean over the
batch -- the losses, hence the gradients, and the normaliser's
sums/moments -- is a mean over the GLOBAL batch. The sharded program computes
the same function as the single-device one (same PRNG streams: JAX's
partitionable threefry is on), so losses agree to float rounding, and the
normaliser statistics are combined exactly, not averaged per device.

Replay buffer (actor-critic): sharded along its capacity axis when the
capacity divides by the device count (memory per device = C/D transitions;
1M Ant transitions are ~0.9 GB), replicated otherwise. Insertion and
sampling keep their global semantics (the same indices as on one device; XLA
partitions the scatter/gather and moves the N inserted / B sampled rows), so
results again match the single-device run. The agents do not constrain the
sampled batch's layout, so how the update on it is split is XLA's choice;
the env stepping is what is certainly split.

Multi-process (``jax.distributed``): ``--num_envs`` is the GLOBAL batch; each
process steps only the envs whose shards live on its devices (num_envs /
num_processes of them when every process has the same device count;
:func:`shard_env` makes this hold for host-callback physics too).
Everything replicated is identical on every process. Every process must call
``Checkpointer.save``/``restore`` (orbax writes each process's shards and lets
process 0 write metadata); only process 0 writes metrics, plots and
config files (:func:`jaxrl_lite.run.multihost.is_primary`). Start-up and failure
handling of the processes: :mod:`jaxrl_lite.run.multihost`.

Typical use, through the one object a trainer needs (runnable reference:
``tests/distributed_worker.py``)::

    multihost.initialize(addr, num_processes, process_id)   # multi-host only
    dp = sharding.DataParallel(num_devices, config.num_envs)
    env = dp.shard_env(envs.make(name, num_envs=config.num_envs))
    state = dp.init(lambda: agent.init(config, env, key))
    step = dp.compile(agent.make_train_iteration(config, env), state)
    state, metrics = step(state)
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl_lite.envs.core import Env

AXIS = "data"
ENV_STATE_FIELD = "env_state"
REPLAY_FIELD = "buffer"
P_AXIS = PartitionSpec(AXIS)
P_NONE = PartitionSpec()


def make_mesh(num_devices: int | None = None, num_envs: int | None = None) -> Mesh:
    """1-D mesh over axis ``"data"``: the first ``num_devices`` of ``jax.devices()``
    (default: all, over every process). With ``num_envs``, also check that the
    env batch divides evenly. One-line ValueError otherwise."""
    devices = jax.devices()
    if num_devices is None or num_devices == 0:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive integer (or 0/None = all "
                         f"{len(devices)}), got {num_devices!r}")
    if num_devices > len(devices):
        raise ValueError(f"num_devices={num_devices} but only {len(devices)} "
                         f"{devices[0].platform} device(s) exist "
                         f"({jax.process_count()} process(es))")
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError(f"num_devices={num_devices}: a multi-process run must use all "
                         f"{len(devices)} devices of its processes")
    mesh = Mesh(np.asarray(devices[:num_devices]), (AXIS,))
    if num_envs is not None:
        check_divisible(num_envs, mesh)
    return mesh


def check_divisible(num_envs: int, mesh: Mesh) -> None:
    n = mesh.size
    if num_envs % n:
        raise ValueError(f"num_envs={num_envs} is not divisible by the {n} devices of the "
                         f"data mesh; use a multiple of {n} (e.g. {max(n, num_envs // n * n)})")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def _top_field(path) -> str | None:
    if not path:
        return None
    k = path[0]
    return getattr(k, "name", None) or getattr(k, "key", None)


def state_shardings(state: Any, mesh: Mesh, num_envs: int, shard_replay: bool = True):
    """Per-leaf NamedShardings for a train state (arrays or ShapeDtypeStructs).

    * leaves of the ``env_state`` field whose leading axis is ``num_envs``:
      sharded over ``"data"``;
    * leaves of the ``buffer`` field (replay) whose leading axis is the
      capacity: sharded when ``shard_replay`` and the capacity divides by the
      device count, else replicated;
    * everything else (params, optimiser, normaliser, keys, counters): replicated.
    """
    check_divisible(num_envs, mesh)
    fields = {_top_field(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]}
    if ENV_STATE_FIELD not in fields:
        raise ValueError(f"the train state has no {ENV_STATE_FIELD!r} field to shard "
                         f"(top-level fields: {sorted(f for f in fields if f)})")
    rep, shard = replicated(mesh), batch_sharded(mesh)
    capacity = None
    if shard_replay and REPLAY_FIELD in fields:
        sizes = [leaf.shape[0] for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
                 if _top_field(p) == REPLAY_FIELD and len(leaf.shape) >= 1]
        if sizes and all(s == sizes[0] for s in sizes) and sizes[0] % mesh.size == 0:
            capacity = sizes[0]

    def rule(path, leaf):
        shape = tuple(leaf.shape)
        top = _top_field(path)
        if top == ENV_STATE_FIELD and shape[:1] == (num_envs,):
            return shard
        if top == REPLAY_FIELD and capacity is not None and shape[:1] == (capacity,):
            return shard
        return rep

    return jax.tree_util.tree_map_with_path(rule, state)


class ShardedEnv:
    """An env whose physics runs per device: ``_reset_batch``/``_step_batch`` of
    the wrapped env are ``shard_map``-ped over the ``"data"`` axis, so each
    device (each process) simulates only its own ``num_envs / devices`` envs.

    Everything else (validation, episode bookkeeping, truncation, auto-reset)
    is the wrapped env's own code, applied to the global batch, so results are
    those of the unwrapped env. Needed for host-callback backends (native
    MuJoCo): without it a callback in a sharded jit runs on device 0 with the
    whole batch gathered there (in a multi-process run: on process 0). For pure
    JAX backends (MJX) it pins the physics to per-device work (no collectives
    inside the solver loops). Other attributes are the wrapped env's.
    """

    def __init__(self, env, mesh: Mesh):
        check_divisible(env.num_envs, mesh)
        self.env = env
        self.mesh = mesh
        self.local_num_envs = env.num_envs // mesh.size
        # Bind the base class's public methods to this wrapper so that they call
        # our sharded _reset_batch/_step_batch.
        for name in ("reset", "step", "_initial_state", "_auto_reset", "_check_action"):
            setattr(self, name, getattr(Env, name).__get__(self))

    def __getattr__(self, name):  # config, observation_size, num_envs, reset_to, ...
        return getattr(self.__dict__["env"], name)

    def _sharded(self, fn, *args):
        n, local = self.env.num_envs, self.local_num_envs
        in_specs = jax.tree_util.tree_map(
            lambda x: P_AXIS if getattr(x, "ndim", 0) and x.shape[0] == n else P_NONE, args)
        local_args = jax.tree_util.tree_map(
            lambda x, sp: jax.ShapeDtypeStruct(((local,) + x.shape[1:]) if sp == P_AXIS
                                               else x.shape, x.dtype), args, in_specs)
        out_shapes = jax.eval_shape(fn, *local_args)
        out_specs = jax.tree_util.tree_map(
            lambda x: P_AXIS if x.ndim and x.shape[0] == local else P_NONE, out_shapes)
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)(*args)

    def _reset_batch(self, rng, needed=None):
        if needed is None:
            return self._sharded(self.env._reset_batch, rng)
        return self._sharded(self.env._reset_batch, rng, needed)

    def _step_batch(self, physics, action):
        return self._sharded(self.env._step_batch, physics, action)


def shard_env(env, mesh: Mesh):
    """``env`` itself on a one-device mesh, else a :class:`ShardedEnv` of it."""
    return env if mesh.size == 1 else ShardedEnv(env, mesh)


def sharded_init(init_fn: Callable[[], Any], mesh: Mesh, num_envs: int,
                 shard_replay: bool = True):
    """Build the train state directly in its sharded layout.

    ``init_fn()`` -> TrainState (e.g. ``lambda: agent.init(config, env, key)``)
    is jitted with ``out_shardings``, so each device (each process) computes
    only its own envs' resets. Returns ``(state, shardings)``.
    """
    shapes = jax.eval_shape(init_fn)
    shardings = state_shardings(shapes, mesh, num_envs, shard_replay)
    return jax.jit(init_fn, out_shardings=shardings)(), shardings


def abstract_state(shapes: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the shardings: the template for a sharded
    ``Checkpointer.restore`` (each process reads only its shards)."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)


def constrain(tree: Any, axis: int = 0) -> Any:
    """Ask XLA to split every array of ``tree`` along ``axis`` over ``"data"``
    when traced under :func:`data_parallel` (a mesh is set); identity otherwise.

    For agents: the update on a batch that is gathered/shuffled over the whole
    global batch (PPO's minibatches, the actor-critic's replay samples) is
    otherwise free to be computed redundantly on every device. Values are
    unchanged; only the layout (and so who computes what) is.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or AXIS not in mesh.axis_names:
        return tree

    devices = mesh.shape[AXIS]

    def one(x):
        if x.ndim <= axis or x.shape[axis] % devices:
            return x  # nothing to split evenly: leave the layout to XLA
        spec = [None] * x.ndim
        spec[axis] = AXIS
        return jax.lax.with_sharding_constraint(x, PartitionSpec(*spec))

    return jax.tree_util.tree_map(one, tree)


class _OnMesh:
    """A jitted function traced with ``mesh`` set (so :func:`constrain` applies)."""

    def __init__(self, fn, mesh: Mesh):
        self._fn, self.mesh = fn, mesh

    def __call__(self, *args):
        with jax.set_mesh(self.mesh):
            return self._fn(*args)

    def lower(self, *args):
        with jax.set_mesh(self.mesh):
            return self._fn.lower(*args)


def data_parallel(train_iteration: Callable, shardings: Any, donate: bool = False):
    """Re-jit an agent's ``fn(state) -> (state, metrics)`` with the state laid
    out by ``shardings`` (from :func:`sharded_init`) and replicated metrics.

    ``donate=True`` lets XLA reuse the input state's buffers (do not use the
    input after the call). The result has ``.lower(state).compile()``; it is
    traced with the mesh set, so :func:`constrain` inside the agent applies.
    """
    leaves = jax.tree_util.tree_leaves(shardings)
    if not leaves or not all(isinstance(s, NamedSharding) for s in leaves):
        raise TypeError("shardings must be the NamedSharding pytree from sharded_init/"
                        "state_shardings")
    mesh = leaves[0].mesh
    fn = jax.jit(train_iteration, in_shardings=(shardings,),
                 out_shardings=(shardings, replicated(mesh)),
                 donate_argnums=(0,) if donate else ())
    return _OnMesh(fn, mesh)


def to_host(tree: Any) -> Any:
    """Replicated (or fully addressable) arrays -> numpy, on every process."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                return np.asarray(multihost_utils.process_allgather(x, tiled=True))
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)
    return jax.tree_util.tree_map(get, tree)


def describe(mesh: Mesh) -> dict:
    """Mesh facts for logs/runtime.jsonl."""
    return {"num_devices": mesh.size, "num_processes": jax.process_count(),
            "process_index": jax.process_index(),
            "local_devices": len([d for d in mesh.devices.flat
                                  if d.process_index == jax.process_index()]),
            "platform": mesh.devices.flat[0].platform}


class DataParallel:
    """Everything a trainer needs from this module, bound to one mesh and one
    global env batch of ``num_envs`` (which must divide by the device count;
    one-line ValueError otherwise)."""

    def __init__(self, num_devices: int | None, num_envs: int):
        self.mesh = make_mesh(num_devices or None, num_envs=num_envs)
        self.num_envs = num_envs

    def shard_env(self, env):
        """The env with its physics split over the mesh (see :class:`ShardedEnv`)."""
        return shard_env(env, self.mesh)

    def init(self, init_fn: Callable[[], Any]) -> Any:
        """``init_fn()`` -> train state, built directly in its sharded layout."""
        return sharded_init(init_fn, self.mesh, self.num_envs)[0]

    def restore_template(self, shapes: Any) -> Any:
        """Shapes of a train state -> the sharded template a checkpoint restores into."""
        return abstract_state(shapes, state_shardings(shapes, self.mesh, self.num_envs))

    def compile(self, train_iteration: Callable, state: Any):
        """The agent's ``fn(state) -> (state, metrics)`` compiled for this layout,
        donating its input state (do not reuse the argument after a call)."""
        fn = data_parallel(train_iteration, state_shardings(state, self.mesh, self.num_envs),
                           donate=True)
        return fn.lower(state).compile()

    to_host = staticmethod(to_host)

    def describe(self) -> dict:
        return describe(self.mesh)

"""Data-parallel training over all local devices and over several hosts.

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
process 0 write metadata); only :func:`is_primary` writes metrics, plots and
config files.

Typical use (runnable reference: ``tests/distributed_worker.py``)::

    distributed.initialize(addr, num_processes, process_id)   # multi-host only
    mesh = distributed.make_mesh(num_devices, num_envs=config.num_envs)
    env = distributed.shard_env(envs.make(name, num_envs=config.num_envs), mesh)
    state, shardings = distributed.sharded_init(
        lambda: agent.init(config, env, key), mesh, config.num_envs)
    step = distributed.data_parallel(agent.make_train_iteration(config, env), shardings)
    state, metrics = step(state)
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
ENV_STATE_FIELD = "env_state"
REPLAY_FIELD = "buffer"
EXIT_TIMEOUT = 2          # exit status when processes do not all join in time
EXIT_PEER_LOST = 5        # exit status when another process of the run died
# Seconds without heartbeats after which the coordinator declares a process dead and
# every other process exits (jax's default, 100 s, keeps a survivor waiting long).
HEARTBEAT_TIMEOUT_S = 30
_reported = threading.Lock()


def exit_now(message: str, code: int) -> None:
    """Write ``message`` as the process's one error line (once, whichever thread
    gets here first) and exit at once, skipping atexit handlers: jax's shutdown
    barrier would wait for a process that is gone."""
    if _reported.acquire(blocking=False):
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
    os._exit(code)


def peer_lost_message(process_id: int, detail: str) -> str:
    first = (detail.strip().splitlines() or [""])[0][:200]
    return (f"distributed: error: process {process_id}: another process of the run stopped "
            f"({first}); the checkpoints on disk are intact: restart every process with the "
            f"same flags and --resume")
_XLA_TIMEOUT_MARGIN_S = 10  # XLA's own (aborting) timeout fires this much later

P_AXIS = PartitionSpec(AXIS)
P_NONE = PartitionSpec()

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")


class DistributedError(RuntimeError):
    """A coordinator that cannot be reached, or processes that disagree (one line)."""


# ----------------------------------------------------------------------------
# Multi-process start-up
# ----------------------------------------------------------------------------
def validate_process_args(coordinator_address: str | None, num_processes: int | None,
                          process_id: int | None) -> tuple[str, int, int]:
    """Check the three multi-host flags; one-line ValueError for the first bad one."""
    if not coordinator_address or not isinstance(coordinator_address, str):
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    m = _ADDRESS.match(coordinator_address)
    if m is None:
        raise ValueError(f"coordinator_address must be 'host:port' (e.g. 10.0.0.1:1234), got "
                         f"{coordinator_address!r}")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"coordinator_address port must be in 1..65535, got {port}")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) \
            or num_processes < 1:
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) \
            or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be an integer in [0, {num_processes}) "
                         f"(num_processes={num_processes}), got {process_id!r}")
    return coordinator_address, num_processes, process_id


def _split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Poll a TCP connect to the coordinator until it answers or ``timeout_s``
    passes; raise DistributedError (one line) then. Used by processes != 0 so an
    unreachable coordinator is a clear error, not a hang or an abort in C++."""
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            raise DistributedError(
                f"coordinator {address} unreachable after {timeout_s:g} s "
                f"({type(last).__name__}: {getattr(last, 'strerror', None) or last}); is "
                f"process 0 running and is the port open?")
        time.sleep(0.2)


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               timeout_s: float = 60.0, local_device_ids=None) -> None:
    """Validate the flags, then ``jax.distributed.initialize`` with a bounded wait.

    Must run before any JAX computation. ``num_processes == 1`` is a no-op
    (single-process run). Process 0 hosts the coordinator at
    ``coordinator_address``; others wait at most ``timeout_s`` seconds for it.
    Raises ValueError (bad flags) or DistributedError (unreachable coordinator,
    processes that do not form the announced group), each one line.
    """
    validate_process_args(coordinator_address, num_processes, process_id)
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if num_processes == 1:
        return
    if process_id != 0:
        wait_for_coordinator(coordinator_address, timeout_s)
    # Gloo gives CPU devices cross-process collectives (it is jax 0.10's default
    # on CPU; set explicitly so a changed default cannot silently break us).
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # When not every process joins in time, XLA's client aborts the process from
    # C++ (LOG(FATAL) + stack dump), which Python cannot catch. A watchdog that
    # fires first turns that into one line on stderr and exit status 2.
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout_s):
            sys.stderr.write(
                f"distributed: error: process {process_id}: not all {num_processes} processes "
                f"joined the coordinator at {coordinator_address} within {timeout_s:g} s "
                f"(check --num_processes/--process_id on every process and that all "
                f"were started)\n")
            sys.stderr.flush()
            os._exit(EXIT_TIMEOUT)

    threading.Thread(target=watchdog, name="jax-distributed-watchdog", daemon=True).start()
    try:
        with _on_peer_lost(lambda status: exit_now(
                peer_lost_message(process_id, str(status)), EXIT_PEER_LOST)):
            jax.distributed.initialize(
                coordinator_address=coordinator_address, num_processes=num_processes,
                process_id=process_id, local_device_ids=local_device_ids,
                initialization_timeout=int(math.ceil(timeout_s)) + _XLA_TIMEOUT_MARGIN_S,
                heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    except Exception as e:  # XLA raises plain RuntimeError/XlaRuntimeError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DistributedError(
            f"jax.distributed.initialize(coordinator={coordinator_address}, "
            f"num_processes={num_processes}, process_id={process_id}) failed: {first}") from None
    finally:
        joined.set()
    # Publish our view first so that every process reports a disagreement.
    check_consistent({"num_processes": num_processes,
                      "coordinator_address": coordinator_address}, timeout_s, name="init")
    if jax.process_count() != num_processes:
        raise DistributedError(f"process {process_id} was told num_processes={num_processes} "
                               f"but the group has {jax.process_count()} processes")


@contextlib.contextmanager
def _on_peer_lost(callback: Callable[[Any], None]):
    """Have the jax.distributed client call ``callback(status)`` when the
    coordination service reports a dead process, instead of XLA's default: a
    fatal log with a C++ stack dump. jax.distributed.initialize has no argument
    for it, so the client factory is wrapped while it runs; without the private
    hook (another jax version) the default behaviour stays."""
    from jax._src import distributed as _dist
    factory = getattr(getattr(_dist, "_jax", None), "get_distributed_runtime_client", None)
    if factory is None or "missed_heartbeat_callback" not in (factory.__doc__ or ""):
        yield
        return

    def with_callback(*args, **kwargs):
        kwargs.setdefault("missed_heartbeat_callback", callback)
        return factory(*args, **kwargs)

    _dist._jax.get_distributed_runtime_client = with_callback
    try:
        yield
    finally:
        _dist._jax.get_distributed_runtime_client = factory


def barrier(name: str) -> None:
    """Wait until every process reaches ``barrier(name)`` (no-op with one process);
    e.g. all processes check --out_dir before process 0 writes config.json."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def is_primary() -> bool:
    """True on the one process (index 0) that writes metrics, plots and configs."""
    return jax.process_index() == 0


def check_consistent(settings: dict, timeout_s: float = 60.0, name: str = "run") -> None:
    """Raise DistributedError (one line, the same on every process) unless every
    process passes the same ``settings`` (e.g. the run's flags). No-op with one
    process. ``name`` distinguishes several checks in one run.

    Each process publishes its settings as JSON in the coordinator's key-value
    store, reads every other process's, and names the first key that differs.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed as _dist
    client = _dist.global_state.client
    if client is None:
        raise DistributedError("check_consistent needs jax.distributed to be initialised")
    me = jax.process_index()
    prefix = f"jaxrl_lite/settings/{name}/"
    client.key_value_set(prefix + str(me), json.dumps(settings, sort_keys=True, default=str))
    every = {}
    for pid in range(jax.process_count()):
        try:
            every[pid] = json.loads(client.blocking_key_value_get(prefix + str(pid),
                                                                  int(timeout_s * 1000)))
        except Exception as e:
            raise DistributedError(f"process {pid} did not publish its settings within "
                                   f"{timeout_s:g} s ({type(e).__name__})") from None
    ref = every[0]
    for pid in range(1, len(every)):
        other = every[pid]
        for k in sorted(set(ref) | set(other)):
            if ref.get(k, "<absent>") != other.get(k, "<absent>"):
                raise DistributedError(
                    f"inconsistent flags between processes: --{k}={ref.get(k, '<absent>')!r} "
                    f"on process 0 but {other.get(k, '<absent>')!r} on process {pid}; start "
                    f"every process with the same flags")


# ----------------------------------------------------------------------------
# Mesh and shardings
# ----------------------------------------------------------------------------
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
        from jaxrl_lite.envs.core import Env
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

    def _reset_batch(self, rng):
        return self._sharded(self.env._reset_batch, rng)

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
                from jax.experimental import multihost_utils
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

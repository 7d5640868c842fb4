"""The ONE interface every algorithm implements, and its helpers.

``jaxrl_lite.run.trainer`` (the one training loop), ``jaxrl_lite.run.checkpoint``,
``jaxrl_lite.run.metrics`` and ``jaxrl_lite.run.evaluation`` talk to an algorithm only
through the module-level names below, so PPO (``agents/ppo``) and the
TD3-style actor-critic (``agents/actor_critic``) are interchangeable.

An agent module (``get("ppo")`` / ``get("ac")``) provides:

``NAME: str``
    ``"ppo"`` or ``"ac"``; saved as ``algo`` in checkpoint meta.

``Config``
    A ``@dataclasses.dataclass(frozen=True)`` whose defaults are sound for
    Ant-v5. EVERY field becomes an absl flag of the same name, so field types
    are limited to ``int``, ``float``, ``bool``, ``str`` and ``tuple[int, ...]``
    (flag syntax ``--hidden=64,64``). Put the help text in
    ``dataclasses.field(metadata={"help": "..."})``. Two fields are required in
    every Config, and the CLI documents them as public flags (WORKSPACE.md):
      ``num_envs: int``     parallel training environments;
      ``total_steps: int``  env steps to train for (schedules may use it).
    A field both algorithms define (e.g. ``learning_rate``) may have different
    defaults: its flag defaults to None, meaning "this algorithm's default".
    ``Config.validate(self) -> None`` raises a ONE-LINE ``ValueError`` naming
    the field, the bad value and what is expected (non-positive sizes, batch
    not divisible into minibatches, tau outside (0, 1], ...). It is called
    before any environment is built or anything is traced.

``init(config, env, key) -> TrainState``
    ``env`` is a ``jaxrl_lite.envs.Env`` batched over ``config.num_envs`` with
    ``auto_reset=True``; ``key`` a ``jax.random.PRNGKey``. ``TrainState`` is a
    pytree (flax ``struct.dataclass``) of arrays holding EVERYTHING a
    bit-exact resume needs: params, optimiser state, normaliser, env state,
    PRNG key, counters (``env_steps``, ``iteration`` as int32/int64 arrays).

``make_train_iteration(config, env) -> fn``
    ``fn(train_state) -> (train_state, metrics)`` already ``jax.jit``-compiled:
    one iteration of collect (``lax.scan`` over env steps) + update. ``metrics``
    is a flat ``dict[str, jax.Array]`` of float32 scalars. Required keys:
      ``"episode_return_mean"``  mean return of the most recently completed
                                 episode of each env that has completed one
                                 (0.0 while none has; never NaN by itself);
      ``"episode_length_mean"``  same for lengths;
      ``"episodes_completed"``   total episodes completed so far (all envs).
    Loss keys should start with ``"loss/"``. The trainer treats any
    non-finite metric as divergence: it stops the run with a clear message and
    keeps the last good checkpoint.

``env_steps_per_iteration(config) -> int``
    Env steps one call of the iteration consumes (e.g. num_envs * unroll).

``policy_parts(config, train_state) -> (PolicySpec, actor_params, NormalizerState)``
    The deployable actor: ``policy.deterministic_action(spec, actor_params,
    norm, obs) = tanh(actor_torso(normalize(obs)))`` must be the policy the
    agent evaluates and exports. ``spec.env`` is filled in by the trainer via
    ``dataclasses.replace`` when the agent does not know the env name, so the
    agent may put any placeholder there. Must be traceable (used inside jit).

Optional:
``check_env(config, env) -> None``
    Raise a one-line ``ValueError`` when the config does not fit the env (e.g. more
    observation features than the env has); the trainer calls it before writing
    anything.

``checkpoint_state(config, train_state) -> pytree`` and
``restore_state(config, template_train_state, restored_pytree) -> TrainState``
    What goes into ``checkpoints/<step>/state``; default: the whole
    TrainState both ways. Use them to drop e.g. the replay buffer (then resume
    is not bit-exact: say so in the Config help).

The trainer owns: ``--algo --env --backend --seed --out_dir --resume``,
checkpoint/eval/log intervals, ``config.json``, metrics and progress.
"""
from __future__ import annotations

import dataclasses
import typing

REQUIRED = ("NAME", "Config", "init", "make_train_iteration", "env_steps_per_iteration",
            "policy_parts")
FLAG_TYPES = (int, float, bool, str, tuple)


def flag_field(default, help_text: str):
    """A Config field with its flag's help text: ``x: int = flag_field(3, "...")``."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def check_module(module) -> None:
    """Raise ImportError when an agent module lacks part of the interface."""
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        raise ImportError(f"agent module {module.__name__} lacks {missing}")


def config_fields(config_cls) -> list[dataclasses.Field]:
    """The Config's dataclass fields, checked to be flag-compatible types."""
    hints = typing.get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        base = typing.get_origin(hints[f.name]) or hints[f.name]
        if base not in FLAG_TYPES:
            raise TypeError(f"{config_cls.__qualname__}.{f.name}: type {hints[f.name]} "
                            f"cannot be a flag (use int/float/bool/str/tuple[int, ...])")
        out.append(f)
    return out


def checkpoint_state(agent, config, train_state):
    fn = getattr(agent, "checkpoint_state", None)
    return train_state if fn is None else fn(config, train_state)


def restore_state(agent, config, template, restored):
    fn = getattr(agent, "restore_state", None)
    return restored if fn is None else fn(config, template, restored)

"""The agents, as an explicit table: ``--algo`` name -> agent module.

Every module implements :mod:`jaxrl_lite.agents.interface` (PPO in ``ppo/``,
the TD3-family actor-critic in ``actor_critic/``); the trainer, the CLI and the
benchmarks reach an agent only through :func:`get`.
"""
from __future__ import annotations

import types

from jaxrl_lite.agents import actor_critic, ppo
from jaxrl_lite.agents.interface import (check_module, checkpoint_state, config_fields,
                                         flag_field, restore_state)

AGENTS: dict[str, types.ModuleType] = {"ppo": ppo, "ac": actor_critic}
for _module in AGENTS.values():
    check_module(_module)


def names() -> tuple[str, ...]:
    return tuple(AGENTS)


def get(name: str) -> types.ModuleType:
    """The agent module for an ``--algo`` name; one-line ValueError otherwise."""
    if name not in AGENTS:
        raise ValueError(f"unknown algo {name!r}; valid algos: {', '.join(AGENTS)}")
    return AGENTS[name]


__all__ = ["AGENTS", "checkpoint_state", "config_fields", "flag_field", "get", "names",
           "restore_state"]

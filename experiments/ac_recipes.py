"""The actor-critic recipe flag files (``experiments/configs/ac_recipes/*.flags``):
where they are and the Config each one gives. No flags are defined here, so both
recipe benchmarks (and tests) can import it."""
from __future__ import annotations

import os

from absl import flags

from jaxrl_lite.agents.actor_critic.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE_DIR = os.path.join("experiments", "configs", "ac_recipes")


def recipe_path(name: str) -> str:
    """A recipe name (file in RECIPE_DIR) or a flag-file path -> the path; ValueError
    naming the known recipes when there is no such file."""
    path = name if name.endswith(".flags") else os.path.join(RECIPE_DIR, f"{name}.flags")
    if not os.path.isfile(path):
        known = sorted(f[:-6] for f in os.listdir(os.path.join(ROOT, RECIPE_DIR))
                       if f.endswith(".flags"))
        raise ValueError(f"recipe {name!r}: no flag file {path} (known: {', '.join(known)})")
    return path


def recipe_config(name: str) -> dict:
    """Actor-critic Config keyword arguments of a recipe: its flag file with nested
    ``--flagfile`` lines expanded; flags that are not Config fields (--env ...) are left
    out. Paths are relative to the working directory (run from the repository root)."""
    fields = Config.__dataclass_fields__
    kwargs = {}
    for arg in flags.FlagValues().read_flags_from_files([f"--flagfile={recipe_path(name)}"]):
        key, has_value, value = arg[2:].partition("=")
        if not has_value:        # --flag / --noflag
            value, key = (False, key[2:]) if key not in fields else (True, key)
        if key not in fields:
            continue
        default = fields[key].default
        if isinstance(default, bool):
            kwargs[key] = value if isinstance(value, bool) else value.lower() == "true"
        elif isinstance(default, tuple):
            kwargs[key] = tuple(int(x) for x in value.split(",") if x)
        else:
            kwargs[key] = type(default)(value)
    return kwargs


def recipe_env(name: str, default: str = "Ant-v5") -> str:
    """The recipe's ``--env`` (last one wins, as in absl), or ``default`` when it sets none
    (the recipe files are Ant's; the suite presets name their task)."""
    env = default
    for arg in flags.FlagValues().read_flags_from_files([f"--flagfile={recipe_path(name)}"]):
        if arg.startswith("--env="):
            env = arg.split("=", 1)[1]
    return env

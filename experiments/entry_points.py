"""Console commands of the installed package (``[project.scripts]`` in pyproject.toml).

  jaxrl-train     = python -m experiments.train    (needs the [train] extra)
  jaxrl-export    = python -m export.convert       (needs the [export] extra)
  jaxrl-evaluate  = python -m export.evaluate      (needs the [pi] extra; no JAX, no TF)

Each checks that its extra is installed before importing anything heavy, so a
Pi-only install answers ``jaxrl-train`` with one line naming the extra to
install (exit 2) instead of an ImportError traceback. Flags are the modules' own.
"""
from __future__ import annotations

import importlib.util
import sys

EXIT_MISSING_EXTRA = 2

# command -> (extra, the top-level modules that extra provides and the command imports)
REQUIREMENTS = {
    "jaxrl-train": ("train", ("jax", "flax", "optax", "orbax", "mujoco", "rich")),
    "jaxrl-export": ("export", ("jax", "flax", "tensorflow", "tf2onnx", "onnx")),
    "jaxrl-evaluate": ("pi", ("ai_edge_litert", "gymnasium", "mujoco", "psutil")),
}


def missing_modules(command: str) -> list[str]:
    """The modules ``command`` needs that cannot be imported here."""
    return [m for m in REQUIREMENTS[command][1] if importlib.util.find_spec(m) is None]


def require_extra(command: str) -> None:
    """Exit with one line (status 2) naming the extra when a module of it is missing."""
    missing = missing_modules(command)
    if missing:
        extra = REQUIREMENTS[command][0]
        print(f"error: {command} needs the [{extra}] extra ({', '.join(missing)} not "
              f"installed): pip install \"jaxrl_lite[{extra}]\" (from a clone: "
              f"pip install \".[{extra}]\")", file=sys.stderr)
        sys.exit(EXIT_MISSING_EXTRA)


def _show_module_help(cli) -> None:
    """Make ``--help`` print ``cli``'s docstring and flags, as ``python -m cli`` does.

    absl's help shows the docstring of ``__main__`` and the flags registered for
    ``sys.argv[0]``; under a console script those are pip's generated wrapper.
    """
    from absl import flags

    main = sys.modules["__main__"]
    if not main.__doc__:
        main.__doc__ = cli.__doc__
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module.split(".")[0] in ("experiments", "export", "jaxrl_lite"):
            for flag in defined:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def train() -> None:
    require_extra("jaxrl-train")
    from absl import app

    from experiments import train as cli
    _show_module_help(cli)
    app.run(cli.main, flags_parser=cli.parse_flags)


def export() -> None:
    require_extra("jaxrl-export")
    from export.convert import __main__ as cli
    # The CLI defines its flags inside run(), so --help shows its docstring and
    # --helpfull its flags.
    _show_module_help(cli)
    cli.run()


def evaluate() -> None:
    require_extra("jaxrl-evaluate")
    from absl import app

    from export import evaluate as cli
    _show_module_help(cli)
    app.run(cli.main)

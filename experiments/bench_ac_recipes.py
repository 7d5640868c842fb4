"""Actor-critic recipe study: several recipes, the same wall-clock budget and seeds.

    python -m experiments.bench_ac_recipes --recipes=td3,crossq,td3_no_contact \
        --seeds=0 --max_wall_s=600 --out_dir=runs/ac_recipes [--collect_only]

Each recipe is a flag file ``experiments/configs/ac_recipes/<name>.flags`` (or a path
to any flag file). For every recipe and seed, ``experiments.bench_learning`` trains
for ``--max_wall_s`` seconds of training and evaluates the deterministic policy on
gymnasium's own ``Ant-v5`` (``--episodes`` episodes); runs go one after another,
never side by side (two runs on the same cores would make both figures worthless).
A run whose ``bench_learning.json`` already exists is not repeated, so the study can
be resumed, and ``--collect_only`` only rebuilds the table.

Writes ``<out_dir>/recipes.json``, ``recipes.md`` (return mean +- std over episodes
and seeds, episodes that fell, env steps, updates/s, batch, sampled transitions per
collected transition, the in-training evaluation at each budget fraction) and
``recipes.png`` (in-training evaluation return against wall time).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

from experiments.ac_recipes import recipe_path

_RECIPES = flags.DEFINE_list("recipes", ["td3", "crossq", "td3_no_contact"],
                             "Recipe names (experiments/configs/ac_recipes/NAME.flags) or "
                             "flag-file paths.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds (the same for every recipe).")
_WALL = flags.DEFINE_float("max_wall_s", 600.0, "Training budget per run, seconds.")
_EPISODES = flags.DEFINE_integer("episodes", 10, "gymnasium evaluation episodes per run.")
_OUT = flags.DEFINE_string("out_dir", "runs/ac_recipes", "Where runs and the table go.")
_COLLECT = flags.DEFINE_boolean("collect_only", False, "Do not train: tabulate existing runs.")

MAX_EPISODE_STEPS = 1000


def run_one(name: str, seed: int, out_dir: str) -> None:
    cmd = [sys.executable, "-m", "experiments.bench_learning",
           f"--flagfile={recipe_path(name)}", f"--seed={seed}", f"--out_dir={out_dir}",
           f"--max_wall_s={_WALL.value}", f"--episodes={_EPISODES.value}", "--noprogress"]
    print(f"== {name} seed {seed}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode:
        raise RuntimeError(f"recipe {name} seed {seed} failed (exit {proc.returncode}); "
                           f"see {out_dir}")


def _curve(run_dir: str) -> list[tuple[float, int, float]]:
    """(wall_s, env step, in-training eval return) of each evaluated record."""
    out = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("eval/return_mean") is not None:
                out.append((r["wall_s"], r["step"], r["eval/return_mean"]))
    return out


def summarise(name: str, runs: dict[int, str]) -> dict:
    reports = {s: json.load(open(os.path.join(d, "bench_learning.json"))) for s, d in runs.items()}
    returns = np.concatenate([r["gymnasium"]["returns"] for r in reports.values()])
    lengths = np.concatenate([r["gymnasium"]["episode_lengths"] for r in reports.values()])
    mean = lambda k: float(np.mean([r[k] for r in reports.values()]))  # noqa: E731
    return {
        "recipe": name, "seeds": sorted(runs), "episodes": int(returns.size),
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "seed_means": {s: r["return_mean"] for s, r in reports.items()},
        "fell": int(np.sum(lengths < MAX_EPISODE_STEPS)),
        "env_steps": mean("env_steps"), "train_wall_s": mean("train_wall_s"),
        "updates": mean("updates"), "updates_per_s": mean("updates_per_s"),
        "batch_size": reports[min(reports)]["batch_size"],
        "sampled_per_collected": mean("sampled_per_collected"),
        "curves": {s: _curve(d) for s, d in runs.items()},
    }


def markdown(rows: list[dict]) -> str:
    head = ("| recipe | gymnasium return (mean ± std) | fell | env steps | updates | "
            "updates/s | batch | sampled / collected |\n|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(
            f"| {r['recipe']} | {r['return_mean']:.0f} ± {r['return_std']:.0f} "
            f"({r['episodes']} ep., seeds {seeds}) | {r['fell']}/{r['episodes']} | "
            f"{r['env_steps']:,.0f} | {r['updates']:,.0f} | {r['updates_per_s']:.0f} | "
            f"{r['batch_size']} | {r['sampled_per_collected']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        for seed, curve in r["curves"].items():
            if curve:
                wall, _, ret = zip(*curve)
                ax.plot(np.asarray(wall) / 60, ret, marker="o", ms=3,
                        label=f"{r['recipe']} (seed {seed})")
    ax.set_xlabel("training wall time, min")
    ax.set_ylabel("in-training eval return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    try:
        seeds = [int(s) for s in _SEEDS.value]
        for name in _RECIPES.value:
            recipe_path(name)
        if _WALL.value <= 0 or _EPISODES.value < 1:
            raise ValueError("--max_wall_s and --episodes must be positive")
    except ValueError as e:
        sys.exit(f"bench_ac_recipes: error: {e}")
    rows = []
    for name in _RECIPES.value:
        label = os.path.basename(name).removesuffix(".flags")
        runs = {}
        for seed in seeds:
            out = os.path.join(_OUT.value, label, f"seed{seed}")
            if not os.path.exists(os.path.join(out, "bench_learning.json")):
                if _COLLECT.value:
                    continue
                run_one(name, seed, out)
            runs[seed] = out
        if runs:
            rows.append(summarise(label, runs))
    if not rows:
        sys.exit("bench_ac_recipes: error: no finished runs to tabulate in "
                 f"{_OUT.value}")
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "recipes.json"), "w") as f:
        json.dump({"max_wall_s": _WALL.value, "rows": rows}, f, indent=1)
    table = markdown(rows)
    with open(os.path.join(_OUT.value, "recipes.md"), "w") as f:
        f.write(table)
    plot(rows, os.path.join(_OUT.value, "recipes.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)

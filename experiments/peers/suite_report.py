"""The learning table's report: ``<out>.md`` and ``<out>.png`` from the suite JSON
(``experiments.bench_suite``) and, when present, the Stable-Baselines3 side by side
(``experiments.peers.sb3_peer``). Pure rendering: reads dicts, writes two files.

Statistics. Per (task, agent, preset): the return is the mean over all evaluation
episodes of all training seeds ± their standard deviation; with two or more seeds the
95% confidence interval of the mean over seeds is a percentile bootstrap of the seed
means (10,000 resamples, fixed RNG). rliable (``rliable==1.2.0``) was tried for it: it
installs but does not import with pandas 3 (its dependency arch 7.2 fails), and with 3
seeds its stratified bootstrap is this same resampling, so a plain NumPy bootstrap is
used. Units: returns in the task's reward units, wall time in seconds of training
(compile excluded) unless a column says minutes, env steps/s including learning.
"""
from __future__ import annotations

import os

import matplotlib
import numpy as np

from experiments import suite_references as refs
from experiments.peers import peer_report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AGENT_LABELS = {"ppo": "PPO", "ac": "actor-critic"}
COLORS = {"ppo": "C0", "ac": "C1", "sb3 ppo": "C2", "sb3 td3": "C3", "sb3 sac": "C4"}


def bootstrap_ci(values, reps: int = 10_000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of the mean of ``values``; None for < 2 values."""
    v = np.asarray(values, float)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(reps, v.size))].mean(axis=1)
    return (float(np.quantile(means, (1 - level) / 2)),
            float(np.quantile(means, (1 + level) / 2)))


def _task_order(task: str):
    order = refs.SUITE_TASKS
    return (order.index(task) if task in order else len(order), task)


def groups(entries: dict) -> list[dict]:
    """Entries grouped by (task, agent, preset), seeds pooled, in suite order."""
    by = {}
    for e in entries.values():
        by.setdefault((e["task"], e["agent"], e["preset"]), []).append(e)
    out = []
    agent_order = {"ppo": 0, "ac": 1}
    for (task, agent, preset), es in sorted(by.items(), key=lambda kv: (
            _task_order(kv[0][0]), agent_order.get(kv[0][1], 2), kv[0][1], kv[0][2])):
        es = sorted(es, key=lambda e: e["seed"])
        returns = np.concatenate([e["returns"] for e in es])
        seed_means = [e["return_mean"] for e in es]
        falls, episodes = sum(e["falls"] for e in es), sum(e["episodes"] for e in es)
        mean = float(np.mean(seed_means))
        out.append({
            "task": task, "agent": agent, "preset": preset, "entries": es,
            "seeds": [e["seed"] for e in es], "return_mean": mean,
            "return_std": float(returns.std()), "ci": bootstrap_ci(seed_means),
            "falls": falls, "episodes": episodes,
            "env_steps": float(np.mean([e["env_steps"] for e in es])),
            "train_wall_s": float(np.mean([e["train_wall_s"] for e in es])),
            "budget_s": float(np.mean([e["budget_s"] for e in es])),
            "env_steps_per_s": float(np.mean([e["env_steps_per_s"] for e in es])),
            "goal": refs.check_goals(task, agent, mean, falls, episodes)})
    return out


def _ref_text(task: str) -> str:
    r = refs.REFERENCES.get(task)
    if r is None:
        return "none"
    return f"{_num(r['value'])} ({r['algo']}, {r['env']}, {r['n_timesteps'] / 1e6:g}M)"


def _num(v: float) -> str:
    """Returns as the sources print them: 2 decimals below 100, 1 above."""
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.1f}"


def _pm(mean: float, std: float) -> str:
    """mean ± std with the mean's precision."""
    d = 2 if abs(mean) < 100 else 1
    return f"{mean:,.{d}f} ± {std:,.{d}f}"


def _wall(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _steps(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def main_table(gs: list[dict]) -> list[str]:
    lines = ["| task | agent | preset | seeds | return (mean ± std) | 95% CI of the seed "
             "mean | falls | env steps | wall (budget) | env steps/s | reference | goal |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---|---|"]
    for g in gs:
        ci = "—" if g["ci"] is None else f"[{_num(g['ci'][0])}, {_num(g['ci'][1])}]"
        lines.append(
            f"| {g['task']} | {g['agent']} | {g['preset']} | {','.join(map(str, g['seeds']))} | "
            f"{_pm(g['return_mean'], g['return_std'])} | {ci} | "
            f"{g['falls']}/{g['episodes']} | {_steps(g['env_steps'])} | "
            f"{_wall(g['train_wall_s'])} ({_wall(g['budget_s'])}) | "
            f"{g['env_steps_per_s']:,.0f} | {_ref_text(g['task'])} | {g['goal']['text']} |")
    return lines


def seed_table(gs: list[dict]) -> list[str]:
    lines = ["| task | agent | preset | training seed | return (mean ± std) | falls | "
             "env steps | wall s | env steps/s | exit | starts | best/ policy: return, "
             "falls (env step) | preset SHA-1 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
    for g in gs:
        for e in g["entries"]:
            b = e.get("best")
            best = "—" if b is None else (f"{_pm(b['return_mean'], b['return_std'])}, "
                                          f"{b['falls']}/{e['episodes']} "
                                          f"({_steps(b['env_steps'])})")
            lines.append(
                f"| {e['task']} | {e['agent']} | {e['preset']} | {e['seed']} | "
                f"{_pm(e['return_mean'], e['return_std'])} | {e['falls']}/"
                f"{e['episodes']} | {e['env_steps']:,} | {e['train_wall_s']:.0f} | "
                f"{e['env_steps_per_s']:,.0f} | {e['exit']} | {e['starts']} | {best} | "
                f"{e['preset_sha'][:8]} |")
    return lines


def reference_table() -> list[str]:
    lines = ["| task | reference | algorithm | env steps | env version | others in the "
             "same source | source |", "|---|---:|---|---:|---|---|---|"]
    sources = []
    for task, r in refs.REFERENCES.items():
        if r["source"] not in sources:
            sources.append(r["source"])
        others = ", ".join(f"{a} {_num(v)}" for a, v in r["others"].items()) or "—"
        lines.append(f"| {task} | {_pm(r['value'], r['std'])} | {r['algo']} | "
                     f"{r['n_timesteps'] / 1e6:g} M | {r['env']} | {others} | "
                     f"[{sources.index(r['source']) + 1}] |")
    lines.append("")
    metric = {refs.ZOO: refs.ZOO_METRIC, refs.TIANSHOU: refs.TIANSHOU_METRIC,
              refs.CLEANRL: refs.CLEANRL_METRIC}
    lines += [f"- [{i + 1}] {s}. Metric: {metric[s]}." for i, s in enumerate(sources)]
    return lines


def markdown(table: dict, peers: dict | None, out: str) -> str:
    gs = groups(table.get("entries", {}))
    lines = ["# Learning table: gymnasium MuJoCo v5 suite", "",
             "Written by `python -m experiments.bench_suite` (and "
             "`python -m experiments.peers.sb3_peer` for the side by side); every figure "
             "below is read from the JSON next to this file.",
             "Each entry: the preset trained for its wall budget (the trainer stops at the "
             "first iteration past it; entries trained before commit 4c1a168 stopped at "
             "the first log record past it, up to 74 s later: see the wall column), then gymnasium's own task, deterministic policy, "
             "episodes seeded from 1000 upward (held out from training seeds); falls = "
             "episodes that terminated before the TimeLimit. Return = mean over seeds of the "
             "per-seed mean, ± the std over all episodes.", ""]
    lines += main_table(gs) if gs else ["No entries yet."]
    if gs:
        lines += ["", f"Curves: `{os.path.basename(out)}.png` (in-training deterministic "
                  "evaluation on our env against training wall time, or training episodes "
                  "where a run has fewer than two evaluations; thin: seeds, thick: their "
                  "mean, band: min-max; markers: the gymnasium result ± std; dotted: the "
                  "reference)."]
    lines += [""]
    if gs:
        lines += ["## Every entry (training seed)", "",
                  "The table above evaluates each run's final policy. `best/ policy`: the "
                  "same evaluation of the policy whose in-training evaluation was the run's "
                  "best (the trainer's `--keep_best`; runs trained before it have none: —).",
                  ""] + seed_table(gs) + [""]
    lines += ["## References", ""] + reference_table() + [""]
    if peers:
        lines += peer_report.markdown(peers)
    return "\n".join(lines) + "\n"


def _mean_band(curves: list[np.ndarray]):
    """Common wall grid (to the shortest run), mean, min, max of the seeds' curves."""
    end = min(c[-1, 0] for c in curves)
    grid = np.linspace(min(c[0, 0] for c in curves), end, 60)
    ys = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def _curve(e: dict) -> np.ndarray:
    """(wall s, return) of an entry: its in-training evaluations, or its training
    episodes when there are fewer than two evaluations (short runs, SB3)."""
    pts = [(w, ev) for w, _, ev, _ in e.get("curve", []) if ev is not None]
    if len(pts) < 2:
        pts = [(w, tr) for w, _, _, tr in e.get("curve", []) if tr is not None]
    return np.asarray(pts, float).reshape(-1, 2)


def _panel(ax, task: str, gs: list[dict], peer_groups: list[dict]) -> None:
    for g in gs + peer_groups:
        label = g.get("label") or f"{AGENT_LABELS.get(g['agent'], g['agent'])} ({g['preset']})"
        color = COLORS.get(g.get("color_key", g["agent"]), None)
        curves = [c for c in (_curve(e) for e in g["entries"]) if len(c) > 1]
        style = "--" if g.get("peer") else "-"
        for c in curves:
            ax.plot(c[:, 0] / 60, c[:, 1], style, color=color, alpha=0.3, lw=0.8)
        if curves:
            x, m, lo, hi = _mean_band(curves)
            ax.plot(x / 60, m, style, color=color, lw=2,
                    label=f"{label} (seeds {','.join(map(str, g['seeds']))})")
            ax.fill_between(x / 60, lo, hi, color=color, alpha=0.15)
        ax.errorbar(g["train_wall_s"] / 60, g["return_mean"], yerr=g["return_std"], fmt="o",
                    color=color, ms=5, capsize=3)
    r = refs.REFERENCES.get(task)
    if r is not None:
        ax.axhline(r["value"], color="0.4", ls=":", lw=1.2,
                   label=f"reference {r['algo']} {r['env']} {r['n_timesteps'] / 1e6:g}M")
    ax.set_title(task, fontsize=10)
    ax.set_xlabel("training wall time, min")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")


def figure(table: dict, peers: dict | None, path: str) -> None:
    """One panel per task: both agents, seeds, mean and band, reference line."""
    gs = groups(table.get("entries", {}))
    pgs = peer_report.figure_groups(peers) if peers else []
    tasks = sorted({g["task"] for g in gs + pgs}, key=_task_order)
    if not tasks:
        return
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        _panel(ax, task, [g for g in gs if g["task"] == task],
               [g for g in pgs if g["task"] == task])
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("Return against training wall time" + ("\n(dashed: Stable-Baselines3, "
                                                         "training episodes)" if pgs else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def write(table: dict, peers: dict | None, out: str) -> None:
    """Write ``<out>.md`` and ``<out>.png``."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".md.tmp", "w") as f:
        f.write(markdown(table, peers, out))
    os.replace(out + ".md.tmp", out + ".md")
    figure(table, peers, out + ".png")

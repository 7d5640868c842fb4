"""The side by side's Markdown section and figure curves, from ``<out>_peers.json``
(written by ``experiments.peers.sb3_peer``). Pure rendering; no torch.

Ratios are ours / SB3: of the gymnasium return (mean over seeds; "n/a" when SB3's is
not positive) and of env steps per second of training wall time (learning included).
"""
from __future__ import annotations

import numpy as np


def _side(peers: dict, side: str, agent: str) -> list[dict]:
    return sorted((e for e in peers.get("entries", {}).values()
                   if e["side"] == side and e["agent"] == agent), key=lambda e: e["seed"])


def _summary(es: list[dict]) -> dict | None:
    if not es:
        return None
    returns = np.concatenate([e["returns"] for e in es])
    return {"return_mean": float(np.mean([e["return_mean"] for e in es])),
            "return_std": float(returns.std()), "falls": sum(e["falls"] for e in es),
            "episodes": sum(e["episodes"] for e in es), "seeds": [e["seed"] for e in es],
            "env_steps": float(np.mean([e["env_steps"] for e in es])),
            "train_wall_s": float(np.mean([e["train_wall_s"] for e in es])),
            "env_steps_per_s": float(np.mean([e["env_steps_per_s"] for e in es])),
            "budget_s": float(np.mean([e["budget_s"] for e in es]))}


def _cell(s: dict | None) -> str:
    if s is None:
        return "not run"
    return f"{s['return_mean']:,.1f} ± {s['return_std']:,.1f} ({s['falls']}/{s['episodes']} falls)"


def _steps(s: dict | None) -> str:
    return "—" if s is None else f"{s['env_steps']:,.0f} ({s['env_steps_per_s']:,.0f}/s)"


def markdown(peers: dict) -> list[str]:
    task = peers.get("task", "?")
    lines = [f"## Side by side with Stable-Baselines3 on {task}", "",
             "Written by `python -m experiments.peers.sb3_peer`: ours (the suite preset, "
             "trained by `experiments.train`) and SB3 with rl-baselines3-zoo's HalfCheetah "
             "hyperparameters, on this machine in the same invocation, one run after "
             "another (never side by side), the same wall budget per pair, then the same "
             "gymnasium evaluation (deterministic policy, the same held-out episode seeds, "
             "falls = terminated episodes). Ratios are ours / SB3.", "",
             "| ours | SB3 | seeds | budget | ours: return (falls) | SB3: return (falls) | "
             "return ratio | ours: env steps (per s) | SB3: env steps (per s) | steps/s "
             "ratio |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ours_agent, sb3_agent in peers.get("pairs", []):
        o = _summary(_side(peers, "ours", ours_agent))
        t = _summary(_side(peers, "sb3", sb3_agent))
        ratio = speed = "—"
        if o and t:
            ratio = (f"{o['return_mean'] / t['return_mean']:.2f}" if t["return_mean"] > 0
                     else "n/a (SB3 ≤ 0)")
            speed = f"{o['env_steps_per_s'] / max(t['env_steps_per_s'], 1e-9):.1f}"
        seeds = sorted(set((o or {}).get("seeds", [])) | set((t or {}).get("seeds", [])))
        budget = (o or t or {}).get("budget_s", 0)
        budget = f"{budget / 60:.1f} min" if budget >= 60 else f"{budget:.0f} s"
        lines.append(f"| {ours_agent} ({peers.get('preset', 'cpu')}) | {sb3_agent.upper()} "
                     f"(zoo) | {','.join(map(str, seeds))} | {budget} | {_cell(o)} | "
                     f"{_cell(t)} | {ratio} | {_steps(o)} | {_steps(t)} | {speed} |")
    sb3 = [e for e in peers.get("entries", {}).values() if e["side"] == "sb3"]
    if sb3:
        v = sb3[0]["versions"]
        lines += ["", f"SB3 {v['stable_baselines3']}, torch {v['torch']} "
                  f"({sb3[0]['torch_threads']} threads); hyperparameters: "
                  + "; ".join(sorted({f"{e['agent'].upper()}: {e['hyperparameters']}"
                                      for e in sb3})) + "."]
    return lines + [""]


def figure_groups(peers: dict) -> list[dict]:
    """SB3's runs as groups for the suite figure (dashed curves in their task's panel)."""
    out = []
    for agent in sorted({e["agent"] for e in peers.get("entries", {}).values()
                         if e["side"] == "sb3"}):
        es = _side(peers, "sb3", agent)
        s = _summary(es)
        out.append({"task": es[0]["task"], "agent": f"sb3 {agent}", "preset": "zoo",
                    "entries": es, "seeds": s["seeds"], "train_wall_s": s["train_wall_s"],
                    "return_mean": s["return_mean"], "return_std": s["return_std"],
                    "label": f"SB3 {agent.upper()} (zoo)", "color_key": f"sb3 {agent}",
                    "peer": True})
    return out

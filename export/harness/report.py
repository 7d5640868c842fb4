"""Side-by-side outputs of the harness: Markdown table and PNG chart.

Rows are per-variant report dicts (see loop.measure); a row with an
"error" or "skipped" key is shown with that note instead of figures. Rows with
a ``vs_fp32`` entry (fidelity.attach) get the paired return ratio with
its bootstrap 95 % interval, what that interval says in words (a difference whose
interval holds 1 is "within noise"), and the bytes / p50-latency ratios against fp32.
"""
from __future__ import annotations

import math

import numpy as np

_COLUMNS = [
    ("Variant", "name", "{}"),
    ("Runtime", "runtime", "{}"),
    ("Model bytes", "model_bytes", "{:,}"),
    ("Return", None, None),  # mean ± std
    ("Falls", None, None),  # terminated episodes / episodes
    ("Return vs fp32 [95% CI]", None, None),
    ("vs fp32, in words", None, None),
    ("Bytes vs fp32", None, None),
    ("Arena B", "arena_bytes", "{:,}"),
    ("Ep. len", "episode_length_mean", "{:.0f}"),
    ("p50 µs", "latency_us_p50", "{:.1f}"),
    ("p50 vs fp32", None, None),
    ("p99 µs", "latency_us_p99", "{:.1f}"),
    ("max µs", "latency_us_max", "{:.0f}"),
    ("env step µs", "env_step_us_mean", "{:.0f}"),
    ("overhead µs (%)", None, None),
    ("peak RSS MB", "rss_mb_peak", "{:.1f}"),
    ("model RSS MB", "rss_mb_model", "{:.1f}"),
    ("CPU %", "cpu_percent_mean", "{:.0f}"),
    ("Non-finite obs/act", None, None),
]


def _fmt(fmt: str, value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _cell(row: dict, header: str, key, fmt) -> str:
    if header == "Return":
        if row.get("return_mean") is None:
            return "–"
        return f"{row['return_mean']:.1f} ± {row.get('return_std', 0.0):.1f}"
    vs = row.get("vs_fp32") or {}
    if header == "Falls":
        return f"{row['falls']}/{row['episodes']}" if "falls" in row else "–"
    if header.startswith("Return vs"):
        if vs.get("return_ratio") is None:
            return "–"
        lo, hi = vs["return_ratio_ci95"]
        return f"{vs['return_ratio']:.3f} [{lo:.3f}, {hi:.3f}]"
    if header.endswith("in words"):
        if row.get("name") == vs.get("reference"):
            return "reference"
        return vs.get("return_verdict") or "–"
    if header in ("Bytes vs fp32", "p50 vs fp32"):
        ratio = vs.get("bytes_ratio" if header.startswith("Bytes") else "p50_ratio")
        return "–" if ratio is None else f"{ratio:.2f}"
    if header.startswith("Non-finite"):
        if "nonfinite_obs_steps_total" not in row:
            return "–"
        return f"{row['nonfinite_obs_steps_total']}/{row['nonfinite_action_steps_total']}"
    if header.startswith("overhead"):
        if row.get("harness_overhead_us_per_step") is None:
            return "–"
        return (f"{row['harness_overhead_us_per_step']:.1f} "
                f"({100 * row['harness_overhead_fraction']:.1f}%)")
    if key == "cpu_percent_mean" and row.get(key) is None and "steps_total" in row:
        return "n/a"  # measured run, but this OS gives no CPU time (see the notes)
    return _fmt(fmt, row.get(key))


def markdown_table(rows: list[dict], machine: dict | None = None) -> str:
    """A Markdown table, one row per variant, plus notes for skipped/failed rows."""
    head = "| " + " | ".join(h for h, _, _ in _COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in _COLUMNS) + "|"
    lines = [head, sep]
    notes = []
    for row in rows:
        if "skipped" in row:
            notes.append(f"- {row['name']}: skipped ({row['skipped']})")
            continue
        cells = [_cell(row, h, k, f) for h, k, f in _COLUMNS]
        if "error" in row:
            cells[0] += " (failed)"
            notes.append(f"- {row['name']}: {row['error']}")
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines) + "\n"
    compared = [r["vs_fp32"] for r in rows if r.get("vs_fp32")]
    if compared:
        n = compared[0]["episodes"]
        out += (f"\nReturn vs fp32: the paired ratio over the same {n} episode(s) (same seeds, "
                f"same start states) with its bootstrap 95% interval. \"within noise\": 1.00 "
                f"lies inside the interval, so these episodes cannot tell the row from fp32; a "
                f"single fall (episode cut short) moves a small evaluation's ratio far. Only "
                f"\"lower/higher than fp32\" is a difference this evaluation shows.\n")
    if machine:
        prof = machine.get("profile")
        desc = (f"\nMachine: {machine.get('cpu_model')}, {machine.get('cpu_count_logical')} "
                f"logical CPUs, {machine.get('memory_total_mb') or 'n/a'} MB RAM, Python "
                f"{machine.get('python')}, LiteRT {machine.get('litert_version')}; "
                f"CPUs {machine.get('cpus')}, {machine.get('threads')} thread(s)")
        if prof:
            desc += f"; profile {prof['name']} ({prof['board']})"
        if machine.get("memory_budget_mb"):
            desc += f"; memory budget {machine['memory_budget_mb']:.0f} MB"
        out += desc + ".\n"
        for note in machine.get("notes", []):
            out += f"\nNote: {note}\n"
    if notes:
        out += "\n" + "\n".join(notes) + "\n"
    return out


def write_chart(rows: list[dict], path: str) -> str | None:
    """Bar charts per variant: return, p50 latency, peak RSS, and model bytes with the
    TFLM tensor arena beside them (where measured); None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if r.get("return_mean") is not None]
    if not rows:
        return None
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(min(22.0, 5.0 + 1.6 * len(rows)), 4.5))
    panels = [
        ("Return (mean ± std)", [r["return_mean"] for r in rows],
         [r.get("return_std") or 0.0 for r in rows], False),
        ("Inference p50 (µs, log)", [r.get("latency_us_p50") or 0.0 for r in rows], None, True),
        ("Peak RSS (MB)", [r.get("rss_mb_peak") or 0.0 for r in rows], None, False),
    ]
    colors = ["C0" if r.get("runtime") in ("litert", "tflm") else "C3" for r in rows]
    for ax, (title, vals, err, log) in zip(axes[:3], panels):
        ax.bar(range(len(rows)), vals, yerr=err, color=colors, capsize=3)
        ax.set_xticks(range(len(rows)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[3]
    x = np.arange(len(rows))
    kb = [(r.get("model_bytes") or 0) / 1024 for r in rows]
    arena = [(r.get("arena_bytes") or 0) / 1024 for r in rows]
    ax.bar(x - 0.2, kb, width=0.4, color=colors, label="model")
    ax.bar(x + 0.2, arena, width=0.4, color="C2", label="TFLM arena")
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    ax.set_title("Model bytes / arena (KiB, log)", fontsize=10)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    env = next((r["env"] for r in rows if r.get("env")), "")
    fig.suptitle(f"{env}: exported actor variants (blue: LiteRT/TFLM, red: full TF/JAX)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

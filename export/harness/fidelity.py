"""Return-level fidelity of an exported variant against the fp32 reference.

Every variant runs the same episode seeds (``seed + i``), so episode ``i`` of two
variants starts from the same state: the comparison is paired. Per variant:

  return_ratio          mean(variant returns) / mean(reference returns)
  return_ratio_ci95     percentile bootstrap over episodes, resampling the PAIRS
                        (the same episode indices for both), 95 % interval
  return_diff_mean/ci95 mean paired difference variant - reference, same bootstrap
  falls / fall_fraction episodes that terminated (the ant flipped or left the
                        healthy z range) before max_episode_steps
  worse_episodes        paired episodes where the variant scored < 95 % of the
                        reference's return on that seed
  return_verdict        the ratio in words: "within noise" when 1 lies inside the
                        interval (these episodes cannot tell the variant from the
                        reference), else "lower than fp32" / "higher than fp32"

Returns of a policy that sometimes falls are bimodal (a fall costs most of an
episode's return), so the interval is what tells a real loss from luck: over a few
episodes a single fall moves the ratio far while the interval still holds 1. Numpy only.
"""
from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
WORSE_THRESHOLD = 0.95


def falls(report: dict) -> list[bool]:
    """Per episode: terminated before the time limit (the report's ``terminated`` list,
    else episode length < max_episode_steps)."""
    if "terminated" in report:
        return [bool(t) for t in report["terminated"]]
    limit = report.get("max_episode_steps") or 1000
    return [int(n) < int(limit) for n in report.get("episode_lengths", [])]


def paired_fidelity(reference: dict, variant: dict, *, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0) -> dict:
    """Paired comparison of two harness reports over their common seeds.

    ``reference`` and ``variant`` need ``seeds`` and ``returns`` (and ``terminated`` or
    ``episode_lengths`` for falls). Raises ValueError when they share no seed.
    """
    ref = dict(zip(reference["seeds"], zip(reference["returns"], falls(reference))))
    var = dict(zip(variant["seeds"], zip(variant["returns"], falls(variant))))
    common = [s for s in reference["seeds"] if s in var]
    if not common:
        raise ValueError(f"{variant.get('name')} and {reference.get('name')} share no seed")
    r = np.array([ref[s][0] for s in common], np.float64)
    v = np.array([var[s][0] for s in common], np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(samples, len(common)))
    ref_means = r[idx].mean(1)
    ratios = np.divide(v[idx].mean(1), ref_means, out=np.full(samples, np.nan),
                       where=ref_means != 0)
    diffs = (v - r)[idx].mean(1)
    ratio = float(v.mean() / r.mean()) if r.mean() != 0 else float("nan")
    ci = [float(np.nanpercentile(ratios, 2.5)), float(np.nanpercentile(ratios, 97.5))]
    worse = [int(s) for s, a, b in zip(common, r, v)
             if b < WORSE_THRESHOLD * a - 1e-9 * abs(a)]
    return {
        "reference": reference.get("name"),
        "episodes": len(common),
        "return_ratio": ratio,
        "return_ratio_ci95": ci,
        "return_verdict": verdict(ci, reference.get("name") or "the reference"),
        "return_diff_mean": float((v - r).mean()),
        "return_diff_ci95": [float(np.percentile(diffs, 2.5)),
                             float(np.percentile(diffs, 97.5))],
        "falls": int(sum(var[s][1] for s in common)),
        "reference_falls": int(sum(ref[s][1] for s in common)),
        "fall_fraction": float(np.mean([var[s][1] for s in common])),
        "worse_episodes": worse,
        "per_episode": [{"seed": int(s), "reference": float(a), "variant": float(b)}
                        for s, a, b in zip(common, r, v)],
        "bootstrap": {"samples": samples, "seed": seed, "method": "percentile, paired"},
    }


def verdict(ci95: list[float], reference: str = "fp32") -> str:
    """The return ratio's 95 % interval in words: "within noise" when it holds 1 (no
    difference shown), else "lower than <reference>" / "higher than <reference>"."""
    lo, hi = ci95
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    if lo <= 1.0 <= hi:
        return "within noise"
    return f"lower than {reference}" if hi < 1.0 else f"higher than {reference}"


def attach(rows: list[dict], reference_name: str = "fp32") -> dict | None:
    """Add ``vs_<reference>`` (paired fidelity, bytes and p50 ratios) to every measured
    row in place; returns the reference row, or None when it was not measured."""
    ref = next((r for r in rows if r.get("name") == reference_name
                and r.get("returns") and "error" not in r), None)
    if ref is None:
        return None
    for row in rows:
        if not row.get("returns") or "error" in row:
            continue
        fid = paired_fidelity(ref, row)
        for key, num in (("model_bytes", "bytes_ratio"), ("latency_us_p50", "p50_ratio"),
                         ("arena_bytes", "arena_ratio")):
            a, b = row.get(key), ref.get(key)
            fid[num] = float(a) / float(b) if a and b else None
        row[f"vs_{reference_name}"] = fid
    return ref

"""Host side of tools/mcu_emulation.sh: prepare the runs, then compare QEMU's actions.

    python -m export.convert.mcu.emulate prepare --out_dir=D --model=int8=PATH.tflite ...
        [--obs=OBS.npy | --record=N] [--seed=0]
    python -m export.convert.mcu.emulate compare --out_dir=D --board=an386
    python -m export.convert.mcu.emulate runtimes --out_dir=D

``prepare`` writes D/obs.bin (float32 [N, obs_dim], raw), and per model
D/<name>/src/ (the generated C), D/<name>/tflm.npy (TFLite Micro's actions,
float32 [N, act_dim]) and D/<name>/host.npy (the same C built with the host's
compiler). ``compare`` reads D/<name>/qemu.txt (the board's printed actions:
"a <index> <hex float bits>..." lines) and D/<name>/size.txt (``arm-none-eabi-size``
of the ELF) and writes D/summary.json and D/summary.md. ``runtimes`` runs each model
in LiteRT's three kernel sets too (XNNPACK default, builtin, reference) and writes
D/runtimes.{json,md}: whether each ran every op, and how far it is from TFLM in
output steps. Errors are one line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ARENA = 64 * 1024


class EmulationError(RuntimeError):
    """A step of the emulation could not be done; the message says which and why."""


def _observations(obs_path: str | None, record: int, seed: int) -> tuple[np.ndarray, str]:
    if obs_path:
        if not os.path.isfile(obs_path):
            raise EmulationError(f"--obs: {obs_path} not found")
        obs = np.load(obs_path)
        if obs.ndim != 2 or not np.issubdtype(obs.dtype, np.floating):
            raise EmulationError(f"--obs: expected a float array [N, obs_dim], got {obs.dtype} "
                                 f"{obs.shape}")
        return obs.astype(np.float32), f"{obs_path} ({len(obs)} rows)"
    from export.convert import observations
    zero = lambda o: np.zeros((len(o), 8), np.float32)  # noqa: E731
    obs = observations.collect_observations(zero, record, seed, action_noise=0.5)
    return obs, f"{record} Ant-v5 observations recorded with random actions (seed {seed})"


def prepare(out_dir: str, models: dict[str, str], obs_path: str | None, record: int,
            seed: int) -> dict:
    from export.convert import micro, tflite
    from export.convert.mcu import host, write_c_sources
    os.makedirs(out_dir, exist_ok=True)
    obs, source = _observations(obs_path, record, seed)
    obs.astype(np.float32).tofile(os.path.join(out_dir, "obs.bin"))
    meta = {"observations": source, "num_obs": len(obs), "models": {}}
    for name, path in models.items():
        if not os.path.isfile(path):
            raise EmulationError(f"model {name}: {path} not found")
        with open(path, "rb") as f:
            model = f.read()
        d = os.path.join(out_dir, name)
        info = write_c_sources(model, os.path.join(d, "src"))
        if info["input_size"] != obs.shape[1]:
            raise EmulationError(f"model {name} takes {info['input_size']} features, the "
                                 f"observations have {obs.shape[1]}")
        ref = micro.run(model, obs, ARENA, tflite.io_details(model))
        np.save(os.path.join(d, "tflm.npy"), ref)
        np.save(os.path.join(d, "host.npy"),
                host.run(host.build(model, os.path.join(d, "host")), obs, info["output_size"]))
        meta["models"][name] = {"path": path, "tflite_bytes": len(model),
                                **{k: info[k] for k in ("ops", "const_bytes", "buffer_bytes")}}
    with open(os.path.join(out_dir, "prepare.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def parse_qemu(path: str, n: int, act_dim: int) -> tuple[np.ndarray, dict]:
    """The actions a board printed (float32 [n, act_dim]) and its other report lines."""
    if not os.path.isfile(path):
        raise EmulationError(f"{path} missing: the QEMU run did not happen")
    rows, extra = {}, {}
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == act_dim + 2 and parts[0] == "a":
                rows[int(parts[1], 16)] = [int(p, 16) for p in parts[2:]]
            elif len(parts) == 2 and parts[0] in ("done", "stack"):
                extra[parts[0]] = int(parts[1], 16)
    if sorted(rows) != list(range(n)):
        raise EmulationError(f"{path}: {len(rows)} of {n} observations printed "
                             f"(run ended early? last lines tell)")
    bits = np.asarray([rows[i] for i in range(n)], np.uint32)
    return bits.view(np.float32), extra


def parse_size(path: str) -> dict:
    """Berkeley ``size`` output plus ``nm`` lines for _sstack/_estack ->
    {text, data, bss, flash_bytes, ram_bytes, stack_reserved_bytes}."""
    with open(path) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    text, data, bss = (int(v) for v in lines[1][:3])
    syms = {ln[2]: int(ln[0], 16) for ln in lines[2:] if len(ln) == 3}
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data,
            "ram_bytes": data + bss,
            "stack_reserved_bytes": syms.get("_estack", 0) - syms.get("_sstack", 0)}


def compare(out_dir: str, board: str) -> dict:
    with open(os.path.join(out_dir, "prepare.json")) as f:
        meta = json.load(f)
    n = meta["num_obs"]
    summary = {"board": board, "observations": meta["observations"], "num_obs": n, "models": {}}
    for name, m in meta["models"].items():
        d = os.path.join(out_dir, name)
        ref = np.load(os.path.join(d, "tflm.npy"))
        hst = np.load(os.path.join(d, "host.npy"))
        got, extra = parse_qemu(os.path.join(d, "qemu.txt"), n, ref.shape[1])
        sizes = parse_size(os.path.join(d, "size.txt"))
        same = lambda a, b: int(np.all(a.view(np.uint32) == b.view(np.uint32), axis=1).sum())  # noqa: E731,E501
        summary["models"][name] = {
            **m, **sizes,
            "stack_used_bytes": extra.get("stack"),
            "ram_needed_bytes": None if extra.get("stack") is None else
            sizes["ram_bytes"] - sizes["stack_reserved_bytes"] + extra["stack"],
            "qemu_vs_tflm_identical": same(got, ref), "host_vs_tflm_identical": same(hst, ref),
            "qemu_vs_tflm_max_abs_diff": float(np.abs(got - ref).max()),
            "distinct_actions": int(len(np.unique(ref, axis=0)))}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(markdown(summary))
    return summary


def markdown(s: dict) -> str:
    rows = [f"MCU emulation on QEMU `mps2-{s['board']}`, {s['observations']}.", "",
            "| model | ops | QEMU = TFLM (bit-identical) | host C = TFLM | flash B (text+data) "
            "| RAM B (data+bss, incl. reserved stack) | RAM needed B (stack as used) "
            "| weights+tables B |",
            "|---|---|---|---|---|---|---|---|"]
    for name, m in s["models"].items():
        rows.append(f"| {name} | {', '.join(m['ops'])} | {m['qemu_vs_tflm_identical']}/"
                    f"{s['num_obs']} | {m['host_vs_tflm_identical']}/{s['num_obs']} | "
                    f"{m['flash_bytes']:,} | {m['ram_bytes']:,} | {m['ram_needed_bytes']:,} | "
                    f"{m['const_bytes']:,} |")
    return "\n".join(rows) + "\n"


def runtimes(out_dir: str) -> dict:
    """LiteRT vs TFLM on the prepared observations, per model and LiteRT kernel set."""
    from export.convert import tflite
    with open(os.path.join(out_dir, "prepare.json")) as f:
        meta = json.load(f)
    obs = np.fromfile(os.path.join(out_dir, "obs.bin"), np.float32).reshape(meta["num_obs"], -1)
    out = {}
    for name, m in meta["models"].items():
        with open(m["path"], "rb") as f:
            model = f.read()
        ref = np.load(os.path.join(out_dir, name, "tflm.npy"))
        step = tflite.output_step(model)
        out[name] = {"output_step": step}
        for kind, kw in (("xnnpack", {}), ("builtin", {"delegates": False}),
                         ("reference", {"reference": True})):
            try:
                got = tflite.run(model, obs, **kw)
            except Exception as e:  # a kernel LiteRT lacks: record which, keep going
                out[name][kind] = {"ran": False, "error": str(e).splitlines()[0][:200]}
                continue
            diff = np.abs(got - ref)
            out[name][kind] = {"ran": True, "identical_rows": int(np.all(diff == 0, axis=1).sum()),
                               "max_diff_steps": float(diff.max() / step)}
    with open(os.path.join(out_dir, "runtimes.json"), "w") as f:
        json.dump(out, f, indent=1)
    rows = [f"LiteRT vs TFLite Micro on the same {meta['num_obs']} observations (differences "
            "in output quantization steps).", "",
            "| model | LiteRT XNNPACK | LiteRT builtin | LiteRT reference |", "|---|---|---|---|"]
    for name, r in out.items():
        cells = [f"identical {r[k]['identical_rows']}, max {r[k]['max_diff_steps']:g} steps"
                 if r[k]["ran"] else f"failed: {r[k]['error']}"
                 for k in ("xnnpack", "builtin", "reference")]
        rows.append(f"| {name} | {' | '.join(cells)} |")
    with open(os.path.join(out_dir, "runtimes.md"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m export.convert.mcu.emulate")
    p.add_argument("step", choices=("prepare", "compare", "runtimes"))
    p.add_argument("--out_dir", required=True)
    p.add_argument("--model", action="append", default=[], help="NAME=PATH.tflite (repeat)")
    p.add_argument("--obs")
    p.add_argument("--record", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--board", default="an386")
    a = p.parse_args(argv)
    try:
        if a.step == "prepare":
            models = dict(m.split("=", 1) for m in a.model if "=" in m)
            if not models or len(models) != len(a.model):
                raise EmulationError("give --model=NAME=PATH.tflite at least once")
            prepare(a.out_dir, models, a.obs, a.record, a.seed)
        elif a.step == "compare":
            print(markdown(compare(a.out_dir, a.board)), end="")
        else:
            runtimes(a.out_dir)
            with open(os.path.join(a.out_dir, "runtimes.md")) as f:
                print(f.read(), end="")
    except Exception as e:  # one line for every failure, the CLI's contract
        print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

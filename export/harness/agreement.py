"""Cross-platform agreement of exported models: the same inputs, the actions compared.

  python -m export.harness.agreement record --export_dir=EXPORT --observations=OBS.npy
  python -m export.harness.agreement actions --export_dir=EXPORT --observations=OBS.npy \
      --out=DIR/actions.npz
  python -m export.harness.agreement compare --out_dir=OUT x86 aarch64-bookworm ...

``record`` stores a fixed set of Ant-v5 observations (float32 [N, 105]) visited
by the export's fp32 model (episodes seed, seed+1, ...), and the actions of one
fp32 episode (OBS_replay.npz). ``actions`` runs every LiteRT variant of the
export on exactly those observations, one at a time, and stores float32
[N, act_dim] per variant plus the size of one output step (LSB) of quantized
outputs; it also replays the recorded episode's actions open loop and stores
the observations (float64 [T + 1, 105]), so ``compare`` can say from which step
the platforms' physics part. ``compare`` reads OUT/LABEL/actions.npz (and
OUT/LABEL/evaluation.json, the harness report of the same export with matched
seeds) for each LABEL, takes the first as reference and writes
OUT/crossarch.{json,md}: per variant the largest action difference (absolute
and in LSB), the share of bit-identical actions, and the returns side by side;
exit status 1 when a variant does not agree.

Agreement: a quantized-output variant within 1 output LSB, a float variant
within 1e-6 (absolute, actions in [-1, 1]). Returns are not expected to match
bit for bit across machines: MuJoCo's float64 physics compiled for another CPU
(FMA contraction, libm) moves trajectories apart after a few hundred steps.
Imports only numpy, gymnasium, ai_edge_litert, psutil and absl (the Pi side).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from export.harness import errors, machine
from export.harness.errors import HarnessError
from export.harness.manifest import load_manifest
from export.harness.loop import make_env
from export.harness.runtime import LiteRTPolicy, read_model_bytes

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Export directory with manifest.json.")
_OBS = flags.DEFINE_string("observations", None, "float32 [N, obs_dim] .npy file.")
_OUT = flags.DEFINE_string("out", None, "actions: the .npz file to write.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "compare: directory holding LABEL/ subdirs.")
_NUM = flags.DEFINE_integer("num_observations", 1000, "record: observations to store.")
_SEED = flags.DEFINE_integer("seed", 0, "record: seed of the first episode.")
_STEPS = flags.DEFINE_integer("steps_per_episode", 250, "record: steps per episode.")

FLOAT_TOL = 1e-6
LSB_TOL = 1.0


def litert_variants(export_dir: str) -> dict[str, str]:
    """{variant name: .tflite path} of an export directory, in manifest order."""
    manifest = load_manifest(export_dir)
    return {name: os.path.join(export_dir, str(entry["file"]))
            for name, entry in manifest["variants"].items()
            if str(entry.get("file", "")).endswith(".tflite")}


def output_lsb(policy) -> float | None:
    """One output step of a quantized-output model (its int8/uint8 scale), else None.

    A float-output model whose last op is DEQUANTIZE has the step of that op's
    int8 input; float computation to the end (fp32, fp16, dynamic range) has none.
    """
    interp = policy._interp
    out = interp.get_output_details()[0]
    if np.dtype(out["dtype"]) != np.float32:
        return float(out["quantization"][0])
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    for op in interp._get_ops_details():
        if out["index"] in list(op["outputs"]) and op["op_name"] == "DEQUANTIZE":
            scale = float(tensors[int(op["inputs"][0])]["quantization"][0])
            return scale if scale > 0 else None
    return None


def actions_on(path: str, observations: np.ndarray) -> tuple[np.ndarray, float | None]:
    """float32 [N, act_dim] actions of one .tflite model, and its output LSB."""

    policy = LiteRTPolicy(read_model_bytes(path), threads=1, name=os.path.basename(path))
    out = np.zeros((len(observations), policy.output_shape[-1]), np.float32)
    buf = np.zeros((1, observations.shape[1]), np.float32)
    for i, obs in enumerate(observations):
        buf[0] = obs
        policy.set_input(buf)
        policy.invoke()
        out[i] = policy.get_output()[0]
    return out, output_lsb(policy)


def record(export_dir: str, path: str, num: int, seed: int, steps: int) -> np.ndarray:
    """Observations visited by the fp32 model (first .tflite variant if none is fp32)."""

    variants = litert_variants(export_dir)
    if not variants:
        raise HarnessError(f"{export_dir}: no .tflite variant in manifest.json")
    model = variants.get("fp32") or next(iter(variants.values()))
    policy = LiteRTPolicy(read_model_bytes(model), threads=1, name=model)
    env = make_env(steps)
    buf = np.zeros((1, env.observation_space.shape[0]), np.float32)
    out, episode = [], 0
    while len(out) < num:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        done = False
        while not done and len(out) < num:
            out.append(np.asarray(obs, np.float32))
            buf[0] = obs
            policy.set_input(buf)
            policy.invoke()
            obs, _, term, trunc, _ = env.step(policy.get_output()[0])
            done = term or trunc
    env.close()
    arr = np.stack(out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, arr)
    # One open-loop episode for the physics: its actions, replayed on each platform.
    env = make_env(1000)
    obs, _ = env.reset(seed=seed)
    actions, done = [], False
    while not done:
        buf[0] = obs
        policy.set_input(buf)
        policy.invoke()
        actions.append(policy.get_output()[0].copy())
        obs, _, term, trunc, _ = env.step(actions[-1])
        done = term or trunc
    env.close()
    np.savez(replay_path(path), actions=np.stack(actions), seed=np.int64(seed))
    return arr


def replay_path(observations_path: str) -> str:
    return os.path.splitext(observations_path)[0] + "_replay.npz"


def replay(path: str) -> np.ndarray:
    """float64 [T + 1, obs_dim] observations of the recorded actions replayed open loop."""

    with np.load(path) as z:
        actions, seed = z["actions"], int(z["seed"])
    env = make_env(len(actions))
    obs, _ = env.reset(seed=seed)
    traj = [np.asarray(obs, np.float64)]
    for a in actions:
        obs, _, term, trunc, _ = env.step(a)
        traj.append(np.asarray(obs, np.float64))
        if term:
            break
    env.close()
    return np.stack(traj)


def load_observations(path: str) -> np.ndarray:
    if not path or not os.path.isfile(path):
        raise HarnessError(f"--observations={path}: no such file; make one with "
                           f"`python -m export.harness.agreement record`")
    obs = np.load(path)
    if obs.ndim != 2 or obs.dtype != np.float32:
        raise HarnessError(f"{path}: expected float32 [N, obs_dim], got {obs.dtype} {obs.shape}")
    return obs


def write_actions(export_dir: str, observations: np.ndarray, path: str,
                  observations_path: str = "") -> dict:
    arrays, meta = {}, {"machine": machine.machine_description(), "variants": {}}
    for name, model in litert_variants(export_dir).items():
        arrays[f"actions/{name}"], lsb = actions_on(model, observations)
        meta["variants"][name] = {"file": os.path.basename(model), "output_lsb": lsb}
    if os.path.isfile(replay_path(observations_path)):
        arrays["replay_observations"] = replay(replay_path(observations_path))
    arrays["meta"] = np.array(json.dumps(meta))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **arrays)
    return meta


def _load_platform(out_dir: str, label: str) -> tuple[dict, dict, dict]:
    """(meta (+ "replay_observations"), {variant: actions}, evaluation rows) of OUT/LABEL."""
    path = os.path.join(out_dir, label, "actions.npz")
    if not os.path.isfile(path):
        raise HarnessError(f"{path} is missing: run `actions` for {label} first")
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        acts = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("actions/")}
        if "replay_observations" in z.files:
            meta["replay_observations"] = z["replay_observations"]
    rows = {}
    ev = os.path.join(out_dir, label, "evaluation.json")
    if os.path.isfile(ev):
        with open(ev) as f:
            rows = json.load(f).get("variants", {})
    return meta, acts, rows


def compare(out_dir: str, labels: list[str]) -> dict:
    """Per variant: action differences vs labels[0], agreement, returns per label."""
    if len(labels) < 2:
        raise HarnessError("compare needs at least two platform labels (reference first)")
    loaded = {lab: _load_platform(out_dir, lab) for lab in labels}
    ref_meta, ref_acts, _ = loaded[labels[0]]
    variants = {}
    for name, ref in ref_acts.items():
        lsb = ref_meta["variants"][name]["output_lsb"]
        row = {"output_lsb": lsb, "max_abs_diff": {}, "max_diff_lsb": {},
               "identical_fraction": {}, "return_mean": {}, "returns": {}, "agree": True}
        for lab in labels:
            _, acts, ev = loaded[lab]
            r = ev.get(name, {})
            row["return_mean"][lab] = r.get("return_mean")
            row["returns"][lab] = r.get("returns")
            if lab == labels[0]:
                continue
            if name not in acts or acts[name].shape != ref.shape:
                row["max_abs_diff"][lab] = None
                row["agree"] = False
                continue
            diff = np.abs(acts[name].astype(np.float64) - ref.astype(np.float64))
            row["max_abs_diff"][lab] = float(diff.max())
            row["identical_fraction"][lab] = float(np.mean(np.all(acts[name] == ref, axis=1)))
            if lsb:
                row["max_diff_lsb"][lab] = float(diff.max() / lsb)
                ok = diff.max() <= LSB_TOL * lsb * (1 + 1e-6)
            else:
                ok = diff.max() <= FLOAT_TOL
            row["agree"] = bool(row["agree"] and ok)
        variants[name] = row
    physics = {}
    ref_traj = ref_meta.get("replay_observations")
    for lab in labels[1:]:
        traj = loaded[lab][0].get("replay_observations")
        if ref_traj is None or traj is None:
            continue
        n = min(len(ref_traj), len(traj))
        diff = np.abs(traj[:n] - ref_traj[:n]).max(axis=1)
        apart = np.nonzero(diff > 0)[0]
        far = np.nonzero(diff > 1e-3)[0]
        physics[lab] = {"steps": int(n - 1), "lengths": [len(ref_traj) - 1, len(traj) - 1],
                        "first_step_differing": int(apart[0]) if len(apart) else None,
                        "first_step_over_1e-3": int(far[0]) if len(far) else None,
                        "max_obs_diff": float(diff.max())}
    result = {"platforms": labels, "reference": labels[0], "physics_replay": physics,
              "observations": int(len(next(iter(ref_acts.values())))) if ref_acts else 0,
              "tolerance": {"quantized_output_lsb": LSB_TOL, "float_abs": FLOAT_TOL},
              "machines": {lab: loaded[lab][0]["machine"] for lab in labels},
              "variants": variants}
    machine.write_json(os.path.join(out_dir, "crossarch.json"), result)
    with open(os.path.join(out_dir, "crossarch.md"), "w") as f:
        f.write(markdown(result))
    return result


def _num(x, fmt="{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(result: dict) -> str:
    labs, ref = result["platforms"], result["reference"]
    others = labs[1:]
    head = (["Variant", "agree"] + [f"max Δa {lab}" for lab in others]
            + [f"identical {lab}" for lab in others] + [f"return {lab}" for lab in labs])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result["variants"].items():
        cells = [name, "yes" if row["agree"] else "NO"]
        for lab in others:
            d = row["max_abs_diff"].get(lab)
            lsb = row["max_diff_lsb"].get(lab)
            cells.append(_num(d, "{:.2g}") + (f" ({lsb:.2g} LSB)" if lsb is not None else ""))
        cells += [_num(row["identical_fraction"].get(lab), "{:.1%}") for lab in others]
        cells += [_num(row["return_mean"].get(lab)) for lab in labs]
        lines.append("| " + " | ".join(cells) + " |")
    m = result["machines"]
    desc = "; ".join(f"{lab}: {m[lab].get('machine')} Python {m[lab].get('python')}, LiteRT "
                     f"{m[lab].get('litert_version')}, MuJoCo {m[lab].get('mujoco_version')}, "
                     f"numpy {m[lab].get('numpy_version')}" for lab in labs)
    def step(i):
        return "never" if i is None else f"at step {i}"

    phys = "".join(
        f"\nPhysics, the recorded actions replayed open loop ({p['steps']} steps) on {lab}: "
        f"first observation difference {step(p['first_step_differing'])}, first > 1e-3 "
        f"{step(p['first_step_over_1e-3'])} (max {p['max_obs_diff']:.3g})."
        for lab, p in result.get("physics_replay", {}).items())
    return ("\n".join(lines) + f"\n\nActions on {result['observations']} recorded observations, "
            f"compared with {ref}; agree = within 1 output LSB (quantized output) or "
            f"{FLOAT_TOL:g} (float). Returns: mean over the same seeds on each platform.{phys}\n"
            f"{desc}.\n")


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("record", "actions", "compare"):
        raise HarnessError("give a command: record, actions or compare (see --help)")
    cmd, rest = argv[1], argv[2:]
    if cmd != "compare" and rest:
        raise HarnessError(f"unexpected arguments: {' '.join(rest)}")
    if cmd in ("record", "actions") and not _EXPORT_DIR.value:
        raise HarnessError(f"{cmd} needs --export_dir=EXPORT")
    if cmd == "record":
        if _NUM.value < 1 or _STEPS.value < 1:
            raise HarnessError("--num_observations and --steps_per_episode must be >= 1")
        obs = record(_EXPORT_DIR.value, _OBS.value or "observations.npy", _NUM.value,
                     _SEED.value, _STEPS.value)
        print(f"[agreement] {len(obs)} observations -> {_OBS.value or 'observations.npy'}")
    elif cmd == "actions":
        if not _OUT.value:
            raise HarnessError("actions needs --out=FILE.npz")
        meta = write_actions(_EXPORT_DIR.value, load_observations(_OBS.value), _OUT.value,
                             _OBS.value)
        print(f"[agreement] actions of {', '.join(meta['variants'])} -> {_OUT.value}")
    else:
        if not _OUT_DIR.value:
            raise HarnessError("compare needs --out_dir=OUT")
        result = compare(_OUT_DIR.value, rest)
        print(markdown(result))
        apart = [n for n, row in result["variants"].items() if not row["agree"]]
        if apart:
            print(f"error: actions differ beyond the tolerance for: {', '.join(apart)}",
                  file=sys.stderr)
            return 1
    return 0


def main(argv):
    errors.run_main(lambda: _main(argv))


if __name__ == "__main__":
    app.run(main)

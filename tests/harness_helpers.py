"""What the harness tests share: a small real export directory (checkpoint, SavedModel,
fp32 / int8 / micro TFLite and manifest of a 256x256 tanh Ant-v5 actor with random
weights and a normaliser fitted on real observations), the harness command line,
and a reference rollout in this process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACT_DIM = 105, 8
SHORT = ["--episodes=2", "--seed=3", "--max_episode_steps=40", "--warmup=5"]


def ant_observations(n: int = 400, seed: int = 0) -> np.ndarray:
    """Real Ant-v5 observations from random-action rollouts, float32 [n, 105]."""
    import gymnasium as gym

    env = gym.make("Ant-v5")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
        if term or trunc:
            obs, _ = env.reset(seed=seed + len(out))
    env.close()
    return np.asarray(out, np.float32)


def tflite_quant(model_bytes: bytes) -> dict:
    """The manifest's "quantization" record of the micro entry (as export/convert/pipeline.py)."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_content=model_bytes)
    details = {"input": it.get_input_details()[0], "output": it.get_output_details()[0]}
    return {side: {"dtype": np.dtype(d["dtype"]).name, "scale": float(d["quantization"][0]),
                   "zero_point": int(d["quantization"][1])} for side, d in details.items()}


def build_export_dir(root: str, hidden=(256, 256), in_dim=OBS_DIM, out_dim=ACT_DIM) -> str:
    """Checkpoint + SavedModel + fp32/int8/micro TFLite + manifest under ``root``."""
    import jax
    import tensorflow as tf

    from jaxrl_lite.run import checkpoint
    from jaxrl_lite.blocks import normalizer
    from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params

    obs = ant_observations()
    spec = PolicySpec(env="Ant-v5", obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden_sizes=hidden)
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(0)))
    # Scale the (deliberately tiny) last layer so actions use the whole [-1, 1] range.
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 60.0
    norm = normalizer.NormalizerState(mean=obs.mean(0), var=obs.var(0),
                                      count=np.float32(len(obs)))
    run_dir = os.path.join(root, "run")
    ck = checkpoint.Checkpointer(run_dir)
    ck.save(0, {"dummy": np.zeros(1, np.float32)}, spec, params, norm, algo="ppo")
    ck.close()

    p = params["params"]
    layers = [(p[f"hidden_{i}"]["kernel"], p[f"hidden_{i}"]["bias"]) for i in range(len(hidden))]
    layers.append((p["out"]["kernel"], p["out"]["bias"]))
    inv_std = 1.0 / (np.sqrt(np.maximum(norm.var, 0.0)) + normalizer.STD_EPS)
    if in_dim != OBS_DIM:  # a deliberately wrong model
        layers[0] = (np.zeros((in_dim, hidden[0]), np.float32), layers[0][1])
    if out_dim != ACT_DIM:
        layers[-1] = (np.zeros((hidden[-1], out_dim), np.float32), np.zeros(out_dim, np.float32))

    class Actor(tf.Module):
        def __init__(self):
            super().__init__()
            self.ws = [tf.constant(w) for w, _ in layers]
            self.bs = [tf.constant(b) for _, b in layers]

        @tf.function(input_signature=[tf.TensorSpec([1, in_dim], tf.float32, name="obs")])
        def __call__(self, x):
            if in_dim == OBS_DIM:
                x = tf.clip_by_value((x - norm.mean) * inv_std, -normalizer.CLIP,
                                     normalizer.CLIP)
            for w, b in zip(self.ws[:-1], self.bs[:-1]):
                x = tf.tanh(tf.matmul(x, w) + b)
            return tf.tanh(tf.matmul(x, self.ws[-1]) + self.bs[-1])

    actor = Actor()
    export = os.path.join(root, "export")
    os.makedirs(os.path.join(export, "micro"), exist_ok=True)
    tf.saved_model.save(actor, os.path.join(export, "saved_model"),
                        signatures={"serving_default": actor.__call__})
    fn = actor.__call__.get_concrete_function()
    rep_obs = obs if in_dim == OBS_DIM else np.zeros((8, in_dim), np.float32)

    def convert(int8: bool, int_io: bool) -> bytes:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], actor)
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([o[None]] for o in rep_obs[::2])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int_io:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        return conv.convert()

    variants = {}
    for name, int8, int_io in (("fp32", False, False), ("int8", True, False)):
        data = convert(int8, int_io)
        fname = f"actor_{name}.tflite"
        with open(os.path.join(export, fname), "wb") as f:
            f.write(data)
        variants[name] = {"file": fname, "bytes": len(data), "sparsity": 0.0}
    micro = convert(True, True)
    with open(os.path.join(export, "micro", "actor_model.cc"), "w") as f:
        f.write('#include "actor_model.h"\nalignas(16) const unsigned char g_actor_model[] = {\n')
        for i in range(0, len(micro), 12):
            f.write("  " + ", ".join(f"0x{b:02x}" for b in micro[i:i + 12]) + ",\n")
        f.write(f"}};\nconst int g_actor_model_len = {len(micro)};\n")
    variants["micro"] = {"file": "micro/actor_model.cc", "header": "micro/actor_model.h",
                         "bytes": len(micro), "sparsity": 0.0, "tensor_arena_bytes": 8192,
                         "quantization": tflite_quant(micro)}
    variants["saved_model"] = {"file": "saved_model", "bytes": 0, "sparsity": 0.0}
    variants["onnx"] = {"file": "actor.onnx", "bytes": 0, "sparsity": 0.0}
    manifest = {"env": "Ant-v5", "obs_dim": in_dim, "act_dim": out_dim,
                "source_checkpoint": os.path.abspath(run_dir), "variants": variants}
    with open(os.path.join(export, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return export


def run_cli(*args, module="export.evaluate", env=None, timeout=240):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=e)


def run_report(tmp_path, name: str, *args) -> dict:
    """Run the harness CLI with ``--report``; assert success; -> the report JSON."""
    out = tmp_path / f"{name}.json"
    proc = run_cli(*args, f"--report={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def rollout_returns(policy_fn, episodes=2, seed=3, max_steps=40):
    """Reference: the same episodes with gymnasium in this process."""
    import gymnasium as gym

    env = gym.make("Ant-v5", max_episode_steps=max_steps)
    rets, lens = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        ret, n, done = 0.0, 0, False
        while not done:
            act = policy_fn(np.asarray(obs, np.float32)[None])[0]
            obs, r, term, trunc, _ = env.step(act)
            ret, n, done = ret + r, n + 1, term or trunc
        rets.append(ret)
        lens.append(n)
    return rets, lens

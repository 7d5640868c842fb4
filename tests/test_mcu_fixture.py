"""The committed models behind the microcontroller tests, and the command that rebuilds them.

    python -m tests.test_mcu_fixture            # rewrites tests/data/mcu_actor_*.tflite (~1 min)

A (64, 64) tanh Ant-v5 actor with random weights (orthogonal init, output layer
scaled up so actions span [-1, 1], small random biases) and a normaliser
fitted to real Ant-v5 observations of its own rollouts, converted like the
export pipeline does:

  mcu_actor_int8.tflite               int8, per-channel weights (the exported default)
  mcu_actor_int8_per_tensor.tflite    int8, one weight scale per layer
  mcu_actor_int16x8.tflite            TFLite's 16x8 mode on the same SavedModel
  mcu_actor_int16x8_folded.tflite     16x8 of the same actor with the normaliser folded
                                      into the first layer (raw observations in; std
                                      floored at FOLD_MIN_STD for the fold)

Why two 16x8 models: the normaliser's 1/std spans six decades (features that
never move in the rollouts get std = 1e-6), so in TFLite's 16x8 mode, which
quantizes the normalisation too, the MUL constant's int16 step is ~30 and most
features are multiplied by 0: the plain 16x8 actor's actions barely vary.
Folding with a floored std keeps every feature's weight on one int8 scale.

The test below only checks that the committed files are those models (ops,
types, granularity); it runs in well under a second.
"""
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
MODELS = ("int8", "int8_per_tensor", "int16x8", "int16x8_folded")
FOLD_MIN_STD = 0.1


def path(name: str) -> str:
    return os.path.join(DATA, f"mcu_actor_{name}.tflite")


def read(name: str) -> bytes:
    with open(path(name), "rb") as f:
        return f.read()


def _folded(params, norm):
    """Actor params with (obs - mean) / max(std, FOLD_MIN_STD) folded into hidden_0, and an
    identity normaliser."""
    from jaxrl_lite.blocks import normalizer
    p = {k: dict(v) for k, v in params["params"].items()}
    std = np.maximum(np.sqrt(np.maximum(np.asarray(norm.var, np.float64), 0.0)), FOLD_MIN_STD)
    w = np.asarray(p["hidden_0"]["kernel"], np.float64)
    p["hidden_0"]["kernel"] = (w / std[:, None]).astype(np.float32)
    p["hidden_0"]["bias"] = (np.asarray(p["hidden_0"]["bias"], np.float64)
                             - (np.asarray(norm.mean, np.float64) / std) @ w).astype(np.float32)
    ident = normalizer.NormalizerState(mean=np.zeros_like(norm.mean),
                                       var=np.full_like(norm.var, (1 - normalizer.STD_EPS) ** 2),
                                       count=norm.count)
    return {"params": p}, ident


def build(out_dir: str = DATA, seed: int = 0) -> dict[str, bytes]:
    """Build and write the four fixture models; returns {name: flatbuffer}."""
    import tempfile

    import jax

    from export.convert import jax2tf_bridge, observations, tflite
    from export.convert.int16x8 import convert_16x8 as convert_int16x8
    from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params

    spec = PolicySpec("Ant-v5", 105, 8, (64, 64))
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(seed)))
    rng = np.random.default_rng(seed)
    for layer in params["params"].values():
        layer["bias"] = rng.normal(0, 0.1, layer["bias"].shape).astype(np.float32)
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 100.0
    zero = lambda o: np.zeros((len(o), spec.act_dim), np.float32)  # noqa: E731
    norm = observations.fit_normalizer(observations.collect_observations(zero, 500, seed + 11))
    pol = observations.numpy_policy(spec, params, norm)
    norm = observations.fit_normalizer(
        observations.collect_observations(pol, 1000, seed + 12, action_noise=0.1))
    pol = observations.numpy_policy(spec, params, norm)
    calib = jax2tf_bridge.clip_to_normalizer_range(
        observations.collect_observations(pol, 1000, seed + 13, action_noise=0.1), norm)
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        sm = jax2tf_bridge.save_saved_model(spec, params, norm, os.path.join(tmp, "sm"),
                                            clip_observations=False)
        models["int8"] = tflite.convert(sm, "int8", calib, per_channel=True)
        models["int8_per_tensor"] = tflite.convert(sm, "int8", calib, per_channel=False)
        models["int16x8"] = convert_int16x8(sm, calib, per_channel=True)
        f_params, f_norm = _folded(params, norm)
        sm_f = jax2tf_bridge.save_saved_model(spec, f_params, f_norm, os.path.join(tmp, "smf"),
                                              clip_observations=False)
        models["int16x8_folded"] = convert_int16x8(sm_f, calib, per_channel=True)
    os.makedirs(out_dir, exist_ok=True)
    for name, model in models.items():
        with open(os.path.join(out_dir, f"mcu_actor_{name}.tflite"), "wb") as f:
            f.write(model)
    return models


def test_fixture_models_are_the_documented_ones():
    from export.convert.mcu.graph import read_graph
    for name in MODELS:
        g = read_graph(read(name))
        ops = [op.name for op in g.ops]
        assert ops.count("FULLY_CONNECTED") == 3 and ops.count("TANH") == 3, (name, ops)
        fc = [op for op in g.ops if op.name == "FULLY_CONNECTED"]
        act = "int16" if name.startswith("int16") else "int8"
        assert {op.inputs[0].dtype for op in fc} == {act}
        assert {op.inputs[1].dtype for op in fc} == {"int8"}
        per_channel = {op.inputs[1].scale.size > 1 for op in fc}
        assert per_channel == {name != "int8_per_tensor"}, name
        assert [t.dtype for t in g.inputs + g.outputs] == ["float32", "float32"]


if __name__ == "__main__":
    for n, m in build().items():
        print(f"{path(n)}: {len(m)} bytes")

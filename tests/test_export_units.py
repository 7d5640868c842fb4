"""Export units that need no full export: pruning masks, the default-size and other
actor architectures through the bridge and int8, and the numpy actor the exporter
rolls out with."""
import numpy as np
import pytest

from tests.deps import require

jax = require("jax")
require("tensorflow")

from export.convert import micro, observations, tflite  # noqa: E402
from export.studies import magnitude_pruning as pruning  # noqa: E402
from jaxrl_lite.blocks.policy import (PolicySpec, deterministic_action,  # noqa: E402
                                      init_actor_params)
from tests.export_helpers import mae as _mae, make_actor  # noqa: E402


def test_magnitude_masks_and_schedule():
    params = {"params": {"a": {"kernel": np.arange(1, 101, dtype=np.float32).reshape(10, 10),
                               "bias": np.ones(10, np.float32)}}}
    masks = pruning.magnitude_masks(params, 0.3)
    m = masks["params"]["a"]["kernel"]
    assert m.sum() == 70 and (m.ravel()[:30] == 0).all()
    assert (masks["params"]["a"]["bias"] == 1).all()
    s = [pruning.schedule(k, 10, 0.5) for k in range(1, 11)]
    assert all(b >= a for a, b in zip(s, s[1:])) and s[-1] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pruning.PruneConfig(sparsity=1.0)


def test_actor_256x256_bridge_and_int8(tmp_path):
    """The default network size converts too (bridge + int8 + TFLM), not only the small one."""
    from export.convert import jax2tf_bridge
    spec = PolicySpec("Ant-v5", 105, 8, (256, 256))
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(3)))
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 100.0
    rng = np.random.default_rng(3)
    for layer in params["params"].values():
        layer["bias"] = rng.normal(0, 0.1, layer["bias"].shape).astype(np.float32)
    obs = observations.collect_observations(lambda o: np.zeros((len(o), 8), np.float32), 500, 5)
    norm = observations.fit_normalizer(obs)
    pol = observations.numpy_policy(spec, params, norm)
    norm = observations.fit_normalizer(observations.collect_observations(pol, 1000, 6, action_noise=0.1))
    obs = observations.collect_observations(observations.numpy_policy(spec, params, norm), 600, 7,
                                            action_noise=0.1)
    sm = jax2tf_bridge.save_saved_model(spec, params, norm, str(tmp_path / "sm"))
    ref = jax2tf_bridge.jax_actions(spec, params, norm, obs[1::2])
    fp32 = tflite.convert(sm, "fp32")
    sizes = []
    for per_channel in (True, False):
        int8 = tflite.convert(sm, "int8", obs[::2], per_channel=per_channel)
        assert _mae(tflite.run(int8, obs[1::2]), ref) <= 0.03
        sizes.append(len(int8))
    assert np.abs(tflite.run(fp32, obs[1::2]) - ref).max() <= 1e-5
    assert min(sizes) <= 0.3 * len(fp32) and sizes[1] < sizes[0]
    arena = micro.min_arena_bytes(int8, 105)
    assert micro.run(int8, obs[:5], arena, tflite.io_details(int8)).shape == (5, 8)


@pytest.mark.parametrize("activation,layer_norm", [("relu", False), ("silu", False),
                                                   ("tanh", True)])
def test_other_actor_architectures_int8(activation, layer_norm, tmp_path):
    """AC's relu, PPO-GPU's silu and an actor with LayerNorm: the network runs in
    int8 between ONE QUANTIZE and ONE DEQUANTIZE (only the normalisation is float)."""
    from export.convert import jax2tf_bridge
    spec = PolicySpec("Ant-v5", 105, 8, (32, 32), activation=activation, layer_norm=layer_norm)
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(1)))
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 30.0
    obs = observations.collect_observations(lambda o: np.zeros((len(o), 8), np.float32), 400, 8)
    norm = observations.fit_normalizer(obs)
    sm = jax2tf_bridge.save_saved_model(spec, params, norm, str(tmp_path / "sm"))
    int8 = tflite.convert(sm, "int8", obs[::2])
    tflite.check_ops(int8, "int8", layer_norm=layer_norm)
    counts = tflite.op_counts(int8)
    assert counts["QUANTIZE"] == 1 and counts["DEQUANTIZE"] == 1, counts
    assert set(tflite.integer_ops(int8).values()) == {"INT8"}
    ref = jax2tf_bridge.jax_actions(spec, params, norm, obs[1::2])
    assert _mae(tflite.run(int8, obs[1::2]), ref) <= 0.03
    got = micro.run(int8, obs[1:21:2], 64 * 1024, tflite.io_details(int8))
    assert _mae(got, ref[:10]) <= 0.05



@pytest.mark.parametrize("activation,layer_norm", [("tanh", False), ("relu", True),
                                                   ("elu", False), ("silu", True)])
def test_numpy_actor_matches_jax(activation, layer_norm):
    """observations.numpy_policy (rollouts for calibration, distillation, pruning
    importance) computes the same function as jaxrl_lite.blocks.policy.deterministic_action."""
    spec = PolicySpec("Ant-v5", 105, 8, (32, 16), activation, layer_norm)
    params, norm = make_actor(spec, seed=3) if activation == "tanh" else (
        jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(3))),
        observations.fit_normalizer(np.random.default_rng(3).normal(2, 3, (200, 105))))
    obs = np.random.default_rng(4).normal(2, 5, (300, 105)).astype(np.float32)
    ref = np.asarray(deterministic_action(spec, params, norm, obs))
    got, hidden = observations.numpy_policy(spec, params, norm, return_hidden=True)(obs)
    assert np.abs(got - ref).max() < 1e-5
    assert [h.shape for h in hidden] == [(300, 32), (300, 16)]


@pytest.mark.parametrize("per_channel", [False, True])
def test_gptq_rounding_stays_on_the_converters_grid(per_channel):
    """GPTQ-rounded kernels are int8 steps of the scale the converter derives from them
    (the same scale as rounding to nearest), and their layer output error on the inputs
    they were fitted on is below rounding to nearest's."""
    from export.convert import gptq
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 24)) @ rng.normal(size=(24, 24))  # correlated inputs
    w = rng.normal(0, 0.3, size=(24, 16))
    q = gptq.round_kernel(w, x, per_channel)
    s = gptq._scales(w, per_channel)
    assert np.allclose(gptq._scales(q, per_channel), s)
    k = q / s
    assert np.allclose(k, np.round(k), atol=1e-6) and np.abs(k).max() <= 127 + 1e-6
    nearest = np.round(w / s) * s
    err = lambda v: np.mean((x @ (v - w)) ** 2)  # noqa: E731
    assert err(q) < 0.7 * err(nearest)

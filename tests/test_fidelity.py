"""Return-level fidelity (export/harness/fidelity.py) and non-finite values at the
device boundary (export/harness/loop.py), with real LiteRT models and gymnasium."""
from __future__ import annotations

import os

import numpy as np
import pytest

from export.harness import fidelity

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _report(name, returns, lengths=None, seeds=None, limit=1000):
    n = len(returns)
    lengths = lengths or [limit] * n
    return {"name": name, "returns": list(returns), "episode_lengths": lengths,
            "seeds": seeds or list(range(n)), "max_episode_steps": limit,
            "terminated": [ln < limit for ln in lengths]}


def test_identical_variant_has_ratio_one_and_a_point_interval():
    ref = _report("fp32", [100.0, 200.0, 300.0, 50.0])
    fid = fidelity.paired_fidelity(ref, dict(ref, name="int8"))
    assert fid["return_ratio"] == 1.0 and fid["return_ratio_ci95"] == [1.0, 1.0]
    assert fid["return_verdict"] == "within noise"
    assert fid["return_diff_mean"] == 0.0 and fid["falls"] == 0 and fid["worse_episodes"] == []


def test_ratio_interval_falls_and_pairing():
    rng = np.random.default_rng(0)
    base = rng.normal(5000, 300, 60)
    ref = _report("fp32", base, seeds=list(range(100, 160)))
    # the variant loses 10% everywhere and falls in episodes 0..5 (a fall: 20% of return)
    ret = 0.9 * base
    ret[:6] = 0.2 * base[:6]
    lengths = [1000] * 60
    lengths[:6] = [150] * 6
    # a different order of the same seeds: pairing is by seed, not by position
    order = rng.permutation(60)
    var = _report("pruned_int8", ret[order], [lengths[i] for i in order],
                  [100 + int(i) for i in order])
    fid = fidelity.paired_fidelity(ref, var)
    expected = ret.mean() / base.mean()
    assert fid["return_ratio"] == pytest.approx(expected)
    lo, hi = fid["return_ratio_ci95"]
    assert lo < expected < hi and hi - lo < 0.2
    assert hi < 1 and fid["return_verdict"] == "lower than fp32"
    assert fidelity.verdict([1.02, 1.1]) == "higher than fp32"
    assert fidelity.verdict([0.4, 1.0]) == "within noise"
    assert fid["falls"] == 6 and fid["fall_fraction"] == pytest.approx(0.1)
    assert fid["reference_falls"] == 0
    assert len(fid["worse_episodes"]) == 60  # every paired episode is < 95% of fp32's
    assert [e["seed"] for e in fid["per_episode"]] == list(range(100, 160))


def test_unpaired_reports_are_refused_and_attach_marks_rows():
    with pytest.raises(ValueError, match="share no seed"):
        fidelity.paired_fidelity(_report("a", [1.0], seeds=[1]),
                                         _report("b", [1.0], seeds=[2]))
    rows = [dict(_report("fp32", [10.0, 20.0]), model_bytes=1000, latency_us_p50=2.0),
            dict(_report("int8", [10.0, 10.0]), model_bytes=250, latency_us_p50=1.0),
            {"name": "onnx", "skipped": "not TFLite"},
            dict(_report("micro", [1.0, 1.0]), error="crashed")]
    assert fidelity.attach(rows)["name"] == "fp32"
    assert rows[1]["vs_fp32"]["return_ratio"] == pytest.approx(20 / 30)
    assert rows[1]["vs_fp32"]["bytes_ratio"] == 0.25 and rows[1]["vs_fp32"]["p50_ratio"] == 0.5
    assert "vs_fp32" not in rows[2] and "vs_fp32" not in rows[3]
    assert fidelity.attach([rows[1]]) is None  # no fp32 row: nothing to compare


def test_markdown_has_vs_fp32_columns():
    from export.harness import report
    rows = [dict(_report("fp32", [10.0, 20.0], [1000, 400]), model_bytes=1000,
                 latency_us_p50=2.0, episodes=2, falls=1, return_mean=15.0, return_std=5.0),
            dict(_report("int8", [10.0, 10.0]), model_bytes=250, latency_us_p50=1.0,
                 episodes=2, falls=0, return_mean=10.0, return_std=0.0, arena_bytes=3000,
                 nonfinite_obs_steps_total=3, nonfinite_action_steps_total=1)]
    fidelity.attach(rows)
    table = report.markdown_table(rows)
    assert "Return vs fp32 [95% CI]" in table and "Bytes vs fp32" in table
    int8_line = next(ln for ln in table.splitlines() if ln.startswith("| int8"))
    assert "0.667 [" in int8_line and "| 0.25 |" in int8_line and "| 0.50 |" in int8_line
    assert "| 3/1 |" in int8_line and "| 0/2 |" in int8_line and "3,000" in int8_line
    # in words: two paired episodes cannot tell 0.667 from 1; fp32 is the reference
    assert "| within noise |" in int8_line and "| reference |" in table.splitlines()[2]
    assert "cannot tell the row from fp32" in table


# ------------------------------------------------------------------ non-finite obs
@pytest.fixture(scope="module")
def fp32_and_int8(tmp_path_factory):
    """A random 32x32 actor as fp32 and int8 TFLite (the real converter)."""
    import jax

    from export.convert import jax2tf_bridge, observations, tflite
    from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params
    spec = PolicySpec("Ant-v5", 105, 8, (32, 32))
    params = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(1)))
    params["params"]["out"]["kernel"] = params["params"]["out"]["kernel"] * 50.0
    zero = lambda o: np.zeros((len(o), 8), np.float32)  # noqa: E731
    obs = observations.collect_observations(zero, 300, 5, action_noise=0.5)
    norm = observations.fit_normalizer(obs)
    d = tmp_path_factory.mktemp("nf")
    jax2tf_bridge.save_saved_model(spec, params, norm, str(d / "sm"))
    jax2tf_bridge.save_saved_model(spec, params, norm, str(d / "sm8"), clip_observations=False)
    calib = jax2tf_bridge.clip_to_normalizer_range(obs, norm)
    return {"fp32": tflite.convert(str(d / "sm"), "fp32"),
            "int8": tflite.convert(str(d / "sm8"), "int8", calib, per_channel=False)}


class _SensorFaults:
    """gymnasium wrapper: feature 3 of the observation is NaN / +inf / -inf at steps
    where ``step % 7 == 0`` (a flaky sensor)."""

    def __init__(self, env):
        self.env, self.t, self.injected = env, 0, 0
        self.spec = env.spec
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def _fault(self, obs):
        self.t += 1
        if self.t % 7 == 0:
            obs = np.array(obs)
            obs[3] = (np.nan, np.inf, -np.inf)[self.injected % 3]
            self.injected += 1
        return obs

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        return self._fault(obs), info

    def step(self, action):
        assert np.all(np.isfinite(action)), "the harness must never send a non-finite action"
        obs, r, term, trunc, info = self.env.step(action)
        return self._fault(obs), r, term, trunc, info

    def close(self):
        self.env.close()


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_nonfinite_observations_are_counted_and_never_reach_the_env(fp32_and_int8, variant):
    from export.harness import loop, runtime
    model = fp32_and_int8[variant]
    policy = runtime.LiteRTPolicy(model, 1, variant)
    env = _SensorFaults(loop.make_env(60))
    rep = loop.run_episodes(policy, env, episodes=2, seed=0, warmup=0)
    steps_with_fault = env.injected - (1 if env.t % 7 == 0 else 0)  # last obs never fed
    assert rep["nonfinite_obs_steps_total"] == steps_with_fault > 0
    assert sum(rep["nonfinite_obs_steps"]) == rep["nonfinite_obs_steps_total"]
    assert np.isfinite(rep["returns"]).all()
    # what the model itself makes of a faulty feature, fed directly
    bad = np.zeros((3, 105), np.float32)
    bad[:, 3] = (np.nan, np.inf, -np.inf)
    out = np.concatenate([policy_out(model, o) for o in bad])
    nonfinite_rows = int((~np.isfinite(out).all(1)).sum())
    if nonfinite_rows:  # then the loop must have counted and zeroed those actions
        assert rep["nonfinite_action_steps_total"] > 0
    else:
        assert rep["nonfinite_action_steps_total"] == 0


def policy_out(model: bytes, obs: np.ndarray) -> np.ndarray:
    from export.convert import tflite
    return tflite.run(model, obs[None])

"""Return-level check of the whole export: a briefly trained Ant-v5 PPO policy (the
committed fixture ``tests/data/ant_ppo_1m``: the ppo_cpu preset for 1,024,000 steps; its
README has the command) is exported to every variant and driven through the Pi
harness on matched seeds; each variant's return must stay within a stated tolerance
of fp32's.

A negative control proves the tolerance can fail: the int8 model with the
normalisation quantized as well (raw observations through one int8 scale; the
exporter's own "before" study) must fall outside it (the margins measured when
the tolerance was chosen are in WORKSPACE.md, "Return-level fidelity"). Episodes are short
(``MAX_STEPS``) to fit CI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from export.harness import fidelity
from tests.export_helpers import REPO, TRAINED_POLICY as POLICY
EPISODES, MAX_STEPS = 8, 300
# Every exported variant: paired return ratio vs fp32 within [1 - TOL, 1 + TOL].
TOLERANCE = 0.25

pytestmark = pytest.mark.slow


def _run(args, timeout):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def evaluated(trained_export, tmp_path_factory):
    root = tmp_path_factory.mktemp("return_fidelity")
    export = trained_export[0]  # conftest: the CLI export of POLICY, shared with test_export
    report = root / "evaluation.json"
    harness = [f"--episodes={EPISODES}", "--seed=0", f"--max_episode_steps={MAX_STEPS}",
               "--warmup=5"]
    _run(["export.evaluate", f"--export_dir={export}", "--comparison_rows=false",
          f"--report={report}", *harness], timeout=900)
    out = json.loads(report.read_text())
    return export, out, harness, root


def test_policy_is_trained_enough_to_tell_variants_apart(evaluated):
    _, out, _, _ = evaluated
    fp32 = out["variants"]["fp32"]
    # standing still earns the healthy reward, 1 per step (~300 here): this one runs,
    # so a variant that loses the gait loses most of its return
    assert fp32["return_mean"] > 2 * MAX_STEPS, fp32["returns"]


def test_every_variant_keeps_fp32_return(evaluated):
    _, out, _, _ = evaluated
    rows = {k: v for k, v in out["variants"].items() if k != "fp32" and "skipped" not in v}
    assert {"fp16", "dynamic", "int8", "pruned_int8", "micro"} <= set(rows)
    for name, row in rows.items():
        assert "error" not in row, (name, row.get("error"))
        fid = row["vs_fp32"]
        assert fid["episodes"] == EPISODES
        assert abs(fid["return_ratio"] - 1.0) <= TOLERANCE, (name, fid["return_ratio"],
                                                             fid["per_episode"])
    assert rows["pruned_int8"]["vs_fp32"]["bytes_ratio"] < rows["int8"]["vs_fp32"]["bytes_ratio"]


def test_a_broken_quantization_falls_outside_the_tolerance(evaluated):
    """Negative control: quantizing the raw observations with one int8 scale (the naive
    recipe the exporter's int8_normalisation study measures) loses the policy."""
    export, out, harness, root = evaluated
    sys.path.insert(0, REPO)
    from export.convert import jax2tf_bridge, observations, tflite
    from jaxrl_lite.run.checkpoint import load_policy
    bundle = load_policy(POLICY)
    pol = observations.numpy_policy(bundle.spec, bundle.actor_params, bundle.norm)
    calib = observations.collect_observations(pol, 300, 4, action_noise=0.3)
    sm = str(root / "sm_naive")
    jax2tf_bridge.save_saved_model(bundle.spec, bundle.actor_params, bundle.norm, sm)
    naive = tflite.convert(sm, "int8", calib, normalize_in_int8=True)
    path = root / "naive_int8.tflite"
    path.write_bytes(naive)
    report = root / "naive.json"
    _run(["export.evaluate", f"--model={path}", f"--report={report}", "--name=naive_int8",
          *harness], timeout=600)
    row = json.loads(report.read_text())
    fid = fidelity.paired_fidelity(out["variants"]["fp32"], row)
    assert abs(fid["return_ratio"] - 1.0) > TOLERANCE, fid["per_episode"]

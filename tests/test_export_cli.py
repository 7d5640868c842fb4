"""Export bad input (one line each, nothing written) and the command line."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from tests.deps import require

jax = require("jax")
require("tensorflow")

from export.convert import observations, pipeline  # noqa: E402
from jaxrl_lite.blocks.policy import PolicySpec, init_actor_params  # noqa: E402
from tests.export_helpers import (export_cli, one_line_error,  # noqa: E402
                                  save_checkpoint)


def test_bad_inputs_in_process(actor_run, tmp_path):
    d, spec, params, norm = actor_run
    with pytest.raises(pipeline.ExportError, match="does not exist"):
        pipeline.load_bundle(str(tmp_path / "nope"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(pipeline.ExportError, match="checkpoint"):
        pipeline.load_bundle(str(tmp_path / "empty"), None)
    # A checkpoint of another task, and an Ant actor of the wrong observation size.
    for name, other, message in (("pm", PolicySpec("NoSuchTask-v0", 4, 2, (8,)), "NoSuchTask-v0"),
                                 ("shape", PolicySpec("Ant-v5", 27, 8, (8,)), "obs_dim=27")):
        p = jax.tree_util.tree_map(np.asarray, init_actor_params(other, jax.random.PRNGKey(0)))
        n = observations.fit_normalizer(np.random.default_rng(0).normal(size=(10,
                                                                              other.obs_dim)))
        save_checkpoint(tmp_path / name, other, p, n)
        with pytest.raises(pipeline.ExportError, match=message):
            pipeline.load_bundle(str(tmp_path / name), None)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(pipeline.ExportError, match="prune_sparsity"):
            pipeline.ExportOptions(prune_sparsity=bad)
    for bad in (0.0, -0.5, 1.01):
        with pytest.raises(pipeline.ExportError, match="prune_keep"):
            pipeline.ExportOptions(prune_keep=bad)
    with pytest.raises(pipeline.ExportError, match="--qat must be one of"):
        pipeline.ExportOptions(qat="sometimes")
    with pytest.raises(pipeline.ExportError, match="prune_rounds"):
        pipeline.ExportOptions(prune_rounds=0)
    with pytest.raises(pipeline.ExportError, match="unknown variants"):
        pipeline.ExportOptions(variants=("fp32", "int4"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(pipeline.ExportError, match="not writable"):
        pipeline.prepare_out_dir(str(tmp_path / "file" / "export"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(pipeline.ExportError, match="other files"):
        pipeline.prepare_out_dir(str(tmp_path / "busy"))


def test_cli_bad_inputs(actor_run, tmp_path):
    d, *_ = actor_run
    out = str(tmp_path / "export")
    assert "does not exist" in one_line_error(export_cli(f"--run_dir={tmp_path}/missing",
                                                    f"--out_dir={out}"))
    assert "prune_sparsity" in one_line_error(export_cli(f"--run_dir={d}", f"--out_dir={out}",
                                                    "--prune_sparsity=1.0"))
    assert "prune_keep" in one_line_error(export_cli(f"--run_dir={d}", f"--out_dir={out}",
                                                "--prune_keep=0"))
    # a truncated checkpoint (copy, then cut the largest data file of policy/ in half)
    bad = tmp_path / "truncated"
    shutil.copytree(d, bad)
    files = [os.path.join(r, f) for r, _, fs in os.walk(bad / "checkpoints") for f in fs
             if f"{os.sep}policy{os.sep}" in os.path.join(r, f)]
    big = max(files, key=os.path.getsize)
    with open(big, "r+b") as f:
        f.truncate(os.path.getsize(big) // 2)
    assert "checkpoint" in one_line_error(export_cli(f"--run_dir={bad}", f"--out_dir={out}"))
    (tmp_path / "file").write_text("x")
    assert "not writable" in one_line_error(export_cli(f"--run_dir={d}",
                                                  f"--out_dir={tmp_path}/file/export"))
    assert not os.path.exists(out)
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def test_cli_exports_and_replaces(actor_run, tmp_path):
    d, *_ = actor_run
    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # a previous export gets replaced
    proc = export_cli(f"--checkpoint={d}/checkpoints/1000", f"--out_dir={out}", "--variants=fp32,onnx",
                "--num_calibration=50", "--num_heldout=50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| fp32 |" in proc.stdout and "| onnx |" in proc.stdout
    manifest = json.load(open(out / "manifest.json"))
    assert set(manifest["variants"]) == {"saved_model", "fp32", "onnx"}
    assert manifest["source_checkpoint"].endswith(os.path.join("checkpoints", "1000"))
    assert manifest["variants"]["fp32"]["action_mae_vs_jax"] <= 1e-5
    assert sorted(os.listdir(out)) == ["actor.onnx", "actor_fp32.tflite", "manifest.json",
                                       "saved_model"]


def test_mcu_refuses_an_op_it_lacks_in_one_line(tmp_path):
    """An actor with LayerNorm (int8 MUL, MEAN, RSQRT, ... in its int8 graph): asking
    for the microcontroller C is refused with one line naming the op; nothing is
    written."""
    spec = PolicySpec("Ant-v5", 105, 8, (16,), layer_norm=True)
    p = jax.tree_util.tree_map(np.asarray, init_actor_params(spec, jax.random.PRNGKey(0)))
    n = observations.fit_normalizer(np.random.default_rng(0).normal(size=(50, 105)))
    save_checkpoint(tmp_path / "ln", spec, p, n)
    bundle = pipeline.load_bundle(str(tmp_path / "ln"), None)
    out = tmp_path / "export"
    with pytest.raises(pipeline.ExportError) as e:
        pipeline.export_bundle(bundle, str(out), pipeline.ExportOptions(
            variants=("int8", "mcu"), num_calibration=50, num_heldout=20, qat="never",
            verbose=False))
    msg = str(e.value)
    assert "\n" not in msg and "mcu" in msg and "is not supported" in msg, msg
    # the first op (with its type) that the generator lacks: LayerNorm's int8 MUL here
    named = re.search(r"op (\w+)", msg)
    assert named and named.group(1) in {"MUL", "ADD", "SUB", "MEAN", "RSQRT", "SUM", "RESHAPE",
                                        "SQUARED_DIFFERENCE"}, msg
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if ".partial-" in p]

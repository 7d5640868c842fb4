"""The Pi-side harness on bad input: one line naming the problem, nothing measured
(missing or foreign model files, models of the wrong size, bad flags, a video with no
renderer or encoder). The export directory is conftest's ``harness_export_dir``."""
from __future__ import annotations

import numpy as np
import pytest

from tests.harness_helpers import SHORT, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def export_dir(harness_export_dir):
    return harness_export_dir

@pytest.mark.parametrize("case", ["missing", "not_tflite", "bad_input", "bad_output",
                                  "no_manifest", "cpus", "budget", "both"])
def test_bad_input_one_line_error(case, export_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(case)
    model = f"--model={export_dir}/actor_fp32.tflite"
    if case == "missing":
        proc, needles = run_cli(f"--model={tmp}/nope.tflite", *SHORT), ["not found"]
    elif case == "not_tflite":
        (tmp / "x.tflite").write_bytes(b"this is not a flatbuffer at all")
        proc, needles = run_cli(f"--model={tmp}/x.tflite", *SHORT), ["not a TFLite model"]
    elif case in ("bad_input", "bad_output"):
        bad = wrong_models(tmp_path_factory)[case]
        proc = run_cli(f"--model={bad}", *SHORT)
        needles = ["[1, 105]"] if case == "bad_input" else ["[1, 8]"]
    elif case == "no_manifest":
        proc, needles = run_cli(f"--export_dir={tmp}", *SHORT), ["no manifest.json"]
    elif case == "cpus":
        proc, needles = run_cli(model, "--cpus=0,4096", *SHORT), ["--cpus", "4096"]
    elif case == "budget":
        proc, needles = run_cli(model, "--memory_budget_mb=20", *SHORT), ["memory budget 20"]
    else:
        proc = run_cli(model, f"--export_dir={export_dir}", *SHORT)
        needles = ["exactly one"]
    assert_one_line_error(proc, *needles)


_WRONG = {}


def wrong_models(tmp_path_factory):
    """Models with input [1, 10] and output [1, 3] (built once)."""
    if not _WRONG:
        import tensorflow as tf

        root = tmp_path_factory.mktemp("wrong")
        for case, shape_in, out in (("bad_input", 10, 8), ("bad_output", 105, 3)):
            class Wrong(tf.Module):
                def __init__(self, n_in=shape_in, n_out=out):
                    super().__init__()
                    self.w = tf.constant(np.ones((n_in, n_out), np.float32))

                @tf.function(input_signature=[tf.TensorSpec([1, shape_in], tf.float32)])
                def __call__(self, x):
                    return tf.tanh(tf.matmul(x, self.w))

            m = Wrong()
            data = tf.lite.TFLiteConverter.from_concrete_functions(
                [m.__call__.get_concrete_function()], m).convert()
            path = root / f"{case}.tflite"
            path.write_bytes(data)
            _WRONG[case] = str(path)
    return _WRONG


def _has_osmesa() -> bool:
    import ctypes.util
    return ctypes.util.find_library("OSMesa") is not None


def _has_mp4_encoder() -> bool:
    import importlib.util
    import shutil
    return shutil.which("ffmpeg") is not None or importlib.util.find_spec("imageio_ffmpeg")


@pytest.mark.parametrize("case", ["osmesa", "mp4"])
def test_video_without_backend_fails_before_measuring(case, export_dir, tmp_path):
    """Missing GL backend or MP4 encoder: one-line error and no measurement run."""
    if case == "osmesa" and _has_osmesa() or case == "mp4" and _has_mp4_encoder():
        pytest.skip(f"{case} is available here; the failure path cannot be exercised")
    video = tmp_path / ("ant.gif" if case == "osmesa" else "ant.mp4")
    env = {"MUJOCO_GL": "osmesa"} if case == "osmesa" else None
    proc = run_cli(f"--model={export_dir}/actor_int8.tflite", f"--video={video}",
                   f"--report={tmp_path}/r.json", *SHORT, env=env)
    assert_one_line_error(proc, "no OpenGL backend" if case == "osmesa" else "ffmpeg")
    assert not (tmp_path / "r.json").exists() and not video.exists()

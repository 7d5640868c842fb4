"""tools/mcu_emulation.sh end to end (opt-in: needs arm-none-eabi-gcc, newlib and qemu-system-arm,
which the script installs with apt-get as root when missing).

    JAXRL_LITE_MCU_EMULATION=1 pytest tests/test_mcu_emulation.py

Runs the committed fixture models on an emulated Cortex-M4F (QEMU mps2-an386) over
2,000 Ant-v5 observations recorded by the script, and requires every printed action
to have the bits TFLite Micro's interpreter gives, plus sane flash/RAM figures. The
bad-argument check needs no toolchain and always runs.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "mcu_emulation.sh")
ENV = {**os.environ, "PYTHON": sys.executable}


@pytest.mark.skipif(os.environ.get("JAXRL_LITE_MCU_EMULATION") != "1",
                    reason="opt-in: set JAXRL_LITE_MCU_EMULATION=1")
def test_qemu_actions_are_tflm_actions(tmp_path):
    out = tmp_path / "emu"
    proc = subprocess.run(["bash", SCRIPT, f"--out_dir={out}", "--record=2000", "--board=an386"],
                          env=ENV, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_obs"] == 2000 and len(summary["models"]) == 4
    for name, m in summary["models"].items():
        assert m["qemu_vs_tflm_identical"] == 2000, name
        assert m["host_vs_tflm_identical"] == 2000, name
        assert m["const_bytes"] < m["flash_bytes"] < m["const_bytes"] + 32 * 1024, name
        assert 0 < m["stack_used_bytes"] < m["stack_reserved_bytes"], name
        assert m["ram_needed_bytes"] < m["ram_bytes"], name


def test_bad_arguments_fail_in_one_line():
    for args in (["--board=an999"], ["--record=many"], ["--frobnicate"]):
        proc = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=ENV)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (args, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr

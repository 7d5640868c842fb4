"""The generated C (compiled with the host's gcc) against the TFLite Micro interpreter.

For each committed fixture model (tests/test_mcu_fixture.py: int8 per-channel and
per-tensor, int16x8, int16x8 with the normaliser folded) 10,080 observations go
through both, and every action must have the same float32 bits. The
observations follow the model's own normaliser (its SUB/MUL constants): mean +
std * z with z standard normal, 3x wider, Cauchy (heavy tails) and uniform
within +-1e4 std, plus exact-mean and constant rows. Inputs where TFLM's float ->
int conversion is undefined behaviour (|x / scale| >= 2^31, NaN, +-inf) are
checked separately: the C saturates there, TFLM on x86 returns the type's minimum.
"""
import subprocess

import numpy as np
import pytest

from tests.deps import require

require("tflite_micro")
require("ai_edge_litert")

from export.convert import micro, tflite  # noqa: E402
from export.convert.mcu import UnsupportedModelError, host, write_c_sources  # noqa: E402
from export.convert.mcu.graph import read_graph  # noqa: E402
from tests import test_mcu_fixture as fixture  # noqa: E402

ARENA = 64 * 1024


def _normaliser() -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [obs_dim] from the int8 fixture's SUB (mean) and MUL (1/std)."""
    g = read_graph(fixture.read("int8"))
    sub, mul = g.ops[0], g.ops[1]
    assert (sub.name, mul.name) == ("SUB", "MUL")
    mean = sub.inputs[1].data.reshape(-1).astype(np.float64)
    return mean, 1.0 / mul.inputs[1].data.reshape(-1).astype(np.float64)


def observations(seed: int = 0) -> np.ndarray:
    """10,080 float32 [N, 105] observations around the fixture's normaliser (module doc)."""
    mean, std = _normaliser()
    rng = np.random.default_rng(seed)
    d = mean.size
    z = np.concatenate([rng.normal(size=(4000, d)), 3 * rng.normal(size=(3000, d)),
                        rng.standard_cauchy(size=(2000, d)),
                        rng.uniform(-1e4, 1e4, size=(1000, d)),
                        np.zeros((40, d)), np.ones((40, d)) * rng.normal(size=(40, 1))])
    return (mean + std * z).astype(np.float32)


@pytest.fixture(scope="module")
def obs():
    return observations()


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _build(model: bytes, tmp_path) -> str:
    return host.build(model, str(tmp_path))


@pytest.mark.parametrize("name", fixture.MODELS)
def test_host_c_is_bit_identical_to_tflm(name, obs, tmp_path):
    model = fixture.read(name)
    got = host.run(_build(model, tmp_path), obs, 8)
    ref = micro.run(model, obs, ARENA, tflite.io_details(model))
    same = np.all(_bits(got) == _bits(ref), axis=1)
    assert len(obs) >= 10_000
    assert same.all(), f"{name}: {int((~same).sum())} of {len(obs)} observations differ, " \
                       f"first {np.nonzero(~same)[0][:5]}"
    assert len(np.unique(ref, axis=0)) > 100, "the check needs actions that vary"


def test_out_of_range_inputs_saturate(obs, tmp_path):
    """+-inf and |x / scale| >= 2^31 act like the largest finite input (int8 +-127/-128
    after QUANTIZE); NaN acts like the feature's mean (zero point). TFLM's own result
    there is undefined in C++ (x86: the int8 minimum for +inf, NaN and +huge alike)."""
    model = fixture.read("int8")
    exe = _build(model, tmp_path)
    mean, std = _normaliser()
    base = np.tile(obs[:1], (7, 1))
    k = 5
    for row, v in enumerate([np.inf, 3e38, mean[k] + 1e6 * std[k], -np.inf, -3e38,
                             mean[k] - 1e6 * std[k], np.nan]):
        base[row, k] = v
    got = _bits(host.run(exe, base, 8))
    assert (got[0] == got[1]).all() and (got[1] == got[2]).all()
    assert (got[3] == got[4]).all() and (got[4] == got[5]).all()
    at_mean = obs[:1].copy()
    at_mean[0, k] = mean[k]
    assert (got[6] == _bits(host.run(exe, at_mean, 8))[0]).all()
    # The in-range saturating rows are ordinary inputs: TFLM must agree on them.
    ref = _bits(micro.run(model, base[[2, 5]], ARENA, tflite.io_details(model)))
    assert (ref == got[[2, 5]]).all()


def _with_op_renamed(model: bytes, old: str, new: str) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    code = getattr(schema.BuiltinOperator, new)
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, old):
            oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_is_refused_with_one_line(tmp_path):
    bad = _with_op_renamed(fixture.read("int8"), "TANH", "LOGISTIC")
    out = tmp_path / "c"
    with pytest.raises(UnsupportedModelError) as err:
        write_c_sources(bad, str(out))
    msg = str(err.value)
    assert "LOGISTIC" in msg and "\n" not in msg, msg
    assert not out.exists(), "nothing may be written for a refused model"
    with pytest.raises(UnsupportedModelError, match="not a TFLite model"):
        write_c_sources(b"not a model at all", str(out))


def test_generated_sources_compile_warning_free_and_standalone(tmp_path):
    """The sources need only a C99 compiler and libm: -Werror with the strict flags, and
    the constants (weights, multipliers, tables) land in read-only data."""
    info = write_c_sources(fixture.read("int16x8"), str(tmp_path))
    assert info["input_size"] == 105 and info["output_size"] == 8
    assert set(info["ops"]) == {"QUANTIZE", "SUB", "MUL", "FULLY_CONNECTED", "TANH",
                                "DEQUANTIZE"}
    for src in (f for f in info["files"] if f.endswith(".c")):
        subprocess.run(["cc", *host.CFLAGS, "-pedantic", "-c", src, "-o",
                        str(tmp_path / "x.o")], check=True)
    assert info["const_bytes"] > 105 * 64 + 64 * 64 + 64 * 8

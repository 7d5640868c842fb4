"""TensorFlow Lite Micro export: the int8 model as an aligned C array, checked on the host.

``micro/actor_model.h`` declares, ``micro/actor_model.cc`` defines:

    alignas(16) const unsigned char g_actor_model[];   // the .tflite flatbuffer
    const unsigned int g_actor_model_len;
    ACTOR_MODEL_TENSOR_ARENA_BYTES                      // minimum arena TFLM needed here

plus the input/output dtype and, for int8 I/O, the quantization scale and zero
point (real = scale * (q - zero_point)). The model exported here keeps float32
I/O: TFLM runs the QUANTIZE/DEQUANTIZE and float normalisation kernels, so the
caller feeds raw observations like every other variant.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

# The one C-array reader (TensorFlow-free, so the Pi harness shares it); pipeline.py
# uses it to check that the written .cc round-trips to the model bytes.
from export.harness.shared import parse_c_array  # noqa: F401

ARRAY_NAME = "g_actor_model"
ALIGNMENT = 16
# The arena must hold the tensors plus TFLM's per-op bookkeeping; this many bytes
# on top of the measured minimum absorb allocator differences between builds.
ARENA_MARGIN = 1024
# Where ``python -m export.convert.micro`` (the arena probe's child process) runs from.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MicroError(RuntimeError):
    """TFLite Micro could not load or run the model."""


def _interpreter(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime
    return runtime.Interpreter.from_bytes(model, arena_size=int(arena))


def _fits(model: bytes, arena: int, probe: np.ndarray) -> bool:
    try:
        it = _interpreter(model, arena)
        it.set_input(probe, 0)
        it.invoke()
        return True
    except RuntimeError:
        return False


def min_arena_bytes(model: bytes, obs_dim: int, hi: int | None = None,
                    granularity: int = 16) -> int:
    """Smallest tensor-arena size (bytes, to ``granularity``) with which TFLM
    allocates and invokes the model, found by bisection.

    TFLM sometimes segfaults (instead of failing cleanly) when the arena is just
    too small, so the probes run in a child process; a probe that kills the
    child counts as a failure and the search restarts from there.
    """
    hi = hi or max(64 * 1024, 4 * len(model))
    lo = 0  # invariant: lo fails (or is 0), hi works (checked first)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model)
        f.flush()
        checked_hi = False
        for _ in range(64):  # each child run makes progress; 64 is far above need
            if checked_hi and hi - lo <= granularity:
                return hi
            cmd = [sys.executable, "-m", "export.convert.micro", f.name, str(obs_dim), str(lo),
                   str(hi), str(granularity), "1" if checked_hi else "0"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=_REPO)
            trying = None
            for line in proc.stdout.splitlines():
                word, _, num = line.partition(" ")
                if word == "try":
                    trying = int(num)
                elif word in ("ok", "fail"):
                    if int(num) == hi and not checked_hi:
                        if word == "fail":
                            raise MicroError(f"TFLite Micro cannot run the model even with a "
                                             f"{hi}-byte arena")
                        checked_hi = True
                    elif word == "ok":
                        hi = int(num)
                    else:
                        lo = int(num)
                    trying = None
            if proc.returncode == 0:
                continue
            if trying is None:
                raise MicroError(f"TFLite Micro arena probe failed: "
                                 f"{(proc.stderr.strip().splitlines() or [''])[-1][:200]}")
            if trying == hi and not checked_hi:
                raise MicroError(f"TFLite Micro crashed loading the model with a {hi}-byte arena")
            lo = max(lo, trying)  # the child died at this size: too small
    raise MicroError("arena bisection did not converge")


def _probe_main(argv: list[str]) -> int:
    """Child of min_arena_bytes: bisect, printing 'try N' before and 'ok|fail N' after."""
    path, obs_dim, lo, hi, gran, checked = argv
    lo, hi, gran = int(lo), int(hi), int(gran)
    model = open(path, "rb").read()
    probe = np.zeros((1, int(obs_dim)), np.float32)

    def test(n):
        print(f"try {n}", flush=True)
        ok = _fits(model, n, probe)
        print(f"{'ok' if ok else 'fail'} {n}", flush=True)
        return ok

    if checked != "1" and not test(hi):
        return 0
    while hi - lo > gran:
        mid = (lo + hi) // 2
        if test(mid):
            hi = mid
        else:
            lo = mid
    return 0


def run(model: bytes, obs: np.ndarray, arena: int, io: dict | None = None) -> np.ndarray:
    """TFLM actions for raw obs [N, obs_dim] -> float32 [N, act_dim].

    ``io``: tflite.io_details(model); int8 I/O is quantized/dequantized here.
    """
    try:
        it = _interpreter(model, arena)
    except RuntimeError as e:
        raise MicroError(f"TFLite Micro failed to load the model: {e}") from None
    out = []
    for row in np.asarray(obs, np.float32):
        x = row[None]
        if io and io["input_dtype"] == "int8":
            s, z = io["input_quant"]
            x = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
        it.set_input(x, 0)
        it.invoke()
        y = np.asarray(it.get_output(0))
        if io and io["output_dtype"] == "int8":
            s, z = io["output_quant"]
            y = (y.astype(np.float32) - z) * s
        out.append(np.asarray(y, np.float32).reshape(-1))
    return np.stack(out)


# MicroMutableOpResolver method per builtin op name.
_RESOLVER_METHODS = {
    "FULLY_CONNECTED": "AddFullyConnected", "TANH": "AddTanh", "LOGISTIC": "AddLogistic",
    "RELU": "AddRelu", "ELU": "AddElu", "QUANTIZE": "AddQuantize",
    "DEQUANTIZE": "AddDequantize", "SUB": "AddSub", "MUL": "AddMul", "ADD": "AddAdd",
    "DIV": "AddDiv", "MAXIMUM": "AddMaximum", "MINIMUM": "AddMinimum", "SUM": "AddSum",
    "MEAN": "AddMean", "RSQRT": "AddRsqrt", "RESHAPE": "AddReshape",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
}


def _c_float(x) -> str:
    """A valid C float literal that round-trips (repr: '0.0', '0.00390625', '1e-05')."""
    return f"{float(x)!r}f"


def write_c_array(model: bytes, out_dir: str, *, arena_bytes: int, io: dict, ops: list[str],
                  name: str = "actor_model") -> tuple[str, str]:
    """Write ``out_dir/{name}.h`` and ``.cc``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    guard = f"{name.upper()}_H_"
    macro = name.upper()
    in_scale, in_zp = io["input_quant"]
    out_scale, out_zp = io["output_quant"]
    register = " \\\n".join(f"  (resolver).{_RESOLVER_METHODS.get(op, 'Add' + op.title())}();"
                             for op in ops)
    header = f"""// Generated by export/convert/micro.py: the actor as a TensorFlow Lite flatbuffer for
// TensorFlow Lite Micro. Input: raw Ant-v5 observation [1, {io['input_shape'][1]}] ({io['input_dtype']});
// output: action [1, {io['output_shape'][1]}] in [-1, 1] ({io['output_dtype']}).
// Ops: {', '.join(ops)}
#ifndef {guard}
#define {guard}

#define {macro}_ALIGNMENT {ALIGNMENT}
#define {macro}_TENSOR_ARENA_BYTES {int(arena_bytes)}
#define {macro}_INPUT_IS_INT8 {int(io['input_dtype'] == 'int8')}
#define {macro}_INPUT_SCALE {_c_float(in_scale)}
#define {macro}_INPUT_ZERO_POINT {int(in_zp)}
#define {macro}_OUTPUT_IS_INT8 {int(io['output_dtype'] == 'int8')}
#define {macro}_OUTPUT_SCALE {_c_float(out_scale)}
#define {macro}_OUTPUT_ZERO_POINT {int(out_zp)}

// Registers exactly the ops above on a tflite::MicroMutableOpResolver<{macro}_NUM_OPS>.
#define {macro}_NUM_OPS {len(ops)}
#define {macro}_REGISTER_OPS(resolver) \\
{register}

extern const unsigned char {ARRAY_NAME}[];
extern const unsigned int {ARRAY_NAME}_len;

#endif  // {guard}
"""
    rows = []
    for i in range(0, len(model), 12):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in model[i:i + 12]) + ",")
    body = "\n".join(rows)
    source = f"""// Generated by export/convert/micro.py. Do not edit.
#include "{name}.h"

alignas({ALIGNMENT}) const unsigned char {ARRAY_NAME}[] = {{
{body}
}};
const unsigned int {ARRAY_NAME}_len = {len(model)};
"""
    h_path = os.path.join(out_dir, f"{name}.h")
    cc_path = os.path.join(out_dir, f"{name}.cc")
    with open(h_path, "w") as f:
        f.write(header)
    with open(cc_path, "w") as f:
        f.write(source)
    return h_path, cc_path


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))

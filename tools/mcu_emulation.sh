#!/usr/bin/env bash
# The int8 / int16x8 actor on an emulated Cortex-M microcontroller, checked against TFLite Micro.
#
#   tools/mcu_emulation.sh [--out_dir=DIR] [--board=an386|an385|an500]
#                          [--model=NAME=PATH.tflite ...] [--obs=OBS.npy | --record=N] [--seed=0]
#
# For each model (default: the four committed fixtures tests/data/mcu_actor_*.tflite) it
# generates plain C with export/convert/mcu (no TFLM runtime: TFLM's C++ sources are not on
# the package registries), cross-compiles it with Debian's arm-none-eabi-gcc + newlib for an
# Arm MPS2 board (tools/mcu/: startup, semihosting, linker script), runs it in
# qemu-system-arm, feeds it the observations (--obs: a float32 [N, 105] .npy of recorded
# observations; default: --record=10000 real Ant-v5 observations recorded now with random
# actions) through semihosting file reads, and compares every printed action (float32 bits)
# with the TFLite Micro Python interpreter's. Writes DIR/summary.{json,md}: agreement counts,
# flash (text+data) and RAM (data+bss incl. the 8 KiB stack) from arm-none-eabi-size, the
# stack's high-water mark and the RAM actually needed (RAM - reserved stack + stack used). Exits 1 if any action differs.
#
# Boards: an386 = Cortex-M4F (hard float, default), an385 = Cortex-M3 (soft float),
# an500 = Cortex-M7 (single-precision FPU used). Needs arm-none-eabi-gcc, newlib and
# qemu-system-arm; installs them with apt-get when missing (that part needs root).
# Not part of CI; `JAXRL_LITE_MCU_EMULATION=1 pytest tests/test_mcu_emulation.py` runs it.
set -euo pipefail
{ # read to the closing brace before running: editing this file mid-run cannot break a run

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
OUT_DIR="" BOARD=an386 OBS="" RECORD=10000 SEED=0
MODELS=()

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
say() { echo "[mcu-emulation $(date +%H:%M:%S)] $*"; }

for arg in "$@"; do
  case "$arg" in
    --out_dir=*) OUT_DIR=${arg#*=} ;;
    --board=*) BOARD=${arg#*=} ;;
    --model=*) MODELS+=("${arg#*=}") ;;
    --obs=*) OBS=${arg#*=} ;;
    --record=*) RECORD=${arg#*=} ;;
    --seed=*) SEED=${arg#*=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

case "$BOARD" in
  an385) CPU=(-mcpu=cortex-m3 -mfloat-abi=soft) ;;
  an386) CPU=(-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16) ;;
  an500) CPU=(-mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-sp-d16) ;;
  *) die "--board must be an385, an386 or an500, got '$BOARD'" ;;
esac
for n in "$RECORD" "$SEED"; do
  [[ $n =~ ^[0-9]+$ ]] || die "--record/--seed must be integers, got '$n'"
done
[[ -x $PY ]] || die "no Python at $PY (make install, or set PYTHON=...)"
if [[ ${#MODELS[@]} == 0 ]]; then
  for name in int8 int8_per_tensor int16x8 int16x8_folded; do
    MODELS+=("$name=$REPO/tests/data/mcu_actor_$name.tflite")
  done
fi
OUT_DIR=${OUT_DIR:-$(mktemp -d -t mcu_emulation.XXXXXX)}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# Toolchain: Debian's packages, installed only when something is missing.
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
    || [[ ! -d /usr/lib/arm-none-eabi/newlib ]]; then
  [[ $(id -u) == 0 ]] || die "arm-none-eabi-gcc/newlib/qemu-system-arm missing and not root: \
run with sudo, or apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
  say "installing gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-arm-none-eabi \
    libnewlib-arm-none-eabi qemu-system-arm >/dev/null
fi

say "preparing ${#MODELS[@]} model(s) in $OUT_DIR (C sources, TFLM and host-C actions)"
PREP=(--out_dir="$OUT_DIR" --record="$RECORD" --seed="$SEED")
[[ -n $OBS ]] && PREP+=(--obs="$OBS")
for m in "${MODELS[@]}"; do PREP+=(--model="$m"); done
(cd "$REPO" && "$PY" -m export.convert.mcu.emulate prepare "${PREP[@]}")

T=$REPO/tools/mcu
CFLAGS=(-mthumb "${CPU[@]}" -std=c99 -O2 -ffp-contract=off -ffunction-sections
        -fdata-sections -Wall -Wextra -Werror)
for m in "${MODELS[@]}"; do
  name=${m%%=*}
  d=$OUT_DIR/$name
  say "$name: arm-none-eabi-gcc for mps2-$BOARD"
  arm-none-eabi-gcc "${CFLAGS[@]}" -nostartfiles --specs=nano.specs -T "$T/mps2.ld" \
    -Wl,--gc-sections -Wl,-Map="$d/actor.map" -I"$T" -I"$d/src" \
    "$T/startup.c" "$T/semihost.c" "$T/main.c" "$d/src/actor_mcu.c" "$d/src/mcu_kernels.c" \
    -lm -o "$d/actor.elf"
  arm-none-eabi-size "$d/actor.elf" > "$d/size.txt"
  arm-none-eabi-nm "$d/actor.elf" | grep -E ' _[se]stack$' >> "$d/size.txt"
  say "$name: qemu-system-arm -M mps2-$BOARD"
  start=$(date +%s.%N)
  # Semihosting opens obs.bin relative to QEMU's working directory; its console is stderr.
  (cd "$OUT_DIR" && timeout 1800 qemu-system-arm -M "mps2-$BOARD" -nographic -monitor none \
     -serial none -semihosting-config enable=on,target=native -kernel "$d/actor.elf") \
    > "$d/qemu.txt" 2>&1 || die "$name: QEMU run failed (exit $?); see $d/qemu.txt"
  say "$name: $(tail -n 1 "$d/qemu.txt") in $(echo "$(date +%s.%N) - $start" | bc) s"
done

(cd "$REPO" && "$PY" -m export.convert.mcu.emulate compare --out_dir="$OUT_DIR" --board="$BOARD")
"$PY" - "$OUT_DIR/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
bad = [n for n, m in s["models"].items() if m["qemu_vs_tflm_identical"] != s["num_obs"]]
sys.exit(f"error: actions differ from TFLM for {bad}" if bad else 0)
EOF
say "LiteRT's kernels on the same observations (DIR/runtimes.md)"
(cd "$REPO" && "$PY" -m export.convert.mcu.emulate runtimes --out_dir="$OUT_DIR")
say "summary: $OUT_DIR/summary.md"
exit 0
}

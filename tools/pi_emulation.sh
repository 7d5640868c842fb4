#!/usr/bin/env bash
# The Pi path on a real 64-bit ARM userland, emulated here: x86 vs aarch64 on one export.
#
#   sudo tools/pi_emulation.sh --export_dir=EXPORT [--out_dir=OUT] [--suites=bookworm,trixie]
#                              [--episodes=2] [--seed=0] [--max_episode_steps=1000]
#   sudo tools/pi_emulation.sh --build_only [--suites=...]     # only build/cache the userlands
#
# For each Debian suite (bookworm = the Raspberry Pi OS 12 base, Python 3.11; trixie = current
# stable, Python 3.13) it builds an arm64 userland once (mmdebstrap + qemu-user-static, cached
# under --cache), then per run, on a throw-away overlay of that cache: installs exactly the
# package's [pi] extra (`pip install "<this tree>[pi]"`, nothing listed by hand), checks that
# JAX and TensorFlow are absent, computes every variant's actions on a fixed set of recorded
# observations and runs `export.evaluate --export_dir` with matched seeds. The same is done on
# this x86 machine with the host's Python first; OUT/crossarch.{md,json} puts them side by side.
#
# Needs root (mounts, chroot) and a Debian/Ubuntu host (apt-get installs mmdebstrap,
# qemu-user-static and binfmt-support when missing). Every mount is undone on exit or failure.
set -euo pipefail
{ # read to the closing brace before running: editing this file mid-run cannot break a run

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${JAXRL_LITE_PI_CACHE:-${HOME:-/root}/.cache/jaxrl_lite/pi-rootfs}
HOST_PY=${PYTHON:-$REPO/.venv/bin/python}
MIRROR=${JAXRL_LITE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
QEMU_CPU=${QEMU_CPU:-cortex-a72}
SUITES=bookworm,trixie
EXPORT_DIR="" OUT_DIR="" EPISODES=2 SEED=0 MAX_STEPS=1000 BUILD_ONLY=0 SKIP_X86=0

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
say() { echo "[pi-emulation $(date +%H:%M:%S)] $*"; }

for arg in "$@"; do
  case "$arg" in
    --export_dir=*) EXPORT_DIR=${arg#*=} ;;
    --out_dir=*) OUT_DIR=${arg#*=} ;;
    --suites=*) SUITES=${arg#*=} ;;
    --episodes=*) EPISODES=${arg#*=} ;;
    --seed=*) SEED=${arg#*=} ;;
    --max_episode_steps=*) MAX_STEPS=${arg#*=} ;;
    --cache=*) CACHE=${arg#*=} ;;
    --mirror=*) MIRROR=${arg#*=} ;;
    --build_only) BUILD_ONLY=1 ;;
    --skip_x86) SKIP_X86=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

[[ $(id -u) == 0 ]] || die "needs root (mounts and chroot): run it with sudo"
for n in "$EPISODES" "$SEED" "$MAX_STEPS"; do
  [[ $n =~ ^[0-9]+$ ]] || die "--episodes/--seed/--max_episode_steps must be integers, got '$n'"
done
IFS=, read -r -a SUITE_LIST <<< "$SUITES"
for s in "${SUITE_LIST[@]}"; do
  [[ $s =~ ^[a-z]+$ ]] || die "--suites: '$s' is not a Debian suite name (e.g. bookworm,trixie)"
done
if [[ $BUILD_ONLY == 0 ]]; then
  [[ -n $EXPORT_DIR ]] || die "give --export_dir=EXPORT (a directory written by export.convert)"
  [[ -f $EXPORT_DIR/manifest.json ]] || die "$EXPORT_DIR has no manifest.json; expected an \
export directory written by 'python -m export.convert'"
  EXPORT_DIR=$(cd "$EXPORT_DIR" && pwd)
  OUT_DIR=${OUT_DIR:-$EXPORT_DIR/crossarch}
  mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
  [[ $SKIP_X86 == 1 || -x $HOST_PY ]] || die "no host Python at $HOST_PY: run 'make install' \
or set PYTHON=/path/to/python (with the [pi] or [export] extra installed)"
fi

# --------------------------------------------------------------------------- host tools
ensure_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  [[ -e /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v arch-test >/dev/null || missing+=(arch-test)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]} with apt-get"
    apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null &&
      apt-get install -y -q "${missing[@]}" >/dev/null; } || die "apt-get install ${missing[*]} failed"
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc (a container without it cannot run foreign binaries)"
  fi
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || die "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64)"
}

# --------------------------------------------------------------------------- userland cache
build_rootfs() {  # $1 suite -> $CACHE/$1-arm64 (built once; delete the directory to rebuild)
  local suite=$1 dest=$CACHE/$1-arm64
  if [[ -f $dest/.jaxrl_lite_complete ]]; then
    say "$suite: cached userland $dest"
    return
  fi
  mkdir -p "$CACHE"
  rm -rf "$dest.partial"
  say "$suite: building an arm64 userland with mmdebstrap (about 5-10 min, once)"
  local t0=$SECONDS
  mmdebstrap --arch=arm64 --variant=apt --quiet \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$dest.partial" "$MIRROR" || die "mmdebstrap $suite failed (mirror $MIRROR)"
  touch "$dest.partial/.jaxrl_lite_complete"
  mv "$dest.partial" "$dest"
  say "$suite: userland built in $((SECONDS - t0)) s"
}

# --------------------------------------------------------------------------- mounts
WORK="" ROOT="" MOUNTS=()
in_root_pids() {  # processes whose root directory is ROOT (started by in_root)
  local d
  for d in /proc/[0-9]*; do
    [[ $(readlink "$d/root" 2>/dev/null) == "$1" ]] && echo "${d#/proc/}"
  done
  return 0
}

cleanup() {
  local rc=$? i pids
  if [[ -n ${ROOT:-} ]]; then  # stop what still runs inside (an interrupted run) first
    pids=$(in_root_pids "$ROOT")
    if [[ -n $pids ]]; then kill -TERM $pids 2>/dev/null; sleep 2; fi
    pids=$(in_root_pids "$ROOT")
    if [[ -n $pids ]]; then kill -KILL $pids 2>/dev/null; sleep 1; fi
  fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${MOUNTS[i]}" 2>/dev/null || umount -l -R "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
  if [[ -n $WORK && -d $WORK ]]; then
    if grep -q " $WORK" /proc/self/mounts; then  # never rm -rf through a live bind mount
      echo "error: mounts under $WORK are still live; remove it by hand after umount" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  WORK="" ROOT=""
  return $rc
}
trap 'cleanup' EXIT
trap 'exit 130' INT TERM

bind() {  # bind SRC DEST [ro]: DEST created inside the root; unmounted by cleanup
  local src=$1 dest=$2
  if [[ -d $src ]]; then mkdir -p "$dest"
  elif [[ ! -e $dest ]]; then mkdir -p "$(dirname "$dest")"; touch "$dest"; fi
  mount --bind "$src" "$dest"
  MOUNTS+=("$dest")
  if [[ ${3:-} == ro ]]; then mount -o remount,bind,ro "$dest"; fi
}

enter_rootfs() {  # $1 suite -> sets ROOT: an overlay on the cached userland, set up for pip
  local suite=$1
  WORK=$(mktemp -d "$CACHE/run-$suite.XXXXXX")
  mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root"
  ROOT=$WORK/root
  mount -t overlay overlay -o "lowerdir=$CACHE/$suite-arm64,upperdir=$WORK/upper,workdir=$WORK/work" \
    "$ROOT" || die "cannot mount an overlay on $CACHE/$suite-arm64"
  MOUNTS+=("$ROOT")
  mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
  mount -t sysfs sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys")
  mount --rbind /dev "$ROOT/dev"; mount --make-rslave "$ROOT/dev"; MOUNTS+=("$ROOT/dev")
  # qemu-user passes /proc/cpuinfo through from the host, so an aarch64 process reads x86
  # text. LiteRT's CPU detection (the cpuinfo library behind XNNPACK) does not survive that:
  # with /sys mounted it finds the host's processors there, then no ARM entry for them in
  # /proc/cpuinfo, and Interpreter() segfaults on construction (LiteRT 2.3.0, qemu 7.2, any
  # QEMU_CPU; checked here). A real Raspberry Pi 4's cpuinfo (4x Cortex-A72, CPU part 0xd08)
  # over it makes it work, and matches QEMU_CPU below.
  bind "$REPO/tools/pi4_cpuinfo.txt" "$ROOT/proc/cpuinfo" ro
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  cp /etc/hosts "$ROOT/etc/hosts" 2>/dev/null || true
  # pip inside must reach PyPI exactly as it does here: this machine's pip configuration,
  # CA bundle, and any local wheel directories or index that configuration names.
  local f p
  for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt \
           "${HOME:-/root}/.config/pip/pip.conf" "${HOME:-/root}/.pip/pip.conf"; do
    [[ -f $f ]] || continue
    mkdir -p "$ROOT$(dirname "$f")" && cp "$f" "$ROOT$f"
    for p in $(grep -oE '(file://)?/[^ "'\'']+' "$f" | sed -e 's#^file://##' -e 's#/simple/*$##'); do
      if [[ -d $p && ! -e $ROOT$p ]]; then bind "$p" "$ROOT$p" ro; fi  # a local index: its root
    done
  done
  for p in ${PIP_FIND_LINKS:-}; do
    if [[ -d $p && ! -e $ROOT$p ]]; then bind "$p" "$ROOT$p" ro; fi
  done
  local ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  if [[ -f $ca ]]; then mkdir -p "$ROOT$(dirname "$ca")"; cp "$ca" "$ROOT$ca"; fi
  # pip's download cache survives runs (one per suite); the installed venv does not.
  mkdir -p "$CACHE/pip-cache-$suite"
  bind "$CACHE/pip-cache-$suite" "$ROOT/root/.cache/pip"
  # This tree as it is now (tracked + untracked, not ignored), the export (read-only), the output.
  mkdir -p "$ROOT/src"
  (cd "$REPO" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - 2>/dev/null) \
    | tar -xf - -C "$ROOT/src"
  bind "$EXPORT_DIR" "$ROOT/export" ro
  bind "$OUT_DIR" "$ROOT/out"
}

in_root() {  # run a bash script inside ROOT with a clean environment (PIP_* forwarded)
  # QEMU_CPU: emulate the Pi 4's Cortex-A72 feature set, not qemu's default "max" CPU.
  # With "max" (SVE, i8mm, ... which no Raspberry Pi has) XNNPACK picks int8 kernels whose
  # results under qemu 7.2 are far off (int8 actions up to 75 LSB from x86); with
  # cortex-a72, -a53, -a76 or neoverse-n1 they are bit-identical to x86 (WORKSPACE.md).
  local envs=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
              PYTHONUNBUFFERED=1 JAXRL_LITE_EMULATION=qemu-user QEMU_CPU=$QEMU_CPU)
  local v
  for v in $(compgen -e); do
    case "$v" in PIP_*|SSL_CERT_FILE|REQUESTS_CA_BUNDLE) envs+=("$v=${!v}") ;; esac
  done
  chroot "$ROOT" /usr/bin/env -i "${envs[@]}" /bin/bash -euo pipefail -c "$1"
}

# --------------------------------------------------------------------------- runs
FAILED=0
HARNESS_ARGS="--episodes=$EPISODES --seed=$SEED --max_episode_steps=$MAX_STEPS --threads=1"

run_x86() {
  local out=$OUT_DIR/x86
  mkdir -p "$out"
  say "x86: recording observations, actions and evaluate ($HOST_PY)"
  (cd "$REPO" && PYTHONPATH=$REPO "$HOST_PY" -m export.harness.agreement record \
     --export_dir="$EXPORT_DIR" --observations="$OUT_DIR/observations.npy" --seed="$SEED")
  (cd "$REPO" && PYTHONPATH=$REPO "$HOST_PY" -m export.harness.agreement actions \
     --export_dir="$EXPORT_DIR" --observations="$OUT_DIR/observations.npy" \
     --out="$out/actions.npz")
  (cd "$REPO" && PYTHONPATH=$REPO "$HOST_PY" -m export.evaluate --export_dir="$EXPORT_DIR" \
     --comparison_rows=false $HARNESS_ARGS --report="$out/evaluation.json") | tail -n 20 \
    || { say "x86: evaluate reported failed variant(s) (table above)"; FAILED=1; }
}

run_aarch64() {  # $1 suite
  local suite=$1 label=aarch64-$1 t0=$SECONDS
  mkdir -p "$OUT_DIR/$label"
  enter_rootfs "$suite"
  say "$suite: $(in_root 'python3 --version') on $(in_root 'uname -m') (qemu-user, $QEMU_CPU); \
installing the [pi] extra from this tree's pyproject.toml"
  in_root 'python3 -m venv /opt/pi && /opt/pi/bin/pip install --quiet --progress-bar off "/src[pi]" \
             2>&1 | { grep -v "^WARNING: Location .file://.* is ignored" || true; }
           /opt/pi/bin/pip list --format=freeze > /out/'"$label"'/pip-freeze.txt'
  say "$suite: installed in $((SECONDS - t0)) s: $(grep -iE '^(ai-edge-litert|mujoco|numpy|gymnasium)=' \
    "$OUT_DIR/$label/pip-freeze.txt" | tr '\n' ' ')"
  in_root 'cd /tmp && /opt/pi/bin/python -c "
import importlib.util as u, sys
heavy = [m for m in (\"jax\", \"jaxlib\", \"flax\", \"orbax\", \"tensorflow\", \"mujoco_mjx\")
         if u.find_spec(m)]
sys.exit(f\"error: the [pi] install pulled {heavy}\" if heavy else 0)"'
  say "$suite: actions on the recorded observations"
  in_root "cd /tmp && /opt/pi/bin/python -m export.harness.agreement actions --export_dir=/export \
           --observations=/out/observations.npy --out=/out/$label/actions.npz"
  say "$suite: jaxrl-evaluate --export_dir ($EPISODES episode(s) per variant; slow under emulation)"
  in_root "cd /tmp && /opt/pi/bin/jaxrl-evaluate --export_dir=/export $HARNESS_ARGS \
           --report=/out/$label/evaluation.json" | tail -n 20 \
    || { say "$suite: evaluate reported failed variant(s) (table above)"; FAILED=1; }
  cleanup
  say "$suite: done in $((SECONDS - t0)) s"
}

ensure_tools
for s in "${SUITE_LIST[@]}"; do build_rootfs "$s"; done
[[ $BUILD_ONLY == 1 ]] && { say "userlands cached under $CACHE"; exit 0; }
T0=$SECONDS
[[ $SKIP_X86 == 1 ]] || run_x86
[[ -f $OUT_DIR/observations.npy ]] || die "$OUT_DIR/observations.npy is missing (run without --skip_x86)"
labels=()
[[ -f $OUT_DIR/x86/actions.npz ]] && labels+=(x86)
for s in "${SUITE_LIST[@]}"; do run_aarch64 "$s"; labels+=("aarch64-$s"); done
(cd "$REPO" && PYTHONPATH=$REPO "$HOST_PY" -m export.harness.agreement compare \
   --out_dir="$OUT_DIR" "${labels[@]}") || FAILED=1
say "all done in $((SECONDS - T0)) s; table: $OUT_DIR/crossarch.md"
exit $FAILED
}

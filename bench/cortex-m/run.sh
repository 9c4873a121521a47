#!/usr/bin/env bash
# Cortex-M4 instruction counts of rsim-edge against CMSIS-NN on the MLPerf Tiny IC model (ResNet-8),
# op by op, under QEMU mps2-an386 with an instruction-counting TCG plugin. Method and results:
# docs/results/cortex-m4-count.md.
#
#   bench/cortex-m/run.sh [--check-plugin]
#
# Prints the table and writes target/bench/cortex-m4.json. --check-plugin also recounts both
# programs with one plugin callback per instruction and fails unless every region is identical.
#
# Reads in place (never copies into the repository):
#   RSIM_MODELS    (default ../shared/models)          mlperf-tiny-ic/: .tflite, model_ops.json, inputs/000.bin, intermediates/
#   RSIM_CMSIS_NN  (default ../shared/peers/cmsis-nn)  CMSIS-NN sources (Apache-2.0)
# Knobs: CMSIS_OPT (default -Ofast, CMSIS-NN's default), CARGO_TARGET_DIR (default target/cortex-m),
#   QEMU_PLUGIN_API (plugin API version; default from `qemu-system-arm --version`).
# Installs nothing: a missing tool is named with the Debian package or rustup command that provides it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHECK_PLUGIN=0
for a in "$@"; do
    case "$a" in
        --check-plugin) CHECK_PLUGIN=1 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $a (see --help)" >&2; exit 2 ;;
    esac
done

abs() { case "$1" in /*) realpath -m "$1" ;; *) realpath -m "$ROOT/$1" ;; esac; }
MODELS="$(abs "${RSIM_MODELS:-../shared/models}")"
CMSIS="$(abs "${RSIM_CMSIS_NN:-../shared/peers/cmsis-nn}")"
IC="$MODELS/mlperf-tiny-ic"
TFLITE="$IC/pretrainedResnet_quant.tflite"
INPUT="$IC/inputs/000.bin"
TARGET=thumbv7em-none-eabihf
CMSIS_OPT="${CMSIS_OPT:--Ofast}"
CFLAGS_M4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 $CMSIS_OPT"
OUT="$ROOT/target/bench"
WORK="$OUT/cortex-m"
export CARGO_TARGET_DIR="$(abs "${CARGO_TARGET_DIR:-target/cortex-m}")"
unset CARGO_BUILD_TARGET RUSTFLAGS

# --- prerequisites -------------------------------------------------------------------------------
missing_pkgs=()
missing_other=()
need_bin() { command -v "$1" >/dev/null 2>&1 || missing_pkgs+=("$2"); }
need_bin qemu-system-arm qemu-system-arm
need_bin arm-none-eabi-gcc gcc-arm-none-eabi
need_bin arm-none-eabi-nm binutils-arm-none-eabi
need_bin cc gcc
need_bin python3 python3
need_bin cargo "(rustup: https://rustup.rs)"
# newlib (memcpy/memset for CMSIS-NN): gcc-arm-none-eabi only recommends it.
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    nano="$(arm-none-eabi-gcc $CFLAGS_M4 -print-file-name=libc_nano.a)"
    [ -f "$nano" ] || missing_pkgs+=(libnewlib-arm-none-eabi)
else
    missing_pkgs+=(libnewlib-arm-none-eabi)
fi
if command -v rustc >/dev/null 2>&1; then
    [ -d "$(rustc --print sysroot)/lib/rustlib/$TARGET" ] || missing_other+=("rustup target add $TARGET")
fi
for f in "$TFLITE" "$INPUT" "$IC/model_ops.json" "$IC/intermediates/index.json"; do
    [ -f "$f" ] || missing_other+=("$f (set RSIM_MODELS)")
done
[ -f "$CMSIS/Include/arm_nnfunctions.h" ] || missing_other+=("CMSIS-NN sources at $CMSIS (set RSIM_CMSIS_NN)")
if [ ${#missing_pkgs[@]} -gt 0 ] || [ ${#missing_other[@]} -gt 0 ]; then
    echo "error: bench/cortex-m/run.sh is missing prerequisites:" >&2
    [ ${#missing_pkgs[@]} -eq 0 ] || echo "  apt-get install ${missing_pkgs[*]}" >&2
    for m in "${missing_other[@]}"; do echo "  $m" >&2; done
    exit 1
fi

QEMU_VERSION="$(qemu-system-arm --version | sed -n '1s/.*version \([0-9][0-9.]*\).*/\1/p')"
if [ -z "${QEMU_PLUGIN_API:-}" ]; then
    IFS=. read -r qmaj qmin _ <<<"$QEMU_VERSION"
    if [ "$qmaj" -lt 9 ]; then QEMU_PLUGIN_API=1
    elif [ "$qmaj" -eq 9 ] && [ "$qmin" -eq 0 ]; then QEMU_PLUGIN_API=2
    elif [ "$qmaj" -eq 9 ] && [ "$qmin" -eq 1 ]; then QEMU_PLUGIN_API=3
    else QEMU_PLUGIN_API=4; fi
fi

mkdir -p "$WORK"
step() { echo "== $*" >&2; }

# --- 1. the network, once, for both sides ---------------------------------------------------------
step "converting $TFLITE (bench/cortex-m/gen)"
cargo build -q --release --manifest-path "$HERE/gen/Cargo.toml"
"$CARGO_TARGET_DIR/release/rsim-cortex-m-gen" --tflite "$TFLITE" --input "$INPUT" --out "$WORK/gen"

# --- 2. the counting plugin -----------------------------------------------------------------------
step "building the markcount QEMU plugin (plugin API $QEMU_PLUGIN_API for QEMU $QEMU_VERSION)"
cc -O2 -shared -fPIC -fvisibility=hidden -Wall -Wextra -DQEMU_PLUGIN_API_VERSION="$QEMU_PLUGIN_API" \
    -o "$WORK/libmarkcount.so" "$HERE/plugin/markcount.c"

# --- 3. CMSIS-NN program ---------------------------------------------------------------------------
step "building CMSIS-NN ($CFLAGS_M4)"
CC_ARM=(arm-none-eabi-gcc $CFLAGS_M4 -std=c99 -ffunction-sections -fdata-sections -I"$CMSIS/Include" -I"$HERE/cmsis")
rm -rf "$WORK/cmsis" && mkdir -p "$WORK/cmsis/obj"
# Every integer source (the float API is off by default); the linker keeps what the network calls.
find "$CMSIS/Source" -name '*.c' ! -name '*_f16*' ! -name '*_f32*' ! -name '*flt*' | sort >"$WORK/cmsis/sources.txt"
export WORK
xargs -P "$(nproc)" -I{} sh -c '"$@" -c "{}" -o "$WORK/cmsis/obj/$(basename "{}" .c).o"' _ "${CC_ARM[@]}" <"$WORK/cmsis/sources.txt"
arm-none-eabi-ar rcs "$WORK/cmsis/libcmsis-nn.a" "$WORK/cmsis/obj/"*.o
"${CC_ARM[@]}" -Wall -Wextra -Werror -c "$HERE/cmsis/main.c" -o "$WORK/cmsis/main.o"
"${CC_ARM[@]}" -Wall -Wextra -Werror -c "$HERE/cmsis/startup.c" -o "$WORK/cmsis/startup.o"
"${CC_ARM[@]}" -c "$WORK/gen/net.c" -o "$WORK/cmsis/net.o"
"${CC_ARM[@]}" -nostartfiles --specs=nano.specs -T "$HERE/cmsis/link.ld" -Wl,--gc-sections \
    "$WORK/cmsis/startup.o" "$WORK/cmsis/main.o" "$WORK/cmsis/net.o" "$WORK/cmsis/libcmsis-nn.a" \
    -o "$WORK/cmsis-nn.elf"

# --- 4. rsim-edge firmware -------------------------------------------------------------------------
step "building the rsim-edge firmware ($TARGET, release)"
RSIM_CM_MODEL="$WORK/gen/ic.rsm" RSIM_CM_INPUT="$INPUT" \
    cargo build -q --release --target "$TARGET" --manifest-path "$HERE/fw/Cargo.toml"
cp "$CARGO_TARGET_DIR/$TARGET/release/rsim-cortex-m-count" "$WORK/rsim-edge.elf"

# --- 5. count ----------------------------------------------------------------------------------------
count() { # name, per (tb|insn)
    local elf="$WORK/$1.elf" addr
    addr="$(arm-none-eabi-nm "$elf" | awk '$3 == "rsim_cm_mark" { print $1 }')"
    [ -n "$addr" ] || { echo "error: no rsim_cm_mark symbol in $elf" >&2; exit 1; }
    timeout 900 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -display none -monitor none -serial null \
        -semihosting-config enable=on,target=native \
        -plugin "$WORK/libmarkcount.so,addr=0x$addr,out=$WORK/$1.$2.marks,per=$2" \
        -kernel "$elf" >"$WORK/$1.$2.out" || {
        echo "error: $1 under QEMU failed; its output:" >&2
        cat "$WORK/$1.$2.out" >&2
        exit 1
    }
}
step "counting under qemu-system-arm $QEMU_VERSION -machine mps2-an386 -cpu cortex-m4"
PERS=(tb)
[ "$CHECK_PLUGIN" = 0 ] || PERS+=(insn)
for per in "${PERS[@]}"; do
    count cmsis-nn "$per"
    count rsim-edge "$per"
done

# --- 6. table and JSON -----------------------------------------------------------------------------
export ROOT IC CMSIS WORK OUT TARGET QEMU_VERSION CFLAGS_M4 CHECK_PLUGIN CARGO_TARGET_DIR
python3 "$HERE/report.py"

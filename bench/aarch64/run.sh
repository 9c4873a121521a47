#!/usr/bin/env bash
# aarch64 instruction counts of rsim-edge's int8 kernels under qemu-aarch64 (user mode) with the
# markcount TCG plugin (bench/cortex-m/plugin/markcount.c): the MLPerf Tiny IC (ResNet-8) and KWS
# (DS-CNN) models, once with the dot-product GEMM (`Kernels::Native` on `-cpu max`: `sdot`) and once
# with the NEON one (`Kernels::NativeNoDotProd`: `smlal`), plus `Kernels::Native` on `-cpu cortex-a57`
# (no dot product: must pick `smlal` by itself). Results: docs/results/edge-speed.md ("Cortex-M4 and
# aarch64").
#
#   bench/aarch64/run.sh
#
# Prints one table per model (whole invoke, then each op) and fails unless every run gives the same
# output bytes. Executed guest instructions, not cycles: QEMU models no timing.
#
# Reads in place: RSIM_MODELS (default ../shared/models): mlperf-tiny-ic/, mlperf-tiny-kws/ (.tflite,
# inputs/000.bin). Knobs: CARGO_TARGET_DIR (default target/bench-aarch64), QEMU_PLUGIN_API (default
# from `qemu-aarch64 --version`). Needs qemu-user, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, cc.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT" # the repository's .cargo/config.toml names the aarch64 linker
abs() { case "$1" in /*) realpath -m "$1" ;; *) realpath -m "$ROOT/$1" ;; esac; }
MODELS="$(abs "${RSIM_MODELS:-../shared/models}")"
export CARGO_TARGET_DIR="$(abs "${CARGO_TARGET_DIR:-target/bench-aarch64}")"
WORK="$CARGO_TARGET_DIR/runs"
TARGET=aarch64-unknown-linux-gnu
unset CARGO_BUILD_TARGET
for t in qemu-aarch64 aarch64-linux-gnu-gcc aarch64-linux-gnu-nm cc python3 cargo; do
    command -v "$t" >/dev/null 2>&1 || { echo "error: $t not found" >&2; exit 1; }
done
QEMU_VERSION="$(qemu-aarch64 --version | sed -n '1s/.*version \([0-9][0-9.]*\).*/\1/p')"
if [ -z "${QEMU_PLUGIN_API:-}" ]; then
    IFS=. read -r qmaj qmin _ <<<"$QEMU_VERSION"
    if [ "$qmaj" -lt 9 ]; then QEMU_PLUGIN_API=1
    elif [ "$qmaj" -eq 9 ] && [ "$qmin" -eq 0 ]; then QEMU_PLUGIN_API=2
    elif [ "$qmaj" -eq 9 ] && [ "$qmin" -eq 1 ]; then QEMU_PLUGIN_API=3
    else QEMU_PLUGIN_API=4; fi
fi
mkdir -p "$WORK"
step() { echo "== $*" >&2; }

step "building the markcount plugin (plugin API $QEMU_PLUGIN_API for QEMU $QEMU_VERSION)"
cc -O2 -shared -fPIC -fvisibility=hidden -Wall -Wextra -DQEMU_PLUGIN_API_VERSION="$QEMU_PLUGIN_API" \
    -o "$WORK/libmarkcount.so" "$ROOT/bench/cortex-m/plugin/markcount.c"

# Static and non-PIE: the marker's address in the file is its address at run time.
step "building rsim-aarch64-count ($TARGET, release, static)"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build -q --release --target "$TARGET" --manifest-path "$HERE/Cargo.toml"
BIN="$CARGO_TARGET_DIR/$TARGET/release/rsim-aarch64-count"
ADDR="$(aarch64-linux-gnu-nm "$BIN" | awk '$3 == "rsim_mark" { print $1 }')"
[ -n "$ADDR" ] || { echo "error: no rsim_mark symbol in $BIN" >&2; exit 1; }

# The guest's stack placement (hence the alignment of stack buffers, which memcpy's paths depend on)
# follows from its arguments and environment: run with fixed short names, in $WORK, with an empty
# environment, so the counts do not depend on where the checkout or the models are.
cp "$BIN" "$WORK/rsim-aarch64-count"
cp "$MODELS/mlperf-tiny-ic/pretrainedResnet_quant.tflite" "$WORK/ic.tflite"
cp "$MODELS/mlperf-tiny-ic/inputs/000.bin" "$WORK/ic.bin"
cp "$MODELS/mlperf-tiny-kws/kws_ref_model.tflite" "$WORK/kws.tflite"
cp "$MODELS/mlperf-tiny-kws/inputs/000.bin" "$WORK/kws.bin"
QEMU="$(command -v qemu-aarch64)"
RUNS=("max native" "max nodot" "cortex-a57 native")
for model in ic kws; do
    for run in "${RUNS[@]}"; do
        read -r cpu kernels <<<"$run"
        step "$model: qemu-aarch64 -cpu $cpu ./rsim-aarch64-count $model.tflite $model.bin $kernels"
        (cd "$WORK" && env -i "$QEMU" -cpu "$cpu" \
            -plugin "$WORK/libmarkcount.so,addr=0x$ADDR,out=$WORK/$model.$cpu.$kernels.marks" \
            ./rsim-aarch64-count "$model.tflite" "$model.bin" "$kernels" >"$WORK/$model.$cpu.$kernels.out")
    done
done

python3 - "$WORK" "$QEMU_VERSION" "${RUNS[@]}" <<'PY'
import sys
work, qver, runs = sys.argv[1], sys.argv[2], [r.split() for r in sys.argv[3:]]
fail = False
for model in ["ic", "kws"]:
    res = {}
    for cpu, k in runs:
        name = f"{model}.{cpu}.{k}"
        marks = [int(l.split()[1]) for l in open(f"{work}/{name}.marks") if l.startswith("mark ")]
        out = dict(l.split(None, 1) for l in open(f"{work}/{name}.out") if l.startswith(("isa ", "output ")))
        ops = [l.split()[2:] for l in open(f"{work}/{name}.out") if l.startswith("op ")]
        empty = marks[1] - marks[0]
        invoke = marks[3] - marks[2] - empty
        per_op = [marks[5 + i] - marks[4 + i] - empty for i in range(len(ops))]
        res[(cpu, k)] = (out["isa"].strip(), out["output"].strip(), invoke, per_op, ops)
    outs = {v[1] for v in res.values()}
    if len(outs) != 1:
        print(f"error: {model}: the runs gave different output bytes", file=sys.stderr)
        fail = True
    keys = [(c, k) for c, k in runs]
    print(f"\n{model} (qemu-aarch64 {qver}; executed instructions; output {sorted(outs)[0]})")
    print("| region | " + " | ".join(f"-cpu {c} {k} ({res[(c, k)][0]})" for c, k in keys) + " | sdot / smlal |")
    print("|---|" + "---:|" * (len(keys) + 1))
    base, dot = res[("max", "nodot")], res[("max", "native")]
    print(f"| invoke | " + " | ".join(f"{res[key][2]:,}" for key in keys) + f" | {dot[2] / base[2]:.3f} |")
    for i, (typ, kern) in enumerate(base[4]):
        print(f"| op {i} {typ} ({kern}) | " + " | ".join(f"{res[key][3][i]:,}" for key in keys)
              + f" | {dot[3][i] / base[3][i]:.3f} |")
sys.exit(1 if fail else 0)
PY

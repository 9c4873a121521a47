#!/usr/bin/env bash
# The compression result table (docs/results/compress-eurosat.md): teacher, student from scratch,
# distilled student, int8 PTQ, int8 QAT and f16, each scored by the edge runtime on the EuroSAT RGB
# test split. Needs a SimCLR backbone (see docs/results/ssl-eurosat.md) passed as $1.
#   bash xtask/scripts/compress_eurosat.sh runs/eurosat-simclr-r18/backbone.safetensors [out-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
BACKBONE=${1:?usage: compress_eurosat.sh BACKBONE.safetensors [OUT]}
R=${2:-runs/compress}
D=${RSIM_DATA:-$(pwd)/../shared/datasets}/eurosat-rgb
RSIM=${RSIM:-target/debug/rsim}
# Scoring needs no libtorch: a release build of the field tools gives the latency column
# (cargo build --release -p rsim-train --no-default-features --bin rsim).
RSIM_EVAL=${RSIM_EVAL:-$RSIM}
LABELS=${LABELS:-100}          # labels per class for the teacher head and the students
STUDENT=${STUDENT:-mobilenet_v2_0.35}
SIZE=32                        # the teacher's input side
STUDENT_SIZE=${STUDENT_SIZE:-64} # the student's (EuroSAT tiles are 64x64; the teacher sees the same view at 32)
THREADS=${THREADS:-2}
mkdir -p "$R"
# libtorch's OpenMP threads spin while waiting; on a shared CPU that burns the time of everyone else.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
common=(--data "$D" --train-share 0.8 --threads "$THREADS" --device cpu)

# 1. Teacher: the SSL ResNet-18, fine-tuned end to end on LABELS per class.
[ -e "$R/teacher/model.safetensors" ] || $RSIM finetune "${common[@]}" --size $SIZE --arch resnet18 --backbone "$BACKBONE" \
    --labels "$LABELS" --mode full --steps 400 --out "$R/teacher"
# 2. Student trained from scratch on the same labels.
[ -e "$R/scratch/model.safetensors" ] || $RSIM finetune "${common[@]}" --size $STUDENT_SIZE --arch "$STUDENT" --random \
    --labels "$LABELS" --mode full --steps 400 --out "$R/scratch"
# 3. Student distilled from the teacher's logits on every (unlabelled) train image, + CE on the labels.
[ -e "$R/distilled/model.safetensors" ] || $RSIM distill --teacher "$R/teacher" --student "$STUDENT" \
    --data "$D" --train-share 0.8 --size $STUDENT_SIZE --labels "$LABELS" --epochs "${DISTILL_EPOCHS:-12}" \
    --minutes "${DISTILL_MINUTES:-60}" --batch 128 --ce-batch 32 --threads "$THREADS" --device cpu --out "$R/distilled"
# 4. Export, f16, PTQ int8 (train-split calibration), QAT int8.
for m in teacher scratch distilled; do
    $RSIM export --ckpt "$R/$m" --format rsm --dtype f32 -o "$R/$m-f32.rsm"
done
$RSIM export --ckpt "$R/distilled" --format rsm --dtype f16 -o "$R/distilled-f16.rsm"
$RSIM export --ckpt "$R/distilled" --format onnx -o "$R/distilled-f32.onnx"
$RSIM quantize --model "$R/distilled-f32.rsm" --calib "$D" --train-share 0.8 --images 512 --calibrator mse \
    -o "$R/distilled-ptq-int8.rsm"
$RSIM qat --model "$R/distilled-f32.rsm" --data "$D" --train-share 0.8 --calib-images 512 --calibrator mse \
    --steps "${QAT_STEPS:-120}" --device cpu -o "$R/distilled-qat-int8.rsm"
# The shipped int8 model also as per-channel QDQ ONNX (ONNX Runtime / tract on Linux boards).
$RSIM export --ckpt "$R/distilled-ptq-int8.rsm" --format onnx -o "$R/distilled-ptq-int8.onnx"
# 5. Score each model with the edge runtime on the test split (the only place the test split is read).
for m in teacher-f32 scratch-f32 distilled-f32 distilled-ptq-int8 distilled-qat-int8 distilled-f16; do
    $RSIM_EVAL eval --model "$R/$m.rsm" --data "$D" --split test --train-share 0.8 --out "$R/eval-$m" --quiet
done

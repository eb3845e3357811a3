#!/usr/bin/env bash
# Train the release recipe on a lent GPU for a fixed budget, then export and evaluate.
#   bash scripts/train_gpu.sh [MINUTES] [INIT] [DATA] [TRAIN FLAGS...]
# MINUTES: training budget in all (default 8), split 40/35/25 between stage 1, stage 2 and the
# end-to-end fine-tuning; INIT: weights to start from (default the released model/dan-300w.onnx;
# "none" for random weights); DATA: the packed faces of scripts/prepare_gpu.sh (default .gpu/300w);
# TRAIN FLAGS: more training.train flags, after the recipe's.
# Writes under $OUT (the device tool's result folder; runs/gpu elsewhere): train.log, log.jsonl,
# dan-300w-gpu.onnx, common.json (evaluation on the packed common subset), env.txt.
# Tested on the CPU by tests/scripts/test_train_gpu.py with a budget of seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-8}
INIT=${2:-model/dan-300w.onnx}
OUT=${OUT:-runs/gpu}
DATA=${3:-.gpu/300w}
shift $(( $# < 3 ? $# : 3 ))
RUN=${TMPDIR:-/tmp}/dan-gpu-run
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ ! -f "$DATA/boxes.csv" ]; then
    echo "no packed data at $DATA: run scripts/prepare_gpu.sh first and carry .gpu/300w" >&2
    exit 2
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
} | tee "$OUT/env.txt"
read -r S1 S2 FT < <(awk -v m="$MINUTES" 'BEGIN { printf "%.3f %.3f %.3f\n", 0.40*m, 0.35*m, 0.25*m }')
init_args=()
[ "$INIT" != none ] && init_args=(--init "$INIT")
rm -rf "$RUN"
set -o pipefail
"$PY" -m training.train @training/recipes/dan-300w-half.args "${init_args[@]}" \
    --data-root "$DATA" --output-dir "$RUN" --batch-size 64 \
    --stage-minutes "$S1" "$S2" --finetune-minutes "$FT" --no-progress "$@" 2>&1 | tee "$OUT/train.log"
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
"$PY" -m training.export "$RUN/best.pt" "$OUT/dan-300w-gpu.onnx" --version gpu-run 2>&1 | tee -a "$OUT/train.log"
"$PY" -m training.evaluate "$OUT/dan-300w-gpu.onnx" --data-root "$DATA" --split common \
    --output-dir "$RUN/eval" 2>&1 | tee -a "$OUT/train.log"
cp "$RUN/eval/summary.json" "$OUT/common.json"
echo "done: $OUT"

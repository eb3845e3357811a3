#!/usr/bin/env bash
# Short comparable experiments for model/EXPERIMENTS.md: each variant trains stage 1 alone for the
# same wall-clock budget from the same weights, on the same validation split, then one plot shows
# validation NME against samples and minutes (training.curves) and a table gives each one's best.
#   bash scripts/experiments.sh MINUTES INIT OUT [VARIANT...]
# MINUTES: budget of each variant; INIT: weights all start from ("none": random); OUT: a folder
# (runs/exp); VARIANTs: names from the list below (default: all). They run one after another;
# run them on an otherwise idle machine (or a GPU). Width variants are comparable only from random
# weights (INIT none): weights of another width do not load. Environment: PYTHON, DATA_ROOT, and
# EXTRA_FLAGS (more training.train flags for every variant, e.g. for a small test tree).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:?budget in minutes}
INIT=${2:?weights to start from, or none}
OUT=${3:?output folder}
shift 3
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA_ROOT:-../shared/data/300w}
declare -A VARIANT=(
    [recipe]=""
    [paper-width]="--widths 64 128 256 512"
    [wing]="--loss wing"
    [batch64]="--batch-size 64 --lr 1e-3"
    [constant-lr]="--schedule constant"
    [wide-perturbation]="--rotation-sd 20 --scale-sd 0.25 --translation-sd 0.1"
    [heatmap-window]="--heatmap-support window"
    [ema]="--ema-decay 0.999"  # logs the weights' own errors too (raw_stage1_io)
    [appearance]="--brightness-sd 0.08 --contrast-sd 0.2 --blur-probability 0.2 --noise-sd 0.02 --occlusion-probability 0.15"
)
mkdir -p "$OUT"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(recipe paper-width wing batch64 constant-lr wide-perturbation heatmap-window ema appearance)
init_args=()
[ "$INIT" != none ] && init_args=(--init "$INIT")
specs=()
for name in "${names[@]}"; do
    [ -v "VARIANT[$name]" ] || { echo "unknown variant $name; known: ${!VARIANT[*]}" >&2; exit 2; }
    # shellcheck disable=SC2086  # the variant's flags are words
    "$PY" -m training.train @training/recipes/dan-300w-half.args "${init_args[@]}" \
        --data-root "$DATA" --output-dir "$OUT/$name" --stages 1 --stage-steps 1000000 \
        --stage-minutes "$MINUTES" --finetune-steps 0 --no-progress ${VARIANT[$name]} ${EXTRA_FLAGS:-} \
        > "$OUT/$name.log" 2>&1
    specs+=("$name=$OUT/$name/log.jsonl")
done
"$PY" -m training.curves "${specs[@]}" --out "$OUT/curves.png" --table \
    --title "stage 1, $MINUTES min each, from $INIT"

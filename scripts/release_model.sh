#!/usr/bin/env bash
# Release a trained checkpoint as model/dan-300w.onnx and measure everything the model card
# and the tests quote, into runs/release-VERSION/:
#   bash scripts/release_model.sh CHECKPOINT.pt|MODEL.onnx VERSION [DATA_ROOT]
# 1. export (fp16 weights) with the version, or take an already exported file (for example
# the output of training.confidence, which adds the confidence head); 2. the common-subset evaluation, stored in the
# file's dan.accuracy metadata and model/eval/common/; 3. the golden landmarks of
# tests/model/test_released_model.py; 4. the same numbers through the running service
# (bench.service_accuracy); 5. raw-engine speed against the previous release, in one run;
# 6. the int8 file for CPUs (training.quantize, drift measured; fails above 0.05 points) and
# its speed against the fp32 file, in one run (model/QUANTIZATION.md).
# Then update model/MODEL_CARD.md, model/EXPERIMENTS.md, the README's model table and the
# bounds in tests/model/test_released_model.py from runs/release-VERSION/*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?checkpoint (.pt) or exported model (.onnx)}
VERSION=${2:?version, e.g. 1.2.0}
DATA_ROOT=${3:-../shared/data/300w}
PY=${PYTHON:-.venv/bin/python}
OUT=runs/release-$VERSION
mkdir -p "$OUT"
git show HEAD:model/dan-300w.onnx > "$OUT/previous.onnx"
if [[ "$CKPT" == *.onnx ]]; then
    cp "$CKPT" model/dan-300w.onnx
else
    "$PY" -m training.export "$CKPT" model/dan-300w.onnx --version "$VERSION"
fi
"$PY" -m training.evaluate model/dan-300w.onnx --data-root "$DATA_ROOT" --split common \
    --output-dir model/eval/common --write-metadata | tee "$OUT/common.txt"
"$PY" -m training.evaluate model/dan-300w.onnx --data-root "$DATA_ROOT" --split common \
    --limit 5 --threads 2 | tee "$OUT/common-5-images.txt"
"$PY" tests/model/test_released_model.py --write-golden
"$PY" -m bench.service_accuracy --model model/dan-300w.onnx --data-root "$DATA_ROOT" \
    | tee "$OUT/service_accuracy.txt"
"$PY" -m bench.engines "$OUT/previous.onnx" model/dan-300w.onnx --data-root "$DATA_ROOT" \
    --seconds 4 --rounds 2 --json-out "$OUT/engines.json" | tee "$OUT/engines.txt"
"$PY" -m training.quantize model/dan-300w.onnx --data-root "$DATA_ROOT" \
    --out model/dan-300w.int8.onnx --max-drift 0.05 | tee "$OUT/int8.txt"
"$PY" -m bench.engines model/dan-300w.onnx model/dan-300w.int8.onnx --data-root "$DATA_ROOT" \
    --seconds 4 --rounds 2 --json-out "$OUT/engines-int8.json" | tee "$OUT/engines-int8.txt"
echo "released dan-300w $VERSION; measurements in $OUT"

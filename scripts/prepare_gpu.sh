#!/usr/bin/env bash
# Prepare a lent-GPU training run (scripts/train_gpu.sh) here, on the CPU machine:
# pack the 300-W faces the run needs into .gpu/ (ignored by git, carried by the device tool)
# and check that what travels stays under the device tool's 64 MiB.
#   bash scripts/prepare_gpu.sh [DATA_ROOT]          (default ../shared/data/300w)
# Then, with the device tool: run(command="bash scripts/train_gpu.sh 8", carry=[".gpu/300w"]).
# (Only .gpu/300w travels: .gpu/ort and .gpu/wheels are bench/gpu_prepare.sh's, for another call.)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data/300w}
PY=${PYTHON:-.venv/bin/python}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu/300w
# JPEG quality 85 (the pack's default is 92): 21 MiB instead of 27 for the 2566 faces, so the
# pack fits beside a working tree of 38 MiB (the release's fp32, int8 and detector graphs).
"$PY" -m training.pack --data-root "$DATA_ROOT" --out .gpu/300w --quality 85
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
pack_bytes=$(du -sb .gpu/300w | cut -f1)
total=$(( tree_bytes + pack_bytes ))
echo "working tree $(( tree_bytes / 1048576 )) MiB + .gpu/300w $(( pack_bytes / 1048576 )) MiB = $(( total / 1048576 )) MiB (limit 64)"
if (( total > 64 * 1048576 )); then
    echo "too large for the device tool: pack smaller (python -m training.pack --size / --quality)" >&2
    exit 1
fi

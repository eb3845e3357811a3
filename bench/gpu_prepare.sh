#!/usr/bin/env bash
# Prepare bench/gpu_check.sh here, on the CPU machine (it has the package registry; the lent GPU
# machine reaches nothing), into .gpu/ (ignored by git, carried by the device tool):
#   .gpu/wheels/       the service's Python packages the GPU machine lacks (fastapi, pydantic, ...),
#                      the versions of this checkout's venv, for CPython 3.12 manylinux
#   .gpu/ort/          onnxruntime-gpu (the `gpu` extra; 255 MB, over the device tool's 64 MiB a
#                      call), split into parts that each fit beside the working tree, + SHA256SUMS
#   .gpu/300w-common/  the 554 common-test faces packed by training.pack (about 6 MB)
#   bash bench/gpu_prepare.sh [DATA_ROOT]        (default ../shared/data/300w)
# Then, with the device tool, back to back (a machine stays warm 30 s between calls, and what a
# call carried stays in its ignored .gpu/): one call with the wheels and faces, one per part,
#   run(command="bash bench/gpu_check.sh receive", carry=[".gpu/ort/PART"], timeout_s=60)
# and the check itself with the last part (about 3 minutes of device time):
#   run(command="bash bench/gpu_check.sh", carry=[".gpu/ort/LASTPART"], timeout_s=420)
# It prints those calls with the parts' names. With the full-width model/dan-300w.onnx (46 MB)
# in the tree nothing is left for the parts (it stops, saying so); with the half-width release
# model (19 MB) alone the wheel went in parts of about 34 MiB, 8 calls; with the int8 model and
# detector graphs shipped beside it (a 38 MiB tree) in parts of 24 MiB, 12 calls. ORT_GPU_VERSION (default 1.31.1: CUDA 13, as the
# GPU machine's torch) and PART_MIB (default: what fits) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data/300w}
PY=${PYTHON:-.venv/bin/python}
ORT_GPU_VERSION=${ORT_GPU_VERSION:-1.31.1}
LIMIT_MIB=63  # the device tool's 64 MiB, less a margin
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# The service's own packages that the GPU machine's image (device KINDS.md) does not hold.
SERVICE_PACKAGES=(fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv
                  uvicorn python-multipart fastapi-offline annotated-types annotated-doc
                  typing-inspection typing-extensions opentelemetry-api)
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu
download() {  # download DIR NAME==VERSION...
    local dir=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d "$dir" "$@"
}
# 1. The service's packages, at this venv's versions.
rm -rf .gpu/wheels && mkdir -p .gpu/wheels
pins=()
for name in "${SERVICE_PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done
download .gpu/wheels "${pins[@]}"
# 2. The packed common-test faces.
rm -rf .gpu/300w-common
"$PY" -m training.pack --data-root "$DATA_ROOT" --out .gpu/300w-common --splits common
# 3. onnxruntime-gpu, split so that each call carries at most what fits beside the working tree
#    (the wheels and faces travel in a call of their own).
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
small_bytes=$(( $(du -sb .gpu/wheels | cut -f1) + $(du -sb .gpu/300w-common | cut -f1) ))
fit_mib=$(( LIMIT_MIB - tree_bytes / 1048576 - 1 ))
PART_MIB=${PART_MIB:-$fit_mib}
echo "working tree $(( tree_bytes / 1048576 )) MiB; wheels and faces $(( small_bytes / 1048576 )) MiB; parts of ${PART_MIB} MiB"
if (( PART_MIB < 4 || small_bytes / 1048576 > fit_mib )); then
    echo "the working tree leaves ${fit_mib} MiB a call: too little for the parts of onnxruntime-gpu" >&2
    exit 1
fi
rm -rf .gpu/ort .gpu/ort-download && mkdir -p .gpu/ort .gpu/ort-download
download .gpu/ort-download "onnxruntime-gpu==$ORT_GPU_VERSION"
wheel=$(ls .gpu/ort-download/*.whl)
name=$(basename "$wheel")
(cd .gpu/ort-download && sha256sum "$name") > .gpu/ort/SHA256SUMS
split -b "${PART_MIB}M" -d -a 2 "$wheel" ".gpu/ort/$name.part-"
rm -rf .gpu/ort-download
parts=(.gpu/ort/*.part-*)
echo "${#parts[@]}" > .gpu/ort/PARTS
echo
echo "device calls, back to back (what a call brings stays in the machine's .gpu/ while it is warm):"
echo "  run(command=\"bash bench/gpu_check.sh receive\", carry=[\".gpu/wheels\", \".gpu/300w-common\", \".gpu/ort/SHA256SUMS\", \".gpu/ort/PARTS\"], timeout_s=60)"
for part in "${parts[@]::${#parts[@]}-1}"; do
    echo "  run(command=\"bash bench/gpu_check.sh receive\", carry=[\"$part\"], timeout_s=60)"
done
echo "  run(command=\"bash bench/gpu_check.sh\", carry=[\"${parts[-1]}\"], timeout_s=420)"

#!/usr/bin/env bash
# The GPU check of issue 16, ready for a lent GPU: one run within about 3-5 minutes of device time.
#   bash bench/gpu_check.sh            the check (after bench/gpu_prepare.sh here, see there)
#   bash bench/gpu_check.sh receive    only lists the onnxruntime-gpu parts received so far
# 1. installs what the GPU machine lacks from the carried .gpu/ (the service's packages, and
#    onnxruntime-gpu reassembled from its parts and checked against SHA256SUMS) into a folder on
#    PYTHONPATH, and points onnxruntime at the CUDA libraries of the machine's nvidia-* packages;
# 2. runs the GPU tests (pytest -m gpu: CUDA provider, IO binding, fp16, TensorRT if present);
# 3. writes the fp16 model file (python -m training.fp16) and benchmarks the raw engine on both
#    files at batch sizes 1 to 256 with their accuracy on the packed common subset (the fp16
#    drift on the GPU; bench.gpu_engine), and TensorRT too when its libraries are there;
# 4. a service load test with the CUDA provider (bench.load, boxes sent), and one without boxes
#    (CenterFace on the GPU);
# 5. writes under $OUT: summary.md (a short table), summary.json, engine.json, load.json,
#    load-detect.json, gpu-tests.xml, env.json, log.txt (every step's output).
# Settings (environment): PROVIDER (cuda; cpu runs the same steps anywhere), BUDGET (full, or tiny:
# seconds, for the CPU test tests/bench/test_gpu_check.py), OUT (default runs/gpu-check), PYTHON
# (default /opt/torch/.venv/bin/python3 where it exists), DATA (default .gpu/300w-common), MODEL
# (default model/dan-300w.onnx). A failing step is recorded in the summary; the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PROVIDER=${PROVIDER:-cuda}
BUDGET=${BUDGET:-full}
OUT=${OUT:-runs/gpu-check}
DATA=${DATA:-.gpu/300w-common}
MODEL=${MODEL:-model/dan-300w.onnx}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x /opt/torch/.venv/bin/python3 ] && PYTHON=/opt/torch/.venv/bin/python3
fi
WORK=${TMPDIR:-/tmp}/dan-gpu-check
REPO=$PWD
mkdir -p "$OUT" "$WORK"
LOG=$OUT/log.txt
STEPS=$WORK/steps.jsonl
: > "$LOG"
: > "$STEPS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = receive ]; then
    ls -la .gpu/ort 2>/dev/null || echo "no .gpu/ort yet"
    exit 0
fi

case $BUDGET in
    full) SIZES=1,2,4,8,16,32,64,128,256; SECONDS_PER_SIZE=1.5; LEVELS=1,8,32,64; DURATION=5
          ENGINE_SECONDS=4; OVERLOAD_S=5; LOAD_BATCH=64; DETECT_LEVELS=2,8; DETECT_DURATION=5 ;;
    tiny) SIZES=1,2; SECONDS_PER_SIZE=0.2; LEVELS=1,2; DURATION=1; ENGINE_SECONDS=0.5
          OVERLOAD_S=1; LOAD_BATCH=2; DETECT_LEVELS=2; DETECT_DURATION=3 ;;
    *) echo "BUDGET must be full or tiny, got $BUDGET" >&2; exit 2 ;;
esac

step() {  # step NAME COMMAND...: run it, its output into the log, its status into steps.jsonl
    local name=$1; shift
    local started; started=$(date +%s.%N)
    echo "=== $name: $*" | tee -a "$LOG"
    "$@" >> "$LOG" 2>&1
    local rc=$?
    local seconds; seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $seconds}" >> "$STEPS"
    echo "=== $name: rc $rc, ${seconds} s" | tee -a "$LOG"
    return $rc
}

has_provider() {  # has_provider NAME: onnxruntime offers it
    "$PYTHON" -c "import sys, onnxruntime as o; sys.exit(sys.argv[1] not in o.get_available_providers())" "$1" 2>/dev/null
}

install() {
    local site=$WORK/site
    mkdir -p "$site"
    if ! "$PYTHON" -c "import fastapi, fastapi_offline, multipart, pydantic_settings, uvicorn" \
            2>/dev/null && ls .gpu/wheels/*.whl > /dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .gpu/wheels/*.whl || return 1
    fi
    if [ "$PROVIDER" != cpu ] && ! has_provider CUDAExecutionProvider; then
        if [ ! -f .gpu/ort/SHA256SUMS ]; then
            echo "no onnxruntime-gpu: carry .gpu/ort (bench/gpu_prepare.sh)"; return 1
        fi
        local name; name=$(awk '{print $2}' .gpu/ort/SHA256SUMS)
        local want; want=$(cat .gpu/ort/PARTS)
        local have; have=$(ls .gpu/ort/"$name".part-* 2>/dev/null | wc -l)
        if [ "$have" -ne "$want" ]; then
            echo "onnxruntime-gpu: $have of $want parts here: send the others first (receive)"
            return 1
        fi
        cat .gpu/ort/"$name".part-* > "$WORK/$name"
        (cd "$WORK" && sha256sum -c "$REPO/.gpu/ort/SHA256SUMS") || return 1
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "$WORK/$name" || return 1
    fi
    return 0
}

cuda_libraries() {  # the lib folders of the nvidia-* pip packages (cuDNN, cuBLAS, CUDA runtime)
    "$PYTHON" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = [p for p in sys.path if p.endswith("site-packages")] + site.getsitepackages()
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})))
EOF
}

environment() {
    "$PYTHON" - "$OUT/env.json" "$PROVIDER" "$BUDGET" <<'EOF'
import json, platform, subprocess, sys
info = {"provider": sys.argv[2], "budget": sys.argv[3], "python": platform.python_version()}
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["providers"] = ort.get_available_providers()
except Exception as e:
    info["onnxruntime"] = f"not importable: {e}"
try:
    info["gpu"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20,
    ).stdout.strip() or "none"
except Exception:
    info["gpu"] = "no nvidia-smi"
try:
    import tensorrt
    info["tensorrt"] = tensorrt.__version__
except Exception:
    info["tensorrt"] = None
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
EOF
}

step install install
export PYTHONPATH="$WORK/site:$PYTHONPATH"
libs=$(cuda_libraries)
[ -n "$libs" ] && export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
step environment environment

step gpu-tests "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu \
    tests/service/test_engine.py tests/service/test_engine_gpu.py --junitxml "$OUT/gpu-tests.xml"

FP16=$WORK/model.fp16.onnx
step fp16-model "$PYTHON" -m training.fp16 "$MODEL" --out "$FP16" --no-measure
models=("$MODEL")
[ -f "$FP16" ] && models+=("$FP16")
step engine "$PYTHON" -m bench.gpu_engine "${models[@]}" --provider "$PROVIDER" \
    --batch-sizes "$SIZES" --seconds "$SECONDS_PER_SIZE" --data-root "$DATA" --accuracy \
    --json "$OUT/engine.json"
if [ "$PROVIDER" != cpu ] && has_provider TensorrtExecutionProvider \
        && "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    step engine-tensorrt "$PYTHON" -m bench.gpu_engine "$MODEL" --provider tensorrt \
        --batch-sizes "$SIZES" --seconds "$SECONDS_PER_SIZE" --data-root "$DATA" \
        --json "$WORK/engine-tensorrt.json"
fi

step load "$PYTHON" -m bench.load --model "$MODEL" --provider "$PROVIDER" --data-root "$DATA" \
    --levels "$LEVELS" --duration "$DURATION" --warmup 1 --engine-seconds "$ENGINE_SECONDS" \
    --overload-duration "$OVERLOAD_S" --max-batch-size "$LOAD_BATCH" --decode-threads 8 \
    --json-out "$OUT/load.json"
step load-detect "$PYTHON" -m bench.load --model "$MODEL" --provider "$PROVIDER" \
    --data-root "$DATA" --no-boxes --levels "$DETECT_LEVELS" --duration "$DETECT_DURATION" --warmup 1 \
    --engine-seconds "$ENGINE_SECONDS" --overload-duration "$OVERLOAD_S" \
    --max-batch-size "$LOAD_BATCH" --decode-threads 8 --json-out "$OUT/load-detect.json"

"$PYTHON" -m bench.gpu_summary "$OUT" --steps "$STEPS" --extra "$WORK/engine-tensorrt.json" \
    2>&1 | tee -a "$LOG"

#!/usr/bin/env bash
# The GPU benchmark, run on a lent GPU machine from the working tree (about 7 minutes):
#
#   here:   bash bench/gpu_pack.sh            # builds .gpu/ (wheels, Triton, pages), checks the size
#   device: run(command="bash bench/gpu.sh", carry=[".gpu"], timeout_s=540)
#
# That machine has its own Python 3.12 with CUDA PyTorch, onnx and onnxruntime, reaches no
# package index and has no Triton: what it lacks comes in .gpu/. It installs the wheels into
# /tmp/site, unpacks Triton beside them, converts the ONNX weights for CUDA, and runs
# bench/gpu_bench.py (the networks at batch 1-16, the pipeline over labelled pages, and Triton
# KIND_GPU with dynamic batching at 100 ms, 10 ms, 1 ms and off). The JSON, the log and
# nvidia-smi's view land in $OUT (the device tool brings them back) or bench/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${OUT:-bench/results}
mkdir -p "$DEST" /tmp/site
[ -d .gpu/wheels ] || { echo "no .gpu/: run bash bench/gpu_pack.sh first and carry .gpu" >&2; exit 2; }
PY=${PY:-python3}
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl \
  || { echo "installing the carried wheels failed" >&2; exit 1; }
tar -xJf .gpu/triton.tar.xz -C /tmp/site || { echo "unpacking Triton failed" >&2; exit 1; }
export PYTHONPATH=/tmp/site:.:worker-image:dev:operator:api-image
export OCRFLEET_CACHE=/tmp/ocrfleet-cache PYTHONUNBUFFERED=1
# what the carried server and its Python 3.12 stub still miss there (libpython comes from that
# machine's interpreter), for when the Triton part reports it could not start
libdir=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')")
for bin in /tmp/site/pytriton/tritonserver/bin/tritonserver \
           /tmp/site/pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub; do
  echo "== $bin"; LD_LIBRARY_PATH="$libdir:/tmp/site/nvidia_pytriton.libs" ldd "$bin" | grep -i "not found" || echo "all found"
done > "$DEST/triton_ldd.txt" 2>&1
nvidia-smi > "$DEST/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$DEST/nvidia-smi.txt"
# GPU memory and utilisation every second while the bench runs (Triton's server process included)
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$DEST/gpu_usage.csv" 2>/dev/null &)
timeout "${GPU_BENCH_TIMEOUT_S:-480}" "$PY" -m bench.gpu_bench --device "${GPU_BENCH_DEVICE:-cuda}" \
  --pages-dir .gpu/pages --budget-s "${GPU_BENCH_BUDGET_S:-420}" --out "$DEST" 2>&1 | tee "$DEST/gpu_bench.log"
rc=${PIPESTATUS[0]}
pkill -f "nvidia-smi --query-gpu" 2>/dev/null
exit "$rc"

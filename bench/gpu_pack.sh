#!/usr/bin/env bash
# Builds .gpu/, what bench/gpu.sh needs on a lent GPU machine that reaches no package index:
#   .gpu/wheels/   the Python 3.12 wheels it lacks (pydantic, tritonclient, onnx2torch, ...,
#                  rapidocr-onnxruntime for the ONNX weights), the versions of this venv;
#   .gpu/triton.tar.xz  the tritonserver binary, python backend, Python 3.12 stub and libraries
#                  out of the nvidia-pytriton wheel (its Python 3.8-3.13 stubs and bundled
#                  libpython 3.13 left out: the wheel alone is 55 MB, over what travels);
#   .gpu/pages/    labelled pages generated here (the GPU machine has no CJK fonts).
# It checks that the working tree plus .gpu/ stays under the 64 MiB a device call carries.
# Cached: a second run rebuilds nothing that exists.   Usage: bash bench/gpu_pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=.gpu
mkdir -p "$OUT/wheels"

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)
for dist in pydantic pydantic_core pydantic-settings python-dotenv annotated-types typing-inspection \
            pyclipper onnx2torch tritonclient python-rapidjson rapidocr-onnxruntime; do
  v=$(version "$dist")
  norm=$(echo "$dist" | tr '-' '_')
  if ! ls "$OUT/wheels/" | grep -qi "^${norm}-${v}-"; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d "$OUT/wheels" "$dist==$v"
  fi
done

if [ ! -s "$OUT/triton.tar.xz" ]; then
  site=$("$PY" -c "import pytriton, os; print(os.path.dirname(os.path.dirname(pytriton.__file__)))")
  (cd "$site" && tar -cf - \
      pytriton/tritonserver/bin pytriton/tritonserver/backends pytriton/tritonserver/caches \
      pytriton/tritonserver/python_backend_stubs/3.12 \
      --exclude='nvidia_pytriton.libs/libpython3-*' nvidia_pytriton.libs) | xz -6 -T2 > "$OUT/triton.tar.xz.part"
  mv "$OUT/triton.tar.xz.part" "$OUT/triton.tar.xz"
fi

if [ ! -s "$OUT/pages/pages.json" ]; then
  "$PY" -m bench.gpu_bench --write-pages "$OUT/pages" --pages "${PAGES:-24}"
fi

tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
pack=$(du -sb "$OUT" | cut -f1)
total=$(( (tree + pack) / 1048576 ))
echo "working tree $((tree / 1048576)) MiB + .gpu $((pack / 1048576)) MiB = ${total} MiB (a device call carries 64 MiB)"
[ "$total" -lt 64 ] || { echo "too large to travel" >&2; exit 1; }

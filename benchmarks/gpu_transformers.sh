#!/usr/bin/env bash
# Issue 15's GPU check as one prepared command (a lent GPU only; CI never runs it):
# SD 3.5 Medium- and FLUX.1-dev-sized transformers with random weights from their published configs, bf16,
# 1024x1024, 28 steps - each method's time and peak memory against `none` - then FLUX.1-dev with model
# offload (what a 24 GB card runs). Results: $OUT/renderer_gpu.json (tables on stdout).
#
#   bash benchmarks/gpu_transformers.sh prepare   # here: the wheels the GPU machine lacks, into .whl/
#   bash benchmarks/gpu_transformers.sh run       # there: install them offline, then measure
#
# The GPU machine has PyTorch, transformers and most of the stack but no diffusers or pydantic and no
# network; `prepare` downloads this checkout's versions of what it needs for Python 3.12 on x86-64 and
# the device call carries .whl/ (git ignores it).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
NEED=(diffusers pydantic pydantic-core annotated-types typing-inspection transformers huggingface-hub tokenizers gguf)

case "${1:-}" in
  prepare)
    pins=()
    for p in "${NEED[@]}"; do pins+=("$p==$(python3 -m pip show "$p" | sed -n 's/^Version: //p')"); done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" "${pins[@]}"
    du -sh "$WHEELS"
    ;;
  run)
    python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
    python3 -m pip install -q --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl
    python3 -m pip install -q --no-deps --no-build-isolation -e .
    out="${OUT:-benchmarks/results}"
    python3 -m benchmarks.renderer --suite sd35_medium flux1_dev --device cuda --out "$out/renderer_gpu.json"
    python3 -m benchmarks.renderer --suite flux1_dev --device cuda --offload model --methods none refocus \
      --out "$out/renderer_gpu.json"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_transformers.sh prepare|run" >&2
    exit 2
    ;;
esac

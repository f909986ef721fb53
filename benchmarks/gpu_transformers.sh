#!/usr/bin/env bash
# Issue 15's GPU work as prepared commands (a lent GPU only; CI never runs them). Results land in $OUT.
#
#   bash benchmarks/gpu_transformers.sh prepare   # here: the wheels the GPU machine lacks, into .whl/
#   bash benchmarks/gpu_transformers.sh run       # there: SD 3.5 Medium / FLUX.1-dev time and memory
#   bash benchmarks/gpu_transformers.sh train     # there: train the MMDiT shapes model, then the demo prompts
#   bash benchmarks/gpu_transformers.sh train-latent  # there: the same in models/shapes-vae's learned latent
#
# `run`: SD 3.5 Medium- and FLUX.1-dev-sized transformers with random weights from their published configs,
# bf16, 1024x1024, 28 steps - each method's time and peak memory against `none` - then FLUX.1-dev with
# model offload (what a 24 GB card runs), then both with `--memory low` (time against its memory estimate,
# docs/benchmarks.md): $OUT/renderer_gpu.json. About 12 minutes.
# `train`: the MMDiT shapes model from the shipped weights on 2x2 patches, grounded, taught by the UNet
# shapes model, batch 128 for at most $BUDGET seconds (default 360; the step count fitted to it after 50
# steps, so the learning-rate decay runs), then the 30 demo prompts through the
# CLI: $OUT/shapes-mmdit-gpu.tar.gz, $OUT/demo_mmdit_gpu.json and its contact sheet.
# `train-latent`: models/shapes-mmdit-latent trained on in the shipped autoencoder's 8x8x8 latent (`--vae
# models/shapes-vae --patch 1`, 64 tokens: about four times cheaper a sample than 2x2 patches), grounded and
# aligned (`--align 0.5`: ahead of the plain recipe in both CPU pairs, docs/mmdit-shapes.md), lr 5e-4 (its last CPU
# runs'), same budget, read with its tuned guidance.json; $OUT/shapes-mmdit-latent-gpu.tar.gz,
# $OUT/demo_mmdit_latent_gpu.json.
#
# The GPU machine has PyTorch, huggingface_hub and most of the stack but no diffusers or pydantic and no
# network; `prepare` downloads this checkout's versions of what it lacks for Python 3.12 on x86-64, and
# the device call carries .whl/ (git ignores it).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
NEED=(diffusers pydantic pydantic-core annotated-types typing-inspection transformers tokenizers gguf click-default-group)
OUT="${OUT:-/tmp/gpu-out}"

install() {
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
  python3 -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
  python3 -m pip install -q --no-deps --no-build-isolation -e .
  mkdir -p "$OUT"
}

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
    install
    python3 -m benchmarks.renderer --suite sd35_medium flux1_dev --device cuda --out "$OUT/renderer_gpu.json"
    python3 -m benchmarks.renderer --suite flux1_dev --device cuda --offload model --methods none refocus \
      --out "$OUT/renderer_gpu.json"
    python3 -m benchmarks.renderer --suite sd35_medium flux1_dev --device cuda --memory low \
      --methods none refocus zest --out "$OUT/renderer_gpu.json"
    ;;
  train)
    install
    model="$OUT/shapes-mmdit-gpu"
    python3 -m tools.shapes.train_mmdit --preset cpu --device cuda --batch 128 --patch 2 --ground \
      --teacher models/shapes-tiny --repeat-share 0.35 --n-wide 6000 --wide-share 0.3 --init models/shapes-mmdit \
      --steps 6000 --time-budget "${BUDGET:-360}" --fit-budget --save-every 1000 --out "$model"
    cp models/shapes-mmdit/guidance.json "$model/"
    python3 -m benchmarks.demo --model "$model" --out "$OUT/demo_mmdit_gpu.json" --sheet "$OUT/demo_mmdit_gpu.png"
    tar -C "$OUT" -czf "$OUT/shapes-mmdit-gpu.tar.gz" shapes-mmdit-gpu && rm -rf "$model"
    ;;
  train-latent)
    install
    model="$OUT/shapes-mmdit-latent-gpu"
    python3 -m tools.shapes.train_mmdit --preset cpu --device cuda --batch 128 --vae models/shapes-vae --patch 1 \
      --ground --align 0.5 --repeat-share 0.35 --n-wide 6000 --wide-share 0.3 --init models/shapes-mmdit-latent \
      --lr 5e-4 --steps 20000 --time-budget "${BUDGET:-360}" --fit-budget --save-every 2000 --out "$model"
    cp models/shapes-mmdit-latent/guidance.json "$model/"
    python3 -m benchmarks.demo --model "$model" --out "$OUT/demo_mmdit_latent_gpu.json" --sheet "$OUT/demo_mmdit_latent_gpu.png"
    tar -C "$OUT" -czf "$OUT/shapes-mmdit-latent-gpu.tar.gz" shapes-mmdit-latent-gpu && rm -rf "$model"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_transformers.sh prepare|run|train|train-latent" >&2
    exit 2
    ;;
esac

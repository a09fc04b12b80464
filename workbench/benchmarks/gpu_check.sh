#!/usr/bin/env bash
# The GPU check, as one prepared script: on a machine with an NVIDIA GPU, an SD1.5-size random
# checkpoint runs the whole DragDiffusion edit at 512x512 inside ComfyUI (80 LoRA steps, inversion,
# 80 drag steps, reference sampling) and the table gives peak VRAM and time per stage, beside a
# stock KSampler. Goals: peak VRAM at most 8 GB; the whole edit at most 30 s on an H100-class GPU.
# Then the same for SDXL base's UNet (random weights, ComfyUI's SDXL model config) at 1024x1024 with the
# SDXL family's settings (gradient checkpointing on). Goal: peak VRAM at most 24 GB.
#   COMFYUI_SRC  ComfyUI source tree (default ../shared/comfyui)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(realpath "${COMFYUI_SRC:-../shared/comfyui}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src" "$tmp/ComfyUI"
chmod -R u+w "$tmp/ComfyUI"
grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$src/requirements.txt" > "$tmp/requirements.txt"
python3 -m pip install -q -r "$tmp/requirements.txt" -r requirements.txt 2>&1 | grep -v "^WARNING" || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
COMFYUI_PATH="$tmp/ComfyUI" python3 -m workbench.benchmarks.comfy_memory --gpu --size 512 --paper
COMFYUI_PATH="$tmp/ComfyUI" python3 -m workbench.benchmarks.comfy_memory --gpu --model sdxl --size 1024 --paper

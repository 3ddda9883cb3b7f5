#!/usr/bin/env bash
# Stable Diffusion 1.5's shapes through the whole graph at 512 px on a GPU,
# and the per-stage table (seconds, peak memory, stored bytes) of
# docs/STABLE_DIFFUSION.md, in one command from the repository root:
#
#   bash docs/experiments/sd15_gpu.sh [WORK_FOLDER]
#
# It makes a venv with the CUDA build of the pinned torch (TORCH_INDEX: your
# cluster's wheel index instead of PyTorch's cu128 one), installs diffmine with the
# `sd` extra, writes a random SD 1.5 pipeline (no download), and runs
# `diffmine bench sd --graph` at sizes a GPU finishes in minutes; the figures
# are printed and saved as WORK/sd15-gpu.json. Random weights: speed, memory
# and sizes, not quality. The same command on a CPU is the run in the docs.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/diffmine-sd15-gpu}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
VENV=${VENV:-.venv-gpu}
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/diffmine" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0 --index-url "$TORCH_INDEX"
  "$VENV/bin/pip" install -q -c constraints.txt -e '.[sd]'
fi
"$VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this script is for a GPU machine'; print('GPU:', torch.cuda.get_device_name())"
# 4 labels x 16 images, 50 LoRA steps of batch 8, the paper's N = 100 over
# (label, null), 25 translation steps; probes at the batch sizes a GPU runs.
"$VENV/bin/diffmine" bench sd --graph --shape sd15 --resolution 512 --lora-rank 16 --labels 4 --per-label 16 --steps 50 --batch 8 \
  --n-samples 100 --translation-steps 25 --probe-batches 1,4,16,32 --work "$WORK" 2>&1 | tee "$WORK/sd15-gpu.log"
tail -n 1 "$WORK/sd15-gpu.log" > "$WORK/sd15-gpu.json"
echo "figures: $WORK/sd15-gpu.json"

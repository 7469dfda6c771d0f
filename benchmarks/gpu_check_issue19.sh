#!/usr/bin/env bash
# Issue 19 device check, one prepared script of about 10 minutes on one H100/H200 (not yet run:
# no GPU was lent while the issue was worked on). From the repo root, with the project's venv:
#   bash benchmarks/gpu_check_issue19.sh        (results: JSON lines in ${OUT:-/tmp}/issue19_*.jsonl)
set -euo pipefail
export PYTHONPATH="$PWD:$PWD/benchmarks" GETOK_BENCH_NO_DOC=1
out="${OUT:-/tmp}"
nvidia-smi -L | tee "$out/issue19_device.txt"
# 1. SAM stage at n = 32, vit_h random weights, bf16: ours (device tables, SDPA) vs
#    SamAutomaticMaskGenerator(points_per_side=32), and the encoder alone as the bound.
timeout 330 python benchmarks/sam_stage.py --model vit_h --device cuda --dtype bfloat16 --grids 32 \
  --images 8 --repeat 2 | tail -1 | tee "$out/issue19_sam_stage.jsonl"
# 2. A small end-to-end GPU build (random vit_h saved as a checkpoint), 2 CPU workers, then verify.
python -c "import torch; from segment_anything import sam_model_registry as r; \
torch.save(r['vit_h'](checkpoint=None).state_dict(), '/tmp/vit_h_random.pth')"
timeout 200 python -m getok_data.cli build --src synthetic --split val --size 48 --grid 32 --segmenter sam \
  --sam-model vit_h --sam-checkpoint /tmp/vit_h_random.pth --device cuda --dtype bfloat16 --cpu-workers 2 \
  --images-per-shard 24 --out /tmp/issue19_e2e --force --no-progress --json --max-error-rate 1 \
  | tee "$out/issue19_e2e.jsonl"
python -m getok_data.cli verify /tmp/issue19_e2e | tail -2

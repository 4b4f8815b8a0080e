#!/usr/bin/env bash
# One command for a CUDA machine, after the README's install (with a CUDA build of torch): the tests that need a GPU,
# prefill and decode latency of the whole TPRL model at LLaVA-1.5-7B shapes (random weights) at 576 / 192 / 128 / 64
# kept, and a training smoke run (the LLaVA-1.5-7B recipe's dry run, with its projection of the real run). Each part
# prints its table. Written to finish within 8 minutes on one H100-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'scripts/gpu_check.sh needs a CUDA device and torch built for it'"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1/3 the tests that need a GPU"
python -m pytest tests/test_cuda.py -q -rs

echo "== 2/3 latency at LLaVA-1.5-7B shapes"
python scripts/measure_latency.py --skip_tiny --skip_proxy --llava_7b --repeats 10

echo "== 3/3 training smoke run: the LLaVA-1.5-7B recipe's dry run"
HF_HUB_OFFLINE=1 tprl-train --config train/configs/llava-1.5-7b.yaml --dry_run --output_dir outputs/gpu_check

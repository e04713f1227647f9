#!/usr/bin/env bash
# One call on a lent GPU: attention parity against SDPA (flash / memory-efficient backends, bf16, fully masked
# rows), attention forward+backward timing at (8, 2048, 16, 64) and (1, 16384, 16, 128), nanoGPT's GPU character
# model on tinyshakespeare to its validation loss, and the larger Multi30k recipe for a fixed budget; one table.
#
#   bash benchmarks/gpu.sh                        everything (about 15 minutes on one H100-class GPU)
#   bash benchmarks/gpu.sh --only parity,attention
#   bash benchmarks/gpu.sh --multi30k-minutes 5
#   bash benchmarks/gpu.sh --dry-run              the same steps on the CPU at tiny sizes, CUDA parts skipped
#
# Exit status: 0 when every check passed, 1 when one failed, 2 without a GPU (and no --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --dry-run "* ]] && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
exec python benchmarks/gpu_checks.py "$@"

#!/usr/bin/env bash
# The GPU check of issue 14 (item 8) in one call of at most 8 minutes on one GPU:
#   bash benchmarks/gpu_check.sh            # writes gpu_check.json / gpu_check.md / nvidia-smi.txt to $OUT
# Sections: mpunet segment of a 512x512x400 CT with the full-width released model (random weights),
# float32 vs bfloat16/float16 labels (demo weights), one training epoch of 88 patches, torch.compile.
# Each section's result is saved as soon as it ends, so a run cut by the time limit keeps what it has.
# CPU check of the same script (a minute or a few): bash benchmarks/gpu_check.sh --device cpu --tiny
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
(nvidia-smi; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv) > "$OUT/nvidia-smi.txt" 2>&1 || true
lscpu > "$OUT/lscpu.txt" 2>&1 || true
timeout 460 python3 benchmarks/gpu_check.py --out "$OUT" --timeout 200 "$@"
status=$?
cat "$OUT/gpu_check.md" 2>/dev/null
exit $status

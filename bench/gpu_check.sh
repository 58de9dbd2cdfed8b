#!/usr/bin/env bash
# The GPU checks of the issue "Adapters that learn", as one prepared command for a lent GPU machine:
#   1. a fusion run's training throughput as a share of the frozen encoder's forward+backward (goal >= 0.6);
#   2. part of the pack build in bf16 (mixed_precision="auto" gives bf16 on a GPU that supports it): two adapters
#      and the cards' fresh dev scores, to set beside the CPU build's.
# Usage (from the repository root, the task data at ../shared/data or $FUSIONLAB_DATA_DIR):
#   OUT=/some/dir bash bench/gpu_check.sh
set -euo pipefail
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
PY=${PY:-python}  # an environment with a CUDA build of torch and fusionlab installed (pip install -e .)
"$PY" -c "import torch, fusionlab; assert torch.cuda.is_available(), 'this torch sees no GPU'" \
  || { echo "gpu_check: $PY needs a CUDA torch and fusionlab (pip install -e .)" >&2; exit 2; }
"$PY" -c "from fusionlab.data.loading import resolve_data_dir as r; d = r(None); assert d and d.is_dir(), d" \
  || { echo "gpu_check: no task data: set FUSIONLAB_DATA_DIR" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" bench/encoder_ratio.py --device cuda --steps 20 --out "$OUT/encoder_ratio.json" | tee "$OUT/encoder_ratio.txt"
"$PY" bench/encoder_ratio.py --device cuda --steps 20 --batch 128 --out "$OUT/encoder_ratio_b128.json" | tee -a "$OUT/encoder_ratio.txt"
start=$(date +%s)
"$PY" -m fusionlab.cli pack build --only sst2,rte --out "$OUT/pack" | tee "$OUT/pack_build.log"
echo "pack build (sst2, rte) on the GPU: $(( $(date +%s) - start )) s" | tee -a "$OUT/pack_build.log"
FUSIONLAB_PACK="$OUT/pack" "$PY" -m fusionlab.cli pack list --markdown > "$OUT/pack_table.md"

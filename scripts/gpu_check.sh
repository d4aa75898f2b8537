#!/usr/bin/env bash
# CUDA check of the latent-factor path, in under 5 minutes on a CUDA machine:
#   1. single-GPU `recsys fit` of MF-BPR on ML-100k (RecBole protocol), timing epochs and reporting test NDCG@10;
#   2. with two or more GPUs, the same fit sharded by TorchRec across all of them (NCCL).
# Usage: scripts/gpu_check.sh [OUTPUT_DIR]   (env: PYTHON, default .venv/bin/python or python3; EPOCHS, default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu_check}
EPOCHS=${EPOCHS:-20}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
mkdir -p "$OUT"

GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$GPUS" -lt 1 ]; then
  echo "gpu_check: no CUDA GPU found (nvidia-smi -L lists none)" >&2
  exit 1
fi
nvidia-smi -L | tee "$OUT/gpus.txt"
"$PY" - <<'PY' | tee "$OUT/versions.txt"
import torch, torchrec, lightning
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchrec {torchrec.__version__}, lightning {lightning.__version__}")
print("device:", torch.cuda.get_device_name(0))
PY

fit() {  # fit NAME EXTRA_ARGS...
  local name=$1; shift
  local started=$SECONDS
  "$PY" -m recsys.cli fit --config experiments/ml-100k/mf-bpr.yaml \
    --trainer.accelerator gpu --trainer.max_epochs "$EPOCHS" --trainer.enable_progress_bar false \
    --trainer.logger.init_args.save_dir "$OUT/runs" --trainer.logger.init_args.name "$name" "$@" 2>&1 \
    | grep -E "^(test:|wrote)|Error|error" | tee "$OUT/$name.log"
  echo "$name: $((SECONDS - started)) s wall for $EPOCHS epochs (incl. start-up and test)" | tee -a "$OUT/summary.txt"
}

fit single-gpu --trainer.devices 1
if [ "$GPUS" -ge 2 ]; then
  fit sharded-"$GPUS"gpu --trainer.devices "$GPUS" --trainer.strategy recsys.distributed.TorchRecStrategy --trainer.strategy.sharding table_wise
else
  echo "sharded: skipped (one GPU; the 2-process sharded path is tested on CPU with gloo)" | tee -a "$OUT/summary.txt"
fi

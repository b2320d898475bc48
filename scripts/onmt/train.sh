#!/usr/bin/env bash
# Train the OpenNMT-py comparison model on one core (issue 11):
#   bash scripts/onmt/train.sh [WORK] [VENV]
# Runs prepare.sh first, then onmt_train pinned to core 1 with one thread.
# Log: WORK/train.log. Checkpoint: WORK/run/model_step_700.pt, and
# WORK/run/model_release.pt: the same without the optimizer state
# (onmt_release_model; 37 MB instead of 110 MB, 3 s less to load), the one
# scripts/compare_onmt.sh times.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/work/onmt/work}
VENV=${2:-/work/onmt/.venv}
bash "$REPO/scripts/onmt/prepare.sh" "$WORK" "$VENV"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
cd "$WORK"
start=$(date +%s)
taskset -c "${CORES:-1}" "$VENV/bin/onmt_train" \
  -config "$REPO/scripts/onmt/multi30k_de_en.yaml" > train.log 2>&1 \
  || { tail -20 train.log >&2; exit 1; }
echo "onmt_train wall time: $(( $(date +%s) - start )) s" | tee -a train.log
grep -E "Step 700/|validation BLEU|Validation perplexity" train.log
taskset -c "${CORES:-1}" "$VENV/bin/onmt_release_model" \
  -m run/model_step_700.pt -o run/model_release.pt 2>/dev/null
ls -l run/model_step_700.pt run/model_release.pt

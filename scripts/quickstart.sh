#!/usr/bin/env bash
# Install, fetch Multi30k, train the reference de->en model for a few minutes on
# the CPU and print its validation BLEU.
#   bash scripts/quickstart.sh [LOCAL_MULTI30K_FOLDER] [MINUTES]
# Without a folder the corpus is downloaded from its public source.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
if [ -n "${1:-}" ]; then
  seq2seq download multi30k --from "$1"
else
  seq2seq download multi30k
fi
seq2seq train --config configs/multi30k_de_en.yaml --output-dir runs/quickstart --overwrite \
  --set train.max_minutes="${2:-5}" --set train.valid_every=300
python - <<'PY'
import torch
progress = torch.load("runs/quickstart/last.pt", weights_only=True)["progress"]
for entry in progress["history"]:
    print(f"step {entry['step']:5d}  {entry['minutes']:5.1f} min  validation BLEU {entry['bleu']:.2f}")
PY

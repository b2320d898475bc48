#!/usr/bin/env bash
# CI's check of the deployment story (issue 23): export the toy model with the full venv,
# install the runtime alone into a second venv without torch (scripts/runtime_venv.sh),
# translate there, and compare with the PyTorch path's output (fp32) line for line.
#
#   bash scripts/test_runtime_venv.sh TOY_CHECKPOINT WORKDIR
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: test_runtime_venv.sh TOY_CHECKPOINT WORKDIR}
WORK=${2:?usage: test_runtime_venv.sh TOY_CHECKPOINT WORKDIR}
mkdir -p "$WORK"
.venv/bin/seq2seq -q export --model "$CKPT" --output "$WORK/toy_export" --overwrite
bash scripts/runtime_venv.sh "$WORK/runtime_venv" --spacy  # the toy model is tokenized by spaCy
head -200 data/toy/valid.src > "$WORK/input.txt"
for beam in 1 5; do
  .venv/bin/seq2seq -q translate --model "$CKPT" --device cpu --precision fp32 --beam $beam \
    --input "$WORK/input.txt" --output "$WORK/pytorch.$beam.txt"
  (cd "$WORK" && runtime_venv/bin/seq2seq -q translate --model toy_export --beam $beam \
    --input input.txt --output runtime.$beam.txt)
  cmp "$WORK/pytorch.$beam.txt" "$WORK/runtime.$beam.txt"
  echo "beam $beam: the runtime venv (no torch) translates as PyTorch does ($(wc -l < "$WORK/input.txt") lines)"
done

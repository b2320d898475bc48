#!/usr/bin/env bash
# Data for the OpenNMT-py comparison model (issue 11):
#   bash scripts/onmt/prepare.sh [WORK] [VENV]
#     WORK default /work/onmt/work, VENV default /work/onmt/.venv
# 1. unpacks Multi30k de-en train/val/test_2016_flickr into WORK/data/
# 2. trains a joint 8k unigram SentencePiece model (character_coverage 1.0,
#    hard_vocab_limit false: the settings of seq2seq/tokenization.py) on
#    train.de + train.en -> WORK/spm8k.model
# 3. onmt_build_vocab with scripts/onmt/multi30k_de_en.yaml -> WORK/vocab.{src,tgt}
# Idempotent: steps whose output exists are skipped. CPU work is pinned to
# core 1 (taskset -c 1); set CORES= to change that.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-/work/onmt/work}
VENV=${2:-/work/onmt/.venv}
PIN=(taskset -c "${CORES:-1}")
export OMP_NUM_THREADS=1
mkdir -p "$WORK/data" "$WORK/run"
for split in train val test_2016_flickr; do
  for lang in de en; do
    out="$WORK/data/$split.$lang"
    [ -s "$out" ] || zcat "$REPO/data/multi30k/$split.$lang.gz" > "$out"
  done
done
if [ ! -s "$WORK/spm8k.model" ]; then
  "${PIN[@]}" "$VENV/bin/python" - "$WORK" <<'PY'
import sys, sentencepiece as spm
work = sys.argv[1]
lines = []
for lang in ("de", "en"):
    with open(f"{work}/data/train.{lang}", encoding="utf-8") as f:
        lines += [l.strip() for l in f if l.strip()]
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_prefix=f"{work}/spm8k",
    vocab_size=8000, model_type="unigram", character_coverage=1.0,
    hard_vocab_limit=False, input_sentence_size=2_000_000,
    shuffle_input_sentence=True, num_threads=1, minloglevel=2)
print("spm8k.model written")
PY
fi
if [ ! -s "$WORK/vocab.src" ]; then
  (cd "$WORK" && "${PIN[@]}" "$VENV/bin/onmt_build_vocab" \
     -config "$REPO/scripts/onmt/multi30k_de_en.yaml" -n_sample -1 -num_threads 1)
fi
wc -l "$WORK/vocab.src" "$WORK/vocab.tgt"

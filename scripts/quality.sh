#!/usr/bin/env bash
# Issue 12's quality runs: train one direction for its budget, then choose on val only
# among best.pt and the averages of the last 3 and 5 validated weights, each with length
# penalty alpha 0.6, 1.0 and 1.4 (beam 5), and score only the chosen one on
# test_2016_flickr (detokenized, cased sacrebleu).
#
#   bash scripts/quality.sh de en          # trains configs/quality/multi30k_de_en_1h.yaml
#   SKIP_TRAIN=1 bash scripts/quality.sh de en   # only choose and score an existing run
#   CORES=1 ...                            # pin to that core (taskset), one thread
#   VARIANT=cosine ...                     # configs/quality/multi30k_de_en_cosine.yaml,
#                                          # run in runs/q_de_en_cosine
set -euo pipefail
src=$1 tgt=$2
variant=${VARIANT:-1h}
run=runs/q_${src}_${tgt}
[[ "$variant" != 1h ]] && run=${run}_$variant
data=data/multi30k
pin=()
[[ -n "${CORES:-}" ]] && pin=(taskset -c "$CORES")
if [[ -z "${SKIP_TRAIN:-}" ]]; then
  "${pin[@]}" seq2seq train --config "configs/quality/multi30k_${src}_${tgt}_${variant}.yaml" \
    --output-dir "$run" --overwrite
fi
"${pin[@]}" seq2seq average --run "$run" --last 3 --output "$run/avg3.pt"
"${pin[@]}" seq2seq average --run "$run" --last 5 --output "$run/avg5.pt"
best_name="" best_alpha="" best_bleu=-1
for name in best avg3 avg5; do
  for alpha in 0.6 1.0 1.4; do
    bleu=$("${pin[@]}" seq2seq evaluate --model "$run/$name.pt" --src "$data/val.$src.gz" \
      --ref "$data/val.$tgt.gz" --beam 5 --alpha "$alpha" --metrics bleu --json \
      --output "$run/val_${name}_$alpha.txt" |
      python -c 'import json, sys; print(json.load(sys.stdin)["bleu"]["score"])')
    echo "val BLEU, beam 5: $name alpha $alpha: $bleu"
    if python -c "import sys; sys.exit(not $bleu > $best_bleu)"; then
      best_name=$name best_alpha=$alpha best_bleu=$bleu
    fi
  done
done
echo "chosen on val: $best_name, alpha $best_alpha"
"${pin[@]}" seq2seq evaluate --model "$run/$best_name.pt" --src "$data/test_2016_flickr.$src.gz" \
  --ref "$data/test_2016_flickr.$tgt.gz" --beam 5 --alpha "$best_alpha" --metrics bleu,chrf \
  --output "$run/test_${best_name}_$best_alpha.txt"

#!/usr/bin/env bash
# Issue 12's quality runs: train one direction for its budget, then choose on val only
# among best.pt and the averages of the last 3 and 5 validated weights, each with length
# penalty alpha 0.6, 1.0 and 1.4 (beam 5), and score only the chosen one on
# test_2016_flickr (detokenized, cased sacrebleu): scripts/choose_on_val.py.
#
#   bash scripts/quality.sh de en          # trains configs/quality/multi30k_de_en_1h.yaml
#   SKIP_TRAIN=1 bash scripts/quality.sh de en   # only choose and score an existing run
#   CORES=1 ...                            # pin to that core (taskset), one thread
#   VARIANT=cosine ...                     # configs/quality/multi30k_de_en_cosine.yaml,
#                                          # run in runs/q_de_en_cosine
#   VARIANT=2h SKIP_TRAIN=1 ...            # choose and score runs/q_de_en_2h, the 55-minute
#                                          # run resumed with --set train.max_minutes=115
set -euo pipefail
src=$1 tgt=$2
variant=${VARIANT:-1h}
run=runs/q_${src}_${tgt}
[[ "$variant" != 1h ]] && run=${run}_$variant
pin=()
[[ -n "${CORES:-}" ]] && pin=(taskset -c "$CORES")
if [[ -z "${SKIP_TRAIN:-}" ]]; then
  "${pin[@]}" seq2seq train --config "configs/quality/multi30k_${src}_${tgt}_${variant}.yaml" \
    --output-dir "$run" --overwrite
fi
seq2seq plot "$run" --output "$run/curves.png"   # the learning curve, without W&B
"${pin[@]}" seq2seq average --run "$run" --last 3 --output "$run/avg3.pt"
"${pin[@]}" seq2seq average --run "$run" --last 5 --output "$run/avg5.pt"
"${pin[@]}" python scripts/choose_on_val.py --src "$src" --tgt "$tgt" --out-dir "$run" \
  ${CORES:+--threads 1} --candidate "best=$run/best.pt" --candidate "avg3=$run/avg3.pt" \
  --candidate "avg5=$run/avg5.pt"

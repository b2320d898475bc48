#!/usr/bin/env bash
# Train more seeds of the reference de->en model, sharing the first model's tokenizers and
# vocabularies (data.vocab_from), then score each model and their ensemble on test_2016_flickr.
#
#   bash scripts/ensemble.sh [FIRST_MODEL] [SEEDS...]
#   bash scripts/ensemble.sh runs/multi30k_de_en/best.pt 2 3
#
# Each seed trains for STEPS optimizer steps (default 660: what 10 minutes gave the first model
# on a 2-core AMD EPYC), so the members match whatever the machine's speed.
# THREADS (default: all cores) sets train.num_threads.
set -euo pipefail
first=${1:-runs/multi30k_de_en/best.pt}
shift || true
seeds=("${@:-2 3}")
read -r -a seeds <<< "${seeds[*]}"
steps=${STEPS:-660}
threads=${THREADS:-0}
config=${CONFIG:-configs/multi30k_de_en.yaml}
test_src=${TEST_SRC:-data/multi30k/test_2016_flickr.de.gz}
test_ref=${TEST_REF:-data/multi30k/test_2016_flickr.en.gz}
members=("$first")
for seed in "${seeds[@]}"; do
  out=runs/$(basename "$config" .yaml)_seed$seed
  if [ ! -f "$out/best.pt" ]; then
    seq2seq train --config "$config" --output-dir "$out" --overwrite \
      --set train.seed="$seed" --set train.max_steps="$steps" --set train.max_minutes=0 \
      --set train.num_threads="$threads" --set data.vocab_from="$first"
  fi
  members+=("$out/best.pt")
done
for member in "${members[@]}"; do
  echo "== $member, beam 5"
  seq2seq evaluate --model "$member" --src "$test_src" --ref "$test_ref" --beam 5 --metrics bleu
done
echo "== ensemble of ${#members[@]}, beam 5"
seq2seq evaluate --model "${members[@]}" --src "$test_src" --ref "$test_ref" --beam 5 --metrics bleu
echo "== ensemble of ${#members[@]}, greedy"
seq2seq evaluate --model "${members[@]}" --src "$test_src" --ref "$test_ref" --beam 1 --metrics bleu

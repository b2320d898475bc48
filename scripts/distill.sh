#!/usr/bin/env bash
# Sequence-level knowledge distillation (Kim and Rush 2016), as commands:
#  1. the teacher (one checkpoint or several: an ensemble) translates the training source, beam 5;
#  2. a student half the size (configs/multi30k_de_en_student.yaml) trains on those translations,
#     sharing the teacher's tokenizers and vocabularies;
#  3. teacher beam 5 and student greedy are scored and timed on test_2016_flickr.
#
#   bash scripts/distill.sh runs/multi30k_de_en/best.pt [more teacher checkpoints ...]
#
# THREADS (default: all cores) sets train.num_threads; STUDENT_STEPS overrides train.max_steps,
# STUDENT_MINUTES trains for that many minutes instead; WORKERS splits the teacher's
# translation of the training set over that many processes. OUT (default
# data/multi30k_distilled) and STUDENT (default runs/multi30k_de_en_student) keep a second
# teacher's data and student apart from the first's.
set -euo pipefail
teacher=("${@:-runs/multi30k_de_en/best.pt}")
threads=${THREADS:-0}
out=${OUT:-data/multi30k_distilled}
mkdir -p "$out"
if [ ! -f "$out/train.en" ]; then
  resume=()  # an interrupted translation continues where it stopped
  [ -f "$out/.train.en.tmp.progress" ] && resume=(--resume)
  seq2seq translate --model "${teacher[@]}" --beam 5 --input data/multi30k/train.de.gz \
    --output "$out/train.en.tmp" ${WORKERS:+--workers "$WORKERS"} "${resume[@]}"
  mv "$out/train.en.tmp" "$out/train.en"
fi
[ -f "$out/train.de.gz" ] || cp data/multi30k/train.de.gz "$out/train.de.gz"
student=${STUDENT:-runs/multi30k_de_en_student}
if [ ! -f "$student/best.pt" ]; then
  seq2seq train --config configs/multi30k_de_en_student.yaml --output-dir "$student" --overwrite \
    --set data.train="$out/train" --set data.vocab_from="${teacher[0]}" \
    --set train.num_threads="$threads" ${STUDENT_STEPS:+--set train.max_steps=$STUDENT_STEPS} \
    ${STUDENT_MINUTES:+--set train.max_steps=0 --set train.max_minutes=$STUDENT_MINUTES}
fi
src=data/multi30k/test_2016_flickr.de.gz
ref=data/multi30k/test_2016_flickr.en.gz
zcat "$src" > /tmp/distill_test.de
timed() {  # whole process: loading, decoding, writing
  local start end
  start=$(date +%s.%N)
  seq2seq translate "$@" --input /tmp/distill_test.de --output /tmp/distill_out.txt 2>/dev/null
  end=$(date +%s.%N)
  printf '%.1f s, ' "$(echo "$end - $start" | bc)"
  seq2seq evaluate --hyp /tmp/distill_out.txt --ref "$ref" --metrics bleu | head -1
}
echo "teacher (${#teacher[@]} model(s)), beam 5: $(timed --model "${teacher[@]}" --beam 5)"
echo "student $student/best.pt, greedy: $(timed --model "$student/best.pt" --beam 1)"
echo "student $student/best.pt, beam 5: $(timed --model "$student/best.pt" --beam 5)"

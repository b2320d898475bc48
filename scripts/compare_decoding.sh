#!/usr/bin/env bash
# Translations of a refactoring's before and after, byte for byte: translate one file with
# one checkpoint in every engine, then compare two such folders.
#
#   bash scripts/compare_decoding.sh translate MODEL.pt INPUT OUT_DIR   # in each checkout
#   bash scripts/compare_decoding.sh compare OUT_DIR_BEFORE OUT_DIR_AFTER
#
# Engines: fp32 and int8, greedy and beam 5; bf16 too where the CPU computes it natively
# (AVX-512 BF16 or AMX), or where PRECISIONS="fp32 bf16" asks for it (emulated bf16 is slower).
set -euo pipefail
mode=$1
if [[ "$mode" == compare ]]; then
  status=0
  for file in "$2"/*.txt; do
    name=$(basename "$file")
    if cmp -s "$file" "$3/$name"; then
      echo "identical  $name ($(wc -l < "$file") lines)"
    else
      echo "DIFFERENT  $name: $(diff "$file" "$3/$name" | grep -c '^<') lines differ"
      status=1
    fi
  done
  exit $status
fi
model=$2 input=$3 out=$4
run=${SEQ2SEQ:-seq2seq}  # SEQ2SEQ="python -m seq2seq" with PYTHONPATH=OLD_CHECKOUT for the before
mkdir -p "$out"
precisions=(fp32)
grep -qE ' (avx512_bf16|amx_bf16)' /proc/cpuinfo && precisions+=(bf16)
[[ -n "${PRECISIONS:-}" ]] && read -ra precisions <<< "$PRECISIONS"  # e.g. PRECISIONS="fp32 bf16"
for precision in "${precisions[@]}"; do
  for beam in 1 5; do
    $run -q translate --model "$model" --input "$input" --output "$out/${precision}_beam$beam.txt" \
      --device cpu --precision "$precision" --beam "$beam"
  done
done
for beam in 1 5; do
  $run -q translate --model "$model" --input "$input" --output "$out/int8_beam$beam.txt" \
    --device cpu --precision fp32 --quantize int8 --beam "$beam"
done
ls -l "$out"

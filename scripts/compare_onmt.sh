#!/usr/bin/env bash
# Side-by-side decoding speed: `seq2seq translate` vs OpenNMT-py 3.5.1
# `onmt_translate` on Multi30k test_2016_flickr de->en (issue 11).
#
#   bash scripts/compare_onmt.sh [--limit N] [OURS_CKPT] [ONMT_CKPT] [ONMT_VENV]
#     OURS_CKPT  default runs/multi30k_de_en/best.pt
#     ONMT_CKPT  default /work/onmt/work/run/model_release.pt (onmt_release_model:
#                the final checkpoint without optimizer state, as deployed)
#     ONMT_VENV  default /work/onmt/.venv
#   (the OpenNMT-py model: scripts/onmt/setup.sh, then scripts/onmt/train.sh)
#
# Environment knobs:
#   CORES=1         pin every timed process with `taskset -c $CORES` (default:
#                   no pinning); OMP_NUM_THREADS is set to the number of cores
#                   allowed, the same for both tools
#   EXTRA_OURS="--quantize int8;--precision bf16"
#                   extra seq2seq variants, ';'-separated flag lists; each adds
#                   a row against the same onmt_translate time, and a start-up row.
#                   An export (seq2seq export) is a variant too: "--model DIR";
#                   a first word bin=PATH runs another seq2seq, e.g. the runtime's
#                   own venv without torch (scripts/runtime_venv.sh):
#                   EXTRA_OURS="bin=/tmp/rt/bin/seq2seq --model /tmp/export_int8"
#   REPEATS=1       timed runs per cell; the median is reported
#   ENVS="native avx2"   which CPU environments to run
#   BEAMS="5 1"     beam sizes (1 = greedy)
#   ONMT_SPM        SentencePiece model of the onmt model
#                   (default: ONMT_CKPT's dir/../spm8k.model)
#   ONMT_ARGS       extra onmt_translate flags
#   OUT             folder for outputs and logs (default: a new /tmp folder)
#
# What is timed: the whole process, wall clock, raw German text in ->
# detokenized English out, for both tools (start-up, model load, SentencePiece
# encoding, decoding, decoding back, writing):
#   seq2seq translate --model OURS --beam K --device cpu $EXTRA < test.de > out
#   onmt_translate -model ONMT -src test.de -output out -beam_size K
#       -transforms sentencepiece -src_subword_model SPM -tgt_subword_model SPM
#   (the onmt model is trained with OpenNMT-py's own sentencepiece transform,
#   which onmt_translate applies to the input and reverses on the output, so no
#   separate tokenize/detokenize process is needed: see scripts/onmt/).
# Batch sizes: both tools batch by source tokens with seq2seq's defaults,
#   beam 5: 1500 tokens, greedy: 8000 tokens
#   (onmt_translate -batch_type tokens -batch_size 1500 / 8000; its own default
#   is 30 sentences; override with ONMT_ARGS="-batch_type sents -batch_size 30").
# Search: each tool's default length penalty / length limit (seq2seq: GNMT
#   alpha 0.6, <= 2 x src + 5 tokens; onmt: length_penalty avg,
#   max_length_ratio 1.25). onmt greedy = -beam_size 1 -random_sampling_topk 1
#   (its argmax GreedySearch path; -beam_size 1 alone runs BeamSearch with one
#   beam, same output).
# BLEU: sacrebleu, cased, default 13a tokenization, against
# test_2016_flickr.en (first N lines with --limit N). "len" is sacrebleu's
# hypothesis/reference length ratio. "speed-up" = onmt s / seq2seq s.
# "startup" rows: each tool translating one sentence greedily (process start,
# imports and model load dominate); they are part of every whole-process time.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIMIT=0
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --limit) LIMIT=$2; shift 2 ;;
    --limit=*) LIMIT=${1#--limit=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
OURS=${ARGS[0]:-$REPO/runs/multi30k_de_en/best.pt}
ONMT=${ARGS[1]:-/work/onmt/work/run/model_release.pt}
ONMT_VENV=${ARGS[2]:-/work/onmt/.venv}
ONMT_SPM=${ONMT_SPM:-$(cd "$(dirname "$ONMT")/.." && pwd)/spm8k.model}
S2S=${S2S:-$REPO/.venv/bin/seq2seq}
PY=$REPO/.venv/bin/python
REPEATS=${REPEATS:-1}
ENVS=${ENVS:-native avx2}
BEAMS=${BEAMS:-5 1}
OUT=${OUT:-$(mktemp -d /tmp/compare_onmt.XXXXXX)}
mkdir -p "$OUT"
for f in "$OURS" "$ONMT" "$ONMT_SPM" "$S2S" "$ONMT_VENV/bin/onmt_translate"; do
  [ -e "$f" ] || { echo "missing: $f" >&2; exit 1; }
done

PIN=()
if [ -n "${CORES:-}" ]; then
  PIN=(taskset -c "$CORES")
  export OMP_NUM_THREADS=$(taskset -c "$CORES" nproc)
else
  export OMP_NUM_THREADS=$(nproc)
fi
export MKL_NUM_THREADS=$OMP_NUM_THREADS
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1  # OpenNMT-py 3.5.1 checkpoints
export PYTHONWARNINGS=ignore

# ---- data ----
DATA=$REPO/data/multi30k
lim() { awk -v n="$LIMIT" 'n <= 0 || NR <= n'; }  # reads all: no SIGPIPE
zcat "$DATA/test_2016_flickr.de.gz" | lim > "$OUT/test.de"
zcat "$DATA/test_2016_flickr.en.gz" | lim > "$OUT/test.en"
head -n 1 "$OUT/test.de" > "$OUT/one.de"
N=$(wc -l < "$OUT/test.de")

# ---- machine ----
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }
echo "## seq2seq vs OpenNMT-py 3.5.1, test_2016_flickr de->en, $N sentences"
echo
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc --all) cores online"
echo "- flags: avx2=$(has avx2) avx512f=$(has avx512f) avx512_bf16=$(has avx512_bf16) amx_bf16=$(has amx_bf16) amx_tile=$(has amx_tile)"
echo "- pinning: ${PIN[*]:-none}, OMP_NUM_THREADS=$OMP_NUM_THREADS, repeats: $REPEATS (median)"
echo "- seq2seq: torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null), $OURS"
echo "- onmt: OpenNMT-py $("$ONMT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("OpenNMT-py"))' 2>/dev/null), torch $("$ONMT_VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null), $ONMT"
echo "- outputs and logs: $OUT"

# ---- runners ----
env_vars() {  # the CPU environment as `env` arguments
  case $1 in
    native) echo "-u ATEN_CPU_CAPABILITY -u MKL_ENABLE_INSTRUCTIONS -u ONEDNN_MAX_CPU_ISA" ;;
    avx2) echo "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" ;;
    *) echo "unknown env $1" >&2; exit 1 ;;
  esac
}
now() { date +%s.%N; }
# run_ours ENV BEAM SRC OUTFILE FLAGS... ; prints seconds
run_ours() {
  local e=$1 k=$2 src=$3 out=$4; shift 4
  local t0 t1 bin=$S2S
  if [[ "${1:-}" == bin=* ]]; then bin=${1#bin=}; shift; fi
  t0=$(now)
  # shellcheck disable=SC2046
  env $(env_vars "$e") "${PIN[@]}" "$bin" translate --model "$OURS" --beam "$k" \
    --device cpu "$@" < "$src" > "$out" 2>> "$out.log" \
    || { echo "seq2seq failed, see $out.log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
run_onmt() {
  local e=$1 k=$2 src=$3 out=$4
  local bs=1500 extra=()
  [ "$k" = 1 ] && { bs=8000; extra=(-random_sampling_topk 1); }
  local t0 t1
  t0=$(now)
  # shellcheck disable=SC2046,SC2086
  env $(env_vars "$e") "${PIN[@]}" "$ONMT_VENV/bin/onmt_translate" -model "$ONMT" \
    -src "$src" -output "$out" -beam_size "$k" -batch_type tokens -batch_size "$bs" \
    -transforms sentencepiece -src_subword_model "$ONMT_SPM" -tgt_subword_model "$ONMT_SPM" \
    "${extra[@]}" ${ONMT_ARGS:-} > "$out.log" 2>&1 \
    || { echo "onmt_translate failed, see $out.log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }
# repeat TOOL ENV BEAM OUTFILE [FLAGS...]: median seconds over REPEATS runs
repeat() {
  local tool=$1 e=$2 k=$3 out=$4; shift 4
  for _ in $(seq "$REPEATS"); do
    if [ "$tool" = ours ]; then run_ours "$e" "$k" "$OUT/test.de" "$out" "$@"
    else run_onmt "$e" "$k" "$OUT/test.de" "$out"; fi
  done | median
}
score() {  # BLEU and length ratio of a detokenized output
  "$PY" - "$1" "$OUT/test.en" <<'PY'
import sys, sacrebleu
hyp = open(sys.argv[1], encoding="utf-8").read().splitlines()
ref = open(sys.argv[2], encoding="utf-8").read().splitlines()
assert len(hyp) == len(ref), f"{sys.argv[1]}: {len(hyp)} lines, {len(ref)} references"
b = sacrebleu.corpus_bleu(hyp, [ref])
print(f"{b.score:.2f} {b.sys_len / b.ref_len:.3f}")
PY
}

VARIANTS=("")
if [ -n "${EXTRA_OURS:-}" ]; then
  IFS=';' read -r -a more <<< "$EXTRA_OURS"
  VARIANTS+=("${more[@]}")
fi

echo
echo "| env | beam | seq2seq flags | seq2seq s | BLEU | len | onmt s | BLEU | len | speed-up |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for e in $ENVS; do
  to=$(run_onmt "$e" 1 "$OUT/one.de" "$OUT/startup.onmt.$e")
  i=0
  for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    ts=$(for _ in $(seq "$REPEATS"); do run_ours "$e" 1 "$OUT/one.de" "$OUT/startup.ours.$e.v$i" $v; done | median)
    printf "| %s | startup (1 sentence) | %s | %.2f | | | %.2f | | | %.2fx |\n" \
      "$e" "${v:-default}" "$ts" "$to" "$(echo "$to / $ts" | bc -l)"
    i=$((i + 1))
  done
  for k in $BEAMS; do
    fo=$OUT/onmt.$e.beam$k.en
    to=$(repeat onmt "$e" "$k" "$fo")
    read -r bo lo <<< "$(score "$fo")"
    i=0
    for v in "${VARIANTS[@]}"; do
      fs=$OUT/ours.$e.beam$k.v$i.en
      # shellcheck disable=SC2086
      ts=$(repeat ours "$e" "$k" "$fs" $v)
      read -r bs ls <<< "$(score "$fs")"
      printf "| %s | %s | %s | %.2f | %s | %s | %.2f | %s | %s | %.2fx |\n" \
        "$e" "$k" "${v:-default}" "$ts" "$bs" "$ls" "$to" "$bo" "$lo" \
        "$(echo "$to / $ts" | bc -l)"
      i=$((i + 1))
    done
  done
done
echo
echo "targets (issue 11): beam 5 speed-up >= 3x, greedy (beam 1) >= 4x"

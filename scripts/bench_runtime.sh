#!/usr/bin/env bash
# Lines per second of the runtime (an export, ONNX Runtime, no torch) against the PyTorch
# path, whole process, on a 10,000-line German input (Tatoeba; issue 23):
#
#   bash scripts/bench_runtime.sh CKPT EXPORT_FP32 EXPORT_INT8 [RUNTIME_VENV]
#
# CKPT is a de->en checkpoint, EXPORT_* its exports (seq2seq export [--quantize int8]),
# RUNTIME_VENV a venv from scripts/runtime_venv.sh (default: the project's .venv runs all).
# Environment: CORES (taskset list, default none), BEAMS (default "1 5"), LINES (10000),
# INPUT (default: the first LINES lines of data/tatoeba_de_en/train.de.gz), WORKERS
# (--workers values, default "1"). Also prints the sizes of the files a deployment ships.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CKPT=${1:?usage: bench_runtime.sh CKPT EXPORT_FP32 EXPORT_INT8 [RUNTIME_VENV]}
FP32=${2:?}; INT8=${3:?}
RT=${4:-$REPO/.venv}
BEAMS=${BEAMS:-1 5}
LINES=${LINES:-10000}
WORKERS=${WORKERS:-1}
OUT=$(mktemp -d /tmp/bench_runtime.XXXXXX)
INPUT=${INPUT:-$OUT/input.de}
[ -f "$INPUT" ] || zcat "$REPO/data/tatoeba_de_en/train.de.gz" | awk -v n="$LINES" "NR <= n" > "$INPUT"  # reads all: no SIGPIPE
PIN=()
[ -n "${CORES:-}" ] && PIN=(taskset -c "$CORES")
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }
echo "## runtime vs PyTorch, $(wc -l < "$INPUT") lines of $(basename "$INPUT"), whole process"
echo
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc --all) cores; pinning: ${PIN[*]:-none}"
echo "- flags: avx2=$(has avx2) avx512f=$(has avx512f) avx512_bf16=$(has avx512_bf16) avx512_vnni=$(has avx512_vnni) amx_tile=$(has amx_tile)"
echo "- $(date -u +%F), seq2seq $(git -C "$REPO" rev-parse --short HEAD), torch $("$REPO/.venv/bin/python" -c 'import torch; print(torch.__version__)'), onnxruntime $("$RT/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')"
echo
echo "| backend | model | beam | workers | seconds | lines/s | vs PyTorch fp32 |"
echo "|---|---|---|---|---|---|---|"
run() {  # BIN MODEL BEAM WORKERS FLAGS... -> seconds
  local bin=$1 model=$2 k=$3 w=$4; shift 4
  local t0; t0=$(date +%s.%N)
  "${PIN[@]}" "$bin" -q translate --model "$model" --beam "$k" --workers "$w" "$@" \
    --input "$INPUT" --output "$OUT/out.txt"
  echo "$(date +%s.%N) - $t0" | bc -l
}
for k in $BEAMS; do
  for w in $WORKERS; do
    base=$(run "$REPO/.venv/bin/seq2seq" "$CKPT" "$k" "$w" --device cpu --precision fp32)
    rows=(
      "PyTorch|fp32|$REPO/.venv/bin/seq2seq|$CKPT|--device cpu --precision fp32"
      "PyTorch|auto precision|$REPO/.venv/bin/seq2seq|$CKPT|--device cpu"
      "PyTorch|int8|$REPO/.venv/bin/seq2seq|$CKPT|--device cpu --quantize int8"
      "runtime|export fp32|$RT/bin/seq2seq|$FP32|"
      "runtime|export int8|$RT/bin/seq2seq|$INT8|"
    )
    for row in "${rows[@]}"; do
      IFS='|' read -r backend what bin model extra <<< "$row"
      if [ "$what" = fp32 ] && [ "$backend" = PyTorch ]; then s=$base
      else s=$(run "$bin" "$model" "$k" "$w" $extra); fi
      printf "| %s | %s | %s | %s | %.2f | %.0f | %.2fx |\n" "$backend" "$what" "$k" "$w" "$s" \
        "$(echo "$(wc -l < "$INPUT") / $s" | bc -l)" "$(echo "$base / $s" | bc -l)"
    done
  done
done
echo
echo "| what a deployment ships | MB |"
echo "|---|---|"
echo "| checkpoint $(basename "$CKPT") | $(du -m "$CKPT" | cut -f1) |"
echo "| export fp32 | $(du -sm "$FP32" | cut -f1) |"
echo "| export int8 | $(du -sm "$INT8" | cut -f1) |"
echo "| venv: $RT | $(du -sm "$RT" | cut -f1) |"
echo "| venv: $REPO/.venv (training, dev extras) | $(du -sm "$REPO/.venv" | cut -f1) |"

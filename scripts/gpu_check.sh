#!/usr/bin/env bash
# The GPU path end to end, on a CUDA machine:
#   bash scripts/gpu_check.sh [OUT_DIR]          (default runs/gpu_check)
# runs the CUDA tests, trains the toy config (resumes it, translates, evaluates), then
# trains the reference config for GPU_CHECK_MINUTES (default 2) in fp32, bf16 and fp16,
# resumes the fp32 run, evaluates it on the test set and prints target tokens/s.
# The reference runs need data/multi30k (fetched with `seq2seq download multi30k` if absent).
# Without a CUDA device it prints "no CUDA device; skipped" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device; skipped"
  exit 0
fi
out="${1:-runs/gpu_check}"
minutes="${GPU_CHECK_MINUTES:-2}"
cuda=(--set train.device=cuda --set wandb.mode=disabled)
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

echo "== CUDA tests"
python -m pytest -q tests/test_gpu.py

echo "== toy: train 500 steps, resume to 1000, translate, evaluate"
seq2seq -q train --config configs/toy.yaml --output-dir "$out/toy" --overwrite "${cuda[@]}" \
  --set train.max_steps=500
seq2seq -q train --config configs/toy.yaml --output-dir "$out/toy" --resume "${cuda[@]}" \
  --set train.max_steps=1000
seq2seq translate --model "$out/toy/best.pt" --input data/toy/test.src --output "$out/toy/test.hyp" \
  --device cuda
seq2seq evaluate --hyp "$out/toy/test.hyp" --ref data/toy/test.tgt --metrics bleu

if [ ! -e data/multi30k/train.de.gz ] && [ ! -e data/multi30k/train.de ]; then
  seq2seq download multi30k
fi
for precision in fp32 bf16 fp16; do
  echo "== reference config, $precision, $minutes min"
  seq2seq -q train --config configs/multi30k_de_en.yaml --output-dir "$out/ref_$precision" --overwrite \
    "${cuda[@]}" --set train.precision="$precision" --set train.max_minutes="$minutes"
done
echo "== resume fp32 for one more minute, evaluate on test_2016_flickr"
seq2seq -q train --config configs/multi30k_de_en.yaml --output-dir "$out/ref_fp32" --resume "${cuda[@]}" \
  --set train.precision=fp32 --set train.max_minutes="$(python -c "print($minutes + 1)")"
seq2seq evaluate --model "$out/ref_fp32/best.pt" --src data/multi30k/test_2016_flickr.de.gz \
  --ref data/multi30k/test_2016_flickr.en.gz --device cuda --metrics bleu,chrf

python - "$out" <<'PY'
import re
import statistics
import sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
print(f"\n{'run':<10} {'steps':>6} {'median tgt tok/s':>17} {'best valid BLEU':>16}")
for name in ("toy", "ref_fp32", "ref_bf16", "ref_fp16"):
    log = (out / name / "train.log").read_text(encoding="utf-8")
    speeds = [float(s) for s in re.findall(r"\| (\d+) tgt tok/s", log)][1:]  # first window warms up
    progress = torch.load(out / name / "last.pt", weights_only=True)["progress"]
    best = max(entry["bleu"] for entry in progress["history"])
    speed = statistics.median(speeds) if speeds else float("nan")
    print(f"{name:<10} {progress['step']:>6} {speed:>17,.0f} {best:>16.2f}")
PY

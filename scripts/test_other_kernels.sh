#!/usr/bin/env bash
# The numerical tests (pytest -m numerics) again, under the CPU kernels this machine does not
# use by default, so a test that holds for one kernel family only fails here and not on a
# user's CPU: AVX2 kernels on an AVX-512 CPU, scalar ATen kernels (SSE4.x for MKL and oneDNN)
# on an AVX2-only one. Kernels of another family sum in another order; the tests must say
# which results are bit-identical (resume, a sentence alone or in a batch) and which agree to
# a stated tolerance (accumulation against one large batch, int8 against fp32).
#
#   bash scripts/test_other_kernels.sh [TOY_CHECKPOINT] [pytest args]
#
# TOY_CHECKPOINT: a configs/toy.yaml model trained before (.ci/run passes the first pass's),
# so the decoding tests need not train it again under the slower kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
if [[ $# -gt 0 && -f "$1" ]]; then
  export SEQ2SEQ_TOY_CHECKPOINT=$1
  shift
fi
if grep -qw avx512f /proc/cpuinfo; then
  export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
else
  export ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
fi
echo "second pass: ATen $(python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')" \
  "kernels, MKL $MKL_ENABLE_INSTRUCTIONS, oneDNN $ONEDNN_MAX_CPU_ISA"
python -m pytest -q -m numerics -p no:cacheprovider "$@"

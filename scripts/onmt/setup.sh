#!/usr/bin/env bash
# Install OpenNMT-py 3.5.1 into its own venv (outside the repo), for the
# decoding-speed comparison in scripts/compare_onmt.sh (issue 11).
#
#   bash scripts/onmt/setup.sh [VENV]        # default VENV: /work/onmt/.venv
#
# Idempotent: re-running only installs what is missing.
# - torch==2.13.0 is the CPU build (lies in the local wheel folder here); never
#   a plain `pip install torch`, which pulls a multi-GB CUDA build. OpenNMT-py
#   3.5.1 declares torch<2.3, hence --no-deps; it runs fine on 2.13 (checkpoints
#   need TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, set by prepare.sh/compare_onmt.sh).
# - The dependencies below are the ones onmt_build_vocab / onmt_train /
#   onmt_translate import at start-up (onmt/transforms/__init__.py imports every
#   transform module, so spacy, pyahocorasick, rapidfuzz, regex and fasttext
#   are needed even when unused). Not needed: ctranslate2, tensorboard, flask,
#   waitress, six. sentencepiece + sacrebleu are for prepare.sh / scoring.
set -euo pipefail
VENV=${1:-/work/onmt/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --quiet)
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" torch==2.13.0
"$VENV/bin/python" -c "import onmt" 2>/dev/null \
  || "${PIP[@]}" --no-deps OpenNMT-py==3.5.1
if ! log=$("${PIP[@]}" numpy pyyaml configargparse pyonmttok \
    spacy pyahocorasick rapidfuzz regex fasttext-wheel \
    sentencepiece sacrebleu 2>&1); then
  echo "$log" >&2; exit 1
fi
"$VENV/bin/onmt_translate" -h >/dev/null 2>&1 \
  || { echo "onmt_translate does not start" >&2; exit 1; }
echo "OpenNMT-py $("$VENV/bin/pip" show OpenNMT-py | awk '/^Version/{print $2}') ready in $VENV"

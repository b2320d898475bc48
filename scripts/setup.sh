#!/usr/bin/env bash
# Create .venv and install seq2seq into it (CPU build of PyTorch first, so pip
# does not pull a multi-GB CUDA build). Sourced by test.sh and quickstart.sh.
# On a CUDA machine, install the torch build you want before running this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -c "import torch" 2>/dev/null || pip install --quiet torch==2.13.0
# 0.1 installed itself as "seq2seq" (on the package index, another project's name): drop that
if pip show -q seq2seq 2> /dev/null; then pip uninstall -y -q seq2seq; fi
pip install --quiet -e ".[dev]"

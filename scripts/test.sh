#!/usr/bin/env bash
# Install everything and run lint and the test suite: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ruff check seq2seq tests scripts
ruff format --check seq2seq tests scripts
python -m pytest -q "$@"

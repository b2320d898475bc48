#!/usr/bin/env bash
# A virtual environment for translating exported models without PyTorch (issue 23):
#
#   bash scripts/runtime_venv.sh VENV [--spacy] [--serve]
#
# Installs the `runtime` extra's packages of pyproject.toml (onnxruntime, pinned below, numpy,
# sentencepiece, pyyaml, tqdm), then seq2seq itself with --no-deps, so neither torch nor the
# training dependencies come along. --spacy adds spaCy (for models tokenized with
# spaCy, such as the toy model), --serve the `serve` extra (FastAPI, uvicorn,
# prometheus-client). The venv gets no pip of its own (17 MB, and setuptools 10 MB, that a
# deployed translator never runs): this Python's pip (22.3 or newer) installs into it with
# --python. Prints the venv's size at the end.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:?usage: runtime_venv.sh VENV [--spacy] [--serve]}
shift
extras=(runtime)
packages=()
for arg in "$@"; do
  case $arg in
    --spacy) packages+=("spacy>=3.7") ;;
    --serve) extras+=(serve) ;;
    *) echo "runtime_venv.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
[ -x "$VENV/bin/python" ] || python3 -m venv --without-pip "$VENV"
PIP=(python3 -m pip --python "$VENV/bin/python" install --quiet)
mapfile -t wanted < <(python3 - "$REPO/pyproject.toml" "${extras[@]}" <<'PY'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
for name in sys.argv[2:]:
    print("\n".join(extras[name]))
PY
)
# onnxruntime 1.27.0 by default: 53 MB installed, where 1.32.0 takes 78 MB (it ships its 34 MB
# library twice, for the C API and the Python binding); the same translations and speed on
# an AMD EPYC with AVX-512 (README, Exporting and deploying). ORT=onnxruntime takes the newest.
ORT=${ORT:-onnxruntime==1.27.0}
for i in "${!wanted[@]}"; do [[ ${wanted[$i]} == onnxruntime* ]] && wanted[$i]=$ORT; done
"${PIP[@]}" "${wanted[@]}" ${packages[@]+"${packages[@]}"}
"${PIP[@]}" --no-deps "$REPO"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "runtime_venv.sh: torch got into $VENV" >&2; exit 1
fi
echo "$VENV: $(du -sm "$VENV" | cut -f1) MB"

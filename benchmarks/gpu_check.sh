#!/usr/bin/env bash
# The first thing to run on a machine with a CUDA GPU (about 8 minutes; results under benchmarks/results/gpu/):
#   bash benchmarks/gpu_check.sh
# The same code paths on this CPU at tiny sizes, in a minute or two (CI's test suite runs this):
#   bash benchmarks/gpu_check.sh --dry-run --out /tmp/gpu-dry-run
# What it measures: benchmarks/gpu_check.py's docstring.
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=1 MPLBACKEND=Agg
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" benchmarks/gpu_check.py "$@"

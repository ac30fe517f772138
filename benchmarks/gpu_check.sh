#!/usr/bin/env bash
# Every GPU row of docs/performance.md in one command (≤ 8 min on one H100); prints one table
# with the GPU's name and the date. `--dry-run` builds every case and times none (runs on CPU).
#
#   benchmarks/gpu_check.sh            # on a GPU machine
#   benchmarks/gpu_check.sh --dry-run  # anywhere: checks that every case builds
#
# The Python is, in order: $PYTHON; the bundle's (`.devbundle/env.sh`, for an image that has
# torch but not Ray/Optuna/MLflow); the project's .venv; python3 on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -f .devbundle/env.sh ]]; then
    # shellcheck disable=SC1091
    source .devbundle/env.sh
    PYTHON=python3
  elif [[ -x .venv/bin/python ]]; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"

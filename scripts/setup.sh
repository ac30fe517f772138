#!/usr/bin/env bash
# Create .venv (if missing) and install scalesweep into it with its dev tools.
# torch is pinned to 2.13.0 where none is installed (a CPU build where the machine provides
# one; elsewhere PyPI's default build); install the torch you want first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet torch==2.13.0
fi
.venv/bin/pip install --quiet -e '.[dev]'

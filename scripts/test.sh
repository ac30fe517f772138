#!/usr/bin/env bash
# The project's checks, as CI runs them: lint, format, types, then the whole test suite.
# What the tests need beyond Python is installed here when it can be (as root, from Debian's
# packages; nothing is downloaded at test time): PostgreSQL backs the MLflow server of
# tests/test_cluster_e2e.py, Chromium and its driver drive the MLflow UI in tests/ui. Without
# them those tests skip, saying why; this script says what it could not install.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "test.sh: could not install ${missing[*]}; the tests that need them will skip"
  else
    echo "test.sh: missing ${missing[*]} (install them as root, e.g. apt-get install" \
      "${missing[*]}); the tests that need them will skip"
  fi
fi
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -rs "$@"

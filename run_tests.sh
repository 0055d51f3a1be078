#!/usr/bin/env bash
# Set up .venv (shared bootstrap) and run the test suite. Extra arguments go to pytest, e.g. ./run_tests.sh -k api
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"

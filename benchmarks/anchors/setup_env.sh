#!/usr/bin/env bash
# Build the isolated virtual environment of the comparison tools ("anchors").
#
# The anchors (WeightWatcher 0.7.7, PyHessian, hessian-eigenthings, curvlinops) are NEVER project
# dependencies: they live in their own venv under bench_out/ (git-ignored) and the comparison
# scripts call them in subprocesses. torch is pinned to the same CPU build as the project venv and
# installed first, so no resolver can pull a multi-GB CUDA build; numpy and scipy are pinned to the
# project venv's versions so both sides solve with the same LAPACK.
#
# Usage: bash benchmarks/anchors/setup_env.sh [VENV_DIR]     (default bench_out/anchors-venv)
# Idempotent: an existing venv whose marker matches these pins is left as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-bench_out/anchors-venv}"
PROJECT_PY="${PROJECT_PY:-.venv/bin/python}"
TORCH_VERSION="2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ -x "$PROJECT_PY" ]; then
  NUMPY_VERSION="$("$PROJECT_PY" -c 'import numpy; print(numpy.__version__)')"
  SCIPY_VERSION="$("$PROJECT_PY" -c 'import scipy; print(scipy.__version__)')"
else
  echo "project venv not found at $PROJECT_PY; numpy/scipy left unpinned" >&2
  NUMPY_VERSION=""
  SCIPY_VERSION=""
fi
PINS=(
  "weightwatcher==0.7.7"
  "PyHessian==0.1"
  "hessian-eigenthings==1.0.0a5"
  "curvlinops-for-pytorch==3.0.1"
)
[ -n "$NUMPY_VERSION" ] && PINS+=("numpy==$NUMPY_VERSION")
[ -n "$SCIPY_VERSION" ] && PINS+=("scipy==$SCIPY_VERSION")
MARKER="torch==$TORCH_VERSION ${PINS[*]}"

if [ -f "$VENV/.anchors-ok" ] && [ "$(cat "$VENV/.anchors-ok")" = "$MARKER" ]; then
  echo "anchors venv up to date: $VENV"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
# torch stays pinned in the same resolve so nothing can replace it.
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" "${PINS[@]}"
"$VENV/bin/python" - <<'PY'
import importlib, torch
for mod in ("weightwatcher", "pyhessian", "hessian_eigenthings", "curvlinops", "scipy", "numpy"):
    m = importlib.import_module(mod)
    print(f"  {mod} {getattr(m, '__version__', '?')}")
print(f"  torch {torch.__version__}")
PY
echo "$MARKER" > "$VENV/.anchors-ok"
echo "anchors venv ready: $VENV"

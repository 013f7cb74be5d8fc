#!/usr/bin/env bash
# One command for a fresh machine: create .venv, install everything, extract model files
# into weights/, then reconstruct the default example photo into out/example/.
#   ./setup.sh            set up and run the example
#   ./setup.sh --no-example   set up only (used by test.sh)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
npm ci --prefix tools --no-audit --no-fund --loglevel=error  # glTF validator for the tests
.venv/bin/python -m backend setup-weights
if [ "${1:-}" != "--no-example" ]; then
  photo=${HEADRECON_EXAMPLE:-../shared/eval/photos/IMG_0392_inputs.jpg}
  .venv/bin/headrecon reconstruct "$photo" -o out/example
  echo "Result bundle: out/example (result.json, mesh.obj, texture.png, overlay.png, rig.npz)"
fi

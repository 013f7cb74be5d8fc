#!/usr/bin/env bash
# The whole test suite, from a clean clone: sets up .venv if needed, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --no-example
exec .venv/bin/python -m pytest "$@"

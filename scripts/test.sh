#!/usr/bin/env bash
# The test suite: lint, unit and statistical tests, doctests and the tutorials.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test
. .venv/bin/activate
ruff check .
python -m pytest -q "$@"

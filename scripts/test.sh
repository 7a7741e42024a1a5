#!/usr/bin/env bash
# The test suite: lint, unit and statistical tests, doctests and the tutorials.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test,distributed
. .venv/bin/activate
ruff check .
# two workers, one torch thread each (small tensors: more threads only add overhead); a file's tests
# share one worker, so module fixtures are built once
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"

#!/usr/bin/env bash
# Set-up shared by demo.sh and test.sh: a virtual environment in .venv with gmmpyro and the
# extras named in $1 installed. Needs only Python >= 3.10 with pip and venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# an unpinned torch would pull the multi-GB CUDA build; take 2.13.0 when none is installed
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[${1:-test}]"

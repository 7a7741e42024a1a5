#!/usr/bin/env bash
# The main job: the end-to-end demo on the built-in toy (arguments go to `gmmpyro demo`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test
. .venv/bin/activate
gmmpyro demo "$@"

#!/usr/bin/env bash
# The documentation site with the tutorials' outputs:
#   scripts/docs.sh [build|serve] [--fast] [--force] [mkdocs options, e.g. --strict]
# executes the tutorials into docs/_executed/ (a notebook whose executed copy is current is
# skipped; --force runs it anyway; --fast uses the tiny sizes of GMMPYRO_FAST=1, and the pages
# say their numbers are meaningless), then runs `mkdocs build` (default) or `mkdocs serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command=build
case "${1:-}" in
  build | serve) command=$1; shift ;;
esac
execute_args=()
mkdocs_args=()
for arg in "$@"; do
  case "$arg" in
    --fast | --force) execute_args+=("$arg") ;;
    *) mkdocs_args+=("$arg") ;;
  esac
done
bash scripts/setup.sh docs,notebooks
. .venv/bin/activate
python docs/_hooks/execute_notebooks.py ${execute_args[@]+"${execute_args[@]}"}
export NO_MKDOCS_2_WARNING=1  # mkdocs-material's banner about MkDocs 2.0
python -m mkdocs "$command" ${mkdocs_args[@]+"${mkdocs_args[@]}"}

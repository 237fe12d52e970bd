#!/usr/bin/env bash
# pip install into the project venv, always through constraints.txt
# (an unconstrained torch pulls the CUDA wheels: several GB).
#   scripts/pip-install.sh PACKAGE...
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$repo/.venv/bin/python" -m pip install -c "$repo/constraints.txt" "$@"

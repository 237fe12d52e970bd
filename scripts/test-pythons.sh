#!/usr/bin/env bash
# The framework-free part of the suite (check, diagnostics, the CLI without a framework) on the
# other Pythons dualnet supports: 3.10 with the lowest declared versions of its dependencies
# (constraints-lowest.txt), 3.12 with constraints.txt. The main suite (`make test`) runs 3.11.
#
#   scripts/test-pythons.sh               # both
#   scripts/test-pythons.sh 3.12.1        # one (a pyenv version, else pythonX.Y on PATH)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FILES=(tests/test_parser.py tests/test_checker.py tests/test_dims.py tests/test_ir.py
       tests/test_autodiff.py tests/test_locations.py tests/test_zoo.py tests/test_cli.py
       tests/test_diagnostics.py tests/backends/test_line_layout.py)

run() {
    local version=$1 constraints=$2 python venv
    python=$(PYENV_VERSION=$version pyenv which python 2>/dev/null \
             || command -v "python${version%.*}") \
        || { echo "test-pythons: no Python $version (pyenv or python${version%.*})" >&2; exit 1; }
    venv=".venv-$version"
    echo ">> Python $version ($python), -c $constraints"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -c "$constraints" -e . pytest hypothesis
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${FILES[@]}"
}

if [[ $# -gt 0 ]]; then
    for version in "$@"; do
        run "$version" "$([[ $version == 3.10* ]] && echo constraints-lowest.txt || echo constraints.txt)"
    done
else
    run 3.10.13 constraints-lowest.txt
    run 3.12.1 constraints.txt
fi

#!/usr/bin/env bash
# Replay what CI does on a fresh clone, without touching this checkout:
# copy the files git would commit (tracked + untracked-but-not-ignored) into a
# temporary directory, then run make targets there (default: test wheel-smoke).
#
#   scripts/fresh-check.sh                 # make test wheel-smoke in a fresh copy
#   scripts/fresh-check.sh setup demo      # any other targets
#   KEEP=1 scripts/fresh-check.sh          # keep the copy (path printed at the end)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$(mktemp -d "${TMPDIR:-/tmp}/dualnet-fresh.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$dest"' EXIT; fi

cd "$repo"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$dest"
echo ">> fresh copy in $dest"

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(test wheel-smoke)
for t in "${targets[@]}"; do
    echo ">> make $t"
    make -C "$dest" "$t"
done
echo ">> fresh-check: ok (${targets[*]})"
[[ -n "${KEEP:-}" ]] && echo ">> kept: $dest"
exit 0

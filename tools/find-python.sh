#!/usr/bin/env bash
# Print the path of a working CPython X.Y interpreter, or exit 1.
#
# Usage: tools/find-python.sh 3.12
# Looks in pyenv's versions folder first (the newest X.Y.Z there), then for pythonX.Y
# on PATH; a pyenv shim that cannot run the version is not taken.
set -euo pipefail
want="$1"
root="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
candidates=()
if [ -d "$root/versions" ]; then
    while IFS= read -r dir; do
        candidates+=("$dir/bin/python$want")
    done < <(find "$root/versions" -maxdepth 1 -name "$want.*" | sort -V -r)
fi
if command -v "python$want" >/dev/null 2>&1; then
    candidates+=("$(command -v "python$want")")
fi
for py in "${candidates[@]}"; do
    if [ -x "$py" ] && "$py" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$want'" 2>/dev/null; then
        echo "$py"
        exit 0
    fi
done
exit 1

#!/usr/bin/env bash
# `make dist`: wheels for each Python given, the sdist, their checks, and a build of the
# sdist from a clean folder (pip and the Rust toolchain only). Output in dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist
mkdir -p dist
built=0
for v in "$@"; do
    if ! py=$(tools/find-python.sh "$v"); then
        echo "### MISSING: CPython $v is not installed; no wheel for it" >&2
        continue
    fi
    CARGO_TARGET_DIR="$PWD/target/dist-py$v" bash tools/build-wheel.sh "$py" dist
    built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "no wheel was built" >&2; exit 1; }
.venv-dist/bin/maturin sdist --out dist
.venv-dist/bin/python tools/check_dist.py dist
# The sdist must build with nothing but pip and the Rust toolchain, from a clean folder.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp dist/ferroloop-*.tar.gz "$tmp/"
py=$(tools/find-python.sh "$1" || command -v python3)
"$py" -m venv "$tmp/venv"
(cd "$tmp" && CARGO_TARGET_DIR="$tmp/target" "$tmp/venv/bin/python" -m pip install -q ferroloop-*.tar.gz \
    && "$tmp/venv/bin/python" -m ferroloop --version)
echo "dist: OK"
ls -l dist

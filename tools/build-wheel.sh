#!/usr/bin/env bash
# Build ferroloop's manylinux2014 (glibc 2.17) x86_64 wheel for one interpreter, with
# zig as the linker (no container), into a folder; print the wheel's path.
#
# Usage: tools/build-wheel.sh PYTHON OUT_DIR
# Needs maturin and ziglang in the tools venv (.venv-dist, made by `make dist-tools`).
set -euo pipefail
cd "$(dirname "$0")/.."
py="$1"
out="$2"
tools="$PWD/.venv-dist/bin"
tag=$("$py" -c "import sys; print('cp%d%d' % sys.version_info[:2])")
mkdir -p "$out"
rm -f "$out"/ferroloop-*-"$tag"-*.whl
PATH="$tools:$PATH" "$tools/maturin" build --release --zig --compatibility manylinux2014 \
    -i "$py" --out "$out" >&2
ls "$out"/ferroloop-*-"$tag"-*manylinux_2_17_x86_64*.whl

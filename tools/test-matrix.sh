#!/usr/bin/env bash
# Run `make test-one` (conformance, pytest, end-to-end) once per Python version, each in
# its own venv (.venv-X.Y) and cargo target folder (target/pyX.Y).
#
# Usage: tools/test-matrix.sh 3.11 3.12 3.13     (make test PYTHONS="..." calls this)
# A version that the machine lacks is reported loudly; the run fails when any version
# fails, when no version ran, or when versions of 3.12+ were asked for and none of them
# is on the machine (so a missing interpreter is never a silent pass).
set -uo pipefail
cd "$(dirname "$0")/.."
declare -A result
missing=()
ran_new=0
asked_new=0
start_all=$(date +%s)
for v in "$@"; do
    case "$v" in 3.11) ;; *) asked_new=1 ;; esac
    if ! py=$(tools/find-python.sh "$v"); then
        echo "################################################################"
        echo "### MISSING: CPython $v is not installed on this machine"
        echo "################################################################"
        missing+=("$v")
        result[$v]="MISSING"
        continue
    fi
    echo "=================== Python $v ($py) ==================="
    start=$(date +%s)
    if make --no-print-directory test-one PYTHON="$py" VENV="$PWD/.venv-$v" \
        CARGO_TARGET_DIR="$PWD/target/py$v"; then
        result[$v]="passed"
    else
        result[$v]="FAILED"
    fi
    result[$v]="${result[$v]} in $(( $(date +%s) - start )) s"
    case "$v" in 3.11) ;; *) ran_new=1 ;; esac
done
echo "=================== matrix summary ($(( $(date +%s) - start_all )) s) ==================="
status=0
npassed=0
nfailed=0
for v in "$@"; do
    echo "  Python $v: ${result[$v]}"
    case "${result[$v]}" in
        passed*) npassed=$((npassed + 1)) ;;
        MISSING) ;;
        *) status=1; nfailed=$((nfailed + 1)) ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "  MISSING interpreters: ${missing[*]}"
fi
if [ "$asked_new" = 1 ] && [ "$ran_new" = 0 ]; then
    echo "  FAILED: none of the requested Python 3.12+ versions is installed"
    status=1
fi
if [ ${#missing[@]} -eq $# ]; then
    echo "  FAILED: no requested Python version is installed"
    status=1
fi
# The closing line counts Python versions (each one ran conformance, pytest and e2e).
echo "matrix: $npassed passed, $nfailed failed"
exit $status

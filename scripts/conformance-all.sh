#!/usr/bin/env bash
# Conformance on every supported Python. For each pyenv version (3.10.13 3.11.7 3.12.1 3.13.0,
# or those given as arguments): build and install oxloop into it, run the unit tests
# (python3 -m pytest tests -q), CPython's own test_asyncio against oxloop with the ratchet
# check (tests/conformance/run.py --check) and the asyncio half of uvloop's tests likewise
# (--suite uvloop --check), and anyio's own tests (tests/conformance/libraries.py anyio --check),
# then print a table of the counts per version.
#
# Usage: bash scripts/conformance-all.sh [VERSION...]
#   JOBS=2       modules run at once by the conformance runner
#   OUT=DIR      where results-<version>.json and the logs go (default: a new temp directory);
#                the compatibility document is then made from them with
#                python3 tests/conformance/run.py --report docs/compatibility.md DIR/results-*.json
# Exits non-zero if any step failed for any version; every version is run regardless.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.10.13 3.11.7 3.12.1 3.13.0)
JOBS=${JOBS:-2}
OUT=${OUT:-$(mktemp -d -t oxloop-conformance-all.XXXXXX)}
mkdir -p "$OUT"
PIP=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)

declare -A BUILD PYTEST SCORE RATCHET UVLOOP ANYIO
status=0
for v in "${VERSIONS[@]}"; do
    export PYENV_VERSION=$v
    echo "=== Python $v"
    BUILD[$v]=ok PYTEST[$v]=- SCORE[$v]=- RATCHET[$v]=- UVLOOP[$v]=- ANYIO[$v]=-
    if ! { "${PIP[@]}" -r tests/requirements.txt && "${PIP[@]}" --force-reinstall --no-deps .; } \
        >"$OUT/build-$v.log" 2>&1; then
        BUILD[$v]=FAILED
        status=1
        tail -20 "$OUT/build-$v.log"
        continue
    fi
    python3 -m pytest tests -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest-$v.log" | tail -3
    if [ "${PIPESTATUS[0]}" -eq 0 ]; then PYTEST[$v]=ok; else PYTEST[$v]=FAILED; status=1; fi
    python3 tests/conformance/run.py --check --jobs "$JOBS" --json "$OUT/results-$v.json" \
        2>&1 | tee "$OUT/conformance-$v.log" | grep -v '^\[' | tail -40
    if [ "${PIPESTATUS[0]}" -eq 0 ]; then RATCHET[$v]=ok; else RATCHET[$v]=FAILED; status=1; fi
    SCORE[$v]=$(tail -1 "$OUT/conformance-$v.log")
    python3 tests/conformance/run.py --suite uvloop --check --jobs "$JOBS" \
        >"$OUT/uvloop-$v.log" 2>&1
    if [ $? -eq 0 ]; then UVLOOP[$v]="ok ($(tail -1 "$OUT/uvloop-$v.log"))"; else
        UVLOOP[$v]=FAILED; status=1; tail -20 "$OUT/uvloop-$v.log"; fi
    python3 tests/conformance/libraries.py anyio --check >"$OUT/anyio-$v.log" 2>&1
    if [ $? -eq 0 ]; then ANYIO[$v]="ok ($(tail -1 "$OUT/anyio-$v.log"))"; else
        ANYIO[$v]=FAILED; status=1; tail -20 "$OUT/anyio-$v.log"; fi
done
unset PYENV_VERSION

echo
echo "=== Summary (results and logs in $OUT)"
printf '%-9s %-7s %-7s %-8s %-24s %s\n' Python build pytest ratchet \
    "conformance" "uvloop's tests (ratchet, passed, failed)"
for v in "${VERSIONS[@]}"; do
    printf '%-9s %-7s %-7s %-8s %-24s %s\n' "$v" "${BUILD[$v]}" "${PYTEST[$v]}" "${RATCHET[$v]}" \
        "${SCORE[$v]}" "${UVLOOP[$v]}"
done
echo "anyio's tests (tests/conformance/libraries.py anyio --check):"
for v in "${VERSIONS[@]}"; do printf '  %-9s %s\n' "$v" "${ANYIO[$v]}"; done
echo "report: python3 tests/conformance/run.py --report docs/compatibility.md $OUT/results-*.json"
exit $status

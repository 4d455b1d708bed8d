#!/usr/bin/env bash
# Build oxloop, install it with its test dependencies, and run every test:
# the Rust unit tests, the pytest suite, and CPython's test_asyncio and the asyncio half of
# uvloop's tests against oxloop, and anyio's own tests on oxloop (each with its ratchet).
# Usage: bash scripts/test.sh        (CI runs exactly this, through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== build and install"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --force-reinstall --no-deps .

# tests/test_ecosystem.py's asyncpg test starts a PostgreSQL server of its own (it skips without one).
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== PostgreSQL, for the asyncpg test"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q postgresql >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }; } \
            || echo "   not installed: the asyncpg test skips"
    fi
fi

echo "== cargo test"
cargo test --quiet -p oxloop-core

echo "== pytest"
"$PY" -m pytest tests -q -p no:cacheprovider

echo "== conformance (CPython test_asyncio on oxloop)"
"$PY" tests/conformance/run.py --check --jobs 2

echo "== conformance (uvloop's tests, their asyncio half, on oxloop)"
"$PY" tests/conformance/run.py --suite uvloop --check --jobs 2

echo "== conformance (anyio's tests, on the stock loop and on oxloop)"
"$PY" tests/conformance/libraries.py anyio --check

#!/usr/bin/env bash
# Build oxloop, install it with its test dependencies, and run every test:
# the Rust unit tests, the pytest suite, and CPython's test_asyncio against oxloop (the ratchet).
# Usage: bash scripts/test.sh        (CI runs exactly this, through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== build and install"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --force-reinstall --no-deps .

echo "== cargo test"
cargo test --quiet -p oxloop-core

echo "== pytest"
"$PY" -m pytest tests -q -p no:cacheprovider

echo "== conformance (CPython test_asyncio on oxloop)"
"$PY" tests/conformance/run.py --check --jobs 2

#!/usr/bin/env bash
# Installs what the tests need and runs them: the README's second command, and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash Deploy/install-deps.sh

# Every import must be a declared dependency; warnings about it fail the build.
swift build --build-tests --explicit-target-dependency-import-check error
swift test --skip-build

# The HTTP API through real clients: the openai package, curl, a Prometheus text parser.
venv="${SWITCHYARD_TEST_VENV:-$root/.venv-test}"
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r Tests/python/requirements.txt
fi
SWITCHYARD_BIN="$(swift build --show-bin-path)/switchyard" "$venv/bin/pytest" -q Tests/python

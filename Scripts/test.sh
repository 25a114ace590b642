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
# (Re)install when the venv is new or Tests/python/requirements.txt changed since it was made.
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s Tests/python/requirements.txt "$venv/requirements.txt"; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r Tests/python/requirements.txt
    cp Tests/python/requirements.txt "$venv/requirements.txt"
fi
SWITCHYARD_BIN="$(swift build --show-bin-path)/switchyard" "$venv/bin/pytest" -q Tests/python

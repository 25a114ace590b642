#!/usr/bin/env bash
# Installs what the tests need and runs them: the README's second command, and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash Deploy/install-deps.sh

# Every import must be a declared dependency; warnings about it fail the build.
swift build --build-tests --explicit-target-dependency-import-check error
swift test --skip-build

#!/usr/bin/env bash
# Installs what the tests need and runs them: the README's second command, and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash Deploy/install-deps.sh

# Everything the tests, their servers and the build tools write to the temporary directory goes
# under one scratch directory, removed when the run ends however it ends: runs on one machine do not
# pile up files in /tmp.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-tests.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

# Every import must be a declared dependency; warnings about it fail the build.
swift build --build-tests --explicit-target-dependency-import-check error
rm -f .build/test-records/kernel-paths.txt
swift test --skip-build
# Where the CPU has AMX, every test once more on the amx path (SWITCHYARD_KERNEL=amx): its bits are its
# own, and the models hold their bf16 matrices packed for it, so the suites that check tokens against
# transformers and distributed runs against in-process ones check that path too (about 2.5 minutes).
if grep -q '^supported paths.* amx' <<< "$("$(swift build --show-bin-path)/switchyard" system-info)"; then
    SWITCHYARD_KERNEL=amx swift test --skip-build
fi
# Which kernel paths the tests exercised on this host and which the CPU lacks (KernelPathRecordTests
# writes the record; a missing record fails the run), beside the CPU as system-info sees it.
"$(swift build --show-bin-path)/switchyard" system-info
cat .build/test-records/kernel-paths.txt
# The C kernels' vector paths bit for bit against their scalar path: natively and, for NEON, under
# qemu-aarch64 with and without the dot-product extension (about 20 s).
bash Scripts/neon-check.sh
# The benchmark programs (a package of their own) still build against the library.
swift build --package-path Benchmarks --scratch-path .build/benchmarks
# The fuzz targets (Fuzz/), briefly: the wire decoders and the HTTP bodies, built with libFuzzer and
# ASan, 30 s each; a crash fails the run. `bash Scripts/fuzz.sh 600` is the long run.
bash Scripts/fuzz.sh 30

# The HTTP API through real clients: the openai package, curl, a Prometheus text parser.
venv="${SWITCHYARD_TEST_VENV:-$root/.venv-test}"
# (Re)install when the venv is new or Tests/python/requirements.txt changed since it was made.
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s Tests/python/requirements.txt "$venv/requirements.txt"; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r Tests/python/requirements.txt
    cp Tests/python/requirements.txt "$venv/requirements.txt"
fi
# As root the network-namespace tests (test_launch_netns.py, test_chaos.py) must run: they fail
# instead of skipping when namespaces cannot be made.
if [ "$(id -u)" = 0 ]; then
    export SWITCHYARD_REQUIRE_NETNS="${SWITCHYARD_REQUIRE_NETNS:-1}"
fi
SWITCHYARD_BIN="$(swift build --show-bin-path)/switchyard" "$venv/bin/pytest" -q Tests/python

# Deploy/ through its offline validators. docker-compose v1 gets a venv of its own: it pins
# jsonschema 3, kubernetes-validate needs 4. PyYAML 5.4.1 (docker-compose needs <6) has no wheel
# for this Python and does not build with Cython 3, so it is built first, without build isolation.
deploy_venv="${SWITCHYARD_DEPLOY_VENV:-$root/.venv-deploy}"
if [ ! -x "$deploy_venv/validators/bin/pytest" ]; then
    python3 -m venv "$deploy_venv/validators"
    "$deploy_venv/validators/bin/pip" install --quiet --disable-pip-version-check -r Tests/deploy/requirements.txt
fi
if [ ! -x "$deploy_venv/compose/bin/docker-compose" ]; then
    python3 -m venv "$deploy_venv/compose"
    "$deploy_venv/compose/bin/pip" install --quiet --disable-pip-version-check Cython==0.29.37 wheel==0.45.1
    "$deploy_venv/compose/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation PyYAML==5.4.1
    "$deploy_venv/compose/bin/pip" install --quiet --disable-pip-version-check -r Tests/deploy/requirements-compose.txt
fi
DOCKER_COMPOSE="$deploy_venv/compose/bin/docker-compose" SWITCHYARD_BIN="$(swift build --show-bin-path)/switchyard" \
    "$deploy_venv/validators/bin/pytest" -q Tests/deploy

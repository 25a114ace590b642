#!/usr/bin/env bash
# Installs the system packages Switchyard builds and runs with (Debian 12). Idempotent.
#   libzmq3-dev         ZeroMQ, the coordinator <-> worker transport
#   libprotobuf-c-dev   protobuf-c runtime for the wire protocol headers
#   protobuf-c-compiler protoc-c, to check the committed generated code (Scripts/generate-protos.sh)
#   libopenblas-dev     BLAS for the matrix products
#   iproute2            `ip netns` for the multi-host tests
#   nftables            `nft`: random packet loss on a degraded link in the chaos test where the kernel has no netem
#   curl, python3-venv  the HTTP API tests (curl and the openai client)
#   chromium-headless-shell  renders `switchyard balance --svg` heatmaps in the browser test
#   systemd, shellcheck the offline checks of Deploy/ (systemd-analyze verify, shellcheck)
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user  the C kernels' NEON paths, cross-built and
#                       run under qemu-aarch64 against the scalar path (Scripts/neon-check.sh)
# With --training, also what Scripts/train-demo-model.sh reads (nothing else needs it):
#   bible-kjv           the King James Bible (bible-kjv-text's data, read out with its `bible` program)
set -euo pipefail

packages=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev pkg-config iproute2 nftables curl python3-venv
          chromium-headless-shell shellcheck systemd gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
if [ "${1:-}" = "--training" ]; then packages+=(bible-kjv); fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all system packages present (${packages[*]})"
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
        echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# The README's first command: installs what is needed, builds Switchyard, makes a small random
# Mixtral checkpoint and generates text with the experts on two worker processes, printing the
# per-expert load.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash Deploy/install-deps.sh
echo "demo: building switchyard (release)..."
swift build -c release --product switchyard
bin="$(swift build -c release --show-bin-path)/switchyard"

model="${SWITCHYARD_DEMO_MODEL:-${TMPDIR:-/tmp}/switchyard-demo-model}"
if [ ! -f "$model/config.json" ]; then
    "$bin" make-model --arch mixtral --out "$model" --hidden 256 --layers 4 --experts 8 --top-k 2 --vocab 1024 --seed 1
fi
"$bin" generate --model "$model" --prompt "The coordinator routes every token to" \
    --max-tokens 48 --temperature 0.8 --top-p 0.95 --seed 42 --spawn-workers 2

#!/usr/bin/env bash
# The README's first command: installs what is needed, builds Switchyard and generates text from the
# committed demo checkpoint (Models/kjv-moe: a 3.9M-parameter Qwen3-MoE, 16 experts, top-2, trained
# on the King James Bible by Scripts/train-demo-model.sh) with the experts on two worker processes,
# printing the per-expert load; then checks the greedy tokens against transformers' (reference.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash Deploy/install-deps.sh
echo "demo: building switchyard (release)..."
swift build -c release --product switchyard
bin="$(swift build -c release --show-bin-path)/switchyard"
model="${SWITCHYARD_DEMO_MODEL:-$root/Models/kjv-moe}"

echo "demo: sampled text (temperature 0.7, seed 42), experts on 2 worker processes"
"$bin" generate --model "$model" --prompt "And the LORD said unto Moses," \
    --max-tokens 64 --temperature 0.7 --top-p 0.95 --seed 42 --spawn-workers 2

reference="$model/reference.json"
if [ -f "$reference" ]; then
    prompt="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cases"][0]["prompt"])' "$reference")"
    expected="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cases"][0]["completion_token_ids"])' "$reference")"
    count="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"][0]["completion_token_ids"]))' "$reference")"
    echo "demo: greedy ($prompt), against transformers' tokens in $reference"
    got="$("$bin" generate --model "$model" --prompt "$prompt" --max-tokens "$count" --temperature 0 --ignore-eos \
        --spawn-workers 2 --json --bf16-arithmetic exact \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["completion_token_ids"])')"
    if [ "$got" = "$expected" ]; then
        echo "demo: same $count token ids as transformers"
    else
        echo "demo: token ids differ from transformers: $got vs $expected" >&2
        exit 1
    fi
fi

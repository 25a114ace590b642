#!/usr/bin/env python3
"""The transformers reference for the demo checkpoint (Models/kjv-moe/reference.json).

    python Scripts/reference/demo_model_fixture.py [--model Models/kjv-moe]

Loads the trained checkpoint with transformers in float32 and records, for fixed prompts, the prompt
ids, greedy completion ids, top-5 logprobs and per-layer expert load, in the shape of
Tests/Fixtures/models/*/reference.json (computed by model_fixtures.compute_case, which also
cross-checks generate() and an uncached forward and refuses near ties). Tests/IntegrationTests/
DemoModelTests.swift checks that Switchyard produces the same. Run by Scripts/train-demo-model.sh.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_fixtures  # noqa: E402  (sets the offline environment before importing transformers)
from model_fixtures import NearTie, chat_cases, compute_case  # noqa: E402

import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, Qwen3MoeForCausalLM  # noqa: E402

# Tried in order; the first two without a near tie in their greedy steps or router choices are kept.
PROMPTS = [
    "In the beginning God created",
    "And the LORD spake unto Moses, saying,",
    "Blessed are the",
    "And it came to pass",
    "The LORD is my shepherd;",
]
NEW_TOKENS = 32


def main() -> int:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(repo, "Models", "kjv-moe"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = Qwen3MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    cases = []
    for prompt in PROMPTS:
        try:
            cases.append(compute_case(model, tokenizer, prompt, NEW_TOKENS))
        except NearTie as e:
            print(f"skipping {prompt!r}: {e}", flush=True)
            continue
        print(f"{prompt!r} -> {cases[-1]['completion_text']!r}", flush=True)
        if len(cases) == 2:
            break
    if not cases:
        raise SystemExit("every prompt has a near tie; add prompts")
    ref = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "tokenizers_version": tokenizers.__version__,
        "reference_dtype": "float32",
        "stored_dtype": "float32",
        "attn_implementation": model.config._attn_implementation,
        "experts_implementation": model.config._experts_implementation,
        "generator": "Scripts/reference/demo_model_fixture.py",
        "architecture": model.config.model_type,
        "min_top1_top2_logit_gap": min(c["min_top1_top2_logit_gap"] for c in cases),
        "cases": [{k: v for k, v in c.items() if k != "step_logits"} for c in cases],
        "chat_cases": chat_cases(tokenizer),
    }
    with open(os.path.join(args.model, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

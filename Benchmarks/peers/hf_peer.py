#!/usr/bin/env python3
"""Hugging Face transformers on CPU: prefill and greedy decode tokens/s on a checkpoint, batch 1.

    python hf_peer.py --model DIR --prompt-ids 1,2,3 --decode 64 --threads 2

Prints one JSON object. Prefill: the median of 3 forward passes over the prompt (fresh cache each);
decode: `--decode` greedy steps with the KV cache, after the prompt, timed as a whole.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def cache_bytes_per_token(cache, tokens):
    """The bytes of every key and value tensor in a transformers cache, divided by the tokens it holds
    (None if the cache's layout is not one this knows)."""
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is None:
        return None
    for layer in layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return round(total / tokens) if total else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-ids", required=True)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids = torch.tensor([[int(x) for x in args.prompt_ids.split(",")]])
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    model.eval()
    with torch.inference_mode():
        model(ids[:, :8], use_cache=True)  # warm-up
        prefill = []
        for _ in range(3):
            start = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill.append(time.perf_counter() - start)
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(args.decode):
            out = model(token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
        decode = time.perf_counter() - start
    print(json.dumps({
        # What its cache holds per token, every layer: the tensors' bytes over the cached tokens.
        "kv_cache_bytes_per_token": cache_bytes_per_token(cache, ids.shape[1] + args.decode),
        "peer": "transformers", "torch": torch.__version__, "threads": args.threads, "dtype": args.dtype,
        # The vector path ATen dispatches to on this CPU (e.g. AVX512, AVX2) and the transformers version.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": __import__("transformers").__version__,
        "prefill_tokens": ids.shape[1], "prefill_tokens_per_s": ids.shape[1] / statistics.median(prefill),
        "decode_tokens": args.decode, "decode_tokens_per_s": args.decode / decode,
    }))


if __name__ == "__main__":
    main()

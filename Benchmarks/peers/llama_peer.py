#!/usr/bin/env python3
"""llama.cpp through llama-cpp-python: prefill and decode tokens/s on a GGUF file, batch 1.

    python llama_peer.py --gguf model.gguf --prompt-ids 1,2,3 --decode 64 --threads 2

Prints one JSON object. Prefill: the median of 3 evaluations of the prompt from an empty cache;
decode: `--decode` single-token evaluations with the KV cache after the prompt, each token the
greedy choice of the previous step.
"""
import argparse
import json
import statistics
import time

import numpy as np
import llama_cpp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--prompt-ids", required=True)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ids = [int(x) for x in args.prompt_ids.split(",")]
    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    llm.eval(ids[:8])  # warm-up
    prefill = []
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        prefill.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(args.decode):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([token])
    decode = time.perf_counter() - start
    print(json.dumps({
        "peer": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
        # What ggml was built with and found on this CPU (e.g. "AVX512 = 1 | AVX512_BF16 = 1 | ...").
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "gguf": args.gguf, "prefill_tokens": len(ids), "prefill_tokens_per_s": len(ids) / statistics.median(prefill),
        "decode_tokens": args.decode, "decode_tokens_per_s": args.decode / decode,
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""llama.cpp through llama-cpp-python: prefill and decode tokens/s on a GGUF file, batch 1.

    python llama_peer.py --gguf model.gguf --prompt-ids 1,2,3 --decode 64 --threads 2

Prints one JSON object. Prefill: the median of 3 evaluations of the prompt from an empty cache;
decode: `--decode` single-token evaluations with the KV cache after the prompt, each token the
greedy choice of the previous step.

With --rounds-from-stdin the model stays loaded and every line read from stdin runs one round (the
prompt from an empty cache, then the decode) and prints one JSON line with its decode tokens/s:
`switchyard-bench decode-floor --gguf` drives it so that its rounds sit beside Switchyard's.
"""
import argparse
import ctypes
import re
import json
import statistics
import sys
import time

import numpy as np
import llama_cpp


# llama.cpp logs its KV cache's size when it makes the context ("llama_kv_cache: size = 6.00 MiB
# (512 cells, ...)"): its log is kept to report bytes per token. The callback lives as long as the
# interpreter, since llama.cpp may log until the last context is freed.
LOG = []


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def collect_log(level, text, user_data):
    LOG.append(text.decode(errors="replace") if text else "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--prompt-ids", required=True)
    parser.add_argument("--decode", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds-from-stdin", action="store_true")
    args = parser.parse_args()
    ids = [int(x) for x in args.prompt_ids.split(",")]
    llama_cpp.llama_log_set(collect_log, ctypes.c_void_p(0))
    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    llm.eval(ids[:8])  # warm-up
    prefill = []
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        prefill.append(time.perf_counter() - start)
    # The last position's logits straight from the context: llama-cpp-python 0.3 keeps `scores` only
    # with logits_all, so reading them here would feed token 0 at every step.
    def greedy():
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        return int(np.argmax(logits))

    def decode_once():
        tokens = []
        start = time.perf_counter()
        for _ in range(args.decode):
            tokens.append(greedy())
            llm.eval([tokens[-1]])
        return tokens, time.perf_counter() - start

    if args.rounds_from_stdin:
        print(json.dumps({"ready": True, "llama_cpp_python": llama_cpp.__version__,
                          "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}), flush=True)
        for _ in sys.stdin:
            llm.reset()
            llm.eval(ids)
            _, decode = decode_once()
            print(json.dumps({"decode_tokens_per_s": args.decode / decode}), flush=True)
        return
    tokens, decode = decode_once()
    match = re.search(r"kv_cache: size\s*=\s*([0-9.]+) MiB \(\s*(\d+) cells", "".join(LOG))
    kv_bytes = round(float(match.group(1)) * 2**20 / int(match.group(2))) if match else None
    print(json.dumps({
        "kv_cache_bytes_per_token": kv_bytes,
        "peer": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
        # What ggml was built with and found on this CPU (e.g. "AVX512 = 1 | AVX512_BF16 = 1 | ...").
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "gguf": args.gguf, "prefill_tokens": len(ids), "prefill_tokens_per_s": len(ids) / statistics.median(prefill),
        "decode_tokens": args.decode, "decode_tokens_per_s": args.decode / decode,
        # The greedy tokens decoded, to compare with the other engines' on the same weights.
        "completion_token_ids": tokens,
    }))


if __name__ == "__main__":
    main()

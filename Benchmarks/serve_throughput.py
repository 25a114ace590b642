#!/usr/bin/env python3
"""Server throughput with continuous batching: generated tokens per second at 1 and at 32 concurrent
requests, against `switchyard serve` with 2 worker processes over loopback.

    python3 Benchmarks/serve_throughput.py [--switchyard PATH] [--concurrency 1,8,32]

It builds nothing: give it a release binary (default .build/release/switchyard). It makes a model
(make-model; the default shape is small so the run takes a minute or two), starts the coordinator
and two workers on 127.0.0.1, runs greedy requests (EOS ignored, so every request generates
exactly --max-tokens) at each concurrency level, and prints tokens/s per level and the ratio to
concurrency 1. Each level runs `rounds × concurrency` requests, `concurrency` at a time.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from serve_decode import wait_for  # one helper for both serve benchmarks


def request(base, prompt, max_tokens):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as response:
        return json.loads(response.read())["usage"]["completion_tokens"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchyard", default=".build/release/switchyard")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-args", default="--hidden 256 --layers 4 --experts 8 --top-k 2 --vocab 2048 --heads 8 --kv-heads 2")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]

    work = tempfile.mkdtemp(prefix="switchyard-bench-")
    model = os.path.join(work, "model")
    subprocess.run([args.switchyard, "make-model", "--out", model, *args.model_args.split(), "--seed", "1"],
                   check=True, capture_output=True)
    procs = []

    def start(argv, name):
        log = os.path.join(work, name + ".log")
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc, log

    try:
        serve, log = start([args.switchyard, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers", "2",
                            "--http", "127.0.0.1:0", "--insecure"], "serve")
        endpoint = wait_for(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", log, serve, timeout=120).group(1)
        base = wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", log, serve, timeout=120).group(1)
        for name in ("w0", "w1"):
            start([args.switchyard, "worker", "--coordinator", endpoint, "--model", model, "--name", name,
                   "--log-level", "warning", "--insecure"], name)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except Exception:
                if time.time() > deadline:
                    sys.exit("the cluster never became healthy")
                time.sleep(0.1)
        request(base, "warm up", 4)

        results = []
        for level in levels:
            prompts = [f"Request {i}: the experts of layer {i % 7} say" for i in range(level * args.rounds)]
            start_time = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=level) as pool:
                tokens = sum(pool.map(lambda p: request(base, p, args.max_tokens), prompts))
            elapsed = time.perf_counter() - start_time
            results.append((level, len(prompts), tokens, elapsed, tokens / elapsed))

        base_rate = results[0][4]
        print(f"switchyard serve, 2 workers over loopback; model: {args.model_args}; greedy, {args.max_tokens} tokens per request")
        print(f"{'concurrency':>11} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs concurrency ' + str(levels[0]):>18}")
        for level, count, tokens, elapsed, rate in results:
            print(f"{level:>11} {count:>8} {tokens:>7} {elapsed:>8.2f} {rate:>9.1f} {rate / base_rate:>17.2f}x")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()

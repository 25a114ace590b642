#!/usr/bin/env python3
"""Decode throughput of `switchyard serve` at batch B: B concurrent streaming /v1/completions requests
(greedy, EOS ignored, every request generates exactly --max-tokens, which may differ per batch), experts in-process
(--workers 0) or on N worker processes over loopback.

    python3 Benchmarks/serve_decode.py --switchyard BIN --model DIR --workers 2 --batches 8,32

Prints one JSON object. Each streamed token is timestamped on arrival (logprobs=1 makes every token
its own chunk); the decode rate of a batch counts the tokens that arrive while all B requests are
decoding (from the last request's first token to the first request's last token) over that window.
`end_to_end_tokens_per_s` is completion tokens over the wall time of the whole batch, prefill included.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def wait_for(pattern, path, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = open(path, encoding="utf-8", errors="replace").read()
        match = re.search(pattern, text)
        if match:
            return match
        if proc.poll() is not None:
            sys.exit(f"serve exited:\n{text}")
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {pattern!r}")


def stream_request(base, prompt_ids, max_tokens):
    body = json.dumps({"prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "logprobs": 1}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, headers={"content-type": "application/json"})
    stamps = []
    with urllib.request.urlopen(req, timeout=1800) as response:
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            now = time.perf_counter()
            for choice in chunk.get("choices", []):
                logprobs = choice.get("logprobs") or {}
                stamps += [now] * len(logprobs.get("tokens") or [])
    return stamps


def wire_bytes(base, model):
    """Bytes of DISPATCH + COMBINE per token routed through the server so far (from /v1/expert_load),
    and the minimum: each MoE layer sends a token's hidden state (bf16, 2 bytes per value) to one
    worker and gets one back, with nothing else on the wire."""
    with urllib.request.urlopen(base + "/v1/expert_load", timeout=30) as response:
        load = json.load(response)
    config = json.load(open(os.path.join(model, "config.json")))
    tokens = load["prefill_tokens"] + load["decode_tokens"]
    sent = sum(w["total"]["bytes_sent"] for w in load["workers"])
    received = sum(w["total"]["bytes_received"] for w in load["workers"])
    minimum = config["num_hidden_layers"] * 2 * config["hidden_size"] * 2
    return {"tokens": tokens, "bytes_sent": sent, "bytes_received": received,
            "bytes_per_token": (sent + received) / max(tokens, 1), "minimum_bytes_per_token": minimum}


def measure_floors(program):
    """`floors --peak`'s JSON (read bandwidth and dot peak), or None when it fails: a missing floor leaves
    the pair without its own ceiling, not the benchmark without its figures."""
    try:
        done = subprocess.run([program, "--peak"], capture_output=True, text=True, timeout=120)
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchyard", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="--threads of serve and of each worker")
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--max-tokens", default="64",
                        help="tokens each request generates: one number, or one per batch of --batches "
                             "(e.g. --batches 1,32 --max-tokens 256,64: a batch-1 window long enough to be steady)")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--serve-args", default="", help="extra arguments of serve, space-separated")
    parser.add_argument("--link-delay-ms", type=float, default=0,
                        help="with --workers: the workers reach serve through Benchmarks/delay_proxy.py, which "
                             "delays every byte this long in each direction (a slow network; the round trip "
                             "grows by twice this)")
    parser.add_argument("--link", choices=("curve", "insecure"), default="curve",
                        help="with --workers: the coordinator-worker link encrypted and authenticated with CURVE "
                             "keys made for this run (the default, as the README sets it up), or plaintext (--insecure)")
    parser.add_argument("--floors", help="the floors program (Benchmarks/floors/floors.c): before each batch, its "
                        "--peak (read bandwidth and dot peak, about 2 s, the server idle) is recorded in that batch's "
                        "result, so that a batch-32 ÷ batch-1 pair can be held against the ceiling of its own minutes")
    parser.add_argument("--serve-cpus", help="run serve on these CPUs only (taskset -c LIST), e.g. 0")
    parser.add_argument("--worker-cpus", help="run the workers on these CPUs only (taskset -c LIST), e.g. 1: "
                        "with --serve-cpus, the coordinator and the workers each have cores of their own, "
                        "as on separate hosts")
    args = parser.parse_args()

    batches = [int(x) for x in args.batches.split(",")]
    max_tokens_each = [int(x) for x in args.max_tokens.split(",")]
    if len(max_tokens_each) == 1:
        max_tokens_each *= len(batches)
    if len(max_tokens_each) != len(batches) or min(max_tokens_each) < 1:
        parser.error(f"--max-tokens {args.max_tokens}: give one positive number, or one for each of the "
                     f"{len(batches)} batches of --batches {args.batches}")

    work = tempfile.mkdtemp(prefix="switchyard-serve-decode-")
    procs = []
    proxy = None

    def start(argv, name, cpus=None):
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        log = os.path.join(work, name + ".log")
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc, log

    serve_security, worker_security = [], []
    if args.workers and args.link == "insecure":
        serve_security, worker_security = ["--insecure"], ["--insecure"]
    elif args.workers:
        keys = os.path.join(work, "keys")
        for directory, name in (("coordinator", "coordinator"), ("workers", "worker")):
            subprocess.run([args.switchyard, "keys", "generate", "--out", os.path.join(keys, directory), "--name", name],
                           check=True, capture_output=True)
        serve_security = ["--key", os.path.join(keys, "coordinator", "coordinator.key"),
                          "--allow-keys", os.path.join(keys, "workers")]
        worker_security = ["--key", os.path.join(keys, "workers", "worker.key"),
                           "--coordinator-key", os.path.join(keys, "coordinator", "coordinator.pub")]

    results = []
    finished = False
    try:
        serve, log = start([args.switchyard, "serve", "--model", args.model, "--bind", "tcp://127.0.0.1:0",
                            "--workers", str(args.workers), "--http", "127.0.0.1:0", "--threads", str(args.threads)]
                            + serve_security + args.serve_args.split(), "serve", args.serve_cpus)
        if args.workers:
            endpoint = wait_for(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", log, serve).group(1)
            if args.link_delay_ms > 0:
                sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
                from delay_proxy import DelayProxy
                proxy = DelayProxy(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), args.link_delay_ms / 1e3)
                endpoint = f"tcp://127.0.0.1:{proxy.port}"
            for index in range(args.workers):
                start([args.switchyard, "worker", "--coordinator", endpoint, "--model", args.model,
                       "--name", f"w{index}", "--log-level", "warning",
                       "--threads", str(args.threads)] + worker_security, f"w{index}", args.worker_cpus)
        base = wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", log, serve).group(1)
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except Exception:
                if time.time() > deadline:
                    sys.exit("the server never became healthy:\n" + open(log).read())
                time.sleep(0.2)
        stream_request(base, list(range(100, 108)), 4)  # warm-up

        for batch, max_tokens in zip(batches, max_tokens_each):
            floors = measure_floors(args.floors) if args.floors else None
            prompts = [[(1000 + 97 * r + 13 * i) % (args.vocab - 1000) + 500 for i in range(args.prompt_tokens)]
                       for r in range(batch)]
            start_time = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=batch) as pool:
                streams = list(pool.map(lambda p: stream_request(base, p, max_tokens), prompts))
            wall = time.perf_counter() - start_time
            tokens = sum(len(s) for s in streams)
            window_start = max(s[0] for s in streams)
            window_end = min(s[-1] for s in streams)
            in_window = sum(1 for s in streams for t in s if window_start < t <= window_end)
            window = window_end - window_start
            decode_rate = in_window / window if window > 0 and in_window > 0 else tokens / wall
            # Prefill: every prompt token of the batch, over the time until the last request's first
            # token (all prompts prefilled; the scheduler prefills them in chunks alongside decodes).
            prefill_window = window_start - start_time
            results.append({"batch": batch, "max_tokens": max_tokens, "completion_tokens": tokens, "wall_s": wall,
                            "decode_window_s": window, "decode_window_tokens": in_window,
                            "decode_tokens_per_s": decode_rate, "end_to_end_tokens_per_s": tokens / wall,
                            "prefill_window_s": prefill_window,
                            "prefill_tokens_per_s": batch * args.prompt_tokens / prefill_window,
                            "floors": floors})
            print(f"serve --workers {args.workers} batch {batch}: {decode_rate:.1f} decode tok/s "
                  f"({tokens} tokens in {wall:.1f} s)", file=sys.stderr)
        if args.workers:
            wire = wire_bytes(base, args.model)
            print(f"serve --workers {args.workers}: {wire['bytes_per_token']:.0f} bytes on the wire per token, "
                  f"minimum {wire['minimum_bytes_per_token']:.0f}", file=sys.stderr)
        finished = True
    finally:
        link = proxy.stats() if proxy else None
        if proxy:
            proxy.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The logs stay only when the run failed, for reading.
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"the processes' logs are in {work}", file=sys.stderr)
    output = {"workers": args.workers,
              "max_tokens": max_tokens_each[0] if len(set(max_tokens_each)) == 1 else max_tokens_each, "prompt_tokens": args.prompt_tokens,
              "link_security": args.link if args.workers else None, "batches": results}
    if args.workers:
        output["wire"] = wire
    if link:
        output["link"] = link
        print(f"link delay {args.link_delay_ms} ms each way; the proxy wrote {link['chunks']} chunks "
              f"{link.get('mean_late_us', 0):.0f} µs late on average (p99 {link.get('p99_late_us', 0):.0f} µs)", file=sys.stderr)
    print(json.dumps(output))


if __name__ == "__main__":
    main()

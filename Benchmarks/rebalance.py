#!/usr/bin/env python3
"""Load balancing on a skewed workload: per-layer worker balancedness and decode step latency with
4 worker processes, before and after `switchyard rebalance`.

    swift build -c release
    python3 Benchmarks/rebalance.py --switchyard .build/release/switchyard

Makes a random Mixtral checkpoint whose routers prefer 2 experts per layer (make-model --hot-experts;
layer l prefers experts 2l and 2l+1, which an even placement puts on one worker), serves it with
4 workers, and runs the same decode workload (B concurrent greedy streaming requests) twice: on the
even placement, then after `switchyard rebalance` has replicated the hot experts and packed the
rest. For each run it prints, per MoE layer, the worker balancedness (mean ÷ max tokens computed
per worker, from the tokens routed per expert during the run and the placement, a replica taking
its even share) and the decode step latency (the mean gap between a request's consecutive tokens,
from the server's switchyard_inter_token_latency_seconds), and checks that every request produced
the same tokens in both runs. On a shared machine the runs alternate (--rounds: even, rebalanced,
even, rebalanced, …, switching back and forth live with POST /v1/placement) and the medians are
compared, so a change in background load hits both placements alike.
"""
import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from serve_decode import wait_for


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=600) as response:
        return response.read().decode()


def metrics(base):
    text = get(base, "/metrics")
    tokens = {}
    for layer, expert, value in re.findall(r'switchyard_expert_tokens_total\{layer="(\d+)",expert="(\d+)"\} (\S+)', text):
        tokens[(int(layer), int(expert))] = float(value)
    gap_sum = float(re.search(r"switchyard_inter_token_latency_seconds_sum (\S+)", text).group(1))
    gap_count = float(re.search(r"switchyard_inter_token_latency_seconds_count (\S+)", text).group(1))
    return tokens, gap_sum, gap_count


def completion(base, prompt, max_tokens):
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "logprobs": 1}).encode()
    request = urllib.request.Request(base + "/v1/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=1800) as response:
        choice = json.loads(response.read())["choices"][0]
    return choice["logprobs"]["tokens"], choice["logprobs"]["token_logprobs"]


def apply(base, placement_json):
    request = urllib.request.Request(base + "/v1/placement", data=placement_json.encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        assert response.status == 200


def run_workload(base, prompts, max_tokens, layers, experts):
    tokens0, sum0, count0 = metrics(base)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        outputs = list(pool.map(lambda p: completion(base, p, max_tokens), prompts))
    wall = time.perf_counter() - started
    tokens1, sum1, count1 = metrics(base)
    load = [[tokens1.get((l, e), 0) - tokens0.get((l, e), 0) for e in range(experts)] for l in range(layers)]
    placement = json.loads(get(base, "/v1/placement"))
    holders = [[[] for _ in range(experts)] for _ in range(layers)]
    for slot, worker in enumerate(placement["workers"]):
        for layer, expert in worker["experts"]:
            holders[layer][expert].append(slot)
    balancedness = []
    for layer in range(layers):
        per_worker = [0.0] * len(placement["workers"])
        for expert in range(experts):
            for slot in holders[layer][expert]:
                per_worker[slot] += load[layer][expert] / len(holders[layer][expert])
        balancedness.append(sum(per_worker) / len(per_worker) / max(per_worker) if max(per_worker) else 1.0)
    step = (sum1 - sum0) / max(1.0, count1 - count0)
    replicas = sum(len(h) for layer in holders for h in layer)
    return {"outputs": outputs, "balancedness": balancedness, "step_seconds": step, "wall_seconds": wall,
            "tokens_per_second": len(prompts) * max_tokens / wall, "replicas": replicas}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchyard", default=".build/release/switchyard")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--hot-bias", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=48, help="concurrent requests")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--memory-budget", type=int, default=3, help="experts per worker per layer")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads per worker and coordinator")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two placements")
    args = parser.parse_args()
    binary = os.path.abspath(args.switchyard)

    work = tempfile.mkdtemp(prefix="switchyard-rebalance-")
    model = os.path.join(work, "model")
    subprocess.run([binary, "make-model", "--out", model, "--hidden", str(args.hidden),
                    "--intermediate", str(args.intermediate), "--layers", str(args.layers),
                    "--experts", str(args.experts), "--top-k", "2", "--vocab", "1024", "--dtype", "bf16",
                    "--hot-experts", "2", "--hot-bias", str(args.hot_bias), "--seed", "7"],
                   check=True, stdout=subprocess.DEVNULL)
    procs = []
    try:
        log = os.path.join(work, "serve.log")
        serve = subprocess.Popen([binary, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers", "4",
                                  "--http", "127.0.0.1:0", "--threads", str(args.threads),
                                  "--max-running", str(args.batch), "--insecure"],
                                 stdout=open(log, "w"), stderr=subprocess.STDOUT)
        procs.append(serve)
        endpoint = wait_for(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", log, serve).group(1)
        base = wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", log, serve).group(1)
        for index in range(4):
            procs.append(subprocess.Popen(
                [binary, "worker", "--coordinator", endpoint, "--model", model, "--name", f"w{index}",
                 "--threads", str(args.threads), "--insecure"],
                stdout=open(os.path.join(work, f"w{index}.log"), "w"), stderr=subprocess.STDOUT))
        wait_for(r"all 4 workers ready", log, serve)
        prompts = [f"Request {i} asks the hot experts about topic {i * 7 % 13}." for i in range(args.batch)]
        completion(base, prompts[0], 4)  # warm-up

        even_placement = get(base, "/v1/placement")
        befores, afters = [], []
        befores.append(run_workload(base, prompts, args.max_tokens, args.layers, args.experts))
        started = time.perf_counter()
        rebalance = subprocess.run([binary, "rebalance", "--server", base, "--memory-budget", str(args.memory_budget)],
                                   capture_output=True, text=True)
        rebalance_seconds = time.perf_counter() - started
        if rebalance.returncode != 0:
            sys.exit(f"rebalance failed: {rebalance.stderr}")
        rebalanced_placement = get(base, "/v1/placement")
        afters.append(run_workload(base, prompts, args.max_tokens, args.layers, args.experts))
        for _ in range(args.rounds - 1):
            apply(base, even_placement)
            befores.append(run_workload(base, prompts, args.max_tokens, args.layers, args.experts))
            apply(base, rebalanced_placement)
            afters.append(run_workload(base, prompts, args.max_tokens, args.layers, args.experts))
        before, after = befores[0], afters[0]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait()

    print(f"model: {args.layers} layers, {args.experts} experts (top-2, 2 hot per layer, bias {args.hot_bias}), "
          f"hidden {args.hidden}, FFN {args.intermediate}, bf16; 4 workers; {args.batch} concurrent requests × "
          f"{args.max_tokens} tokens; --threads {args.threads}")
    print("\n`switchyard rebalance` output (predicted from the load since the server started):")
    print(rebalance.stdout.rstrip())
    print(f"(rebalance took {rebalance_seconds:.2f} s, including loading the new experts on the workers)\n")
    print("measured worker balancedness per layer (mean ÷ max tokens per worker during the run):")
    print("layer  before  after")
    for layer in range(args.layers):
        print(f"{layer:<6} {before['balancedness'][layer]:.3f}   {after['balancedness'][layer]:.3f}")
    print(f"worst  {min(before['balancedness']):.3f}   {min(after['balancedness']):.3f}")
    print()
    print(f"{'':28}{'before':>10}{'after':>10}")
    print(f"{'expert replicas':28}{before['replicas']:>10}{after['replicas']:>10}")
    for index, (b, a) in enumerate(zip(befores, afters)):
        print(f"{f'decode step latency (ms), run {index + 1}':28}{b['step_seconds'] * 1000:>10.1f}{a['step_seconds'] * 1000:>10.1f}")
    median_before = statistics.median(b["step_seconds"] for b in befores) * 1000
    median_after = statistics.median(a["step_seconds"] for a in afters) * 1000
    print(f"{'decode step latency (ms), median':28}{median_before:>10.1f}{median_after:>10.1f}")
    print(f"{'tokens/s (whole run), median':28}{statistics.median(b['tokens_per_second'] for b in befores):>10.1f}"
          f"{statistics.median(a['tokens_per_second'] for a in afters):>10.1f}")
    same = all(run["outputs"] == befores[0]["outputs"] for run in befores + afters)
    print(f"every request's tokens and logprobs identical in all {len(befores) + len(afters)} runs: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

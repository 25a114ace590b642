#!/usr/bin/env python3
"""What a dead or hung worker costs: requests lost and the stall, under continuous load (issue 15).

    python3 Benchmarks/chaos.py --switchyard .build/release/switchyard                 # 2 runs of ~2 minutes
    python3 Benchmarks/chaos.py --duration 30 --json /tmp/chaos.json                   # shorter, and keep JSON
    python3 Benchmarks/chaos.py --runs replicas --serve-arg=--heartbeat-interval=0.25  # one run, extra serve flags

Makes a small random Mixtral checkpoint (or takes --model), serves it on 127.0.0.1 with 3 worker
processes (w0, w1, w2; no network namespaces, so no netem: only process faults), and keeps
--concurrency greedy streaming completions in flight (distinct prompts, each exactly --max-tokens
tokens; a slot sends its prompt again as soon as the last answer is complete, and waits
--pause-after-failure seconds after a failed one). Two runs, each on a fresh cluster:
`serve --workers 3` ("no-replicas") and `serve --workers 3 --replicas 2` ("replicas").

Each run first measures --floor-duration seconds without faults: the first answer of each prompt is
the reference (the first run's; a later run's are checked against it too), and the run's floor is
the p50/p99 over those requests of each request's longest wait for a token (its first token counted
from the request's start). Then, for --duration seconds, every --fault-interval seconds (the first
half an interval in) one worker in turn (w0, w1, w2, …) is alternately killed (SIGKILL, restarted
with the same name --down seconds later) or stopped (SIGSTOP, SIGCONT --down seconds later).

Per run it reports: requests completed, lost (an HTTP error, an error inside the stream, a broken
connection, a timeout), completed requests whose tokens differ from the reference, faults injected,
and the stall: p50/p99 of the longest wait for a token over the requests in flight during a fault
(started before it was healed, ended after it was injected), beside the floor. It prints a table and
writes JSON with --json. A run whose serve refuses to start (e.g. an unknown --replicas) is reported
with serve's message and the other runs still go.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "Tests", "python"))  # the load generator the fault tests use
import chaos_client  # noqa: E402

WORKERS = ("w0", "w1", "w2")
RUNS = {"no-replicas": [], "replicas": ["--replicas", "2"]}


def percentile(values, p):
    """Nearest-rank percentile of `values`, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Cluster:
    """serve (3 workers, 127.0.0.1, ephemeral ports) and its worker processes, logs in `directory`."""

    def __init__(self, binary, model, directory, flags, start_timeout=120):
        self.binary, self.model, self.dir = binary, model, directory
        os.makedirs(directory, exist_ok=True)
        self.workers, self.incarnations = {}, {}
        self.serve_log = os.path.join(directory, "serve.log")
        self.serve = subprocess.Popen([binary, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers",
                                       str(len(WORKERS)), "--http", "127.0.0.1:0", "--insecure", *flags],
                                      stdin=subprocess.DEVNULL, stdout=open(self.serve_log, "w"),
                                      stderr=subprocess.STDOUT)
        try:
            self.endpoint = self._wait_log(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", start_timeout)
            self.base = self._wait_log(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", start_timeout)
            for name in WORKERS:
                self.start_worker(name)
            deadline = time.time() + start_timeout
            while chaos_client.health(self.base)["status"] != "ok":
                if time.time() > deadline:
                    raise RuntimeError(f"/health not \"ok\" within {start_timeout} s: {chaos_client.health(self.base)}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def _wait_log(self, pattern, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.serve_log, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            match = re.search(pattern, text)
            if match:
                return match.group(1)
            if self.serve.poll() is not None:
                first = next((line for line in text.splitlines() if line.strip()), "")
                raise RuntimeError(f"serve exited with {self.serve.returncode}: {first}")
            time.sleep(0.05)
        raise RuntimeError(f"serve did not print {pattern!r} within {timeout} s")

    def start_worker(self, name):
        self.incarnations[name] = self.incarnations.get(name, -1) + 1
        log = os.path.join(self.dir, f"{name}.{self.incarnations[name]}.log")
        self.workers[name] = subprocess.Popen([self.binary, "worker", "--coordinator", self.endpoint, "--model",
                                               self.model, "--name", name, "--insecure"], stdin=subprocess.DEVNULL,
                                              stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def stop(self):
        chaos_client.stop_processes([self.serve, *self.workers.values()], stopped=self.workers.values())


def bodies(count, max_tokens):
    return [{"prompt": f"chaos benchmark request {index}: {' '.join(['token'] * (index % 7))} {index * 13}",
             "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "logprobs": 1, "stream": True}
            for index in range(count)]


def run_load(base, request_bodies, seconds, args, during=None):
    """Keeps every body in flight for `seconds` (while `during(stop_event)` runs, if given); returns the
    results of every request that finished."""
    results, lock = [], threading.Lock()

    def record(slot, result):
        with lock:
            results.append(result)

    load = chaos_client.Load(base, request_bodies, record, timeout=args.request_timeout,
                             pause_after_failure=args.pause_after_failure).start()
    stopping = threading.Event()
    injector = threading.Thread(target=during, args=(stopping,), daemon=True) if during else None
    if injector:
        injector.start()
    stopping.wait(seconds)
    stopping.set()
    if injector:
        injector.join(args.down + 30)
    load.stop()
    if not load.join(args.request_timeout + 10):
        print("warning: requests still running after the load stopped; left out", file=sys.stderr)
    with lock:
        return list(results)


def inject_faults(cluster, args, faults):
    """The fault schedule (runs in a thread until `stopping` is set): every --fault-interval seconds,
    the first half an interval in, alternately kill -9 + restart and SIGSTOP + SIGCONT, worker by worker."""
    def schedule(stopping):
        start = time.time()
        for index in range(10 ** 6):
            at = start + args.fault_interval * (index + 0.5)
            if at + args.down + 2 > start + args.duration or stopping.wait(max(0.0, at - time.time())):
                return
            name, kill = WORKERS[index % len(WORKERS)], index % 2 == 0
            fault = {"kind": "kill -9, restart" if kill else "SIGSTOP, SIGCONT", "worker": name,
                     "injected": time.time(), "healed": None}
            faults.append(fault)
            cluster.workers[name].send_signal(signal.SIGKILL if kill else signal.SIGSTOP)
            time.sleep(args.down)
            if kill:
                cluster.workers[name].wait(timeout=30)
                cluster.start_worker(name)
            else:
                cluster.workers[name].send_signal(signal.SIGCONT)
            fault["healed"] = time.time()
    return schedule


def completed(result):
    return result["status"] == 200 and result["error"] is None


def summarize(results, reference, faults):
    """The figures of one phase: requests, completed, lost, differ, stall (in flight during a fault)."""
    done = [r for r in results if completed(r)]
    differ = [r for r in done if reference.get(r["slot"]) is not None and r["tokens"] != reference[r["slot"]]]
    hit = [r for r in done if r["max_gap"] is not None and any(
        r["start"] < (f["healed"] or f["injected"]) and r["end"] > f["injected"] for f in faults)]
    gaps = [r["max_gap"] for r in hit]
    errors = {}
    for r in results:
        if not completed(r):
            key = re.sub(r"\d+", "N", r["error"] or f"status {r['status']}")
            errors[key] = errors.get(key, 0) + 1
    return {"requests": len(results), "completed": len(done), "lost": len(results) - len(done),
            "differ": len(differ), "hit_by_faults": len(hit), "stall_p50_s": percentile(gaps, 50),
            "stall_p99_s": percentile(gaps, 99), "stall_max_s": max(gaps) if gaps else None,
            "errors": dict(sorted(errors.items(), key=lambda item: -item[1])[:5])}


def one_run(name, flags, args, model, workdir, reference):
    report = {"run": name, "serve_flags": flags, "error": None, "faults": []}
    try:
        cluster = Cluster(args.switchyard, model, os.path.join(workdir, name), flags)
    except RuntimeError as error:
        report["error"] = str(error)
        return report
    try:
        request_bodies = bodies(args.concurrency, args.max_tokens)
        floor = run_load(cluster.base, request_bodies, args.floor_duration, args)
        if not reference:
            for result in sorted(floor, key=lambda r: r["start"]):
                if completed(result):
                    reference.setdefault(result["slot"], result["tokens"])
        gaps = [r["max_gap"] for r in floor if completed(r) and r["max_gap"] is not None]
        report["floor"] = {**summarize(floor, reference, []), "gap_p50_s": percentile(gaps, 50),
                           "gap_p99_s": percentile(gaps, 99)}
        faults = report["faults"]
        results = run_load(cluster.base, request_bodies, args.duration, args, during=inject_faults(cluster, args, faults))
        report.update(summarize(results, reference, faults))
        report["missing_reference"] = sorted(set(range(args.concurrency)) - set(reference))
    finally:
        cluster.stop()
    return report


def seconds(value):
    return "-" if value is None else f"{value:.3f}"


def print_table(reports):
    print("| run | requests | completed | lost | differ | faults | stall p50 s | stall p99 s | floor p50 s | "
          "floor p99 s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for report in reports:
        if report["error"]:
            print(f"| {report['run']} | could not start: {report['error']} |")
            continue
        floor = report["floor"]
        print(f"| {report['run']} | {report['requests']} | {report['completed']} | {report['lost']} | "
              f"{report['differ']} | {len(report['faults'])} | {seconds(report['stall_p50_s'])} | "
              f"{seconds(report['stall_p99_s'])} | {seconds(floor['gap_p50_s'])} | {seconds(floor['gap_p99_s'])} |")
    for report in reports:
        if not report["error"]:
            if report["errors"]:
                print(f"{report['run']}: lost requests' errors: " +
                      "; ".join(f"{count} x {text}" for text, count in report["errors"].items()))
            if report["floor"]["lost"] or report["floor"]["differ"]:
                print(f"{report['run']}: the fault-free phase lost {report['floor']['lost']} and "
                      f"{report['floor']['differ']} differ")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_bin = os.environ.get("SWITCHYARD_BIN") or os.path.join(ROOT, ".build", "release", "switchyard")
    parser.add_argument("--switchyard", default=default_bin, help="the binary (default: $SWITCHYARD_BIN, else "
                        ".build/release/switchyard)")
    parser.add_argument("--model", help="a checkpoint directory; default: make a small one")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of: {', '.join(RUNS)}")
    parser.add_argument("--serve-arg", action="append", default=[], help="an extra serve flag (repeatable), "
                        "e.g. --serve-arg=--heartbeat-interval=0.25")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load with faults, per run")
    parser.add_argument("--floor-duration", type=float, default=15.0, help="seconds of fault-free load, per run")
    parser.add_argument("--fault-interval", type=float, default=15.0)
    parser.add_argument("--down", type=float, default=3.0, help="seconds a killed worker stays down and a "
                        "stopped one stopped")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--pause-after-failure", type=float, default=0.5)
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, model)")
    args = parser.parse_args()
    unknown = set(args.runs.split(",")) - set(RUNS)
    if unknown:
        parser.error(f"--runs: unknown {', '.join(sorted(unknown))}; valid: {', '.join(RUNS)}")
    if not os.access(args.switchyard, os.X_OK):
        parser.error(f"--switchyard: {args.switchyard} is not an executable; build it with swift build -c release")

    workdir = tempfile.mkdtemp(prefix="switchyard-chaos-bench-")
    try:
        model = args.model
        if model is None:
            model = os.path.join(workdir, "model")
            subprocess.run([args.switchyard, "make-model", "--arch", "mixtral", "--out", model, "--hidden", "64",
                            "--layers", "3", "--experts", "8", "--top-k", "2", "--vocab", "512", "--heads", "4",
                            "--kv-heads", "2", "--seed", "11"], check=True, capture_output=True)
        reference, reports = {}, []
        for name in args.runs.split(","):
            flags = RUNS[name] + args.serve_arg
            print(f"{name}: serve {' '.join(flags)} ...", file=sys.stderr, flush=True)
            reports.append(one_run(name, flags, args, model, workdir, reference))
        print_table(reports)
        if args.json:
            config = {key: value for key, value in vars(args).items() if key != "json"}
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"config": config, "runs": reports}, handle, indent=2)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A load generator and a /health poller for the fault tests (test_chaos.py) and Benchmarks/chaos.py.

Standard library only, so that it runs with any python3, also inside a network namespace:

    ip netns exec NS python3 chaos_client.py load URL SPEC.json [--rounds R]
    ip netns exec NS python3 chaos_client.py health URL [--interval SECONDS]

`load` keeps one request in flight per body of SPEC.json ({"bodies": [...], "timeout": seconds,
"pause_after_failure": seconds}): each slot sends its body, and when the answer is complete sends it
again, R times (--rounds) or until standard input closes. It prints one JSON line per finished
request (see `complete`) and exits when the requests in flight have finished. `health` prints one
JSON line per GET /health until standard input closes.

A request is *complete* when the server answered 200 with no error inside the body or the stream,
and a finish reason. Streaming requests (`"stream": true`) are timestamped per chunk; with
`logprobs` each token arrives in a chunk of its own, so the gaps between chunks are inter-token gaps.
"""
import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def complete(base, body, timeout):
    """Sends one /v1/completions request; never raises. Returns a dict: start, end (time.time()),
    status (HTTP code or None), error (None when the request completed), tokens (strings, from
    logprobs), token_logprobs, text, finish_reason, stream, ttft (seconds to the first token) and
    max_gap (streaming only: the longest time, in seconds, the request waited for a token: the first
    counted from the start, so that a stall before the first token shows too)."""
    result = {"start": time.time(), "end": None, "status": None, "error": None, "tokens": [], "token_logprobs": [],
              "text": "", "finish_reason": None, "stream": bool(body.get("stream")), "ttft": None, "max_gap": None}
    request = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result["status"] = response.status
            if result["stream"]:
                _read_stream(response, result)
            else:
                _take_choice(json.loads(response.read()), result)
    except urllib.error.HTTPError as error:
        result["status"] = error.code
        result["error"] = f"HTTP {error.code}: {_message(error.read().decode('utf-8', 'replace'))}"
    except Exception as error:  # a reset connection, a timeout, a body that is not JSON: all lost requests
        result["error"] = f"{type(error).__name__}: {error}"
    result["end"] = time.time()
    if result["error"] is None and result["finish_reason"] is None:
        result["error"] = "the answer ended without a finish reason"
    return result


def _message(answer):
    """The message of an OpenAI-style error ({"error": {"message": ...}}, as text or parsed), else the
    text itself (shortened)."""
    try:
        obj = json.loads(answer) if isinstance(answer, str) else answer
        return str(obj["error"]["message"])[:500]
    except (ValueError, KeyError, TypeError):
        return str(answer)[:500]


def _take_choice(obj, result):
    if "error" in obj:
        raise RuntimeError(f"error in the {'stream' if result['stream'] else 'body'}: {_message(obj)}")
    choice = obj["choices"][0]
    logprobs = choice.get("logprobs") or {}
    result["tokens"] += logprobs.get("tokens") or []
    result["token_logprobs"] += logprobs.get("token_logprobs") or []
    result["text"] += choice.get("text") or ""
    if choice.get("finish_reason"):
        result["finish_reason"] = choice["finish_reason"]


def _read_stream(response, result):
    last = None
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        before = len(result["tokens"])
        _take_choice(json.loads(data), result)
        if len(result["tokens"]) > before:
            now = time.time()
            if last is None:
                result["ttft"] = now - result["start"]
            result["max_gap"] = max(result["max_gap"] or 0.0, now - (last or result["start"]))
            last = now
    raise RuntimeError("the stream ended without [DONE]")


class Load:
    """One thread per body, each keeping its request in flight: `rounds` times each, or (None) until
    `stop()`. After a failed request a slot waits `pause_after_failure` seconds before the next, so
    that a broken server is not hammered. `on_result(slot, result)` is called from the slot's thread."""

    def __init__(self, base, bodies, on_result, timeout=60.0, pause_after_failure=0.5, rounds=None):
        self.base, self.bodies, self.on_result = base, list(bodies), on_result
        self.timeout, self.pause_after_failure, self.rounds = timeout, pause_after_failure, rounds
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._slot, args=(slot,), daemon=True)
                        for slot in range(len(self.bodies))]

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def stop(self):
        self.stopping.set()

    def join(self, timeout=None):
        """Waits for the slots' last requests (`timeout` seconds at most, None: no limit); returns False
        when some are still running."""
        deadline = None if timeout is None else time.time() + timeout
        for thread in self.threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.time()))
        return not any(thread.is_alive() for thread in self.threads)

    def _slot(self, slot):
        done = 0
        while not self.stopping.is_set() and (self.rounds is None or done < self.rounds):
            result = complete(self.base, self.bodies[slot], self.timeout)
            result["slot"] = slot
            self.on_result(slot, result)
            done += 1
            if result["error"] is not None:
                self.stopping.wait(self.pause_after_failure)


def health(base, timeout=2.0):
    """GET /health once; never raises. Returns {"t", "code", "status", "reason"} (code None when the
    server did not answer)."""
    sample = {"t": time.time(), "code": None, "status": None, "reason": None}
    try:
        with urllib.request.urlopen(base + "/health", timeout=timeout) as response:
            sample["code"], text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        sample["code"], text = error.code, error.read().decode("utf-8", "replace")
    except Exception as error:
        sample["reason"] = f"{type(error).__name__}: {error}"
        return sample
    try:
        body = json.loads(text)
        sample["status"], sample["reason"] = body.get("status"), body.get("reason")
    except (json.JSONDecodeError, AttributeError):
        sample["reason"] = f"not JSON: {text[:200]}"
    return sample


def stop_processes(procs, stopped=()):
    """Continues `stopped` (a stopped process cannot leave), asks every process in `procs` to stop
    (SIGTERM), and kills the ones still there after 20 s."""
    for proc in stopped:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _until_stdin_closes(stop):
    def watch():
        sys.stdin.read()
        stop()
    threading.Thread(target=watch, daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load")
    load.add_argument("url")
    load.add_argument("spec")
    load.add_argument("--rounds", type=int)
    poll = commands.add_parser("health")
    poll.add_argument("url")
    poll.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()

    lock = threading.Lock()

    def emit(obj):
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    if args.command == "load":
        with open(args.spec, encoding="utf-8") as handle:
            spec = json.load(handle)
        running = Load(args.url, spec["bodies"], lambda slot, result: emit(result), timeout=spec.get("timeout", 60.0),
                       pause_after_failure=spec.get("pause_after_failure", 0.5), rounds=args.rounds)
        if args.rounds is None:
            _until_stdin_closes(running.stop)
        running.start()
        running.join()
    else:
        stopping = threading.Event()
        _until_stdin_closes(stopping.set)
        while not stopping.is_set():
            emit(health(args.url))
            stopping.wait(args.interval)


if __name__ == "__main__":
    main()

"""Worker and coordinator faults on 127.0.0.1 (issue 15), without namespaces: what an operator sees.

- A worker killed for good: /health turns "degraded" (HTTP 200) naming it, /metrics counts it,
  running and new requests complete on the survivors with the tokens of the fault-free run.
- A replacement started without --name takes the lost worker's slot; /health is "ok" again.
- The coordinator killed and started again on the same address: every worker registers again by
  itself, once (not once per queued heartbeat), and serving resumes.
- `generate --coordinator` whose coordinator is killed mid-job ends with an error that says so,
  instead of waiting.

Every wait is bounded; every process is killed and the scratch directory removed at the end, also
when a test fails. No timing is asserted.
"""
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from launch_support import scratch_directory

BIN = os.path.abspath(os.environ.get("SWITCHYARD_BIN", ".build/debug/switchyard"))
PROMPTS = [f"request {i} about the experts" for i in range(6)]
MAX_TOKENS = 40


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LocalCluster:
    def __init__(self, directory):
        self.dir = directory
        self.model = os.path.join(directory, "model")
        subprocess.run([BIN, "make-model", "--out", self.model, "--hidden", "64", "--layers", "2", "--experts", "8",
                        "--seed", "15"], check=True, capture_output=True, timeout=120)
        self.zmq = f"tcp://127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.workers = {}
        self.serve = None
        self.serve_starts = 0

    def start_serve(self):
        self.serve_starts += 1
        self.serve_log = os.path.join(self.dir, f"serve-{self.serve_starts}.log")
        self.serve = subprocess.Popen(
            [BIN, "serve", "--model", self.model, "--bind", self.zmq, "--http", self.http, "--workers", "3",
             "--threads", "1", "--heartbeat-interval", "0.3", "--heartbeat-misses", "3", "--insecure"],
            stdout=open(self.serve_log, "w"), stderr=subprocess.STDOUT)

    def start_worker(self, name, log_name=None):
        args = [BIN, "worker", "--coordinator", self.zmq, "--model", self.model, "--threads", "1",
                "--heartbeat-interval", "0.3", "--insecure"]
        if name:
            args += ["--name", name]
        log = os.path.join(self.dir, f"{log_name or name}.log")
        self.workers[log_name or name] = (subprocess.Popen(args, stdout=open(log, "a"), stderr=subprocess.STDOUT), log)

    def health(self):
        try:
            with urllib.request.urlopen(f"http://{self.http}/health", timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, {}

    def metric(self, name):
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(match.group(1)) if match else None

    def complete(self, prompt):
        body = json.dumps({"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True}).encode()
        request = urllib.request.Request(f"http://{self.http}/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)["choices"][0]["text"]

    def complete_all(self):
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
            return list(pool.map(self.complete, PROMPTS))

    def log(self, path):
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def logs(self):
        parts = [f"--- {os.path.basename(self.serve_log)}\n{self.log(self.serve_log)[-4000:]}"]
        parts += [f"--- {name}\n{self.log(log)[-2000:]}" for name, (_, log) in self.workers.items()]
        return "\n".join(parts)


@pytest.fixture
def cluster():
    for directory in scratch_directory("switchyard-failover-"):
        local = LocalCluster(directory)
        local.start_serve()
        for name in ("w0", "w1", "w2"):
            local.start_worker(name)
        wait_until(lambda: local.health()[1].get("status") == "ok", 120, "three ready workers")
        yield local


def test_a_worker_killed_for_good_costs_no_request_and_a_replacement_of_any_name_is_taken(cluster):
    reference = cluster.complete_all()
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        running = [pool.submit(cluster.complete, prompt) for prompt in PROMPTS]
        time.sleep(0.3)
        victim, _ = cluster.workers["w1"]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        # While the survivors load the lost worker's experts /health may say "unavailable" (503);
        # once they hold them, "degraded" (200).
        status, body = wait_until(lambda: (lambda h: h if h[1].get("status") == "degraded" else None)(cluster.health()),
                                  30, "/health to say the cluster is degraded")
        survived = [future.result(timeout=120) for future in running]
    assert survived == reference, cluster.logs()
    assert (status, body["status"]) == (200, "degraded"), body
    assert "w1" in body["reason"] and "2 of 3" in body["reason"], body
    assert cluster.metric("switchyard_workers_lost_total") == 1
    assert cluster.metric("switchyard_workers_up") == 2
    # New requests, on the two survivors alone.
    assert cluster.complete_all() == reference, cluster.logs()
    # A replacement started without --name takes the free slot.
    cluster.start_worker(None, log_name="spare")
    wait_until(lambda: cluster.health()[1].get("status") == "ok", 60, "the replacement to be taken")
    assert cluster.complete_all() == reference, cluster.logs()
    assert "every worker is back" in cluster.log(cluster.serve_log), cluster.logs()


def test_workers_register_again_once_after_a_coordinator_restart(cluster):
    reference = cluster.complete_all()
    cluster.serve.send_signal(signal.SIGKILL)
    cluster.serve.wait(timeout=10)
    # Long enough for the workers' heartbeats to queue up while nobody listens.
    time.sleep(3)
    cluster.start_serve()
    wait_until(lambda: cluster.health()[1].get("status") == "ok", 120, "the workers to register with the new coordinator")
    time.sleep(2)
    log = cluster.log(cluster.serve_log)
    registrations = re.findall(r"worker (w\d) \(pid \d+, kernel path [a-z0-9]+\) registered", log)
    assert sorted(registrations) == ["w0", "w1", "w2"], cluster.logs()
    assert cluster.complete_all() == reference, cluster.logs()


def test_generate_against_a_coordinator_that_dies_ends_with_an_error(cluster):
    client = subprocess.Popen(
        [BIN, "generate", "--coordinator", cluster.zmq, "--insecure", "--prompt", "a long one", "--max-tokens", "1500",
         "--ignore-eos", "--temperature", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: cluster.metric("switchyard_requests_running") == 1, 60, "the job to run")
    cluster.serve.send_signal(signal.SIGKILL)
    cluster.serve.wait(timeout=10)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode != 0
    assert "stopped answering" in stderr or "restarted" in stderr, stderr

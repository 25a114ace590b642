"""Fixtures for the HTTP API tests: a real `switchyard serve` with two real worker processes.

The binary is found through SWITCHYARD_BIN (Scripts/test.sh sets it). Every process is started on
127.0.0.1 with ephemeral ports and stopped at the end of the session, also when a test fails.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

# Under SWITCHYARD_CI=1 a skip fails the run (ci_skips.py); pytest finds the hooks here.
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401

BIN = os.environ.get("SWITCHYARD_BIN", ".build/debug/switchyard")
_scratch = None


def pytest_configure(config):
    """Every temporary file of the session (the tests' own, the servers' logs, keys and models) goes
    under one directory, removed when the session ends: runs do not pile up files in /tmp."""
    global _scratch
    _scratch = tempfile.mkdtemp(prefix="switchyard-pytest-")
    os.environ["TMPDIR"] = _scratch  # the processes the tests start
    tempfile.tempdir = _scratch


def pytest_unconfigure(config):
    if _scratch:
        shutil.rmtree(_scratch, ignore_errors=True)
API_KEY = "test-key-123"
# The name the test servers serve under; clients name it in `model` (another name is a 404).
SERVED_MODEL = "switchyard"


def _wait_for(pattern, proc, log_path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        match = re.search(pattern, text)
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {pattern!r} in {log_path}")


def make_keys(directory, name):
    """A CURVE key pair DIRECTORY/NAME.key and NAME.pub, made as the README says."""
    subprocess.run([BIN, "keys", "generate", "--out", directory, "--name", name], check=True, capture_output=True)
    return os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pub")


class Cluster:
    """A coordinator with an HTTP API and its workers (two unless told), with CURVE keys as the
    README sets them up: the coordinator's pair, one pair for the workers and one for clients."""

    def __init__(self, model, api_key=None, extra=(), workers=("w0", "w1")):
        self.dir = tempfile.mkdtemp(prefix="switchyard-api-")
        self.procs = []
        log = os.path.join(self.dir, "serve.log")
        keys = os.path.join(self.dir, "keys")
        server_key, self.coordinator_key = make_keys(os.path.join(keys, "coordinator"), "coordinator")
        worker_key, _ = make_keys(os.path.join(keys, "allowed"), "worker")
        self.client_key, _ = make_keys(os.path.join(keys, "allowed"), "client")
        args = [BIN, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers", str(len(workers)),
                "--http", "127.0.0.1:0", "--key", server_key, "--allow-keys", os.path.join(keys, "allowed"),
                "--served-model-name", SERVED_MODEL, *extra]
        if api_key:
            args += ["--api-key", api_key]
        self.serve = self._start(args, log)
        endpoint = _wait_for(r"coordinator listening on (tcp://127\.0\.0\.1:\d+)", self.serve, log).group(1)
        self.base = _wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", self.serve, log).group(1)
        self.endpoint = endpoint
        for name in workers:
            self._start([BIN, "worker", "--coordinator", endpoint, "--model", model, "--name", name,
                         "--key", worker_key, "--coordinator-key", self.coordinator_key],
                        os.path.join(self.dir, f"{name}.log"))
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except Exception:
                time.sleep(0.05)
        else:
            raise RuntimeError("the cluster never became healthy")

    def client_args(self):
        """`generate` arguments that send a job to this coordinator over ZeroMQ, with the client's keys."""
        return ["--coordinator", self.endpoint, "--key", self.client_key, "--coordinator-key", self.coordinator_key]

    def _start(self, args, log_path):
        handle = open(log_path, "w", encoding="utf-8")
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def model():
    directory = os.path.join(tempfile.mkdtemp(prefix="switchyard-api-model-"), "model")
    subprocess.run([BIN, "make-model", "--arch", "mixtral", "--out", directory, "--hidden", "64", "--layers", "2",
                    "--experts", "4", "--top-k", "2", "--vocab", "512", "--heads", "4", "--kv-heads", "2",
                    "--seed", "3"], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="session")
def cluster(model):
    running = Cluster(model)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def secured_cluster(model):
    running = Cluster(model, api_key=API_KEY)
    yield running
    running.stop()


def post(base, path, body, headers=None, raw=None):
    """POSTs JSON (or raw bytes); returns (status, parsed JSON or text)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        status = error.code
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text

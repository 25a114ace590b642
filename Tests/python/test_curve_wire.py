"""What an eavesdropper between a worker and the coordinator sees.

The worker reaches `serve` through a TCP relay this test runs, which records every byte in both
directions. With CURVE keys (the default) the recording holds none of the worker's HELLO (its name,
the model fingerprint) nor of the hidden states: the same run with --insecure on both sides, where
those bytes are found, shows the search would see them.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from conftest import BIN, _wait_for, make_keys

WORKER_NAME = "eavesdrop-target-7f3a9c"


class Relay:
    """Accepts TCP connections on 127.0.0.1 and forwards each to `target`, recording all bytes."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.captured += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def recording(self):
        with self.lock:
            return bytes(self.captured)

    def close(self):
        self.closed = True
        self.listener.close()


def run_through_relay(model, secure):
    """serve + one worker connected through a relay; one completion; returns (recording, fingerprint, serve log)."""
    work = tempfile.mkdtemp(prefix="switchyard-wire-")
    keys = os.path.join(work, "keys")
    if secure:
        server_key, coordinator_pub = make_keys(os.path.join(keys, "coordinator"), "coordinator")
        worker_key, _ = make_keys(os.path.join(keys, "workers"), "worker")
        serve_security = ["--key", server_key, "--allow-keys", os.path.join(keys, "workers")]
        worker_security = ["--key", worker_key, "--coordinator-key", coordinator_pub]
    else:
        serve_security = worker_security = ["--insecure"]
    procs = []
    relay = None
    try:
        serve_log = os.path.join(work, "serve.log")
        serve = subprocess.Popen([BIN, "serve", "--model", model, "--bind", "tcp://127.0.0.1:0", "--workers", "1",
                                  "--http", "127.0.0.1:0", "--wire-dtype", "f32", *serve_security],
                                 stdout=open(serve_log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(serve)
        endpoint = _wait_for(r"coordinator listening on tcp://127\.0\.0\.1:(\d+)", serve, serve_log).group(1)
        base = _wait_for(r"HTTP API listening on (http://127\.0\.0\.1:\d+)", serve, serve_log).group(1)
        relay = Relay(int(endpoint))
        worker_log = os.path.join(work, "worker.log")
        worker = subprocess.Popen([BIN, "worker", "--coordinator", f"tcp://127.0.0.1:{relay.port}", "--model", model,
                                   "--name", WORKER_NAME, "--threads", "1", *worker_security],
                                  stdout=open(worker_log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(worker)
        _wait_for(r"workers ready; serving", serve, serve_log)
        body = json.dumps({"prompt": "what the relay must not read", "max_tokens": 4, "temperature": 0,
                           "ignore_eos": True}).encode()
        request = urllib.request.Request(base + "/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            json.load(response)
        fingerprint = _wait_for(r"model ([0-9a-f]{12})", worker, worker_log).group(1)
        # Let the last COMBINE and heartbeats pass the relay.
        time.sleep(0.5)
        with open(serve_log, encoding="utf-8") as handle:
            log = handle.read()
        return relay.recording(), fingerprint, log
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        if relay:
            relay.close()


def hidden_state_rows(recording, model):
    """How many f32 values in the recording look like hidden-state values (finite, of a hidden state's
    magnitude) at 4-byte alignment of some run of hidden-size values: a plaintext DISPATCH carries
    rows of them, while ciphertext is uniform bytes, which as f32 are mostly huge, tiny or NaN."""
    import struct
    hidden = json.load(open(os.path.join(model, "config.json")))["hidden_size"]
    best = 0
    for offset in range(4):
        run = 0
        for (value,) in struct.iter_unpack("<f", recording[offset:len(recording) - (len(recording) - offset) % 4]):
            if value == value and 1e-4 < abs(value) < 1e3:
                run += 1
                best = max(best, run)
            else:
                run = 0
    return best // hidden


def test_curve_hides_hello_and_hidden_states(model):
    plain, plain_fingerprint, _ = run_through_relay(model, secure=False)
    # The control: in plaintext the eavesdropper reads the worker's name, the model's fingerprint and
    # whole rows of hidden states.
    assert WORKER_NAME.encode() in plain
    assert plain_fingerprint.encode() in plain
    assert hidden_state_rows(plain, model) >= 1

    secure, fingerprint, log = run_through_relay(model, secure=True)
    assert len(secure) > 10_000, len(secure)  # the whole registration and generation went through it
    assert WORKER_NAME.encode() not in secure
    assert fingerprint.encode() not in secure
    assert hidden_state_rows(secure, model) == 0
    assert b"CURVE" in secure[:256]  # the ZMTP greetings name the mechanism
    assert re.search(r"CURVE: accepted key worker", log), log

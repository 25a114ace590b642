"""Replicas and live rebalancing through the HTTP API, with four real worker processes.

The model's routers prefer two experts per layer (make-model --hot-experts), and top-3 routing makes
the order of the expert sum matter (with top-2 any order gives the same bits): the tokens and
logprobs of greedy requests must not change when experts are replicated or the placement switches
while they run.
"""
import concurrent.futures
import http.client
import json
import os
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, Cluster, post

PROMPTS = [f"Request {i}: the experts of layer {i % 3} are hot" + " and busy" * (i % 4) for i in range(16)]
MAX_TOKENS = 64
# A held stream asks for as many tokens as the context allows (make-model's 4096 positions).
HELD_MAX_TOKENS = 4096 - 128
WORKERS = ("w0", "w1", "w2", "w3")


@pytest.fixture(scope="module")
def skewed_cluster():
    directory = os.path.join(tempfile.mkdtemp(prefix="switchyard-skewed-"), "model")
    subprocess.run([BIN, "make-model", "--arch", "mixtral", "--out", directory, "--hidden", "64", "--layers", "2",
                    "--experts", "8", "--top-k", "3", "--vocab", "512", "--heads", "4", "--kv-heads", "2",
                    "--seed", "11", "--hot-experts", "2", "--hot-bias", "3"], check=True, capture_output=True)
    running = Cluster(directory, workers=WORKERS, extra=("--max-running", "16", "--kv-cache-tokens", str(16 * 4096)))
    yield running
    running.stop()


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=120) as response:
        return json.loads(response.read().decode())


def completion(base, prompt):
    """A greedy completion: (text, token strings, token logprobs)."""
    body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "logprobs": 1}
    status, answer = post(base, "/v1/completions", body)
    assert status == 200, answer
    choice = answer["choices"][0]
    return choice["text"], choice["logprobs"]["tokens"], choice["logprobs"]["token_logprobs"]


def solo_runs(cluster):
    return [completion(cluster.base, prompt) for prompt in PROMPTS]


def concurrent_runs(cluster):
    """The 16 prompts at once."""
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(lambda prompt: completion(cluster.base, prompt), PROMPTS))


def metric_values(base):
    """Every sample of /metrics by name (histogram buckets by name and `le`)."""
    with urllib.request.urlopen(base + "/metrics", timeout=120) as response:
        families = text_string_to_metric_families(response.read().decode())
        values = {}
        for family in families:
            for sample in family.samples:
                key = sample.name if "le" not in sample.labels else (sample.name, sample.labels["le"])
                values[key] = sample.value
        return values


def steps_run(base):
    """Engine steps run so far with requests in them (the switchyard_step_requests histogram's count)."""
    return metric_values(base)["switchyard_step_requests_count"]


class HeldStream:
    """A greedy streaming completion as long as the context allows, read on a thread of its own until
    the test gives it a token count (`read_until`) and it has received that many; then it closes the
    connection, which cancels the request. So the request cannot end before the test says so."""

    def __init__(self, base, prompt):
        url = urllib.parse.urlparse(base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        self.connection.request("POST", "/v1/completions", headers={"content-type": "application/json"},
                                body=json.dumps({"prompt": prompt, "max_tokens": HELD_MAX_TOKENS, "temperature": 0,
                                                 "ignore_eos": True, "logprobs": 1, "stream": True}))
        self.tokens, self.logprobs = [], []
        self.first_token = threading.Event()
        self.target = None
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            response = self.connection.getresponse()
            assert response.status == 200, response.read()
            for line in response:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: "):])
                assert "error" not in chunk, chunk
                for choice in chunk["choices"]:
                    assert choice.get("finish_reason") is None, f"the request ended before the test closed it: {chunk}"
                    if choice.get("logprobs"):
                        self.tokens += choice["logprobs"]["tokens"]
                        self.logprobs += choice["logprobs"]["token_logprobs"]
                if self.tokens:
                    self.first_token.set()
                if self.target is not None and len(self.tokens) >= self.target:
                    break
        except Exception as error:  # reported by `finish`
            self.error = error
        finally:
            self.first_token.set()
            self.connection.close()

    def read_until(self, count):
        self.target = count

    def finish(self):
        self.thread.join(timeout=600)
        assert not self.thread.is_alive(), "a held stream never reached its token count"
        assert self.error is None, repr(self.error)
        return self.tokens, self.logprobs


def test_tokens_do_not_change_across_a_live_rebalance(skewed_cluster):
    base = skewed_cluster.base
    solo = solo_runs(skewed_cluster)  # also the measured load the rebalance reads (hot experts)
    before = get_json(base, "/v1/placement")
    assert all(len(worker["experts"]) == 4 for worker in before["workers"])  # 2 layers × 8 experts ÷ 4 workers

    # No race with the requests' ends: they run until the test closes them (their max_tokens is the
    # context's), so the new placement is applied while all 16 run, whatever the machine's speed.
    steps_before = steps_run(base)
    streams = [HeldStream(base, prompt) for prompt in PROMPTS]
    try:
        for stream in streams:
            assert stream.first_token.wait(timeout=300)
        assert all(stream.error is None for stream in streams), [repr(s.error) for s in streams]
        # Every request has a token from the old placement; now the rebalance: it returns once the
        # coordinator has switched between steps and run a step on the new placement.
        result = subprocess.run([BIN, "rebalance", "--server", base, "--memory-budget", "3"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "applied the new placement" in result.stdout, result.stdout
        # The premise, from the engine: all 16 still run after the switch (none was closed yet).
        assert metric_values(base)["switchyard_requests_running"] == len(PROMPTS)
        # A request gains at most one token per step, so this many tokens hold every token made up
        # to now: the ones before the switch and at least one after it.
        steps = int(steps_run(base) - steps_before)
        assert 0 < steps < HELD_MAX_TOKENS
        for stream in streams:
            stream.read_until(steps)
        held = [stream.finish() for stream in streams]
    finally:
        for stream in streams:
            stream.read_until(0)
    print(f"the placement switched within the first {steps} steps of the 16 requests")

    after = get_json(base, "/v1/placement")
    assert after != before
    replicas = {}
    for worker in after["workers"]:
        for layer, expert in worker["experts"]:
            replicas[(layer, expert)] = replicas.get((layer, expert), 0) + 1
    assert max(replicas.values()) >= 2, after  # the hot experts were replicated
    for worker in after["workers"]:
        assert len([pair for pair in worker["experts"] if pair[0] == 0]) <= 3  # the memory budget
    # The rebalanced cluster still answers alone with the tokens of the old placement.
    assert completion(base, PROMPTS[0]) == solo[0]

    # The undisturbed run: the old placement back, the same 16 requests at once, each as long as
    # what its held stream received; tokens and logprobs must be the same.
    status, restored = post(base, "/v1/placement", before)
    assert status == 200, restored

    def undisturbed(index):
        body = {"prompt": PROMPTS[index], "max_tokens": len(held[index][0]), "temperature": 0, "ignore_eos": True,
                "logprobs": 1}
        status, answer = post(base, "/v1/completions", body)
        assert status == 200, answer
        logprobs = answer["choices"][0]["logprobs"]
        return logprobs["tokens"], logprobs["token_logprobs"]

    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        reference = list(pool.map(undisturbed, range(len(PROMPTS))))
    for index, (got, want) in enumerate(zip(held, reference)):
        assert len(got[0]) >= steps
        assert got == want, f"request {index} changed across the switch"


def test_every_expert_replicated_on_two_workers_gives_the_same_tokens(skewed_cluster):
    solo = solo_runs(skewed_cluster)
    placement = {"workers": [{"name": name, "experts": []} for name in
                             (w["name"] for w in get_json(skewed_cluster.base, "/v1/placement")["workers"])]}
    for layer in range(2):
        for expert in range(8):
            for copy in range(2):
                placement["workers"][(expert + copy * 2 + layer) % 4]["experts"].append([layer, expert])
    status, applied = post(skewed_cluster.base, "/v1/placement", placement)
    assert status == 200, applied
    assert sorted(map(tuple, applied["workers"][0]["experts"])) == sorted(map(tuple, placement["workers"][0]["experts"]))
    assert concurrent_runs(skewed_cluster) == solo


@pytest.mark.parametrize("change, message", [
    (lambda p: p["workers"].pop(), "missing"),
    (lambda p: p["workers"][0]["experts"].append([0, 99]), "expert 99 does not exist; valid experts are 0...7"),
    (lambda p: p["workers"][0]["experts"].append([7, 0]), "layer 7 does not exist; valid layers are 0...1"),
    (lambda p: p["workers"][0].update(name="nobody"), "nobody"),
])
def test_a_bad_placement_is_refused_with_what_is_wrong(skewed_cluster, change, message):
    placement = get_json(skewed_cluster.base, "/v1/placement")
    change(placement)
    status, answer = post(skewed_cluster.base, "/v1/placement", placement)
    assert status == 400, answer
    assert message in answer["error"]["message"], answer
    assert get_json(skewed_cluster.base, "/v1/placement") != placement


def test_malformed_placement_json_is_refused(skewed_cluster):
    status, answer = post(skewed_cluster.base, "/v1/placement", None, raw=b'{"workers": 3}')
    assert status == 400
    assert "not a placement" in answer["error"]["message"]

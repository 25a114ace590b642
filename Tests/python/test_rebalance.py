"""Replicas and live rebalancing through the HTTP API, with four real worker processes.

The model's routers prefer two experts per layer (make-model --hot-experts), and top-3 routing makes
the order of the expert sum matter (with top-2 any order gives the same bits): the tokens and
logprobs of greedy requests must not change when experts are replicated or the placement switches
while they run.
"""
import concurrent.futures
import json
import os
import subprocess
import tempfile
import threading
import urllib.request

import pytest

from conftest import BIN, Cluster, post

PROMPTS = [f"Request {i}: the experts of layer {i % 3} are hot" + " and busy" * (i % 4) for i in range(16)]
MAX_TOKENS = 64
WORKERS = ("w0", "w1", "w2", "w3")


@pytest.fixture(scope="module")
def skewed_cluster():
    directory = os.path.join(tempfile.mkdtemp(prefix="switchyard-skewed-"), "model")
    subprocess.run([BIN, "make-model", "--arch", "mixtral", "--out", directory, "--hidden", "64", "--layers", "2",
                    "--experts", "8", "--top-k", "3", "--vocab", "512", "--heads", "4", "--kv-heads", "2",
                    "--seed", "11", "--hot-experts", "2", "--hot-bias", "3"], check=True, capture_output=True)
    running = Cluster(directory, workers=WORKERS, extra=("--max-running", "16"))
    yield running
    running.stop()


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=120) as response:
        return json.loads(response.read().decode())


def completion(base, prompt, stream_started=None, progress=None):
    """A greedy completion: (text, token strings, token logprobs). With `stream_started`, streams,
    sets the event once the first token has arrived and keeps the token count in `progress[0]`."""
    body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "logprobs": 1}
    if stream_started is None:
        status, answer = post(base, "/v1/completions", body)
        assert status == 200, answer
        choice = answer["choices"][0]
        return choice["text"], choice["logprobs"]["tokens"], choice["logprobs"]["token_logprobs"]
    body["stream"] = True
    request = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    text, tokens, logprobs = "", [], []
    with urllib.request.urlopen(request, timeout=300) as response:
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            assert "error" not in chunk, chunk
            for choice in chunk["choices"]:
                text += choice["text"]
                if choice.get("logprobs"):
                    tokens += choice["logprobs"]["tokens"]
                    logprobs += choice["logprobs"]["token_logprobs"]
            progress[0] = len(tokens)
            if tokens:
                stream_started.set()
    return text, tokens, logprobs


def solo_runs(cluster):
    return [completion(cluster.base, prompt) for prompt in PROMPTS]


def concurrent_runs(cluster, during=None):
    """The 16 prompts at once; `during()` runs once every request has received its first token."""
    started = [threading.Event() for _ in PROMPTS]
    progress = [[0] for _ in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [pool.submit(completion, cluster.base, prompt, event, count)
                   for prompt, event, count in zip(PROMPTS, started, progress)]
        outcome = None
        if during is not None:
            for event in started:
                assert event.wait(timeout=300)
            outcome = during()
            # Tokens each request had received when `during` returned.
            outcome = (outcome, [count[0] for count in progress])
        return [future.result() for future in futures], outcome


def test_tokens_do_not_change_across_a_live_rebalance(skewed_cluster):
    solo = solo_runs(skewed_cluster)
    before = get_json(skewed_cluster.base, "/v1/placement")
    assert all(len(worker["experts"]) == 4 for worker in before["workers"])  # 2 layers × 8 experts ÷ 4 workers

    def rebalance():
        result = subprocess.run([BIN, "rebalance", "--server", skewed_cluster.base, "--memory-budget", "3"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    results, (report, progress) = concurrent_runs(skewed_cluster, during=rebalance)
    assert "applied the new placement" in report, report
    print("tokens received when the new placement was in effect:", progress)
    # The premise: requests were running on both sides of the switch.
    assert min(progress) < MAX_TOKENS, progress
    after = get_json(skewed_cluster.base, "/v1/placement")
    assert after != before
    replicas = {}
    for worker in after["workers"]:
        for layer, expert in worker["experts"]:
            replicas[(layer, expert)] = replicas.get((layer, expert), 0) + 1
    assert max(replicas.values()) >= 2, after  # the hot experts were replicated
    for worker in after["workers"]:
        assert len([pair for pair in worker["experts"] if pair[0] == 0]) <= 3  # the memory budget
    for index, (got, want) in enumerate(zip(results, solo)):
        assert got == want, f"request {index} changed across the switch"
    # The rebalanced cluster still answers alone with the same tokens.
    assert completion(skewed_cluster.base, PROMPTS[0]) == solo[0]


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
    results, _ = concurrent_runs(skewed_cluster)
    assert results == solo


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

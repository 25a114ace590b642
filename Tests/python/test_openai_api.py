"""The HTTP API as users call it: the `openai` Python client, curl, raw HTTP, a Prometheus parser."""
import concurrent.futures
import http.client
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import API_KEY, BIN, Cluster, post


def client(cluster, key="unused"):
    return openai.OpenAI(base_url=cluster.base + "/v1", api_key=key, max_retries=0, timeout=120)


def greedy(cluster, prompt, max_tokens=12):
    response = client(cluster).completions.create(
        model="switchyard", prompt=prompt, max_tokens=max_tokens, temperature=0,
        extra_body={"ignore_eos": True})
    return response.choices[0].text, response.usage


def test_completions_non_streaming(cluster):
    text, usage = greedy(cluster, "Once upon a time")
    assert isinstance(text, str) and text
    assert usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + 12


def test_completions_streaming_equals_non_streaming(cluster):
    text, _ = greedy(cluster, "Once upon a time")
    stream = client(cluster).completions.create(
        model="switchyard", prompt="Once upon a time", max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.text)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 12


def test_chat_streaming_and_not(cluster):
    messages = [{"role": "user", "content": "Hello there"}]
    full = client(cluster).chat.completions.create(
        model="switchyard", messages=messages, max_tokens=10, temperature=0, extra_body={"ignore_eos": True})
    assert full.choices[0].message.role == "assistant"
    assert full.usage.completion_tokens == 10
    stream = client(cluster).chat.completions.create(
        model="switchyard", messages=messages, max_tokens=10, temperature=0, stream=True,
        extra_body={"ignore_eos": True})
    content = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert content == full.choices[0].message.content


def test_logprobs_and_n(cluster):
    response = client(cluster).chat.completions.create(
        model="switchyard", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0.8, seed=7,
        n=2, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    assert [choice.index for choice in response.choices] == [0, 1]
    for choice in response.choices:
        assert len(choice.logprobs.content) == 5
        assert all(len(entry.top_logprobs) == 3 for entry in choice.logprobs.content)


def test_models_and_health(cluster):
    models = client(cluster).models.list()
    assert len(models.data) == 1
    with urllib.request.urlopen(cluster.base + "/health") as response:
        assert response.status == 200


def steps_with_several_requests(cluster):
    """Engine steps so far that ran more than one request (switchyard_step_requests)."""
    samples = metrics(cluster)["switchyard_step_requests"].samples
    count = next(s.value for s in samples if s.name == "switchyard_step_requests_count")
    alone = next(s.value for s in samples if s.name == "switchyard_step_requests_bucket" and s.labels["le"] == "1.0")
    return count - alone


def test_32_concurrent_requests_equal_solo(cluster):
    prompts = [f"Request number {i}: the experts say" for i in range(32)]
    solo = [greedy(cluster, prompt, 16)[0] for prompt in prompts]
    before = steps_with_several_requests(cluster)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        together = list(pool.map(lambda prompt: greedy(cluster, prompt, 16)[0], prompts))
    assert together == solo
    # The premise: the requests really were batched together (one at a time would give solo tokens too).
    assert steps_with_several_requests(cluster) > before, "the 32 concurrent requests never shared a step"


def test_micro_batches_give_the_tokens_of_one_batch(cluster, model):
    # 3 micro-batches: the coordinator's layers for one interleave with the workers' experts of another.
    prompts = [f"Request number {i}: the experts say" for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        one_batch = list(pool.map(lambda prompt: greedy(cluster, prompt, 16)[0], prompts))
    split = Cluster(model, extra=("--micro-batches", "3"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
            together = list(pool.map(lambda prompt: greedy(split, prompt, 16)[0], prompts))
        status, _ = post(split.base, "/v1/completions", {"model": "switchyard", "prompt": "x", "max_tokens": 1})
        assert status == 200
    finally:
        split.stop()
    assert together == one_batch
    bad = subprocess.run([BIN, "serve", "--model", model, "--micro-batches", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--micro-batches is 0, but must be at least 1" in bad.stderr
    alone = subprocess.run([BIN, "serve", "--model", model, "--workers", "0", "--micro-batches", "2"],
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode != 0 and "--micro-batches 2 needs workers" in alone.stderr


def test_curl_completion_and_stream(cluster):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"prompt": "Hello", "max_tokens": 4, "temperature": 0, "ignore_eos": True})
    out = subprocess.run([curl, "-sS", "-H", "content-type: application/json", "-d", body,
                          cluster.base + "/v1/completions"], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout)["usage"]["completion_tokens"] == 4
    body = json.dumps({"prompt": "Hello", "max_tokens": 4, "temperature": 0, "ignore_eos": True, "stream": True})
    out = subprocess.run([curl, "-sSN", "-H", "content-type: application/json", "-d", body,
                          cluster.base + "/v1/completions"], capture_output=True, text=True, check=True, timeout=60)
    events = [line[len("data: "):] for line in out.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all(json.loads(event)["object"] == "text_completion" for event in events[:-1])


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "top_p": 1.5}, "top_p"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "max_tokens": 10_000_000}, "max_tokens"),
    ({"max_tokens": 3}, "prompt"),
])
def test_bad_completion_bodies_name_the_field(cluster, body, param):
    status, answer = post(cluster.base, "/v1/completions", body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert answer["error"]["message"]


def test_bad_chat_and_json(cluster):
    status, answer = post(cluster.base, "/v1/chat/completions", {"messages": []})
    assert status == 400 and answer["error"]["param"] == "messages"
    status, answer = post(cluster.base, "/v1/completions", None, raw=b"{not json")
    assert status == 400 and "error" in answer
    # An unknown field is refused by name, not ignored; null counts as absent.
    status, answer = post(cluster.base, "/v1/completions", {"prompt": "x", "max_tokens": 2, "unknown_field": 1})
    assert status == 400 and answer["error"]["param"] == "unknown_field", answer
    status, answer = post(cluster.base, "/v1/completions", {"prompt": "x", "max_tokens": 2, "unknown_field": None})
    assert status == 200, answer


def test_api_key(secured_cluster):
    with pytest.raises(openai.AuthenticationError):
        client(secured_cluster, key="wrong").completions.create(model="switchyard", prompt="x", max_tokens=2)
    status, answer = post(secured_cluster.base, "/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert status == 401 and "error" in answer
    response = client(secured_cluster, key=API_KEY).completions.create(model="switchyard", prompt="x", max_tokens=2)
    assert response.usage.completion_tokens >= 1
    with urllib.request.urlopen(secured_cluster.base + "/health") as health:
        assert health.status == 200


def metrics(cluster):
    with urllib.request.urlopen(cluster.base + "/metrics") as response:
        return {family.name: family for family in text_string_to_metric_families(response.read().decode())}


def test_disconnecting_stream_frees_its_slot(cluster):
    url = urllib.parse.urlparse(cluster.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = json.dumps({"prompt": "A very long story", "max_tokens": 3000, "temperature": 0, "ignore_eos": True,
                       "stream": True})
    connection.request("POST", "/v1/completions", body=body, headers={"content-type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    response.fp.readline()  # the first event arrived: the request is running
    # The response says Connection: close, so http.client handed the socket to it: close both.
    response.close()
    connection.close()
    deadline = time.time() + 60
    while time.time() < deadline:
        families = metrics(cluster)
        cancelled = [s.value for s in families["switchyard_requests_finished"].samples
                     if s.labels.get("reason") == "cancelled" and s.name.endswith("_total")]
        running = families["switchyard_requests_running"].samples[0].value
        if cancelled and cancelled[0] >= 1 and running == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the disconnected request was not cancelled")
    assert families["switchyard_kv_cache_usage_ratio"].samples[0].value == 0


def finished_cancelled(families):
    values = [s.value for s in families["switchyard_requests_finished"].samples
              if s.labels.get("reason") == "cancelled" and s.name.endswith("_total")]
    return values[0] if values else 0


def test_disconnecting_client_of_a_whole_response_cancels_it(cluster):
    before = finished_cancelled(metrics(cluster))
    url = urllib.parse.urlparse(cluster.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = json.dumps({"prompt": "A very long story", "max_tokens": 3000, "temperature": 0, "ignore_eos": True})
    connection.request("POST", "/v1/completions", body=body, headers={"content-type": "application/json"})
    deadline = time.time() + 60
    while metrics(cluster)["switchyard_requests_running"].samples[0].value == 0:
        assert time.time() < deadline, "the request never started running"
        time.sleep(0.05)
    connection.close()  # without reading: the client gave up on the whole response
    deadline = time.time() + 60
    while time.time() < deadline:
        families = metrics(cluster)
        running = families["switchyard_requests_running"].samples[0].value
        if finished_cancelled(families) >= before + 1 and running == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the request whose client disconnected was not cancelled")
    assert families["switchyard_kv_cache_usage_ratio"].samples[0].value == 0


def test_prompt_over_the_size_limit_is_refused_before_tokenizing(cluster):
    with urllib.request.urlopen(cluster.base + "/v1/models") as response:
        context = json.load(response)["data"][0]["max_model_len"]
    limit = context * 64
    status, answer = post(cluster.base, "/v1/completions", {"prompt": "x" * (limit + 1), "max_tokens": 1})
    assert status == 400, answer
    assert answer["error"]["param"] == "prompt"
    assert f"is {limit + 1} bytes, but must be at most {limit} bytes" in answer["error"]["message"]
    status, answer = post(cluster.base, "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "y" * (limit + 1)}], "max_tokens": 1})
    assert status == 400, answer
    assert answer["error"]["param"] == "messages"


def test_metrics_parse_with_prometheus(cluster):
    greedy(cluster, "metrics please", 3)
    families = metrics(cluster)
    for name in ("switchyard_request_latency_seconds", "switchyard_time_to_first_token_seconds",
                 "switchyard_inter_token_latency_seconds", "switchyard_request_queue_time_seconds"):
        assert families[name].type == "histogram", name
        count = [s.value for s in families[name].samples if s.name == name + "_count"]
        assert count and count[0] >= 1, name
    assert families["switchyard_requests_running"].type == "gauge"
    assert families["switchyard_generation_tokens"].type == "counter"
    experts = [s for s in families["switchyard_expert_tokens"].samples if s.name.endswith("_total")]
    assert {"layer", "expert"} <= set(experts[0].labels)
    assert sum(s.value for s in experts) > 0


def test_full_queue_is_refused_with_429_and_accepted_jobs_complete(model):
    # No race: request A holds the only running place (a stream as long as the context allows, whose
    # first event we read), request B fills the only waiting place (seen in /metrics), so request C
    # must be refused; then closing A cancels it and B runs to its end.
    from conftest import Cluster
    small = Cluster(model, extra=("--max-running", "1", "--max-waiting", "1"))
    try:
        with urllib.request.urlopen(small.base + "/v1/models") as response:
            context = json.load(response)["data"][0]["max_model_len"]
        url = urllib.parse.urlparse(small.base)
        holder = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        holder.request("POST", "/v1/completions", headers={"content-type": "application/json"}, body=json.dumps(
            {"prompt": "hold", "max_tokens": context - 8, "temperature": 0, "ignore_eos": True, "stream": True}))
        held = holder.getresponse()
        assert held.status == 200
        held.fp.readline()  # the first event arrived: A is running
        body = {"prompt": "queue", "max_tokens": 60, "temperature": 0, "ignore_eos": True}
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(post, small.base, "/v1/completions", body)
            deadline = time.time() + 120
            while metrics(small)["switchyard_requests_waiting"].samples[0].value < 1:
                assert time.time() < deadline, "B never reached the waiting queue"
                assert not waiting.done(), waiting.result()
                time.sleep(0.02)
            status, answer = post(small.base, "/v1/completions", body)
            assert status == 429, answer
            assert answer["error"]["type"] == "rate_limit_exceeded", answer
            assert "requests are waiting (the limit is 1)" in answer["error"]["message"], answer
            # A still held its place when C was refused (so the refusal was for the full queue).
            families = metrics(small)
            assert families["switchyard_requests_running"].samples[0].value == 1
            assert not waiting.done()
            held.close()
            holder.close()
            status, answer = waiting.result(timeout=300)
        assert status == 200, answer
        assert answer["usage"]["completion_tokens"] == 60
    finally:
        small.stop()

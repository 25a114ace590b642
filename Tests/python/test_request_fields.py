"""Every OpenAI/vLLM request field beyond the basic ones, through a real server and the openai client:
each changes the output as documented or is refused with a 400 that names it."""
import json
import os

import openai
import pytest

from conftest import SERVED_MODEL, post


def client(cluster):
    return openai.OpenAI(base_url=cluster.base + "/v1", api_key="unused", max_retries=0, timeout=120)


def completion(cluster, **fields):
    body = {"model": SERVED_MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "logprobs": 0,
            "ignore_eos": True, **fields}
    status, answer = post(cluster.base, "/v1/completions", body)
    assert status == 200, answer
    return answer["choices"][0]


def eos_id(model):
    with open(os.path.join(model, "config.json"), encoding="utf-8") as handle:
        eos = json.load(handle)["eos_token_id"]
    return eos[0] if isinstance(eos, list) else eos


def test_logit_bias_forces_a_token(cluster):
    plain = completion(cluster)["logprobs"]["tokens"]
    for token in (65, 300):
        forced = completion(cluster, logit_bias={str(token): 100})["logprobs"]["tokens"]
        assert len(set(forced)) == 1 and len(forced) == 16, forced
        assert forced != plain
    assert completion(cluster, logit_bias={"65": 100})["text"] != completion(cluster, logit_bias={"300": 100})["text"]


def test_penalties_change_greedy_output(cluster):
    plain = completion(cluster, max_tokens=32)["logprobs"]["tokens"]
    assert len(set(plain)) < len(plain), "the tiny model repeats itself greedily"
    for field, value in (("presence_penalty", 2), ("frequency_penalty", 2), ("repetition_penalty", 2)):
        penalised = completion(cluster, max_tokens=32, **{field: value})["logprobs"]["tokens"]
        assert penalised != plain, field
    assert len(set(completion(cluster, max_tokens=32, presence_penalty=2)["logprobs"]["tokens"])) > len(set(plain))


def test_min_tokens_holds_back_the_end_of_sequence(cluster, model):
    bias = {str(eos_id(model)): 100}
    early = completion(cluster, ignore_eos=False, logit_bias=bias, max_tokens=20)
    assert early["finish_reason"] == "stop" and len(early["logprobs"]["tokens"]) == 1
    held = completion(cluster, ignore_eos=False, logit_bias=bias, max_tokens=20, min_tokens=5)
    assert held["finish_reason"] == "stop" and len(held["logprobs"]["tokens"]) == 6, held


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 10},
        "population": {"type": "integer"},
        "coastal": {"type": "boolean"},
        "districts": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "rating": {"enum": ["good", "bad", 3]},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}


def check_city(value):
    """The schema above, checked by hand (jsonschema is not among the test requirements)."""
    assert isinstance(value, dict)
    assert set(value) <= set(SCHEMA["properties"]) and {"city", "population", "coastal"} <= set(value)
    assert isinstance(value["city"], str) and 1 <= len(value["city"]) <= 10
    assert isinstance(value["population"], int) and not isinstance(value["population"], bool)
    assert isinstance(value["coastal"], bool)
    if "districts" in value:
        assert isinstance(value["districts"], list) and len(value["districts"]) <= 3
        assert all(isinstance(item, str) and len(item) <= 5 for item in value["districts"])
    if "rating" in value:
        assert value["rating"] in ("good", "bad", 3)


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_json_schema_output_parses_and_validates(cluster, seed):
    response = client(cluster).chat.completions.create(
        model=SERVED_MODEL, messages=[{"role": "user", "content": "Describe a city as JSON."}], max_tokens=200,
        temperature=0 if seed is None else 1, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}})
    choice = response.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    check_city(json.loads(choice.message.content))


def test_json_object_output_parses(cluster):
    response = client(cluster).chat.completions.create(
        model=SERVED_MODEL, messages=[{"role": "user", "content": "Anything, as JSON."}], max_tokens=200,
        temperature=0, response_format={"type": "json_object"})
    json.loads(response.choices[0].message.content)


def test_unknown_model_is_404(cluster):
    with pytest.raises(openai.NotFoundError) as raised:
        client(cluster).completions.create(model="gpt-4", prompt="x", max_tokens=2)
    assert "The model `gpt-4` does not exist." in str(raised.value)
    listed = [entry.id for entry in client(cluster).models.list()]
    assert listed == [SERVED_MODEL]


CHAT = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.mark.parametrize("path, fields, param", [
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix"),
    ("/v1/completions", {"prompt": "x", "best_of": 2}, "best_of"),
    ("/v1/completions", {"prompt": "x", "echo": True}, "echo"),
    ("/v1/completions", {"prompt": "x", "presence_penalty": 3}, "presence_penalty"),
    ("/v1/completions", {"prompt": "x", "frequency_penalty": -2.5}, "frequency_penalty"),
    ("/v1/completions", {"prompt": "x", "repetition_penalty": -1}, "repetition_penalty"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 3, "min_tokens": 4}, "min_tokens"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"999999": 5}}, "logit_bias"),
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("/v1/chat/completions", {"tool_choice": "required"}, "tool_choice"),
    ("/v1/chat/completions", {"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs.messages"),
    ("/v1/chat/completions", {"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ("/v1/chat/completions", {"guided_regex": "a+"}, "guided_regex"),
    ("/v1/chat/completions", {"max_token": 3}, "max_token"),
    ("/v1/completions", {"prompt": "x", "use_beam_search": True}, "use_beam_search"),
    ("/v1/completions", {"prompt": "x", "stop_token_ids": [-1]}, "stop_token_ids"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "pattern": "^a"}}}}, "response_format.json_schema.schema.pattern"),
])
def test_refused_by_name(cluster, path, fields, param):
    body = {**({"model": SERVED_MODEL} if path == "/v1/completions" else CHAT), **fields}
    status, answer = post(cluster.base, path, body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer


def test_stop_token_ids_end_the_completion(cluster):
    bias = {"65": 100}
    forced = completion(cluster, logit_bias=bias, max_tokens=1)
    stopped = completion(cluster, logit_bias=bias, stop_token_ids=[65])
    assert stopped["finish_reason"] == "stop" and len(stopped["logprobs"]["tokens"]) == 1, stopped
    assert stopped["text"] == "", "the stop token's text is left out"
    included = completion(cluster, logit_bias=bias, stop_token_ids=[65], include_stop_str_in_output=True)
    assert included["text"] == forced["text"] and forced["text"], (included, forced)


def test_min_p_and_allowed_token_ids(cluster):
    allowed = completion(cluster, allowed_token_ids=[65], temperature=1, seed=3)
    assert len(set(allowed["logprobs"]["tokens"])) == 1, allowed
    # min_p 1 keeps only the most likely token: sampling is then greedy.
    greedy = completion(cluster)["text"]
    assert completion(cluster, temperature=1.5, seed=4, min_p=1)["text"] == greedy


def test_version(cluster):
    import urllib.request
    with urllib.request.urlopen(cluster.base + "/version") as response:
        body = json.load(response)
    assert set(body) == {"version"} and body["version"].count(".") == 2

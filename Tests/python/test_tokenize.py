"""/tokenize and /detokenize in vLLM's shapes; a chat's ids equal transformers' apply_chat_template ids."""
import json
import os

import pytest

from conftest import SERVED_MODEL, Cluster, post

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "models", "qwen3_moe_top1")


@pytest.fixture(scope="module")
def qwen():
    running = Cluster(os.path.abspath(FIXTURE), workers=("w0",))
    yield running
    running.stop()


def test_chat_tokenize_equals_transformers_apply_chat_template(qwen):
    # reference.json's chat_cases: transformers' apply_chat_template(messages, tokenize=True,
    # add_generation_prompt=True) on this checkpoint (Scripts/reference/model_fixtures.py).
    with open(os.path.join(FIXTURE, "reference.json"), encoding="utf-8") as handle:
        cases = json.load(handle)["chat_cases"]
    assert cases
    for case in cases:
        status, answer = post(qwen.base, "/tokenize", {
            "model": SERVED_MODEL, "messages": case["messages"], "add_generation_prompt": case["add_generation_prompt"]})
        assert status == 200, answer
        assert answer["tokens"] == case["ids"], case["messages"]
        assert answer["count"] == len(case["ids"])
        with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as handle:
            assert answer["max_model_len"] == json.load(handle)["max_position_embeddings"]
        status, text = post(qwen.base, "/detokenize", {"model": SERVED_MODEL, "tokens": case["ids"]})
        assert status == 200 and text == {"prompt": case["text"]}, text


def test_prompt_tokenize_and_detokenize_round_trip(qwen):
    status, answer = post(qwen.base, "/tokenize", {"prompt": "Hello, experts!", "return_token_strs": True})
    assert status == 200, answer
    assert set(answer) == {"count", "max_model_len", "tokens", "token_strs"}
    assert len(answer["token_strs"]) == answer["count"] == len(answer["tokens"])
    status, text = post(qwen.base, "/detokenize", {"tokens": answer["tokens"]})
    assert status == 200 and text["prompt"] == "Hello, experts!"
    status, plain = post(qwen.base, "/tokenize", {"prompt": "Hello, experts!"})
    assert plain["token_strs"] is None and plain["tokens"] == answer["tokens"]


@pytest.mark.parametrize("path, body, status, param", [
    ("/tokenize", {}, 400, "prompt"),
    ("/tokenize", {"messages": [{"role": "user", "content": "x"}], "chat_template": "{{ x }}"}, 400, "chat_template"),
    ("/tokenize", {"prompt": "x", "tools": []}, 400, "tools"),
    ("/tokenize", {"prompt": "x", "add_special_token": False}, 400, "add_special_token"),
    ("/tokenize", {"prompt": "x", "model": "nope"}, 404, "model"),
    ("/detokenize", {"tokens": [1, -1]}, 400, "tokens"),
    ("/detokenize", {"tokens": [10 ** 9]}, 400, "tokens"),
])
def test_bad_bodies(qwen, path, body, status, param):
    got, answer = post(qwen.base, path, body)
    assert got == status and answer["error"]["param"] == param, answer

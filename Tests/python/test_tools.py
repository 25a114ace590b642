"""Tool calling through a real server with Qwen3's real chat template: the prompt of a chat with
tools and tool calls is transformers' apply_chat_template(messages, tools=tools) ids (fixture
Tests/Fixtures/tool_chats/qwen3.json), the openai client's tool requests are accepted, and what is
not implemented is refused by name."""
import json
import os
import shutil

import openai
import pytest

from conftest import SERVED_MODEL, Cluster, post

ROOT = os.path.join(os.path.dirname(__file__), "..")
CHECKPOINT = os.path.join(ROOT, "Fixtures", "models", "qwen3_moe_top1")
TOOL_CHATS = os.path.join(ROOT, "Fixtures", "tool_chats", "qwen3.json")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    with open(TOOL_CHATS, encoding="utf-8") as handle:
        record = json.load(handle)
    model = tmp_path_factory.mktemp("qwen3") / "model"
    shutil.copytree(CHECKPOINT, model)
    # chat_template.jinja overrides tokenizer_config.json's template, as in transformers.
    (model / "chat_template.jinja").write_text(record["template"], encoding="utf-8")
    # The tool prompts are 650-1100 tokens; the fixture says 256 (only limits read it: rope is computed).
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["max_position_embeddings"] = 2048
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    running = Cluster(str(model), workers=("w0",))
    yield running, record
    running.stop()


def test_tokenize_with_tools_equals_transformers(qwen3):
    cluster, record = qwen3
    assert record["cases"]
    for case in record["cases"]:
        status, answer = post(cluster.base, "/tokenize", {
            "model": SERVED_MODEL, "messages": case["request_messages"], "tools": case["tools"],
            "add_generation_prompt": case["add_generation_prompt"]})
        assert status == 200, answer
        assert answer["tokens"] == case["prompt_ids"], case["request_messages"]


def test_chat_with_tools_through_the_openai_client(qwen3):
    cluster, record = qwen3
    client = openai.OpenAI(base_url=cluster.base + "/v1", api_key="unused", max_retries=0, timeout=120)
    for case in record["cases"]:
        if not case["add_generation_prompt"]:
            continue
        response = client.chat.completions.create(
            model=SERVED_MODEL, messages=case["request_messages"], tools=case["tools"], max_tokens=6, temperature=0,
            extra_body={"ignore_eos": True})
        # The chat route renders the prompt /tokenize and transformers give.
        assert response.usage.prompt_tokens == len(case["prompt_ids"])
        choice = response.choices[0]
        # The fixture's weights are random: whatever it writes, a finish reason and a well-formed message.
        assert choice.finish_reason in ("length", "tool_calls", "stop")
        assert choice.message.role == "assistant"
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=SERVED_MODEL, messages=record["cases"][0]["request_messages"], tools=record["cases"][0]["tools"],
            tool_choice="required", max_tokens=2)
    assert "tool_choice" in str(raised.value)

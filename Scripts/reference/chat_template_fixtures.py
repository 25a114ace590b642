#!/usr/bin/env python3
"""Records transformers' chat-template renderings as fixtures for Switchyard's Jinja interpreter.

Run with the reference environment (transformers 5 + tokenizers; nothing is downloaded):

    /work/venv-ref/bin/python Scripts/reference/chat_template_fixtures.py

For each well-known chat template below it builds an in-memory fast tokenizer carrying the template
and the checkpoint's bos/eos tokens, renders a fixed set of conversations with
`tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`, and writes
Tests/Fixtures/chat_templates/<name>.json:

    {"generated_by": {"script", "transformers", "tokenizers", "jinja2"},
     "template", "bos_token", "eos_token", "extra_context", ["now",]
     "cases": [{"messages", "add_generation_prompt", ["chat_template_kwargs",] "rendered"}
               | {..., "error": true, "message"}]}

`generated_by` records the script and the library versions that rendered the file (Scripts/make-
reference-fixtures.sh runs this script with the pinned Scripts/reference/requirements.txt).
`chat_template_kwargs` are the keyword arguments passed to apply_chat_template for that case (vLLM's
request field of that name); `now` (ISO 8601, local time) is the time `strftime_now` reports, frozen
for templates that print the date (gpt-oss).

The template texts are the ones the checkpoints ship in tokenizer_config.json `chat_template`; gpt-oss's
harmony template is read from Sources/Tokenization/HarmonyChatTemplate.swift, which holds it byte for
byte as openai/gpt-oss-20b ships it (chat_template.jinja).
"""

import contextlib
import datetime
import json
from pathlib import Path

import jinja2
import tokenizers
import transformers
from tokenizers import Tokenizer, models
import transformers.utils.chat_template_utils as chat_template_utils
from transformers import PreTrainedTokenizerFast

REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = REPOSITORY / "Tests" / "Fixtures" / "chat_templates"


def harmony_template():
    """gpt-oss's chat_template.jinja, from the Swift source that embeds it (a raw string literal)."""
    source = (REPOSITORY / "Sources" / "Tokenization" / "HarmonyChatTemplate.swift").read_text(encoding="utf-8")
    start = source.index('###"""\n') + len('###"""\n')
    return source[start:source.index('\n"""###', start)]


@contextlib.contextmanager
def frozen_now(iso):
    """Makes transformers' strftime_now report `iso` (a naive local time), or leaves it alone for None."""
    if iso is None:
        yield
        return
    fixed = datetime.datetime.fromisoformat(iso)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    saved = chat_template_utils.datetime
    chat_template_utils.datetime = Frozen
    try:
        yield
    finally:
        chat_template_utils.datetime = saved

# mistralai/Mixtral-8x7B-Instruct-v0.1 (current revision: optional system message folded into the first turn).
MIXTRAL_8X7B_INSTRUCT = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)

# mistralai/Mixtral-8x7B-Instruct-v0.1 (original revision: strict user/assistant alternation, no system role).
MIXTRAL_8X7B_INSTRUCT_LEGACY = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# Qwen/Qwen1.5-MoE-A2.7B-Chat: ChatML with a default system prompt.
QWEN1_5_MOE_CHAT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}"
    "{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen/Qwen2-57B-A14B-Instruct: ChatML with a default system prompt.
QWEN2_MOE_INSTRUCT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Tulu style, as the OLMoE-Instruct / Tulu checkpoints use it.
TULU = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{% if not loop.last %}"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token + '\\n' }}{% else %}"
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}"
)

# deepseek-ai/deepseek-moe-16b-chat and DeepSeek-V2-Chat / -Lite-Chat.
DEEPSEEK_MOE_CHAT = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# deepseek-ai/deepseek-coder-33b-instruct: namespace(), whitespace control, a default system prompt.
DEEPSEEK_CODER_INSTRUCT = (
    "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n"
    "{{bos_token}}{%- if not ns.found -%}\n"
    "{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security and "
    "privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n"
    "{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n"
    "{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n"
    "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n"
    "{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}"
)

# meta-llama/Meta-Llama-3-8B-Instruct.
LLAMA3_INSTRUCT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# HuggingFaceH4/zephyr-7b-beta: newline-separated tags, exercising trim_blocks.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

# Llama 3.1 JSON tool calling (vLLM examples/tool_chat_template_llama3.1_json.jinja): comments, `is defined`,
# `is string`, slicing, `in`, tojson, select/map filters; `date_string` is passed so the output is fixed.
LLAMA31_TOOLS = (
    '{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n'
    '{%- if not tools_in_user_message is defined %}\n'
    "    {#- Llama 3.1 doesn't pass all tests if the tools are in the system prompt #}\n"
    '    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n'
    '    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now("%d %b %Y") %}\n'
    '    {%- else %}\n        {%- set date_string = "26 Jul 2024" %}\n    {%- endif %}\n{%- endif %}\n'
    '{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n'
    '{#- This block extracts the system message, so we can slot it into the right place. #}\n'
    "{%- if messages[0]['role'] == 'system' %}\n    {%- if messages[0]['content'] is string %}\n"
    "        {%- set system_message = messages[0]['content']|trim %}\n    {%- else %}\n"
    "        {%- set system_message = messages[0]['content'][0]['text']|trim %}\n    {%- endif %}\n"
    '    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- if tools is not none %}\n'
    '        {%- set system_message = "You are a helpful assistant with tool calling capabilities. Only reply with a '
    "tool call if the function exists in the library provided by the user. If it doesn't exist, just reply directly "
    'in natural language. When you receive a tool call response, use the output to format an answer to the original '
    'user question." %}\n    {%- else %}\n        {%- set system_message = "" %}\n    {%- endif %}\n{%- endif %}\n\n'
    '{#- System message #}\n{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n{%- if tools is not none %}\n'
    '    {{- "Environment: ipython\\n" }}\n{%- endif %}\n{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n{%- if tools is not none and not tools_in_user_message %}\n'
    '    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call. " }}\n'
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. ' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n'
    '        {{- "\\n\\n" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- "<|eot_id|>" }}\n\n'
    '{#- Custom tools are passed in a user message with some extra guidance #}\n'
    '{%- if tools_in_user_message and not tools is none %}\n'
    '    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n'
    "        {%- if messages[0]['content'] is string %}\n"
    "            {%- set first_user_message = messages[0]['content']|trim %}\n        {%- else %}\n"
    "            {%- set first_user_message = messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | map('trim') | join('\\n') %}\n"
    '        {%- endif %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n'
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n"
    "    {%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    '    {{- "Given the following functions, please respond with a JSON for a function call " }}\n'
    '    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n'
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. ' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n'
    '        {{- "\\n\\n" }}\n    {%- endfor %}\n    {{- first_user_message + "<|eot_id|>"}}\n{%- endif %}\n\n'
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}\n"
    "        {%- if message['content'] is string %}\n            {{- message['content'] | trim}}\n        {%- else %}\n"
    "            {%- for content in message['content'] %}\n                {%- if content['type'] == 'text' %}\n"
    "                    {{- content['text'] | trim }}\n                {%- endif %}\n            {%- endfor %}\n"
    "        {%- endif %}\n        {{- '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n"
    '        {%- if message.tool_calls|length > 1 %}\n'
    '            {{- raise_exception("This model only supports single tool-calls at once!") }}\n'
    '        {%- elif message.tool_calls|length == 0 %}\n            {{- "No tool calls found." }}\n        {%- else %}\n'
    "            {%- set tool_call = message.tool_calls[0].function %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- '{\"name\": \"' + tool_call.name|trim + '\", ' }}\n            {{- '\"parameters\": ' }}\n"
    '            {{- tool_call.arguments | tojson }}\n            {{- "}" }}\n            {{- "<|eot_id|>" }}\n'
    '        {%- endif %}\n    {%- elif message.role == "tool" or message.role == "ipython" %}\n'
    '        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n        {%- if message.content is string %}\n'
    '            {{- { "output": message.content } | tojson }}\n        {%- else %}\n'
    "            {%- for content in message['content']  %}\n                {%- if content['type']  == 'text' %}\n"
    "                    {{- { \"output\": content['text']  } | tojson }}\n                {%- endif %}\n"
    '            {%- endfor %}\n        {%- endif %}\n        {{- "<|eot_id|>" }}\n    {%- endif %}\n{%- endfor %}\n'
    "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"
)

# Not a checkpoint's template: one template touching every construct the interpreter supports, so that
# its Python semantics (loop variables, slicing, filters, methods, tests, tojson, macros, whitespace
# control) are checked against real Jinja too.
JINJA_FEATURES = """{#- a comment -#}
{%- set ns = namespace(count=0, roles=[]) -%}
{%- for m in messages -%}
  {%- set ns.count = ns.count + 1 -%}
  {%- set ns.roles = ns.roles + [m.role] -%}
{%- endfor -%}
count={{ ns.count }} roles={{ ns.roles }} joined={{ ns.roles | join('|') }}
{% for m in messages if m.role != 'system' %}
  [{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} first={{ loop.first }} last={{ loop.last }}] {{ m['role'] | upper }}: {{ m.content | trim | length }} {{ m.content[:5] }} {{ m.content[::-1] }} {{ m.content[-3:] }} {{ m.content[1:8:2] }}
  {%- if loop.previtem is defined %} prev={{ loop.previtem.role }}{% endif %} {{ loop.cycle('odd', 'even') }}
{% else %}
no messages
{% endfor %}
{%- macro tag(name, body='none') -%}<{{ name }}>{{ body }}</{{ name }}>{%- endmacro %}
{{ tag('a') }} {{ tag('b', body=messages | length) }} {{ tag('c', 'positional') }}
{% set d = {'b': 1, 'a': [1, 2.5, none, true, 'é"\\n\\t\\\\'], 'c': {'x': 'y'}, 'e': {}} %}
{{ d | tojson }} {{ d | tojson(indent=2) }} {{ d | tojson(sort_keys=true) }} {{ d.items() | list }} {{ (d.items() | list)[1][0] }} {{ d | items | list | first }} {{ d.keys() | list }} {{ d.values() | list | length }} {{ d.get('zz', 'dflt') }} {{ d.get('b') }} {{ d.get('zz') }}
{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k, v in d | items %}{{ k }}{% endfor %} {% for k in d %}{{ k }}{% endfor %}
{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 10 - 2 - 3 }} {{ 1.5 + 1 }} {{ 3 * 'ab' }} {{ [1] * 3 }} {{ -2 ** 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}
{{ 'a' ~ 1 ~ none ~ true }} {{ 'x' if messages else 'y' }} {{ 'abc' in 'xxabcxx' }} {{ 'q' not in ['a','b'] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 1 }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ 'a' < 'b' }} {{ not 1 == 2 }}
{{ '  Hello World  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('lo','x')) }}|{{ 'hello wORLD-x'.title() }}|{{ 'HeLLo'.lower() }}|{{ 'x'.upper() }}|{{ '  y'.lstrip() }}|{{ 'y  '.rstrip() }}|{{ 'abcabc'.replace('b', 'B') }}|{{ ', '.join(['p', 'q']) }}|{{ 'abc'.find('c') }}
{{ 'hello wORLD-x' | title }} {{ 'hELLO' | capitalize }} {{ 'a-b-c' | replace('-', '+') }} {{ [3,1,2] | sort }} {{ [3,1,2] | sort(reverse=true) }} {{ [3,1,2] | first }} {{ [3,1,2] | last }} {{ 'abc' | list }} {{ 42 | string }} {{ undefined_var | default('fallback') }} {{ '' | default('empty', true) }} {{ '' | default('empty') }} {{ none }} [{{ undefined_var }}] {{ [1, 1, 2] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'ab' | reverse }}
{{ x is defined }} {{ messages is defined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ d is mapping }} {{ messages is iterable }} {{ messages is sequence }} {{ 'a' is not string }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby(3) }} {{ 9 is divisibleby 4 }} {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }} {{ 'a' is lower }} {{ 2 is eq(2) }} {{ none is sameas none }}
{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} {% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}
{% with a = 1, b = 'two' %}{{ a }}{{ b }}{% set c = 3 %}{{ c }}{% endwith %}[{{ c }}]
{% set captured %}inside {{ 1 + 1 }}{% endset %}{{ captured | upper }}
{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ messages | rejectattr('role', 'equalto', 'user') | list | length }} {{ messages | map(attribute='role') | map('upper') | join(',') }} {{ [0, 1, '', 'a'] | select | list }} {{ [1, 2, 3, 4] | reject('even') | list }}
{{ messages[0].role if messages else 'none' }} {{ messages[-1]['content'] if messages }} {{ messages[99] is defined }} {{ messages[0]['missing'] is undefined }}
  {%+ if true %}keep indent{% endif +%}
after
    {%- if true %} stripped left{% endif %}
{{ 1e3 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ -3 | abs }} {{ 3.7 | int }} {{ '12' | int + 1 }} {{ [1,2,3] | sum }} {{ [4,2,9] | max }} {{ [4,2,9] | min }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 1 | float }} {{ 10 ** -1 }}
{{ "it's" }} {{ ['a', "b'c", 'd"e'] }} {{ {'k': none, 'l': [true, 1.0]} }} {{ (1, 'two') }} {{ (1,) }} {{ () }} {{ (1, 'two')[1] }} {{ (1, 2) + (3,) }} {{ (3, 4)[::-1] }} {{ 2 in (1, 2) }} {{ (1, 2) == [1, 2] }} {{ (1, 2) | tojson }} {{ "abc"[1] }} {{ messages | length > 1 }}
{{ 'line1\\nline2' | indent(2) }} {{ 'x' * 0 }}|{{ [] | join(',') }}|{{ '' | length }}
{{ add_generation_prompt }} {{ bos_token }} {{ eos_token }} {{ tools is none }} {{ documents }} {{ tools is defined }}
{% if messages | length == 0 %}{% elif messages[0].role == 'system' %}system first{% else %}no system{% endif %}
{%- for m in messages %}
{{- '\\n' if not loop.first }}{{ m.role }}:{{ m.content | tojson }}
{%- endfor %}
{{ dict(a=1, b='x') | tojson }} {{ namespace(z=5).z }} {{ 'é' | tojson(ensure_ascii=true) }} {{ [1, [2, {}]] | tojson(separators=(',', ':')) }}
"""

# Whitespace control as transformers configures Jinja (trim_blocks, lstrip_blocks): comments, `+` and `-`
# modifiers, raw blocks, CRLF newlines and the dropped trailing newline.
JINJA_WHITESPACE = (
    "<start>\n"
    "  {# an indented comment #}\n"
    "  {%- if true %}\n"
    "    kept indent {{ messages | length }}\n"
    "  {% endif %}\n"
    "  {%+ if true +%}\n"
    "plus modifiers\n"
    "  {%- endif -%}\n"
    "   {{- ' tight ' -}}   \n"
    "\t{% for m in messages %}\n"
    "\t\t{{ m.role }}\t{% if loop.last %}last{% endif %}\n"
    "\t{% endfor %}\n"
    "{% raw %}{{ not rendered }} {% if %}{% endraw %}\n"
    "{%- raw -%}  spaced raw  {%- endraw %}\n"
    "windows\r\nline\r\n"
    "{%- set x = 1 %}  {% set y = 2 %}\n"
    "x={{ x }} y={{ y }}\n"
    "{#- trailing comment -#}\n"
    "   end\n"
)

# Qwen3-style (Qwen3-30B-A3B family) template with thinking blocks, as found in public code: reversed
# iteration with namespace bookkeeping, chained str methods (split/rstrip/lstrip/strip), `is string`,
# `enable_thinking is defined`. Checked against transformers like the others.
QWEN3_STYLE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""

# Qwen/Qwen3-30B-A3B (and the other Qwen3 checkpoints of April 2025): tokenizer_config.json `chat_template`,
# as reproduced in public code. It is QWEN3_STYLE above with the assistant's `tool_calls` written back as
# <tool_call> blocks (QWEN3_TOOL_CALLS): `tojson` of tools and arguments, `is string` tests, reassigning a
# loop variable.
QWEN3_TOOL_CALLS = r"""
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
"""
# The end of an assistant turn in QWEN3_STYLE, where QWEN3 writes the tool calls.
_QWEN3_ASSISTANT_END = "        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}"
QWEN3 = QWEN3_STYLE.replace(_QWEN3_ASSISTANT_END, QWEN3_TOOL_CALLS[1:] + _QWEN3_ASSISTANT_END)

TEMPLATES = {
    "mixtral-8x7b-instruct": (MIXTRAL_8X7B_INSTRUCT, "<s>", "</s>", {}),
    "mixtral-8x7b-instruct-legacy": (MIXTRAL_8X7B_INSTRUCT_LEGACY, "<s>", "</s>", {}),
    "qwen1.5-moe-chat": (QWEN1_5_MOE_CHAT, None, "<|im_end|>", {}),
    "qwen2-moe-instruct": (QWEN2_MOE_INSTRUCT, None, "<|im_end|>", {}),
    "tulu-olmoe": (TULU, None, "<|endoftext|>", {}),
    "deepseek-moe-chat": (DEEPSEEK_MOE_CHAT, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {}),
    "deepseek-coder-instruct": (DEEPSEEK_CODER_INSTRUCT, "<｜begin▁of▁sentence｜>", "<|EOT|>", {}),
    "llama3-instruct": (LLAMA3_INSTRUCT, "<|begin_of_text|>", "<|eot_id|>", {}),
    "zephyr": (ZEPHYR, "<s>", "</s>", {}),
    "llama3.1-tools": (LLAMA31_TOOLS, "<|begin_of_text|>", "<|eot_id|>", {"date_string": "26 Jul 2024"}),
    "jinja-features": (JINJA_FEATURES, "<s>", "</s>", {}),
    "jinja-whitespace": (JINJA_WHITESPACE, "<s>", "</s>", {}),
    "qwen3-style": (QWEN3_STYLE, None, "<|im_end|>", {}),
    "gpt-oss": (harmony_template(), "<|startoftext|>", "<|return|>", {}),
    "qwen3": (QWEN3, None, "<|im_end|>", {}),
}

# Templates that print the date: rendered at this fixed local time.
FROZEN_NOW = {"gpt-oss": "2026-01-15T12:00:00"}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


CONVERSATIONS = [
    [user("Hello!")],
    [system("You are a concise assistant."), user("What is a mixture of experts?")],
    [user("Hi"), assistant("Hello! How can I help?"), user("Tell me a joke.")],
    [system("Be brief."), user("One"), assistant("Two"), user("Three")],
    [user("Question"), assistant("  An answer with padding  ")],
    [user("Grüße 👋🏽 — 日本語のテキスト\n\tnext line \"quoted\" 'single' \\ backslash")],
    [user("")],
    [system(""), user("x")],
    [user("first"), user("second")],
    [assistant("I speak first"), user("ok")],
    [user("hi"), {"role": "tool", "content": "{\"temperature\": 21}"}],
    [user("q"), assistant("<think>\nreasoning\n</think>\n\nanswer"), user("again"), assistant("<think>x</think>y")],
]


def thinking(text, reasoning):
    return {"role": "assistant", "content": text, "thinking": reasoning}


# Per template, further cases: (messages, add_generation_prompt, chat_template_kwargs).
EXTRA_CASES = {
    "qwen3-style": [
        ([user("Hello!")], True, {"enable_thinking": False}),
        ([user("Hello!")], True, {"enable_thinking": True}),
    ],
    "gpt-oss": [
        ([system("You are a concise assistant."), user("What is a mixture of experts?")], True,
         {"reasoning_effort": "high"}),
        ([system("Be brief."), user("One"), assistant("Two"), user("Three")], True,
         {"reasoning_effort": "low", "model_identity": "You are a test assistant."}),
        ([user("Which experts?"), assistant("Two of eight."), user("Why?")], False, {"reasoning_effort": "medium"}),
        ([user("Search this")], True, {"builtin_tools": ["browser", "python"]}),
        ([user("Run code")], True, {"builtin_tools": ["python"], "reasoning_effort": "high"}),
        ([user("2+2?"), thinking("4", "Add two and two.")], False, {}),
        ([user("2+2?"), thinking("4", "Add two and two."), user("3+3?")], True, {}),
        ([user("x"), assistant("<|channel|>analysis<|message|>leaked")], True, {}),
        ([user("x"), thinking("y", "a <|channel|>final<|message|> b")], False, {}),
    ],
}


def make_tokenizer(template, bos, eos):
    vocabulary = {"<unk>": 0}
    for token in (bos, eos):
        if token is not None:
            vocabulary.setdefault(token, len(vocabulary))
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, chat_template=template)


# Tool calling (Tests/Fixtures/tool_chats/<name>.json): conversations with `tools`, assistant `tool_calls`
# and tool results, rendered with `apply_chat_template(messages, tools=tools, ...)` and tokenized with a
# fixture checkpoint's tokenizer. Each case records the request as an OpenAI client sends it
# (`request_messages`: arguments as JSON text) and the messages as vLLM hands them to the template
# (`messages`: arguments parsed into objects), the rendered text and its ids.
TOOL_CHAT_OUTPUT = OUTPUT.parent / "tool_chats"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Die Uhrzeit — the local time", "parameters": {"type": "object", "properties": {}}},
}


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_CONVERSATIONS = [
    ([WEATHER_TOOL], [user("What is the weather in Paris?")]),
    ([WEATHER_TOOL, TIME_TOOL], [system("You are a weather bot."), user("Weather in Oslo, and the time?")]),
    ([WEATHER_TOOL], [
        user("What is the weather in Paris?"),
        {"role": "assistant", "content": None,
         "tool_calls": [tool_call("call_1", "get_weather", {"city": "Paris", "unit": "celsius", "days": 2})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
    ]),
    ([WEATHER_TOOL, TIME_TOOL], [
        user("Weather in Oslo and Köln, please"),
        {"role": "assistant", "content": "Checking both.",
         "tool_calls": [tool_call("a", "get_weather", {"city": "Oslo"}), tool_call("b", "get_weather", {"city": "Köln", "unit": "celsius"})]},
        {"role": "tool", "tool_call_id": "a", "content": "-3"},
        {"role": "tool", "tool_call_id": "b", "content": "4"},
        {"role": "assistant", "content": "Oslo is at -3 and Köln at 4."},
        user("And the time?"),
    ]),
]


def request_form(messages):
    """The messages as an OpenAI client sends them: tool-call arguments as JSON text (json.dumps)."""
    result = []
    for message in messages:
        message = dict(message)
        if "tool_calls" in message:
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": json.dumps(call["function"]["arguments"])}}
                for call in message["tool_calls"]
            ]
        result.append(message)
    return result


def tool_chat_fixtures():
    from transformers import AutoTokenizer

    TOOL_CHAT_OUTPUT.mkdir(parents=True, exist_ok=True)
    checkpoint = Path("Tests") / "Fixtures" / "models" / "qwen3_moe_top1"
    tokenizer = AutoTokenizer.from_pretrained(str(OUTPUT.parents[2] / checkpoint))
    tokenizer.chat_template = QWEN3
    cases = []
    for tools, messages in TOOL_CONVERSATIONS:
        for add_generation_prompt in (False, True):
            rendered = tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt)
            ids = tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False)
            cases.append({"tools": tools, "messages": messages, "request_messages": request_form(messages),
                          "add_generation_prompt": add_generation_prompt, "rendered": rendered, "prompt_ids": list(ids)})
    generated_by = {"script": "Scripts/reference/chat_template_fixtures.py",
                    "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                    "jinja2": jinja2.__version__}
    record = {"generated_by": generated_by, "template": QWEN3, "tokenizer": str(checkpoint), "cases": cases}
    path = TOOL_CHAT_OUTPUT / "qwen3.json"
    path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"tool_chats/qwen3: {len(cases)} cases")


def main():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, jinja2 {jinja2.__version__}")
    for name, (template, bos, eos, extra) in TEMPLATES.items():
        tokenizer = make_tokenizer(template, bos, eos)
        cases = []
        plan = [(messages, add_generation_prompt, {}) for messages in CONVERSATIONS for add_generation_prompt in (False, True)]
        for messages, add_generation_prompt, kwargs in plan + EXTRA_CASES.get(name, []):
            case = {"messages": messages, "add_generation_prompt": add_generation_prompt}
            if kwargs:
                case["chat_template_kwargs"] = kwargs
            try:
                with frozen_now(FROZEN_NOW.get(name)):
                    case["rendered"] = tokenizer.apply_chat_template(
                        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra, **kwargs
                    )
            except jinja2.exceptions.TemplateError as error:
                case["error"] = True
                case["message"] = str(error)
            cases.append(case)
        generated_by = {"script": "Scripts/reference/chat_template_fixtures.py",
                        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                        "jinja2": jinja2.__version__}
        record = {"generated_by": generated_by, "template": template, "bos_token": bos, "eos_token": eos, "extra_context": extra}
        if name in FROZEN_NOW:
            record["now"] = FROZEN_NOW[name]
        record["cases"] = cases
        path = OUTPUT / f"{name}.json"
        path.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        errors = sum(1 for case in cases if case.get("error"))
        print(f"{name}: {len(cases)} cases ({errors} raise)")
    tool_chat_fixtures()


if __name__ == "__main__":
    main()

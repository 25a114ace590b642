// Which fields each route reads, and why the OpenAI and vLLM fields it does not read are refused.
// The rule: a field is honoured or refused with a 400 naming it, never accepted and ignored; a field
// nobody knows is refused too, so a typo (`max_token`) is not silently dropped. `null` counts as
// absent, so clients that send every optional field as null pass.

/// The field tables of the generation and tokenize routes.
package enum RequestFields {
    /// Fields both generation routes read (each is checked by value in `GenerationPlan`: some are
    /// honoured only for the values this server implements, `best_of: 1`, `use_beam_search: false`, ...).
    static let generation: Set<String> = [
        "model", "max_tokens", "n", "seed", "stop", "stream", "stream_options", "temperature", "top_p", "top_k",
        "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "logprobs", "min_tokens",
        "ignore_eos", "stop_token_ids", "include_stop_str_in_output", "skip_special_tokens", "response_format", "user",
        "use_beam_search", "priority", "request_id", "allowed_token_ids", "add_special_tokens", "store",
        "service_tier",
    ]

    /// The fields /v1/completions reads.
    package static let completions: Set<String> = generation.union(["prompt", "echo", "suffix", "best_of"])

    /// The fields /v1/chat/completions reads.
    package static let chat: Set<String> = generation.union([
        "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
        "add_generation_prompt", "continue_final_message", "chat_template_kwargs", "echo",
    ])

    /// Fields of OpenAI's or vLLM's request types that this server does not implement, with the reason.
    package static let refused: [String: String] = [
        "documents": "retrieval documents are not passed to chat templates here",
        "chat_template": "the checkpoint's chat template is used; a template in the request is not run",
        "mm_processor_kwargs": "the served models take text only",
        "guided_json": "use response_format {\"type\": \"json_schema\", \"json_schema\": {\"schema\": ...}}",
        "guided_regex": "regular-expression constraints are not implemented; response_format takes JSON schemas",
        "guided_choice": "choice constraints are not implemented; response_format takes JSON schemas (enum)",
        "guided_grammar": "grammar constraints are not implemented; response_format takes JSON schemas",
        "guided_decoding_backend": "there is one constrained-decoding implementation, used by response_format",
        "guided_whitespace_pattern": "JSON output is constrained to the schema's tokens with JSON's whitespace",
        "structural_tag": "structural tags are not implemented",
        "structured_outputs": "use response_format (json_object or json_schema)",
        "bad_words": "bad-word lists are not implemented; logit_bias can forbid single tokens",
        "logits_processors": "custom logits processors are not run",
        "prompt_logprobs": "prompt logprobs are not computed",
        "return_tokens_as_token_ids": "logprobs name tokens by their text",
        "return_token_ids": "responses do not carry token ids; /tokenize gives a prompt's",
        "length_penalty": "it applies to beam search, which is not implemented",
        "truncate_prompt_tokens": "prompts are not truncated; a prompt too long for the context is refused",
        "reasoning_effort": "the server has no reasoning parser",
        "include_reasoning": "the server has no reasoning parser",
        "modalities": "the output is text only",
        "audio": "the output is text only",
        "prediction": "predicted outputs are not implemented",
        "web_search_options": "the server does not search the web",
        "functions": "it is deprecated by OpenAI; use tools",
        "function_call": "it is deprecated by OpenAI; use tool_choice",
        "metadata": "completions are not stored (store is false)",
        "verbosity": "the server has no verbosity control",
        "prompt_cache_key": "the server has no prompt cache",
        "safety_identifier": "the server does not report to a safety system; user is written to the access log",
        "cache_salt": "the server has no prefix cache",
        "kv_transfer_params": "KV caches are not transferred between servers",
        "vllm_xargs": "no extension arguments are read",
        "prompt_embeds": "prompts are text or token ids",
        "spaces_between_special_tokens":
            "text is decoded as tokenizer.json's decoder writes it (vLLM's fast-tokenizer detokenizer ignores it too)",
    ]

    /// The fields /tokenize reads: a prompt, or chat messages with the chat options.
    package static let tokenize: Set<String> = [
        "model", "prompt", "messages", "add_special_tokens", "add_generation_prompt", "return_token_strs", "tools",
        "continue_final_message", "chat_template_kwargs",
    ]

    /// The fields /detokenize reads.
    package static let detokenize: Set<String> = ["model", "tokens"]

    /// The fields of one chat message.
    package static let message: Set<String> = ["role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"]

    /// Message fields of OpenAI's API this server does not read.
    package static let refusedMessageFields: [String: String] = [
        "refusal": "an assistant's refusal is not passed to chat templates here",
        "audio": "messages are text only",
        "function_call": "it is deprecated by OpenAI; use tool_calls",
    ]
}

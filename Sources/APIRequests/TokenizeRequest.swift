// /tokenize and /detokenize bodies, in vLLM's shapes (its `TokenizeCompletionRequest`,
// `TokenizeChatRequest` and `DetokenizeRequest`): a prompt or chat messages in, token ids out, and back.
package import Coordinator
package import Tokenization

/// A checked /tokenize body.
package struct TokenizeRequest: Sendable, Equatable {
    package enum Input: Sendable, Equatable {
        /// Text, encoded with the tokenizer's special tokens when `addSpecialTokens`.
        case prompt(String, addSpecialTokens: Bool)
        /// Messages (and tools) rendered with the chat template, then encoded (special tokens only as
        /// the template writes them, unless `addSpecialTokens`).
        case chat(ChatRendering, continueFinalMessage: Bool, addSpecialTokens: Bool)
    }
    package var input: Input
    /// Report each id's token string too (`token_strs`).
    package var returnTokenStrings: Bool

    /// Parses a /tokenize body: `prompt` (with `add_special_tokens`, default true) or `messages`
    /// (with `tools`, `add_generation_prompt`, default true, `continue_final_message`,
    /// `add_special_tokens`, default false, and `chat_template_kwargs`), as vLLM.
    /// - Throws: `APIError` (400) naming the field; fields vLLM takes that this server does not
    ///   implement (`chat_template`, ...) and unknown ones are refused by name.
    package static func parse(
        _ body: JSONObject, contextLength: Int, tokenizer: Tokenizer
    ) throws(APIError) -> TokenizeRequest {
        try body.refuseFields(except: RequestFields.tokenize, refused: RequestFields.refused, what: "POST /tokenize")
        let returnTokenStrings = try body.bool("return_token_strs") ?? false
        if body["messages"] != nil {
            guard body["prompt"] == nil else {
                throw .invalidRequest(param: "prompt", message: "give either prompt or messages, not both")
            }
            var rendering = try GenerationPlan.parseChatRendering(body, tools: try GenerationPlan.parseTools(body))
            rendering.arguments = try GenerationPlan.parseChatTemplateArguments(body, tokenizer: tokenizer)
            let size =
                rendering.messages.reduce(0) { $0 + $1.content.utf8.count } + GenerationPlan.textByteCount(rendering.arguments)
            guard size <= GenerationPlan.maxPromptBytes(contextLength: contextLength) else {
                throw .invalidRequest(param: "messages", message: "the messages' content is \(size) bytes; shorten it")
            }
            return TokenizeRequest(
                input: .chat(
                    rendering, continueFinalMessage: try body.bool("continue_final_message") ?? false,
                    addSpecialTokens: try body.bool("add_special_tokens") ?? false),
                returnTokenStrings: returnTokenStrings)
        }
        for field in ["tools", "add_generation_prompt", "continue_final_message"] where body[field] != nil {
            throw .invalidRequest(param: field, message: "\(field) applies to messages; a prompt is not rendered with the chat template")
        }
        guard let prompt = try body.string("prompt") else {
            throw .invalidRequest(param: "prompt", message: "prompt (a string) or messages is required")
        }
        guard prompt.utf8.count <= GenerationPlan.maxPromptBytes(contextLength: contextLength) else {
            throw .invalidRequest(param: "prompt", message: "prompt is \(prompt.utf8.count) bytes; shorten it")
        }
        return TokenizeRequest(
            input: .prompt(prompt, addSpecialTokens: try body.bool("add_special_tokens") ?? true),
            returnTokenStrings: returnTokenStrings)
    }

    /// The ids, as vLLM computes them: a chat is rendered, then encoded with `add_special_tokens`
    /// (false by default: the template writes BOS itself, as transformers' `apply_chat_template`).
    /// - Parameter render: the chat template (`GenerationService.applyChatTemplate`).
    /// - Throws: `APIError` (400): the template's refusal, or tools for a template whose tool calls
    ///   the server cannot parse (as /v1/chat/completions refuses them).
    package func tokenIDs(
        _ tokenizer: Tokenizer, render: (ChatRendering) throws(SubmitError) -> String
    ) throws(APIError) -> [Int32] {
        switch input {
        case .prompt(let text, let addSpecialTokens):
            return tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
        case .chat(let rendering, let continueFinalMessage, let addSpecialTokens):
            if !(rendering.tools ?? []).isEmpty && !tokenizer.chatTemplateWritesToolCallTags {
                throw GenerationPlan.unsupportedTools
            }
            let text = try GenerationPlan.renderChat(rendering, continueFinalMessage: continueFinalMessage, render)
            return tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
        }
    }
}

/// /tokenize's answer: vLLM's `TokenizeResponse`.
package struct TokenizeResponse: Encodable, Sendable {
    package let count: Int
    package let maxModelLength: Int
    package let tokens: [Int32]
    package let tokenStrings: [String]?

    package init(count: Int, maxModelLength: Int, tokens: [Int32], tokenStrings: [String]?) {
        self.count = count
        self.maxModelLength = maxModelLength
        self.tokens = tokens
        self.tokenStrings = tokenStrings
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(count, forKey: .count)
        try container.encode(maxModelLength, forKey: .maxModelLength)
        try container.encode(tokens, forKey: .tokens)
        try container.encode(tokenStrings, forKey: .tokenStrings)
    }

    enum CodingKeys: String, CodingKey {
        case count
        case maxModelLength = "max_model_len"
        case tokens
        case tokenStrings = "token_strs"
    }
}

/// A checked /detokenize body: `tokens`, ids of the vocabulary.
package struct DetokenizeRequest: Sendable, Equatable {
    package var tokens: [Int32]

    /// - Throws: `APIError` (400) naming `tokens` or the entry at fault.
    package static func parse(_ body: JSONObject, vocabularySize: Int) throws(APIError) -> DetokenizeRequest {
        guard let value = body["tokens"] else {
            throw .invalidRequest(param: "tokens", message: "tokens is required: an array of token ids")
        }
        guard case .array(let items) = value else {
            throw .wrongType(param: "tokens", expected: "an array of token ids", got: value)
        }
        var tokens: [Int32] = []
        for (index, item) in items.enumerated() {
            guard case .number(let number) = item, let id = Int32(exactly: number), id >= 0, Int(id) < vocabularySize else {
                throw .invalidRequest(
                    param: "tokens", message: "tokens[\(index)] is not a token id; ids must be integers in 0..<\(vocabularySize)")
            }
            tokens.append(id)
        }
        return DetokenizeRequest(tokens: tokens)
    }
}

/// /detokenize's answer: vLLM's `DetokenizeResponse`.
package struct DetokenizeResponse: Encodable, Sendable {
    package let prompt: String
    package init(prompt: String) { self.prompt = prompt }
}

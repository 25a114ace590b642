// /tokenize and /detokenize bodies, in vLLM's shapes (its `TokenizeCompletionRequest`,
// `TokenizeChatRequest` and `DetokenizeRequest`): a prompt or chat messages in, token ids out, and back.
package import Coordinator
package import Tokenization

/// A checked /tokenize body.
package struct TokenizeRequest: Sendable, Equatable {
    package enum Input: Sendable, Equatable {
        /// Text, encoded with the tokenizer's special tokens when `addSpecialTokens`.
        case prompt(String, addSpecialTokens: Bool)
        /// Messages rendered with the chat template and its arguments (`chat_template_kwargs`), then
        /// encoded (special tokens only as the template writes them, unless `addSpecialTokens`).
        case chat(
            [ChatMessage], addGenerationPrompt: Bool, addSpecialTokens: Bool,
            arguments: ChatTemplateArguments = ChatTemplateArguments())
    }
    package var input: Input
    /// Report each id's token string too (`token_strs`).
    package var returnTokenStrings: Bool

    /// Parses a /tokenize body: `prompt` (with `add_special_tokens`, default true) or `messages`
    /// (with `add_generation_prompt`, default true, `add_special_tokens`, default false, and
    /// `chat_template_kwargs`), as vLLM.
    /// - Throws: `APIError` (400) naming the field; fields vLLM takes that this server does not
    ///   implement (`tools`, `chat_template`, `continue_final_message`) are refused by name.
    package static func parse(
        _ body: JSONObject, contextLength: Int, tokenizer: Tokenizer
    ) throws(APIError) -> TokenizeRequest {
        let returnTokenStrings = try body.bool("return_token_strs") ?? false
        if body["messages"] != nil {
            for field in ["tools", "chat_template", "mm_processor_kwargs"] where body[field] != nil {
                throw .invalidRequest(param: field, message: "\(field) is not supported; leave it out")
            }
            if try body.bool("continue_final_message") == true {
                throw .invalidRequest(
                    param: "continue_final_message", message: "continue_final_message is not supported; leave it out")
            }
            guard body["prompt"] == nil else {
                throw .invalidRequest(param: "prompt", message: "give either prompt or messages, not both")
            }
            let messages = try GenerationPlan.parseMessages(body)
            let arguments = try GenerationPlan.parseChatTemplateArguments(body, tokenizer: tokenizer)
            let size =
                messages.reduce(0) { $0 + $1.content.utf8.count } + GenerationPlan.textByteCount(arguments)
            guard size <= GenerationPlan.maxPromptBytes(contextLength: contextLength) else {
                throw .invalidRequest(param: "messages", message: "the messages' content is \(size) bytes; shorten it")
            }
            return TokenizeRequest(
                input: .chat(
                    messages, addGenerationPrompt: try body.bool("add_generation_prompt") ?? true,
                    addSpecialTokens: try body.bool("add_special_tokens") ?? false, arguments: arguments),
                returnTokenStrings: returnTokenStrings)
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
    package func tokenIDs(
        _ tokenizer: Tokenizer, render: ([ChatMessage], Bool, ChatTemplateArguments) throws(SubmitError) -> String
    ) throws(APIError) -> [Int32] {
        switch input {
        case .prompt(let text, let addSpecialTokens):
            return tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
        case .chat(let messages, let addGenerationPrompt, let addSpecialTokens, let arguments):
            let text: String
            do {
                text = try render(messages, addGenerationPrompt, arguments)
            } catch {
                throw APIError(error)
            }
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

// APIRequests: the HTTP API's request bodies, parsed and checked, and its error envelope. Pure and
// free of the HTTP server (Server adds the routes and makes `APIError` Hummingbird's
// `HTTPResponseError`), so the parsing is tested and fuzzed (Fuzz/) without building Hummingbird.
//
// Vocabulary:
// - body: the JSON of one request; `JSONObject` reads it field by field, naming the parameter at fault.
// - generation plan: a checked /v1/completions or /v1/chat/completions body, one engine request per choice.
// - envelope: OpenAI's error body `{"error": {"message", "type", "param", "code"}}` (`APIError`).
//
// What a /v1/completions or /v1/chat/completions body asks for, parsed and checked: pure (the
// tokenizer and context length come in as values), so every 400 is testable without a server.
package import Coordinator
package import Tokenization

/// The two generation endpoints; they differ in prompt, logprobs and response shapes.
package enum Endpoint: Sendable {
    case completions
    case chat
}

/// A checked generation request: the `GenerationRequest`s to submit (one per choice) and how to
/// shape the response.
package struct GenerationPlan: Sendable {
    package var endpoint: Endpoint
    package var prompt: Prompt
    package var promptTokenCount: Int
    package var maxTokens: Int
    package var sampling: SamplingParameters
    /// Choices to generate, 1...16.
    package var choiceCount: Int
    package var stop: [String]
    /// Whether to report logprobs at all.
    package var reportsLogprobs: Bool
    /// Alternatives per token to report (completions `logprobs`, chat `top_logprobs`), 0...20.
    package var topLogprobs: Int
    package var stream: Bool
    package var includeUsage: Bool
    package var ignoreEOS: Bool
    /// Penalties, `logit_bias`, `min_tokens` and the `response_format` grammar.
    package var adjustments: LogitsAdjustments

    /// The engine requests, one per choice; choice `i` gets seed `seed + i` when a seed was given.
    package var requests: [GenerationRequest] {
        (0..<choiceCount).map { index in
            var sampling = sampling
            sampling.seed = sampling.seed.map { $0 &+ UInt64(index) }
            return GenerationRequest(
                prompt: prompt, maxTokens: maxTokens, sampling: sampling, ignoreEOS: ignoreEOS,
                // The engine reports nothing for 0, so ask for one alternative when only the
                // chosen token's logprob is wanted and drop it when formatting.
                logprobs: reportsLogprobs ? max(topLogprobs, 1) : 0, stop: stop, adjustments: adjustments)
        }
    }

    /// The most alternatives per token a request may ask for.
    package static let maxTopLogprobs = 20
    /// The most choices one request may ask for.
    package static let maxChoices = 16
    package static let knownRoles = ["system", "user", "assistant", "tool"]
    /// Prompt bytes accepted per token of context. Tokens of real text average 3 to 5 bytes, and a
    /// vocabulary's longest (runs of spaces or `=`) rarely pass 64, so a prompt over this many bytes
    /// per context token cannot fit; it is refused before it costs a tokenization.
    package static let maxPromptBytesPerToken = 64

    /// The most bytes of prompt text (or of chat message contents) accepted for `contextLength`.
    package static func maxPromptBytes(contextLength: Int) -> Int {
        contextLength.multipliedReportingOverflow(by: maxPromptBytesPerToken).overflow
            ? .max : contextLength * maxPromptBytesPerToken
    }

    /// Refuses prompt text longer than `maxPromptBytes` before it is tokenized.
    /// - Throws: `APIError` (400) naming `param`, the size and the limit.
    private static func checkPromptSize(
        _ byteCount: Int, param: String, what: String, contextLength: Int
    ) throws(APIError) {
        let limit = maxPromptBytes(contextLength: contextLength)
        guard byteCount <= limit else {
            throw .invalidRequest(
                param: param,
                message: "\(what) is \(byteCount) bytes, but must be at most \(limit) bytes "
                    + "(\(maxPromptBytesPerToken) bytes for each of the model's \(contextLength) context tokens); shorten it")
        }
    }

    /// Parses a /v1/completions body. A text prompt is checked against `maxPromptBytes`, then
    /// tokenized: the plan's prompt is its token ids.
    /// - Throws: `APIError` (400) naming the parameter and its valid values.
    package static func completions(
        _ body: JSONObject, tokenizer: Tokenizer, contextLength: Int
    ) throws(APIError) -> GenerationPlan {
        if try body.bool("echo") == true {
            throw .invalidRequest(param: "echo", message: "echo is not supported; leave it out or set it to false")
        }
        // vLLM refuses suffix as well: no supported model has a fill-in-the-middle template here.
        if body["suffix"] != nil {
            throw .invalidRequest(param: "suffix", message: "suffix is not supported; leave it out")
        }
        // best_of > 1 would generate candidates and return the most likely; not implemented.
        if let bestOf = try body.integer("best_of"), bestOf != 1 {
            throw .invalidRequest(
                param: "best_of", message: "best_of is \(bestOf), but only 1 is supported; use n for several choices")
        }
        // Text is tokenized here, once, and the engine gets the ids: this runs off the request path
        // (`RequestPreparation`), and the size check comes first.
        let promptIDs: [Int32]
        switch try parsePrompt(body) {
        case .text(let text):
            try checkPromptSize(text.utf8.count, param: "prompt", what: "prompt", contextLength: contextLength)
            promptIDs = tokenizer.encode(text)
        case .tokenIDs(let ids):
            promptIDs = ids
        }
        var reportsLogprobs = false
        var topLogprobs = 0
        if let logprobs = try body.integer("logprobs") {
            guard (0...maxTopLogprobs).contains(logprobs) else {
                throw .outOfRange(param: "logprobs", value: "\(logprobs)", valid: "between 0 and \(maxTopLogprobs)")
            }
            reportsLogprobs = true
            topLogprobs = logprobs
        }
        return try common(
            body, endpoint: .completions, prompt: .tokenIDs(promptIDs), promptTokenCount: promptIDs.count,
            maxTokens: try body.integer("max_tokens"), defaultMaxTokens: 16,
            reportsLogprobs: reportsLogprobs, topLogprobs: topLogprobs, contextLength: contextLength)
    }

    /// Parses a /v1/chat/completions body; `render` applies the chat template with the request's
    /// `chat_template_kwargs`, and the prompt is the rendered text's token ids
    /// (`Tokenizer.encodeChatPrompt`: no special tokens added to the template's).
    /// - Throws: `APIError` (400) naming the parameter and its valid values.
    package static func chat(
        _ body: JSONObject, tokenizer: Tokenizer, contextLength: Int,
        render: ([ChatMessage], ChatTemplateArguments) throws(SubmitError) -> String
    ) throws(APIError) -> GenerationPlan {
        try refuseToolFields(body)
        let messages = try parseMessages(body)
        let arguments = try parseChatTemplateArguments(body, tokenizer: tokenizer)
        try checkPromptSize(
            messages.reduce(0) { $0 + $1.content.utf8.count } + textByteCount(arguments), param: "messages",
            what: "the messages' content (with chat_template_kwargs' text)", contextLength: contextLength)
        let text: String
        do {
            text = try render(messages, arguments)
        } catch {
            throw APIError(error)
        }
        // The rendered text holds the template's BOS already: encode it as apply_chat_template does.
        let promptIDs = tokenizer.encodeChatPrompt(text)
        let reportsLogprobs = try body.bool("logprobs") ?? false
        var topLogprobs = 0
        if let top = try body.integer("top_logprobs") {
            guard (0...maxTopLogprobs).contains(top) else {
                throw .outOfRange(param: "top_logprobs", value: "\(top)", valid: "between 0 and \(maxTopLogprobs)")
            }
            guard reportsLogprobs else {
                throw .invalidRequest(param: "top_logprobs", message: "top_logprobs needs logprobs: true")
            }
            topLogprobs = top
        }
        // max_completion_tokens is OpenAI's newer name; it wins when both are given.
        let maxTokensParam = body["max_completion_tokens"] != nil ? "max_completion_tokens" : "max_tokens"
        return try common(
            body, endpoint: .chat, prompt: .tokenIDs(promptIDs), promptTokenCount: promptIDs.count,
            maxTokens: try body.integer(maxTokensParam), maxTokensParam: maxTokensParam, defaultMaxTokens: nil,
            reportsLogprobs: reportsLogprobs, topLogprobs: topLogprobs, contextLength: contextLength)
    }

    /// The parameters both endpoints share.
    private static func common(
        _ body: JSONObject, endpoint: Endpoint, prompt: Prompt, promptTokenCount: Int, maxTokens: Int?,
        maxTokensParam: String = "max_tokens", defaultMaxTokens: Int?, reportsLogprobs: Bool, topLogprobs: Int,
        contextLength: Int
    ) throws(APIError) -> GenerationPlan {
        var sampling = SamplingParameters()
        // Temperature and top_p are checked as the Floats the engine samples with: a JSON number
        // beyond Float's range becomes infinity, and one below its smallest becomes 0, which the
        // engine would refuse after the request was accepted.
        if let temperature = try body.double("temperature") {
            guard temperature >= 0, Float(temperature).isFinite else {
                throw .outOfRange(
                    param: "temperature", value: "\(temperature)",
                    valid: "a number >= 0 (at most \(Float.greatestFiniteMagnitude), a 32-bit float)")
            }
            sampling.temperature = Float(temperature)
        }
        if let topP = try body.double("top_p") {
            guard topP > 0, topP <= 1, Float(topP) > 0 else {
                throw .outOfRange(
                    param: "top_p", value: "\(topP)",
                    valid: "in (0, 1] (at least \(Float.leastNonzeroMagnitude), a 32-bit float)")
            }
            sampling.topP = Float(topP)
        }
        if let topK = try body.integer("top_k") {
            // vLLM takes -1 for "all tokens" too.
            guard topK >= -1 else {
                throw .outOfRange(param: "top_k", value: "\(topK)", valid: ">= 0 (0 or -1 keeps all tokens)")
            }
            sampling.topK = max(topK, 0)
        }
        if let seed = try body.integer("seed") {
            sampling.seed = UInt64(bitPattern: Int64(seed))
        }
        let choiceCount = try body.integer("n") ?? 1
        guard (1...maxChoices).contains(choiceCount) else {
            throw .outOfRange(param: "n", value: "\(choiceCount)", valid: "between 1 and \(maxChoices)")
        }
        let stop = try parseStop(body)

        guard promptTokenCount > 0 else {
            throw .invalidRequest(param: "prompt", message: "the prompt is empty; give at least one token")
        }
        // The refusals below read as vLLM's, which clients and operators grep for.
        let input = endpoint == .chat ? "messages" : "prompt"
        guard promptTokenCount < contextLength else {
            throw .invalidRequest(
                param: input,
                message: "This model's maximum context length is \(contextLength) tokens. However, your request has "
                    + "\(promptTokenCount) input tokens, which leaves no room for a generated token. "
                    + "Please reduce the length of the \(input).")
        }
        let resolvedMaxTokens: Int
        if let maxTokens {
            guard maxTokens >= 1 else {
                throw .outOfRange(param: maxTokensParam, value: "\(maxTokens)", valid: "at least 1")
            }
            // Compared as a difference: the sum overflows for a max_tokens near Int.max (a trap).
            guard maxTokens <= contextLength - promptTokenCount else {
                let (total, overflow) = promptTokenCount.addingReportingOverflow(maxTokens)
                throw .invalidRequest(
                    param: maxTokensParam,
                    message: "This model's maximum context length is \(contextLength) tokens. However, you requested "
                        + "\(overflow ? "more than \(Int.max)" : "\(total)") tokens (\(promptTokenCount) in the \(input), "
                        + "\(maxTokens) in the completion). Please reduce the length of the \(input) or completion: "
                        + "\(maxTokensParam) can be at most \(contextLength - promptTokenCount).")
            }
            resolvedMaxTokens = maxTokens
        } else {
            // Unset: as vLLM, up to the context (or OpenAI's legacy 16 for completions).
            resolvedMaxTokens = min(defaultMaxTokens ?? .max, contextLength - promptTokenCount)
        }

        let stream = try body.bool("stream") ?? false
        let includeUsage = try body.object("stream_options")?.bool("include_usage") ?? false
        let ignoreEOS = try body.bool("ignore_eos") ?? false
        let adjustments = try parseAdjustments(body, maxTokens: resolvedMaxTokens, ignoreEOS: ignoreEOS)
        return GenerationPlan(
            endpoint: endpoint, prompt: prompt, promptTokenCount: promptTokenCount, maxTokens: resolvedMaxTokens,
            sampling: sampling, choiceCount: choiceCount, stop: stop, reportsLogprobs: reportsLogprobs,
            topLogprobs: topLogprobs, stream: stream, includeUsage: includeUsage, ignoreEOS: ignoreEOS,
            adjustments: adjustments)
    }

    /// `prompt`: a string, an array of token ids, or an array holding one string.
    private static func parsePrompt(_ body: JSONObject) throws(APIError) -> Prompt {
        guard let value = body["prompt"] else {
            throw .invalidRequest(param: "prompt", message: "prompt is required: a string or an array of token ids")
        }
        let expected = "a string, an array of token ids, or an array of one string"
        switch value {
        case .string(let text):
            guard !text.isEmpty else {
                throw .invalidRequest(param: "prompt", message: "prompt is empty; give at least one character")
            }
            return .text(text)
        case .array(let items):
            if items.count == 1, case .string(let text) = items[0] {
                guard !text.isEmpty else {
                    throw .invalidRequest(param: "prompt", message: "prompt is empty; give at least one character")
                }
                return .text(text)
            }
            guard !items.isEmpty else {
                throw .invalidRequest(param: "prompt", message: "prompt is an empty array; give at least one token id")
            }
            var ids: [Int32] = []
            for (index, item) in items.enumerated() {
                guard case .number(let number) = item, let id = Int32(exactly: number), id >= 0 else {
                    if case .string = item {
                        throw .invalidRequest(
                            param: "prompt",
                            message: "prompt holds \(items.count) strings, but batched prompts are not "
                                + "supported; send one prompt per request")
                    }
                    throw .invalidRequest(
                        param: "prompt",
                        message: "prompt[\(index)] is not a token id (an integer >= 0); prompt must be \(expected)")
                }
                ids.append(id)
            }
            return .tokenIDs(ids)
        default:
            throw .wrongType(param: "prompt", expected: expected, got: value)
        }
    }

    /// `messages`: a non-empty array of `{role, content}` with a known role; content is a string or
    /// an array of `{type: "text", text}` parts.
    static func parseMessages(_ body: JSONObject) throws(APIError) -> [ChatMessage] {
        guard let value = body["messages"] else {
            throw .invalidRequest(param: "messages", message: "messages is required: an array of {role, content}")
        }
        guard case .array(let items) = value else {
            throw .wrongType(param: "messages", expected: "an array of {role, content}", got: value)
        }
        guard !items.isEmpty else {
            throw .invalidRequest(param: "messages", message: "messages is empty; give at least one message")
        }
        var messages: [ChatMessage] = []
        for (index, item) in items.enumerated() {
            let message = try JSONObject(item, path: "messages[\(index)].")
            guard let role = try message.string("role") else {
                throw .invalidRequest(param: message.param("role"), message: "\(message.param("role")) is required")
            }
            guard knownRoles.contains(role) else {
                throw .invalidRequest(
                    param: message.param("role"),
                    message:
                        "\(message.param("role")) is '\(role)', but must be one of \(knownRoles.joined(separator: ", "))"
                )
            }
            let content: String
            switch message["content"] {
            case nil:
                content = ""
            case .string(let text)?:
                content = text
            case .array(let parts)?:
                var texts: [String] = []
                for (partIndex, part) in parts.enumerated() {
                    let partObject = try JSONObject(part, path: message.param("content[\(partIndex)]") + ".")
                    guard try partObject.string("type") == "text", let text = try partObject.string("text") else {
                        throw .invalidRequest(
                            param: message.param("content[\(partIndex)]"),
                            message: "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported")
                    }
                    texts.append(text)
                }
                content = texts.joined()
            case let other?:
                throw .wrongType(
                    param: message.param("content"), expected: "a string or an array of text parts", got: other)
            }
            messages.append(ChatMessage(role: role, content: content))
        }
        return messages
    }

    /// Tool calling is not implemented: `tools` (non-empty) and `tool_choice` other than "none" or
    /// "auto" (which, with no tools, ask for plain text) are refused by name rather than ignored.
    private static func refuseToolFields(_ body: JSONObject) throws(APIError) {
        if let tools = body["tools"] {
            guard case .array(let items) = tools else {
                throw .wrongType(param: "tools", expected: "an array of tools", got: tools)
            }
            if !items.isEmpty {
                throw .invalidRequest(param: "tools", message: "tools is not supported; leave it out or send an empty array")
            }
        }
        if let choice = body["tool_choice"] {
            guard case .string(let name) = choice, name == "none" || name == "auto" else {
                throw .invalidRequest(
                    param: "tool_choice",
                    message: "tool_choice must be \"none\" or \"auto\" (tools are not supported, so both give plain text)")
            }
        }
    }

    /// `stop`: a string or an array of non-empty strings.
    private static func parseStop(_ body: JSONObject) throws(APIError) -> [String] {
        let stop: [String]
        switch body["stop"] {
        case nil:
            return []
        case .string(let text)?:
            stop = [text]
        case .array(let items)?:
            var strings: [String] = []
            for item in items {
                guard case .string(let text) = item else {
                    throw .wrongType(param: "stop", expected: "a string or an array of strings", got: item)
                }
                strings.append(text)
            }
            stop = strings
        case let other?:
            throw .wrongType(param: "stop", expected: "a string or an array of strings", got: other)
        }
        guard !stop.contains("") else {
            throw .invalidRequest(param: "stop", message: "stop strings must not be empty")
        }
        return stop
    }
}

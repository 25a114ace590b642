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
import Foundation
package import Tokenization

/// The two generation endpoints; they differ in prompt, logprobs and response shapes.
package enum Endpoint: Sendable {
    case completions
    case chat
}

/// What a chat template renders: the conversation, the tools, and whether to open the assistant's turn.
package struct ChatRendering: Sendable, Equatable {
    package var messages: [ChatMessage]
    /// The request's `tools`, as the template gets them; nil when it has none.
    package var tools: [OrderedJSON]?
    package var addGenerationPrompt: Bool
    /// The request's `chat_template_kwargs`: further template variables.
    package var arguments: ChatTemplateArguments

    package init(
        messages: [ChatMessage], tools: [OrderedJSON]? = nil, addGenerationPrompt: Bool = true,
        arguments: ChatTemplateArguments = ChatTemplateArguments()
    ) {
        self.messages = messages
        self.tools = tools
        self.addGenerationPrompt = addGenerationPrompt
        self.arguments = arguments
    }
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
    /// `stop_token_ids`.
    package var stopTokenIDs: Set<Int32> = []
    /// `include_stop_str_in_output`.
    package var includeStopInText = false
    /// `skip_special_tokens` (true unless the client says otherwise).
    package var skipSpecialTokens = true
    /// `stream_options.continuous_usage_stats`: every chunk carries the usage so far.
    package var continuousUsage = false
    /// What becomes of `<tool_call>` blocks in a chat completion's text.
    package var toolCalls: ToolCallMode = .none
    /// `user`: the client's end-user id, written to the access log.
    package var user: String?
    /// `request_id`: the response's id is the endpoint's prefix and this, instead of a random one.
    package var requestID: String?

    /// The engine requests, one per choice; choice `i` gets seed `seed + i` when a seed was given.
    package var requests: [GenerationRequest] {
        (0..<choiceCount).map { index in
            var sampling = sampling
            sampling.seed = sampling.seed.map { $0 &+ UInt64(index) }
            var request = GenerationRequest(
                prompt: prompt, maxTokens: maxTokens, sampling: sampling, ignoreEOS: ignoreEOS,
                // The engine reports nothing for 0, so ask for one alternative when only the
                // chosen token's logprob is wanted and drop it when formatting.
                logprobs: reportsLogprobs ? max(topLogprobs, 1) : 0, stop: stop, adjustments: adjustments)
            request.stopTokenIDs = stopTokenIDs
            request.includeStopInText = includeStopInText
            request.skipSpecialTokens = skipSpecialTokens
            return request
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
        try body.refuseFields(except: RequestFields.completions, refused: RequestFields.refused, what: "POST /v1/completions")
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
            // As vLLM's completions: the tokenizer's special tokens (BOS) are added unless asked not to.
            promptIDs = tokenizer.encode(text, addSpecialTokens: try body.bool("add_special_tokens") ?? true)
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
    /// `tools` and `chat_template_kwargs`, and the prompt is the rendered text's token ids (`Tokenizer.encodeChatPrompt`: no special tokens added to the
    /// template's, unless `add_special_tokens`).
    /// - Throws: `APIError` (400) naming the parameter and its valid values.
    package static func chat(
        _ body: JSONObject, tokenizer: Tokenizer, contextLength: Int,
        render: (ChatRendering) throws(SubmitError) -> String
    ) throws(APIError) -> GenerationPlan {
        try body.refuseFields(except: RequestFields.chat, refused: RequestFields.refused, what: "POST /v1/chat/completions")
        if try body.bool("echo") == true {
            throw .invalidRequest(param: "echo", message: "echo is not supported for chat; leave it out or set it to false")
        }
        if case .array(let items)? = body["tools"], !items.isEmpty, !tokenizer.chatTemplateWritesToolCallTags {
            throw unsupportedTools
        }
        let tools = try parseTools(body)
        let (toolCalls, toolGrammar) = try toolCallMode(
            body, tools: tools, templateWritesToolCallTags: tokenizer.chatTemplateWritesToolCallTags)
        var rendering = try parseChatRendering(body, tools: tools)
        rendering.arguments = try parseChatTemplateArguments(body, tokenizer: tokenizer)
        try checkPromptSize(
            rendering.messages.reduce(0) { $0 + $1.content.utf8.count } + textByteCount(rendering.arguments),
            param: "messages", what: "the messages' content (with chat_template_kwargs' text)", contextLength: contextLength)
        let text = try renderChat(rendering, continueFinalMessage: try body.bool("continue_final_message") ?? false, render)
        // The rendered text holds the template's BOS already: encode it as apply_chat_template does.
        let promptIDs =
            try body.bool("add_special_tokens") == true
            ? tokenizer.encode(text, addSpecialTokens: true) : tokenizer.encodeChatPrompt(text)
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
        var plan = try common(
            body, endpoint: .chat, prompt: .tokenIDs(promptIDs), promptTokenCount: promptIDs.count,
            maxTokens: try body.integer(maxTokensParam), maxTokensParam: maxTokensParam, defaultMaxTokens: nil,
            reportsLogprobs: reportsLogprobs, topLogprobs: topLogprobs, contextLength: contextLength)
        plan.toolCalls = toolCalls
        if let toolGrammar {
            // The arguments' JSON ends the completion, as with a JSON response_format.
            for (field, given) in [
                ("response_format", plan.adjustments.grammar != nil), ("ignore_eos", plan.ignoreEOS),
                ("min_tokens", plan.adjustments.minTokens > 0),
            ] where given {
                throw .invalidRequest(param: field, message: "\(field) cannot be combined with a tool_choice naming a function")
            }
            plan.adjustments.grammar = toolGrammar
        }
        return plan
    }

    /// `messages`, `add_generation_prompt` (true unless false) and the tools, ready to render.
    /// - Throws: `APIError` (400) naming the field.
    static func parseChatRendering(_ body: JSONObject, tools: [OrderedJSON]?) throws(APIError) -> ChatRendering {
        ChatRendering(
            messages: try parseMessages(body), tools: tools,
            addGenerationPrompt: try body.bool("add_generation_prompt") ?? true)
    }

    /// Renders the conversation; with `continueFinalMessage`, the text ends with the last message's
    /// content, so the model continues it (transformers' `continue_final_message`).
    /// - Throws: `APIError` (400): the template's refusal, or `continue_final_message` combined with
    ///   `add_generation_prompt` or a final message the rendered text does not hold.
    static func renderChat(
        _ rendering: ChatRendering, continueFinalMessage: Bool, _ render: (ChatRendering) throws(SubmitError) -> String
    ) throws(APIError) -> String {
        if continueFinalMessage && rendering.addGenerationPrompt {
            throw .invalidRequest(
                param: "continue_final_message",
                message: "continue_final_message and add_generation_prompt cannot both be true: set add_generation_prompt to "
                    + "false to continue the final message")
        }
        let text: String
        do {
            text = try render(rendering)
        } catch {
            throw APIError(error)
        }
        guard continueFinalMessage, let final = rendering.messages.last?.content else { return text }
        // As transformers: cut after the last occurrence of the final message, keeping its leading
        // spaces unless the template trimmed them.
        let stripped = final.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !stripped.isEmpty else { return text }
        guard let location = text.range(of: stripped, options: [.backwards, .literal]) else {
            throw .invalidRequest(
                param: "continue_final_message",
                message: "continue_final_message is set, but the final message does not appear in the rendered chat")
        }
        if final.first?.isWhitespace != true, text[location.lowerBound...].hasPrefix(final) {
            return String(text[..<location.lowerBound]) + final
        }
        return String(text[..<location.upperBound])
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
        if let minP = try body.double("min_p") {
            guard (0...1).contains(minP) else {
                throw .outOfRange(param: "min_p", value: "\(minP)", valid: "in [0, 1] (0 keeps all tokens)")
            }
            sampling.minP = Float(minP)
        }
        if let seed = try body.integer("seed") {
            sampling.seed = UInt64(bitPattern: Int64(seed))
        }
        if try body.bool("use_beam_search") == true {
            throw .invalidRequest(param: "use_beam_search", message: "use_beam_search is not supported; leave it out or set it to false")
        }
        if let priority = try body.integer("priority"), priority != 0 {
            throw .invalidRequest(
                param: "priority",
                message: "priority is \(priority), but only 0 is supported: requests are scheduled in arrival order")
        }
        if try body.bool("store") == true {
            throw .invalidRequest(param: "store", message: "store is not supported: completions are not stored; leave it out or set it to false")
        }
        if let tier = try body.string("service_tier"), tier != "auto", tier != "default" {
            throw .invalidRequest(
                param: "service_tier", message: "service_tier is '\(tier)', but this server has one tier: \"auto\" or \"default\"")
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
        var includeUsage = false
        var continuousUsage = false
        if let options = try body.object("stream_options") {
            try options.refuseFields(except: ["include_usage", "continuous_usage_stats"], what: "stream_options")
            includeUsage = try options.bool("include_usage") ?? false
            continuousUsage = try options.bool("continuous_usage_stats") ?? false
            // As vLLM: the options shape a stream, and a request without one has none to shape.
            guard stream else {
                throw .invalidRequest(param: "stream_options", message: "stream_options can only be given when stream is true")
            }
        }
        let ignoreEOS = try body.bool("ignore_eos") ?? false
        let adjustments = try parseAdjustments(body, maxTokens: resolvedMaxTokens, ignoreEOS: ignoreEOS)
        var plan = GenerationPlan(
            endpoint: endpoint, prompt: prompt, promptTokenCount: promptTokenCount, maxTokens: resolvedMaxTokens,
            sampling: sampling, choiceCount: choiceCount, stop: stop, reportsLogprobs: reportsLogprobs,
            topLogprobs: topLogprobs, stream: stream, includeUsage: includeUsage, ignoreEOS: ignoreEOS,
            adjustments: adjustments)
        plan.continuousUsage = continuousUsage
        plan.stopTokenIDs = try parseTokenIDs(body, "stop_token_ids")
        plan.includeStopInText = try body.bool("include_stop_str_in_output") ?? false
        plan.skipSpecialTokens = try body.bool("skip_special_tokens") ?? true
        if let user = try body.string("user") {
            guard user.utf8.count <= maxUserBytes else {
                throw .invalidRequest(param: "user", message: "user is \(user.utf8.count) bytes, but must be at most \(maxUserBytes)")
            }
            plan.user = user
        }
        if let requestID = try body.string("request_id") {
            guard !requestID.isEmpty, requestID.utf8.count <= maxUserBytes,
                requestID.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.:".unicodeScalars.contains($0)) })
            else {
                throw .invalidRequest(
                    param: "request_id",
                    message: "request_id must be 1 to \(maxUserBytes) characters of letters, digits, '-', '_', '.' or ':'")
            }
            plan.requestID = requestID
        }
        return plan
    }

    /// The longest `user` and `request_id` accepted, in bytes; they are written to logs.
    package static let maxUserBytes = 256

    /// An array of token ids (integers >= 0); empty when absent. The engine checks them against the vocabulary.
    static func parseTokenIDs(_ body: JSONObject, _ name: String) throws(APIError) -> Set<Int32> {
        guard let value = body[name] else { return [] }
        guard case .array(let items) = value else { throw .wrongType(param: name, expected: "an array of token ids", got: value) }
        var ids: Set<Int32> = []
        for (index, item) in items.enumerated() {
            guard case .number(let number) = item, let id = Int32(exactly: number), id >= 0 else {
                throw .invalidRequest(param: name, message: "\(name)[\(index)] is not a token id (an integer >= 0)")
            }
            ids.insert(id)
        }
        return ids
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
    /// an array of `{type: "text", text}` parts. `name`, `tool_call_id`, `reasoning_content` (strings)
    /// and an assistant's `tool_calls` are passed to the chat template, as vLLM passes them; other
    /// message fields are refused by name.
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
        // Read in the client's member order only when a message has tool calls (their arguments
        // are printed back by the template).
        var ordered: [OrderedJSON]?
        for (index, item) in items.enumerated() {
            let message = try JSONObject(item, path: "messages[\(index)].")
            try message.refuseFields(
                except: RequestFields.message, refused: RequestFields.refusedMessageFields, what: "a chat message")
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
            var members: [OrderedJSON.Member] = []
            for name in ["name", "tool_call_id", "reasoning_content"] {
                if let text = try message.string(name) { members.append(.init(name, .string(text))) }
            }
            if message["tool_calls"] != nil {
                guard role == "assistant" else {
                    throw .invalidRequest(
                        param: message.param("tool_calls"), message: "\(message.param("tool_calls")) is only for assistant messages")
                }
                if ordered == nil {
                    guard case .array(let all)? = try body.orderedField("messages") else {
                        preconditionFailure("messages was read as an array already")
                    }
                    ordered = all
                }
                let calls = ordered![index]["tool_calls"] ?? .null
                members.append(.init("tool_calls", try templateToolCalls(calls, param: message.param("tool_calls"))))
            }
            messages.append(ChatMessage(role: role, content: content, templateMembers: members))
        }
        return messages
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

// Turning a request's generation events into OpenAI responses: whole responses, or stream chunks
// one event at a time. Pure: events in, JSON values out; the handlers do the I/O.
import APIRequests
import Coordinator
import Tokenization

// MARK: Response JSON

/// `usage` of a response.
struct UsageJSON: Encodable, Equatable {
    let promptTokens: Int
    let completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// Completions logprobs: parallel arrays over the generated tokens.
struct CompletionLogprobsJSON: Encodable, Equatable {
    var tokens: [String] = []
    var tokenLogprobs: [Double] = []
    var topLogprobs: [[String: Double]] = []
    var textOffset: [Int] = []
    enum CodingKeys: String, CodingKey {
        case tokens
        case tokenLogprobs = "token_logprobs"
        case topLogprobs = "top_logprobs"
        case textOffset = "text_offset"
    }
}

/// One alternative in chat logprobs.
struct ChatTopLogprobJSON: Encodable, Equatable {
    let token: String
    let logprob: Double
    let bytes: [UInt8]
}

/// One generated token in chat logprobs.
struct ChatTokenLogprobJSON: Encodable, Equatable {
    let token: String
    let logprob: Double
    let bytes: [UInt8]
    let topLogprobs: [ChatTopLogprobJSON]
    enum CodingKeys: String, CodingKey {
        case token, logprob, bytes
        case topLogprobs = "top_logprobs"
    }
}

/// `logprobs` of a choice, in the endpoint's shape.
enum LogprobsJSON: Encodable, Equatable {
    case completion(CompletionLogprobsJSON)
    case chat([ChatTokenLogprobJSON])

    private enum ChatKeys: String, CodingKey { case content }
    func encode(to encoder: any Encoder) throws {
        switch self {
        case .completion(let logprobs):
            try logprobs.encode(to: encoder)
        case .chat(let content):
            var container = encoder.container(keyedBy: ChatKeys.self)
            try container.encode(content, forKey: .content)
        }
    }
}

/// One tool call of a message or a stream delta: OpenAI's `{"index"?, "id", "type": "function",
/// "function": {"name", "arguments"}}` (`index` only in stream deltas; a delta that continues a
/// call's arguments carries only `index` and `function.arguments`).
struct ToolCallJSON: Encodable, Equatable {
    struct Function: Encodable, Equatable {
        var name: String?
        /// The arguments as JSON text (or the next piece of it, in a delta).
        let arguments: String
    }
    var index: Int?
    var id: String?
    var type: String? = "function"
    let function: Function
}

/// `message` (whole chat responses) or `delta` (chat chunks). `reasoning_content` is vLLM's field
/// for a reasoning model's chain of thought (gpt-oss's analysis channel); absent otherwise.
struct MessageJSON: Encodable, Equatable {
    var role: String?
    var content: String?
    var reasoningContent: String?
    /// Send a nil `content` as null (a whole harmony message without an answer, as vLLM) rather than leave it out.
    var nullContent = false
    var toolCalls: [ToolCallJSON]?

    enum CodingKeys: String, CodingKey {
        case role, content
        case reasoningContent = "reasoning_content"
        case toolCalls = "tool_calls"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(role, forKey: .role)
        if content == nil && nullContent {
            try container.encodeNil(forKey: .content)
        } else {
            try container.encodeIfPresent(content, forKey: .content)
        }
        try container.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
        try container.encodeIfPresent(toolCalls, forKey: .toolCalls)
    }
}

/// One element of `choices`: `text` for completions, `message` or `delta` for chat. `logprobs` and
/// `finish_reason` are always present, null when empty, as OpenAI sends them.
struct ChoiceJSON: Encodable, Equatable {
    let index: Int
    var text: String?
    var message: MessageJSON?
    var delta: MessageJSON?
    var logprobs: LogprobsJSON?
    var finishReason: String?

    enum CodingKeys: String, CodingKey {
        case index, text, message, delta, logprobs
        case finishReason = "finish_reason"
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encodeIfPresent(text, forKey: .text)
        try container.encodeIfPresent(message, forKey: .message)
        try container.encodeIfPresent(delta, forKey: .delta)
        try container.encode(logprobs, forKey: .logprobs)
        try container.encode(finishReason, forKey: .finishReason)
    }
}

/// A whole response or one stream chunk.
struct ResponseJSON: Encodable, Equatable {
    let id: String
    let object: String
    let created: Int
    let model: String
    var choices: [ChoiceJSON]
    var usage: UsageJSON?
}

// MARK: Token strings

/// The text and bytes clients see for a token id in logprobs.
struct TokenStrings: Sendable {
    let tokenizer: Tokenizer

    /// The token's text as decoded on its own (special tokens kept), or its vocabulary string when
    /// that decodes to nothing; a byte-fallback token (`<0xE2>`) reports its one byte in `bytes`.
    func describe(_ id: Int32) -> (text: String, bytes: [UInt8]) {
        let piece = tokenizer.token(for: id) ?? ""
        if piece.count == 6, piece.hasPrefix("<0x"), piece.hasSuffix(">"),
            let byte = UInt8(piece.dropFirst(3).prefix(2), radix: 16)
        {
            return (tokenizer.decode([id]), [byte])
        }
        var text = tokenizer.decode([id])
        if text.isEmpty { text = piece }
        return (text, Array(text.utf8))
    }
}

/// JSON cannot carry -inf; masked tokens report vLLM's floor instead.
private func finite(_ logprob: Double) -> Double {
    logprob.isFinite ? logprob : -9999.0
}

// MARK: Assembly

/// Builds the response of one request from its choices' events.
struct ResponseAssembler {
    let endpoint: Endpoint
    let id: String
    let created: Int
    let model: String
    let plan: GenerationPlan
    let strings: TokenStrings

    private var choices: [ChoiceState]
    private var promptTokens: Int?

    /// What has been generated for one choice so far.
    private struct ChoiceState {
        var text = ""
        /// A harmony model's chat: the completion's channels, and the reasoning text so far (`text`
        /// holds the content).
        var channels: HarmonyChannels?
        var reasoning = ""
        /// Streamed text not sent yet: the start of a possible `<tool_call>`, or everything from
        /// one on (sent as `tool_calls` when the choice ends).
        var heldText = ""
        /// Whether a `<tool_call>` has started in this choice's text.
        var inToolCall = false
        /// Unicode scalars in `text`, for completions `text_offset`.
        var scalarCount = 0
        var logprobs: LogprobsJSON?
        var finishReason: String?
        var completionTokens = 0
        var sentRole = false
    }

    init(endpoint: Endpoint, id: String, created: Int, model: String, plan: GenerationPlan, strings: TokenStrings) {
        self.endpoint = endpoint
        self.id = id
        self.created = created
        self.model = model
        self.plan = plan
        self.strings = strings
        let empty: LogprobsJSON? =
            plan.reportsLogprobs ? (endpoint == .chat ? .chat([]) : .completion(.init())) : nil
        // A harmony vocabulary (gpt-oss) answers chats in channels: the final one is the content, the
        // analysis the reasoning (vLLM's openai_gptoss parser). Completions return the raw text.
        let channels = endpoint == .chat ? strings.tokenizer.harmonyTokens.map(HarmonyChannels.init(tokens:)) : nil
        choices = Array(repeating: ChoiceState(channels: channels, logprobs: empty), count: plan.choiceCount)
    }

    /// `text_completion`, `chat.completion` or `chat.completion.chunk`.
    private func object(streaming: Bool) -> String {
        switch endpoint {
        case .completions: "text_completion"
        case .chat: streaming ? "chat.completion.chunk" : "chat.completion"
        }
    }

    private func chunk(_ choices: [ChoiceJSON], usage: UsageJSON? = nil) -> ResponseJSON {
        // vLLM's `continuous_usage_stats`: every chunk with choices carries the usage so far.
        let usage = usage ?? (plan.continuousUsage && !choices.isEmpty ? self.usage : nil)
        return ResponseJSON(
            id: id, object: object(streaming: true), created: created, model: model, choices: choices, usage: usage)
    }

    /// Whether `<tool_call>` blocks in this response's text become `tool_calls`.
    private var parsesToolCalls: Bool {
        if case .parse = plan.toolCalls { return endpoint == .chat }
        return false
    }

    /// The tool calls of a choice's whole text, as OpenAI's `tool_calls`, and the content left; nil
    /// when the response does not parse tool calls or the text holds none that parse.
    private func toolCalls(of text: String, choice: Int, streaming: Bool) -> (content: String?, calls: [ToolCallJSON])? {
        guard case .parse(let parallel) = plan.toolCalls, endpoint == .chat, let parsed = ToolCallParser.parse(text)
        else { return nil }
        let calls = (parallel ? parsed.calls : Array(parsed.calls.prefix(1))).enumerated().map { index, call in
            ToolCallJSON(
                index: streaming ? index : nil, id: toolCallID(choice: choice, call: index),
                function: .init(name: call.name, arguments: call.arguments))
        }
        return (parsed.content, calls)
    }

    /// A tool call's id: unique per response (its id is), choice and call; deterministic for tests.
    private func toolCallID(choice: Int, call: Int) -> String { "\(id)-tool-\(choice)-\(call)" }

    /// Takes a piece of a choice's text for streaming when tool calls are parsed: returns the part
    /// that is content for sure, holding back a possible `<tool_call>` start and everything after one.
    private mutating func releasableText(_ text: String, choice index: Int) -> String {
        guard parsesToolCalls else { return text }
        if choices[index].inToolCall {
            choices[index].heldText += text
            return ""
        }
        let combined = choices[index].heldText + text
        if let open = combined.firstRange(of: ToolCallParser.openTag) {
            choices[index].inToolCall = true
            choices[index].heldText = String(combined[open.lowerBound...])
            return String(combined[..<open.lowerBound])
        }
        let held = ToolCallParser.partialOpenTagLength(combined)
        let scalars = combined.unicodeScalars
        let cut = scalars.index(scalars.endIndex, offsetBy: -held)
        choices[index].heldText = String(scalars[cut...])
        return String(scalars[..<cut])
    }

    /// A stream chunk's choice carrying `text` with `logprobs` and `finishReason`.
    private func streamChoice(
        _ index: Int, text: String, role: String?, logprobs: LogprobsJSON?, finishReason: String?
    ) -> ChoiceJSON {
        switch endpoint {
        case .completions:
            return ChoiceJSON(index: index, text: text, logprobs: logprobs, finishReason: finishReason)
        case .chat:
            return ChoiceJSON(
                index: index, delta: MessageJSON(role: role, content: text.isEmpty && role == nil ? nil : text),
                logprobs: logprobs, finishReason: finishReason)
        }
    }

    /// The logprobs entry of one token, appended to the choice's totals; returns the entry alone.
    private mutating func recordLogprob(_ logprob: TokenLogprob, choice index: Int) -> LogprobsJSON {
        let alternatives = logprob.topLogprobs.prefix(plan.topLogprobs)
        switch choices[index].logprobs {
        case .chat(var content)?:
            let chosen = strings.describe(logprob.tokenID)
            let entry = ChatTokenLogprobJSON(
                token: chosen.text, logprob: finite(logprob.logprob), bytes: chosen.bytes,
                topLogprobs: alternatives.map {
                    let described = strings.describe($0.tokenID)
                    return ChatTopLogprobJSON(
                        token: described.text, logprob: finite($0.logprob), bytes: described.bytes)
                })
            content.append(entry)
            choices[index].logprobs = .chat(content)
            return .chat([entry])
        default:
            var top: [String: Double] = [:]
            for alternative in alternatives {
                top[strings.describe(alternative.tokenID).text] = finite(alternative.logprob)
            }
            let entry = CompletionLogprobsJSON(
                tokens: [strings.describe(logprob.tokenID).text], tokenLogprobs: [finite(logprob.logprob)],
                topLogprobs: [top], textOffset: [choices[index].scalarCount])
            var all: CompletionLogprobsJSON
            if case .completion(let existing)? = choices[index].logprobs { all = existing } else { all = .init() }
            all.tokens += entry.tokens
            all.tokenLogprobs += entry.tokenLogprobs
            all.topLogprobs += entry.topLogprobs
            all.textOffset += entry.textOffset
            choices[index].logprobs = .completion(all)
            return .completion(entry)
        }
    }

    /// The chat chunk that opens a choice (`delta: {role: assistant, content: ""}`); nil for
    /// completions or once sent.
    mutating func opening(choice index: Int) -> ResponseJSON? {
        guard endpoint == .chat, !choices[index].sentRole else { return nil }
        choices[index].sentRole = true
        return chunk([streamChoice(index, text: "", role: "assistant", logprobs: nil, finishReason: nil)])
    }

    /// A chat stream chunk's choice carrying a harmony delta (reasoning and/or content text).
    private func channelChoice(
        _ index: Int, _ delta: HarmonyDelta, logprobs: LogprobsJSON?, finishReason: String?
    ) -> ChoiceJSON {
        ChoiceJSON(
            index: index,
            delta: MessageJSON(
                content: delta.content.isEmpty ? nil : delta.content,
                reasoningContent: delta.reasoning.isEmpty ? nil : delta.reasoning),
            logprobs: logprobs, finishReason: finishReason)
    }

    /// Records an event of a harmony chat choice: its text goes to content or reasoning by channel.
    private mutating func recordChannels(
        _ event: GenerationEvent, choice index: Int, channels: inout HarmonyChannels
    ) -> [ResponseJSON] {
        switch event {
        case .token(let token):
            choices[index].completionTokens += 1
            var logprobs: LogprobsJSON?
            if plan.reportsLogprobs, let logprob = token.logprob {
                logprobs = recordLogprob(logprob, choice: index)
            }
            let delta = channels.append(tokenID: token.tokenID, text: token.text)
            choices[index].text += delta.content
            choices[index].reasoning += delta.reasoning
            guard !delta.isEmpty || logprobs != nil else { return [] }
            return [chunk([channelChoice(index, delta, logprobs: logprobs, finishReason: nil)])]
        case .finished(let finish):
            promptTokens = promptTokens ?? finish.promptTokenIDs.count
            choices[index].completionTokens = finish.completionTokenIDs.count
            let delta = channels.finish(trailingText: finish.trailingText)
            choices[index].text += delta.content
            choices[index].reasoning += delta.reasoning
            choices[index].finishReason = Self.finishReason(finish.reason)
            return [chunk([channelChoice(index, delta, logprobs: nil, finishReason: choices[index].finishReason)])]
        }
    }

    /// Records an event of choice `index`; returns the stream chunks it produces (possibly none).
    mutating func record(_ event: GenerationEvent, choice index: Int) -> [ResponseJSON] {
        var chunks: [ResponseJSON] = []
        if let opening = opening(choice: index) { chunks.append(opening) }
        if var channels = choices[index].channels {
            chunks += recordChannels(event, choice: index, channels: &channels)
            choices[index].channels = channels
            return chunks
        }
        switch event {
        case .token(let token):
            choices[index].completionTokens += 1
            var logprobs: LogprobsJSON?
            if plan.reportsLogprobs, let logprob = token.logprob {
                logprobs = recordLogprob(logprob, choice: index)
            }
            choices[index].text += token.text
            choices[index].scalarCount += token.text.unicodeScalars.count
            if case .named(let name) = plan.toolCalls, endpoint == .chat {
                // The text is the named function's arguments: streamed as pieces of them, the first
                // piece with the call's id and name (as vLLM streams a named tool choice).
                guard !token.text.isEmpty || logprobs != nil else { break }
                let first = choices[index].text == token.text
                let call =
                    first
                    ? ToolCallJSON(index: 0, id: toolCallID(choice: index, call: 0), function: .init(name: name, arguments: token.text))
                    : ToolCallJSON(index: 0, type: nil, function: .init(arguments: token.text))
                let delta = MessageJSON(toolCalls: token.text.isEmpty ? nil : [call])
                chunks.append(chunk([ChoiceJSON(index: index, delta: delta, logprobs: logprobs, finishReason: nil)]))
                break
            }
            let text = releasableText(token.text, choice: index)
            if !text.isEmpty || logprobs != nil {
                chunks.append(chunk([streamChoice(index, text: text, role: nil, logprobs: logprobs, finishReason: nil)]))
            }
        case .finished(let finish):
            promptTokens = promptTokens ?? finish.promptTokenIDs.count
            choices[index].completionTokens = finish.completionTokenIDs.count
            choices[index].text += finish.trailingText
            choices[index].scalarCount += finish.trailingText.unicodeScalars.count
            choices[index].finishReason = Self.finishReason(finish.reason)
            if case .named(let name) = plan.toolCalls, endpoint == .chat {
                if !finish.trailingText.isEmpty {
                    let first = choices[index].text == finish.trailingText
                    let call =
                        first
                        ? ToolCallJSON(
                            index: 0, id: toolCallID(choice: index, call: 0),
                            function: .init(name: name, arguments: finish.trailingText))
                        : ToolCallJSON(index: 0, type: nil, function: .init(arguments: finish.trailingText))
                    chunks.append(chunk([ChoiceJSON(index: index, delta: MessageJSON(toolCalls: [call]), finishReason: nil)]))
                }
                chunks.append(
                    chunk([ChoiceJSON(index: index, delta: MessageJSON(), finishReason: choices[index].finishReason)]))
                return chunks
            }
            var trailing = releasableText(finish.trailingText, choice: index)
            if parsesToolCalls {
                // The held text is tool calls when it parses as such; otherwise it was content.
                if let calls = toolCalls(of: choices[index].text, choice: index, streaming: true)?.calls {
                    if !trailing.isEmpty {
                        chunks.append(chunk([streamChoice(index, text: trailing, role: nil, logprobs: nil, finishReason: nil)]))
                    }
                    trailing = ""
                    choices[index].finishReason = "tool_calls"
                    chunks.append(
                        chunk([ChoiceJSON(index: index, delta: MessageJSON(toolCalls: calls), finishReason: nil)]))
                } else {
                    trailing += choices[index].heldText
                }
                choices[index].heldText = ""
            }
            chunks.append(
                chunk([
                    streamChoice(index, text: trailing, role: nil, logprobs: nil, finishReason: choices[index].finishReason)
                ]))
        }
        return chunks
    }

    /// OpenAI's `finish_reason` for an engine reason.
    static func finishReason(_ reason: FinishReason) -> String {
        switch reason {
        case .stop: "stop"
        case .length: "length"
        case .cancelled: "abort"
        }
    }

    /// A whole chat choice's message. For a harmony model, as vLLM: `content` null when no answer
    /// (final channel) was opened, `reasoning_content` when an analysis was.
    private static func message(_ state: ChoiceState) -> MessageJSON {
        guard let channels = state.channels else { return MessageJSON(role: "assistant", content: state.text) }
        return MessageJSON(
            role: "assistant", content: channels.hasContent ? state.text : nil,
            reasoningContent: channels.hasReasoning ? state.reasoning : nil, nullContent: true)
    }

    /// Token counts over all choices; the prompt counts once.
    var usage: UsageJSON {
        UsageJSON(
            promptTokens: promptTokens ?? plan.promptTokenCount,
            completionTokens: choices.reduce(0) { $0 + $1.completionTokens })
    }

    /// The chunk with `usage` and no choices that ends a stream when `include_usage` is set.
    var usageChunk: ResponseJSON { chunk([], usage: usage) }

    /// The whole (non-streamed) response.
    var response: ResponseJSON {
        let choiceJSON = choices.enumerated().map { index, state in
            switch endpoint {
            case .completions:
                ChoiceJSON(index: index, text: state.text, logprobs: state.logprobs, finishReason: state.finishReason)
            case .chat:
                if state.channels != nil {
                    ChoiceJSON(
                        index: index, message: Self.message(state), logprobs: state.logprobs,
                        finishReason: state.finishReason)
                } else if case .named(let name) = plan.toolCalls {
                    // As vLLM: the whole text is the call's arguments; the content is empty.
                    ChoiceJSON(
                        index: index,
                        message: MessageJSON(
                            role: "assistant", content: "",
                            toolCalls: [
                                ToolCallJSON(
                                    id: toolCallID(choice: index, call: 0), function: .init(name: name, arguments: state.text))
                            ]),
                        logprobs: state.logprobs, finishReason: state.finishReason)
                } else if let parsed = toolCalls(of: state.text, choice: index, streaming: false) {
                    ChoiceJSON(
                        index: index, message: MessageJSON(role: "assistant", content: parsed.content, toolCalls: parsed.calls),
                        logprobs: state.logprobs, finishReason: "tool_calls")
                } else {
                    ChoiceJSON(
                        index: index, message: MessageJSON(role: "assistant", content: state.text),
                        logprobs: state.logprobs, finishReason: state.finishReason)
                }
            }
        }
        return ResponseJSON(
            id: id, object: object(streaming: false), created: created, model: model, choices: choiceJSON, usage: usage)
    }
}

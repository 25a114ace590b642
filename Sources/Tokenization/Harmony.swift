// The harmony format of gpt-oss: how its generated tokens split into reasoning and answer.
//
// Vocabulary:
// - message: `<|start|>{header}<|message|>{text}<|end|>`; the last one of a turn ends with
//   `<|return|>` (the answer is complete) or `<|call|>` (a tool is called) instead of `<|end|>`.
// - header: the author (`assistant`, possibly ` to={recipient}`), then `<|channel|>{channel}`, possibly
//   ` to={recipient}` and a content type (`json`, `<|constrain|>json`).
// - channel: `analysis` (chain of thought), `commentary` (tool calls and preambles), `final` (the answer).
//
// The chat template ends the prompt with `<|start|>assistant`, so a completion opens inside the first
// message's header: `<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final<|message|>...<|return|>`.
// vLLM (its `openai_gptoss` reasoning parser, over the token ids) returns the final channel as
// `content` and the analysis as `reasoning_content`; `HarmonyChannels` does the same, one token at a time.

/// The ids of the harmony control tokens in a vocabulary.
public struct HarmonyTokens: Sendable, Equatable {
    public let start: Int32
    public let end: Int32
    public let message: Int32
    public let channel: Int32
    /// `<|return|>`, `<|call|>`: they end a message and the turn.
    public let turnEnds: Set<Int32>
    /// `<|constrain|>` (a content type follows), when the vocabulary has it.
    public let constrain: Int32?

    /// The harmony tokens of `tokenizer`: nil unless `<|start|>`, `<|end|>`, `<|message|>`,
    /// `<|channel|>` and `<|return|>` are all special tokens of its vocabulary (gpt-oss's o200k_harmony).
    public init?(_ tokenizer: Tokenizer) {
        func special(_ content: String) -> Int32? {
            tokenizer.isSpecialToken(content) ? tokenizer.tokenID(for: content) : nil
        }
        guard let start = special("<|start|>"), let end = special("<|end|>"), let message = special("<|message|>"),
            let channel = special("<|channel|>"), let returnToken = special("<|return|>")
        else { return nil }
        self.start = start
        self.end = end
        self.message = message
        self.channel = channel
        turnEnds = Set([returnToken] + (special("<|call|>").map { [$0] } ?? []))
        constrain = special("<|constrain|>")
    }
}

/// Text of a completion, split as a chat response reports it.
public struct HarmonyDelta: Sendable, Equatable {
    /// Text for `reasoning_content`.
    public var reasoning = ""
    /// Text for `content`.
    public var content = ""

    public init(reasoning: String = "", content: String = "") {
        self.reasoning = reasoning
        self.content = content
    }

    public var isEmpty: Bool { reasoning.isEmpty && content.isEmpty }
}

/// Routes a harmony completion's text, token by token, to `reasoning_content` or `content`.
///
/// - the `final` channel, and `commentary` without a recipient (a preamble the user sees), are content;
/// - the `analysis` channel, and a message addressed to a tool (`to=...`), which is not an answer,
///   are reasoning; so is a message of any other channel;
/// - header text (author, channel, content type) and control tokens are neither.
/// Consecutive messages of the same part are joined with a newline, as vLLM joins analysis messages.
/// Pure: ids and text in, text out.
public struct HarmonyChannels: Sendable {
    /// Where the parser is.
    private enum State: Sendable {
        /// Reading a header: the author part, then (after `<|channel|>`) the channel part.
        case header(author: String, channel: String?)
        /// Inside a message's text, which belongs to `part`.
        case body(Part)
        /// Between messages (after `<|end|>`), or after the turn ended.
        case between
    }

    private enum Part: Sendable {
        case reasoning, content
    }

    private let tokens: HarmonyTokens
    private var state = State.header(author: "assistant", channel: nil)
    /// Whether the current message has written text yet (the separator goes before its first text).
    private var messageHasText = false
    /// Whether any message of that part has written text.
    private var reasoningHasText = false
    private var contentHasText = false
    /// Whether a message of each part was opened, even an empty one.
    public private(set) var hasReasoning = false
    public private(set) var hasContent = false

    /// A parser at the start of a completion (inside the first message's header, as the chat template
    /// leaves the prompt at `<|start|>assistant`).
    public init(tokens: HarmonyTokens) {
        self.tokens = tokens
    }

    /// Feeds one generated token and the text it completes (the engine's streaming text, special
    /// tokens skipped); returns that text routed to its part.
    public mutating func append(tokenID: Int32, text: String) -> HarmonyDelta {
        if tokenID == tokens.start {
            state = .header(author: "", channel: nil)
            return route(text)
        }
        if tokenID == tokens.channel, case .header(let author, _) = state {
            state = .header(author: author, channel: "")
            return route(text)
        }
        if tokenID == tokens.constrain, case .header(let author, let channel) = state {
            state = .header(author: author, channel: (channel ?? "") + " ")
            return route(text)
        }
        if tokenID == tokens.message, case .header(let author, let channel) = state {
            let part = Self.part(author: author, channel: channel)
            state = .body(part)
            messageHasText = false
            switch part {
            case .reasoning: hasReasoning = true
            case .content: hasContent = true
            }
            return route(text)
        }
        if tokenID == tokens.end || tokens.turnEnds.contains(tokenID) {
            let delta = route(text)
            state = .between
            return delta
        }
        return route(text)
    }

    /// Routes the text held back at the end of the completion.
    public mutating func finish(trailingText: String) -> HarmonyDelta {
        route(trailingText)
    }

    /// Text in the current state: header text is kept to read the channel; message text is returned.
    private mutating func route(_ text: String) -> HarmonyDelta {
        guard !text.isEmpty else { return HarmonyDelta() }
        switch state {
        case .header(let author, let channel?):
            state = .header(author: author, channel: channel + text)
            return HarmonyDelta()
        case .header(let author, nil):
            state = .header(author: author + text, channel: nil)
            return HarmonyDelta()
        case .between:
            return HarmonyDelta()
        case .body(let part):
            let partHasText = part == .reasoning ? reasoningHasText : contentHasText
            let separated = !messageHasText && partHasText ? "\n" + text : text
            messageHasText = true
            switch part {
            case .reasoning:
                reasoningHasText = true
                return HarmonyDelta(reasoning: separated)
            case .content:
                contentHasText = true
                return HarmonyDelta(content: separated)
            }
        }
    }

    /// The part a message's text belongs to, from its header.
    private static func part(author: String, channel: String?) -> Part {
        let channelWords = (channel ?? "").split(whereSeparator: \.isWhitespace)
        let addressed = (author.split(whereSeparator: \.isWhitespace) + channelWords).contains { $0.hasPrefix("to=") }
        switch channelWords.first {
        case "final"?: return addressed ? .reasoning : .content
        case "commentary"?: return addressed ? .reasoning : .content
        case nil: return addressed ? .reasoning : .content
        default: return .reasoning
        }
    }
}

extension Tokenizer {
    /// The harmony control tokens, when this is a harmony vocabulary (gpt-oss); see `HarmonyTokens`.
    public var harmonyTokens: HarmonyTokens? { HarmonyTokens(self) }

}

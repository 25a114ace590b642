// Chat templates: tokenizer_config.json `chat_template` rendered as transformers'
// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders it.
//
// Vocabulary:
// - chat template: a Jinja template shipped with a checkpoint that turns a conversation into a prompt.
// - message: a dict with `role` (`system`, `user`, `assistant`, `tool`) and `content`.
// - generation prompt: the text that opens the assistant's turn, added when `add_generation_prompt` is true.
// - context: the variables the template sees: `messages`, `add_generation_prompt`, `tools` (the request's,
//   or None), `documents` (None), the named special tokens (`bos_token`, `eos_token`, ...), and any extra
//   variables (`ChatTemplateArguments`: a request's `chat_template_kwargs`).
//
// The interpreter (Jinja/*.swift) implements the subset of Jinja 3 that chat templates use, with
// transformers' environment: trim_blocks, lstrip_blocks, loop controls, `raise_exception`,
// `strftime_now`, `namespace`, and a `tojson` that keeps non-ASCII text and key order.
//
// Supported:
// - tags: `{{ }}`, `{% %}`, `{# #}`, `-`/`+` whitespace modifiers, `{% raw %}`;
// - statements: if/elif/else, for (tuple targets, `if` filter, else, loop.index/index0/revindex/
//   revindex0/first/last/length/previtem/nextitem/cycle), break/continue, set (names, tuples,
//   `ns.attr`, block set), macro (positional, keyword and default arguments), with, generation;
// - expressions: literals, lists, tuples, dicts, attribute/subscript/slice (any step), calls,
//   `+ - * / // % **`, `~`, chained comparisons, `in`/`not in`, `and or not`, `x if c else y`;
// - filters: abs capitalize count d default first float indent int items join last length list
//   lower map max min reject rejectattr replace reverse round safe select selectattr sort string
//   sum title tojson trim unique upper;
// - tests: boolean callable defined divisibleby eq equalto even false float ge gt in integer
//   iterable le lower lt mapping ne none number odd sameas sequence string true undefined upper;
// - methods: str strip/lstrip/rstrip/split/startswith/endswith/upper/lower/title/capitalize/
//   replace/find/count/join/isdigit/isspace, dict items/keys/values/get;
// - globals: raise_exception, range, namespace, dict, strftime_now.
// Anything else (include/extends/import/call/filter blocks, recursive loops, other filters, tests or
// methods, `%` string formatting, `*args`) fails with an `.unsupported` error naming it and its place.
public import Foundation

/// A parsed chat template, ready to render conversations.
///
/// Immutable and safe to share across threads; each `render` call has its own state.
public struct ChatTemplate: Sendable {
    /// The template text as given.
    public let source: String
    private let nodes: [Node]

    /// Parses `source`.
    ///
    /// - Throws: `ChatTemplateError` with kind `.syntax` for invalid Jinja, or `.unsupported` naming the
    ///   statement, filter or test this interpreter does not implement, with its line and column.
    public init(_ source: String) throws(ChatTemplateError) {
        self.source = source
        nodes = try JinjaParser.parse(source)
    }

    /// Renders a conversation.
    ///
    /// - Parameters:
    ///   - messages: the conversation, each message a `role` and `content` (other keys are passed through).
    ///   - addGenerationPrompt: whether to open the assistant's turn at the end.
    ///   - specialTokens: named special tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...).
    ///   - extraContext: further template variables; they override the special tokens, as in transformers.
    ///   - arguments: JSON-valued template variables (a request's `chat_template_kwargs`), added last.
    ///   - now: the time `strftime_now` reports.
    /// - Returns: the prompt text, exactly as transformers renders it.
    /// - Throws: `ChatTemplateError`: `.raised` with the template's message when it calls
    ///   `raise_exception`, `.runtime` for a failing expression, `.limit` when rendering exceeds a
    ///   safety limit (8 MiB of output, nesting, iteration count).
    public func render(
        messages: [[String: String]], addGenerationPrompt: Bool, specialTokens: [String: String] = [:],
        extraContext: [String: String] = [:], arguments: ChatTemplateArguments = ChatTemplateArguments(),
        now: Date = Date()
    ) throws(ChatTemplateError) -> String {
        try render(
            conversation: messages.map(Self.messageValue), tools: nil, addGenerationPrompt: addGenerationPrompt,
            specialTokens: specialTokens, extraContext: extraContext, arguments: arguments, now: now)
    }

    /// Renders a conversation whose messages are JSON objects (an assistant's `tool_calls`, a tool
    /// message's `tool_call_id`, ... as the client sent them), with the `tools` the model may call.
    ///
    /// - Parameters:
    ///   - conversation: the messages, each an object with `role` and `content` and any other members.
    ///   - tools: the tool definitions the template lists (`tools` in its context); nil passes None.
    ///   - addGenerationPrompt, specialTokens, extraContext, arguments, now: as in
    ///     ``render(messages:addGenerationPrompt:specialTokens:extraContext:arguments:now:)``.
    /// - Returns: the prompt text, exactly as transformers' `apply_chat_template(messages, tools=tools)` renders it.
    /// - Throws: `ChatTemplateError`, as the other `render`.
    package func render(
        conversation: [OrderedJSON], tools: [OrderedJSON]?, addGenerationPrompt: Bool,
        specialTokens: [String: String] = [:], extraContext: [String: String] = [:],
        arguments: ChatTemplateArguments = ChatTemplateArguments(), now: Date = Date()
    ) throws(ChatTemplateError) -> String {
        var context: [String: JinjaValue] = [:]
        for (name, value) in specialTokens { context[name] = .string(value) }
        context["messages"] = .list(conversation.map(\.jinjaValue))
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        // transformers always passes these, as None when the caller gives none.
        context["tools"] = tools.map { .list($0.map(\.jinjaValue)) } ?? JinjaValue.none
        context["documents"] = JinjaValue.none
        for (name, value) in extraContext { context[name] = .string(value) }
        context.merge(arguments.contextValues) { _, argument in argument }
        let renderer = JinjaRenderer(context: context, limits: JinjaLimits(), now: now)
        return try renderer.render(nodes)
    }

    /// A message as a dict: `role` and `content` first, as callers usually build them, then the rest by name.
    private static func messageValue(_ message: [String: String]) -> OrderedJSON {
        var members: [OrderedJSON.Member] = []
        for key in ["role", "content"] { if let value = message[key] { members.append(.init(key, .string(value))) } }
        for key in message.keys.sorted() where key != "role" && key != "content" {
            members.append(.init(key, .string(message[key]!)))
        }
        return .object(members)
    }
}

extension Tokenizer {
    /// Renders `messages` with the checkpoint's chat template: transformers'
    /// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt:)`.
    ///
    /// The template sees the named special tokens of tokenizer_config.json (`bos_token`, `eos_token`,
    /// `unk_token`, `pad_token`, ...), `extraContext` and `arguments` (`chat_template_kwargs`); its
    /// `strftime_now` reports `now`.
    ///
    /// - Throws: `ChatTemplateError`: `.missingTemplate` when the checkpoint has no `chat_template`;
    ///   otherwise as `ChatTemplate.render`.
    public func applyChatTemplate(
        _ messages: [[String: String]], addGenerationPrompt: Bool, extraContext: [String: String] = [:],
        arguments: ChatTemplateArguments = ChatTemplateArguments(), now: Date = Date()
    ) throws(ChatTemplateError) -> String {
        return try checkpointTemplate().render(
            messages: messages, addGenerationPrompt: addGenerationPrompt, specialTokens: specialTokenStrings,
            extraContext: extraContext, arguments: arguments, now: now)
    }

    /// Renders a conversation of JSON messages with `tools`: transformers'
    /// `tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt:)`.
    ///
    /// - Throws: `ChatTemplateError`, as ``applyChatTemplate(_:addGenerationPrompt:extraContext:)``.
    package func applyChatTemplate(
        conversation: [OrderedJSON], tools: [OrderedJSON]?, addGenerationPrompt: Bool, extraContext: [String: String] = [:],
        arguments: ChatTemplateArguments = ChatTemplateArguments(), now: Date = Date()
    ) throws(ChatTemplateError) -> String {
        return try checkpointTemplate().render(
            conversation: conversation, tools: tools, addGenerationPrompt: addGenerationPrompt,
            specialTokens: specialTokenStrings, extraContext: extraContext, arguments: arguments, now: now)
    }

    /// The checkpoint's parsed chat template.
    /// - Throws: `ChatTemplateError`: `.missingTemplate` when it has none; the parse error when it did not parse.
    private func checkpointTemplate() throws(ChatTemplateError) -> ChatTemplate {
        guard let parsedChatTemplate else {
            throw ChatTemplateError(
                kind: .missingTemplate,
                message:
                    "the checkpoint has no chat_template (neither tokenizer_config.json \"chat_template\" nor chat_template.jinja)"
            )
        }
        return try parsedChatTemplate.get()
    }

    /// Whether the chat template writes tool calls as `<tool_call>{"name": ..., "arguments": ...}</tool_call>`
    /// (Qwen's and Hermes' format), the one format whose calls the server parses back into `tool_calls`.
    public var chatTemplateWritesToolCallTags: Bool { chatTemplate?.contains("<tool_call>") ?? false }

    /// The token ids of a conversation: transformers'
    /// `tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt:)`.
    ///
    /// - Throws: `ChatTemplateError`, as `applyChatTemplate`.
    public func applyChatTemplateTokenIDs(
        _ messages: [[String: String]], addGenerationPrompt: Bool, extraContext: [String: String] = [:],
        arguments: ChatTemplateArguments = ChatTemplateArguments(), now: Date = Date()
    ) throws(ChatTemplateError) -> [Int32] {
        encodeChatPrompt(
            try applyChatTemplate(
                messages, addGenerationPrompt: addGenerationPrompt, extraContext: extraContext, arguments: arguments,
                now: now))
    }

    /// The token ids of a conversation already rendered with the chat template.
    ///
    /// The template writes BOS (and every other special token) into the text itself, so the text is
    /// encoded without the post-processor's special tokens, as transformers' `apply_chat_template`
    /// (`add_special_tokens=False`) and vLLM's chat endpoint do; with them, a template that opens
    /// with `{{ bos_token }}` would give the prompt two BOS tokens.
    public func encodeChatPrompt(_ renderedChat: String) -> [Int32] {
        encode(renderedChat, addSpecialTokens: false)
    }
}

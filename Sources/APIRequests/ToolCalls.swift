// Tool calling in chat: the request's `tools`, `tool_choice` and `parallel_tool_calls` read as
// vLLM reads them, the `tool_calls` of earlier assistant turns made ready for the chat template, and
// the `<tool_call>{"name": ..., "arguments": ...}</tool_call>` blocks of generated text (Qwen's and
// Hermes' format, the one vLLM's `hermes` parser reads) turned back into OpenAI `tool_calls`.
//
// Vocabulary:
// - tool: a function the model may call, `{"type": "function", "function": {name, description, parameters}}`.
// - tool call: the model asking for one, `<tool_call>{"name": "f", "arguments": {...}}</tool_call>` in its text.
// - tool-call tags: `<tool_call>` and `</tool_call>`; a template that writes them is one whose calls are parsed.
import Coordinator
import Tokenization

/// What becomes of a chat completion's text when the request has tools.
package enum ToolCallMode: Sendable, Equatable {
    /// No tools, or `tool_choice: "none"`: the text is the message's content as generated.
    case none
    /// `tool_choice: "auto"`: `<tool_call>` blocks become `tool_calls`; with `parallel: false`, only the first.
    case parse(parallel: Bool)
    /// `tool_choice` naming a function: the whole text is that function's arguments (constrained
    /// to its `parameters` schema), returned as its one tool call.
    case named(String)
}

/// One tool call parsed from generated text.
package struct ParsedToolCall: Sendable, Equatable {
    package let name: String
    /// The arguments as JSON text, as Python's `json.dumps(arguments, ensure_ascii=False)` writes them.
    package let arguments: String

    package init(name: String, arguments: String) {
        self.name = name
        self.arguments = arguments
    }
}

/// Finds `<tool_call>` blocks in generated text, as vLLM's `hermes` tool parser does.
package enum ToolCallParser {
    package static let openTag = "<tool_call>"
    package static let closeTag = "</tool_call>"

    /// The content before the first `<tool_call>` (nil when empty) and the calls, or nil when the
    /// text holds no call or one that is not a JSON object with a string `name` and `arguments`
    /// (then, as in vLLM, the whole text is the content). A last block the generation ended inside
    /// (no `</tool_call>`) counts when its JSON is whole.
    package static func parse(_ text: String) -> (content: String?, calls: [ParsedToolCall])? {
        guard let first = text.firstRange(of: openTag) else { return nil }
        var calls: [ParsedToolCall] = []
        var rest = text[first.lowerBound...]
        while let open = rest.firstRange(of: openTag) {
            let body: Substring
            if let close = rest[open.upperBound...].firstRange(of: closeTag) {
                body = rest[open.upperBound..<close.lowerBound]
                rest = rest[close.upperBound...]
            } else {
                body = rest[open.upperBound...]
                rest = rest[rest.endIndex...]
            }
            guard let call = toolCall(String(body)) else { return nil }
            calls.append(call)
        }
        let content = String(text[..<first.lowerBound])
        return (content.isEmpty ? nil : content, calls)
    }

    /// One block's JSON: `{"name": string, "arguments": any}`.
    static func toolCall(_ body: String) -> ParsedToolCall? {
        guard let parsed = try? OrderedJSON.parse(body.trimmingJSONWhitespace),
            case .string(let name)? = parsed["name"], let arguments = parsed["arguments"]
        else { return nil }
        return ParsedToolCall(name: name, arguments: arguments.pythonJSON)
    }

    /// How many characters at the end of `text` could begin `<tool_call>` (held back while streaming).
    package static func partialOpenTagLength(_ text: String) -> Int {
        let tag = Array(openTag.unicodeScalars)
        let scalars = Array(text.unicodeScalars.suffix(tag.count - 1))
        for length in stride(from: min(scalars.count, tag.count - 1), to: 0, by: -1)
        where scalars[(scalars.count - length)...].elementsEqual(tag[..<length]) {
            return length
        }
        return 0
    }
}

extension String {
    /// Without the spaces, tabs and newlines Python's `str.strip()` would remove around JSON.
    fileprivate var trimmingJSONWhitespace: String {
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars = scalars.dropFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars = scalars.dropLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}

extension GenerationPlan {
    /// `tools`: an array of `{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}`,
    /// returned as vLLM hands them to the chat template (`type`, then `function` with `name`,
    /// `description` and `parameters`, absent ones as null), member order inside `parameters` kept.
    /// - Throws: `APIError` (400) naming the entry at fault.
    static func parseTools(_ body: JSONObject) throws(APIError) -> [OrderedJSON]? {
        guard let value = try body.orderedField("tools") else { return nil }
        guard case .array(let items) = value else {
            throw .invalidRequest(param: "tools", message: "tools must be an array of {\"type\": \"function\", \"function\": {...}}")
        }
        var tools: [OrderedJSON] = []
        for (index, item) in items.enumerated() {
            let param = "tools[\(index)]"
            guard case .object(let members) = item else {
                throw .invalidRequest(param: param, message: "\(param) must be an object {\"type\": \"function\", \"function\": {...}}")
            }
            for member in members where member.key != "type" && member.key != "function" && member.value != .null {
                throw .invalidRequest(
                    param: "\(param).\(member.key)",
                    message: "\(param).\(member.key) is not a field of a tool; a tool has type and function")
            }
            guard item["type"] == nil || item["type"] == .null || item["type"] == .string("function") else {
                throw .invalidRequest(param: "\(param).type", message: "\(param).type must be \"function\"")
            }
            guard case .object(let function)? = item["function"] else {
                throw .invalidRequest(
                    param: "\(param).function", message: "\(param).function is required: {\"name\", \"description\", \"parameters\"}")
            }
            let known = ["name", "description", "parameters", "strict"]
            for member in function where !known.contains(member.key) && member.value != .null {
                throw .invalidRequest(
                    param: "\(param).function.\(member.key)",
                    message: "\(param).function.\(member.key) is not a field of a function; it has \(known.joined(separator: ", "))")
            }
            guard case .string(let name)? = item["function"]?["name"], !name.isEmpty else {
                throw .invalidRequest(param: "\(param).function.name", message: "\(param).function.name is required: a non-empty string")
            }
            let description = item["function"]?["description"] ?? .null
            guard description == .null || { if case .string = description { true } else { false } }() else {
                throw .invalidRequest(param: "\(param).function.description", message: "\(param).function.description must be a string")
            }
            let parameters = item["function"]?["parameters"] ?? .null
            guard parameters == .null || { if case .object = parameters { true } else { false } }() else {
                throw .invalidRequest(
                    param: "\(param).function.parameters", message: "\(param).function.parameters must be a JSON schema object")
            }
            var normalised: [OrderedJSON.Member] = [
                .init("name", .string(name)), .init("description", description), .init("parameters", parameters),
            ]
            if let strict = item["function"]?["strict"], strict != .null {
                guard case .bool = strict else {
                    throw .invalidRequest(param: "\(param).function.strict", message: "\(param).function.strict must be a boolean")
                }
                normalised.append(.init("strict", strict))
            }
            tools.append(.object([.init("type", .string("function")), .init("function", .object(normalised))]))
        }
        return tools
    }

    /// Tools for a model whose chat template does not write `<tool_call>` blocks: refused, since
    /// its calls could not be parsed back.
    static let unsupportedTools = APIError.invalidRequest(
        param: "tools",
        message: "tools is not supported for this model: its chat template does not write tool calls as "
            + "<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>, the format the server parses back into tool_calls")

    /// `tool_choice` and `parallel_tool_calls`, given the request's tools and whether the chat
    /// template writes `<tool_call>` blocks; a named function comes with the grammar of its arguments.
    /// - Throws: `APIError` (400) naming the field: tools for a template whose calls cannot be
    ///   parsed, `tool_choice` "required" (not implemented), a function that is not among the tools
    ///   or whose `parameters` the JSON grammar does not support, a choice without tools.
    static func toolCallMode(
        _ body: JSONObject, tools: [OrderedJSON]?, templateWritesToolCallTags: Bool
    ) throws(APIError) -> (mode: ToolCallMode, grammar: JSONGrammar?) {
        let hasTools = !(tools ?? []).isEmpty
        if hasTools && !templateWritesToolCallTags { throw unsupportedTools }
        let parallel = try body.bool("parallel_tool_calls") ?? true
        let choice: String
        switch body["tool_choice"] {
        case nil:
            choice = hasTools ? "auto" : "none"
        case .string(let name)?:
            choice = name
        case .object?:
            return try namedToolChoice(body, tools: tools ?? [])
        case let other?:
            throw .wrongType(param: "tool_choice", expected: "\"none\", \"auto\" or \"required\"", got: other)
        }
        switch choice {
        case "none":
            return (.none, nil)
        case "auto":
            guard hasTools else {
                throw .invalidRequest(param: "tool_choice", message: "tool_choice \"auto\" needs tools; give tools or leave tool_choice out")
            }
            return (.parse(parallel: parallel), nil)
        case "required":
            throw .invalidRequest(
                param: "tool_choice",
                message: "tool_choice \"required\" is not supported (it needs the output constrained to a tool call); use \"auto\"")
        default:
            throw .invalidRequest(param: "tool_choice", message: "tool_choice is '\(choice)', but must be \"none\" or \"auto\"")
        }
    }

    /// `tool_choice: {"type": "function", "function": {"name": N}}`: N must be one of `tools`; its
    /// `parameters` schema (an object of any members when absent) constrains the output, as vLLM's
    /// guided decoding does for a named tool choice.
    private static func namedToolChoice(
        _ body: JSONObject, tools: [OrderedJSON]
    ) throws(APIError) -> (mode: ToolCallMode, grammar: JSONGrammar?) {
        guard let choice = try body.object("tool_choice") else { preconditionFailure("tool_choice is an object") }
        try choice.refuseFields(except: ["type", "function"], what: "tool_choice")
        guard try choice.string("type") ?? "function" == "function", let function = try choice.object("function"),
            let name = try function.string("name")
        else {
            throw .invalidRequest(
                param: "tool_choice", message: "tool_choice must be \"none\", \"auto\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")
        }
        try function.refuseFields(except: ["name"], what: "tool_choice.function")
        guard let index = tools.firstIndex(where: { $0["function"]?["name"] == .string(name) }) else {
            throw .invalidRequest(
                param: "tool_choice.function.name", message: "tool_choice names '\(name)', which is not among the tools")
        }
        // The grammar reads the schema as JSON values; member order does not change what it accepts.
        var schema: JSONValue = .object(["type": .string("object")])
        if case .array(let items)? = body["tools"], case .object(let tool) = items[index],
            case .object(let definition)? = tool["function"], let parameters = definition["parameters"], !parameters.isNull
        {
            schema = parameters
        }
        let path = "tools[\(index)].function.parameters"
        do {
            return (.named(name), try JSONGrammar.compile(schema: schema, path: path))
        } catch {
            guard case .invalidRequest(let field, let message) = error else {
                throw .invalidRequest(param: path, message: "\(error)")
            }
            throw .invalidRequest(param: field, message: message)
        }
    }

    /// An assistant message's `tool_calls` (OpenAI's `[{"id", "type": "function", "function":
    /// {"name", "arguments": "<JSON text>"}}]`) as the template gets them from vLLM: in the client's
    /// member order, each `arguments` text parsed into its JSON value.
    /// - Parameter value: the member as the client sent it (`JSONObject.orderedField`).
    /// - Throws: `APIError` (400) naming the entry at fault.
    static func templateToolCalls(_ value: OrderedJSON, param: String) throws(APIError) -> OrderedJSON {
        guard case .array(let calls) = value else {
            throw .invalidRequest(param: param, message: "\(param) must be an array of tool calls")
        }
        var result: [OrderedJSON] = []
        for (index, call) in calls.enumerated() {
            let callParam = "\(param)[\(index)]"
            guard case .object(var members) = call else {
                throw .invalidRequest(param: callParam, message: "\(callParam) must be an object {\"id\", \"type\", \"function\"}")
            }
            for member in members where !["id", "type", "function"].contains(member.key) && member.value != .null {
                throw .invalidRequest(
                    param: "\(callParam).\(member.key)",
                    message: "\(callParam).\(member.key) is not a field of a tool call; it has id, type and function")
            }
            guard case .object(var function)? = call["function"], case .string? = call["function"]?["name"] else {
                throw .invalidRequest(
                    param: "\(callParam).function", message: "\(callParam).function must be {\"name\": string, \"arguments\": string}")
            }
            for member in function where member.key != "name" && member.key != "arguments" && member.value != .null {
                throw .invalidRequest(
                    param: "\(callParam).function.\(member.key)",
                    message: "\(callParam).function.\(member.key) is not a field of a function call; it has name and arguments")
            }
            if let position = function.firstIndex(where: { $0.key == "arguments" }),
                case .string(let text) = function[position].value
            {
                do {
                    function[position].value = try OrderedJSON.parse(text)
                } catch {
                    throw .invalidRequest(
                        param: "\(callParam).function.arguments",
                        message: "\(callParam).function.arguments is not JSON (\(error)); it must be the arguments as JSON text")
                }
            }
            if let position = members.firstIndex(where: { $0.key == "function" }) {
                members[position].value = .object(function)
            }
            result.append(.object(members))
        }
        return .array(result)
    }
}

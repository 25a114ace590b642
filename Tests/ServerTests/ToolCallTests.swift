// Tool calling over HTTP: `tools` reach the chat template (the prompt ids equal transformers'
// apply_chat_template(messages, tools=tools) on Qwen3's real template), `<tool_call>` blocks in the
// generated text come back as OpenAI `tool_calls`, whole and streamed, and what is not implemented
// is refused by name.
import APIRequests
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing
import Tokenization

/// Tests/Fixtures/tool_chats/qwen3.json (Scripts/reference/chat_template_fixtures.py).
enum Qwen3ToolChats {
    static let root: OrderedJSON = {
        do {
            let url = TestPaths.fixtures.appendingPathComponent("tool_chats/qwen3.json")
            return try OrderedJSON.parse(Array(try Data(contentsOf: url)))
        } catch {
            preconditionFailure("Tests/Fixtures/tool_chats/qwen3.json: \(error)")
        }
    }()

    static var template: String {
        guard case .string(let template)? = root["template"] else { preconditionFailure("no template") }
        return template
    }

    static var cases: [OrderedJSON] {
        guard case .array(let cases)? = root["cases"] else { preconditionFailure("no cases") }
        return cases
    }

    /// The fixture checkpoint's tokenizer that made the cases' `prompt_ids`, with Qwen3's template.
    static func tokenizer() throws -> Tokenizer {
        guard case .string(let directory)? = root["tokenizer"] else { preconditionFailure("no tokenizer") }
        let base = TestPaths.packageRoot.appendingPathComponent(directory)
        return try Tokenizer(
            tokenizerJSON: Data(contentsOf: base.appendingPathComponent("tokenizer.json")),
            tokenizerConfigJSON: Data(contentsOf: base.appendingPathComponent("tokenizer_config.json")),
            chatTemplateJinja: template)
    }

    /// A request body for a case, as an OpenAI client sends it (member order kept).
    static func body(_ recorded: OrderedJSON, extra: [OrderedJSON.Member] = []) -> String {
        OrderedJSON.object(
            [
                .init("messages", recorded["request_messages"]!), .init("tools", recorded["tools"]!),
                .init("add_generation_prompt", recorded["add_generation_prompt"]!),
            ] + extra
        ).pythonJSON
    }

    static func promptIDs(_ recorded: OrderedJSON) -> [Int32] {
        guard case .array(let ids)? = recorded["prompt_ids"] else { return [] }
        return ids.compactMap { if case .integer(let id) = $0 { Int32(id) } else { nil } }
    }
}

@Suite("Tool calls")
struct ToolCallTests {
    static let weather = #"""
        [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
        """#
    static let call = ["<tool_call>", "\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}\n", "</tool_call>"]
    static let ask = #"{"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": \#(weather)"#

    static func service(_ script: [String]) -> FakeGenerationService {
        // The tools' system prompt alone is some 550 tokens of the trained test tokenizer.
        FakeGenerationService(contextLength: 4096, chatTemplate: Qwen3ToolChats.template, script: script)
    }

    @Test("a chat with tools and tool calls gives the prompt ids of transformers' apply_chat_template(messages, tools=tools)")
    func promptIDsLikeTransformers() throws {
        let tokenizer = try Qwen3ToolChats.tokenizer()
        #expect(Qwen3ToolChats.cases.count >= 8)
        for (index, recorded) in Qwen3ToolChats.cases.enumerated() {
            let body = try JSONObject(parsing: Array(Qwen3ToolChats.body(recorded).utf8))
            let plan = try GenerationPlan.chat(body, tokenizer: tokenizer, contextLength: 4096) { chat throws(SubmitError) in
                do {
                    return try tokenizer.applyChatTemplate(
                        conversation: chat.messages.map(\.templateValue), tools: chat.tools,
                        addGenerationPrompt: chat.addGenerationPrompt)
                } catch {
                    throw .invalid(field: "messages", message: "\(error)")
                }
            }
            #expect(plan.prompt == .tokenIDs(Qwen3ToolChats.promptIDs(recorded)), "case \(index)")
            #expect(plan.toolCalls == .parse(parallel: true))
        }
    }

    @Test("/tokenize of a chat with tools answers transformers' apply_chat_template ids")
    func tokenizeWithTools() async throws {
        let service = FakeGenerationService(contextLength: 4096, tokenizer: try Qwen3ToolChats.tokenizer())
        try await makeTestApplication(service).test(.router) { client in
            for (index, recorded) in Qwen3ToolChats.cases.enumerated() {
                let response = try await client.post("/tokenize", Qwen3ToolChats.body(recorded))
                #expect(response.status == .ok, "\(response.text)")
                #expect(
                    try response.json()["tokens"] as? [Int] == Qwen3ToolChats.promptIDs(recorded).map(Int.init), "case \(index)")
            }
        }
    }

    @Test("a <tool_call> block becomes tool_calls with finish_reason tool_calls; the content is the text before it")
    func wholeResponse() async throws {
        let service = Self.service([" Let me check."] + Self.call)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 5}"#)
            #expect(response.status == .ok, "\(response.text)")
            let choice = try #require(try choices(response.json()).first)
            #expect(choice["finish_reason"] as? String == "tool_calls")
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["content"] as? String == " Let me check.")
            let calls = try #require(message["tool_calls"] as? [[String: Any]])
            #expect(calls.count == 1)
            #expect(calls.first?["type"] as? String == "function")
            #expect((calls.first?["id"] as? String)?.isEmpty == false)
            let function = try #require(calls.first?["function"] as? [String: Any])
            #expect(function["name"] as? String == "get_weather")
            #expect(function["arguments"] as? String == #"{"city": "Paris"}"#)
        }
        let prompt = try #require(service.submitted.first?.prompt)
        guard case .tokenIDs(let ids) = prompt else {
            Issue.record("the prompt is not token ids")
            return
        }
        let rendered = service.tokenizer.decode(ids)
        #expect(rendered.contains("<tools>") && rendered.contains("\"get_weather\""), "the tools reach the template: \(rendered)")
    }

    @Test("streamed, the tool call is one tool_calls delta; no <tool_call> text is sent as content")
    func streamed() async throws {
        let service = Self.service([" Let me", " check.", "<tool", "_call>"] + Array(Self.call.dropFirst()))
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 7, "stream": true}"#)
            let events = try response.events()
            let deltas = try events.flatMap { try choices($0) }.compactMap { $0["delta"] as? [String: Any] }
            let content = deltas.compactMap { $0["content"] as? String }.joined()
            #expect(content == " Let me check.")
            let calls = deltas.compactMap { $0["tool_calls"] as? [[String: Any]] }
            #expect(calls.count == 1)
            let function = try #require(calls.first?.first?["function"] as? [String: Any])
            #expect(function["name"] as? String == "get_weather")
            #expect(function["arguments"] as? String == #"{"city": "Paris"}"#)
            #expect(calls.first?.first?["index"] as? Int == 0)
            let reasons = try events.flatMap { try choices($0) }.compactMap { $0["finish_reason"] as? String }
            #expect(reasons == ["tool_calls"])
        }
    }

    @Test("tool_choice none renders the tools but leaves the text as content; parallel_tool_calls false keeps the first call")
    func choiceAndParallel() async throws {
        let twoCalls = Self.call + Self.call.map { $0.replacingOccurrences(of: "Paris", with: "Oslo") }
        let service = Self.service(twoCalls)
        try await makeTestApplication(service).test(.router) { client in
            let none = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 8, "tool_choice": "none"}"#)
            let plain = try #require(try choices(none.json()).first)
            #expect((plain["message"] as? [String: Any])?["content"] as? String == twoCalls.joined())
            #expect((plain["message"] as? [String: Any])?["tool_calls"] == nil)
            #expect(plain["finish_reason"] as? String == "length")

            let all = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 8}"#)
            let allCalls = try #require((try choices(all.json()).first?["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]])
            #expect(allCalls.count == 2)
            let ids = Set(allCalls.compactMap { $0["id"] as? String })
            #expect(ids.count == 2, "each call has its own id")

            let first = try await client.post(
                "/v1/chat/completions", Self.ask + #", "max_tokens": 8, "parallel_tool_calls": false}"#)
            let firstCalls = try #require(
                (try choices(first.json()).first?["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]])
            #expect(firstCalls.count == 1)
            #expect((firstCalls.first?["function"] as? [String: Any])?["arguments"] as? String == #"{"city": "Paris"}"#)
        }
        let withTools = service.submitted.compactMap { request -> String? in
            guard case .tokenIDs(let ids) = request.prompt else { return nil }
            return service.tokenizer.decode(ids)
        }
        #expect(withTools.count == 3 && withTools.allSatisfy { $0.contains("<tools>") }, "tools are rendered with tool_choice none too")
    }

    @Test("tool_choice naming a function constrains the output to its parameters and returns it as that call's arguments")
    func namedFunction() async throws {
        let service = Self.service(["{\"city\"", ": \"Paris\"}"])
        let named = #", "max_tokens": 2, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}"#
        try await makeTestApplication(service).test(.router) { client in
            let whole = try await client.post("/v1/chat/completions", Self.ask + named + "}")
            #expect(whole.status == .ok, "\(whole.text)")
            let message = try #require(try choices(whole.json()).first?["message"] as? [String: Any])
            #expect(message["content"] as? String == "")
            let calls = try #require(message["tool_calls"] as? [[String: Any]])
            #expect(calls.count == 1)
            let function = try #require(calls.first?["function"] as? [String: Any])
            #expect(function["name"] as? String == "get_weather")
            #expect(function["arguments"] as? String == #"{"city": "Paris"}"#)

            let streamed = try await client.post("/v1/chat/completions", Self.ask + named + #", "stream": true}"#)
            let deltas = try streamed.events().flatMap { try choices($0) }.compactMap { $0["delta"] as? [String: Any] }
            let pieces = deltas.compactMap { ($0["tool_calls"] as? [[String: Any]])?.first }
            #expect(pieces.count == 2)
            #expect((pieces.first?["function"] as? [String: Any])?["name"] as? String == "get_weather")
            #expect(pieces.first?["id"] is String && pieces.last?["id"] == nil)
            #expect(pieces.compactMap { ($0["function"] as? [String: Any])?["arguments"] as? String }.joined() == #"{"city": "Paris"}"#)
        }
        // The engine was asked for JSON that the function's parameters accept.
        let grammar = try #require(service.submitted.first?.adjustments.grammar)
        let expected = try JSONGrammar.compile(
            schema: .object([
                "type": .string("object"), "properties": .object(["city": .object(["type": .string("string")])]),
                "required": .array([.string("city")]),
            ]), path: "p")
        #expect(grammar == expected)
    }

    @Test("a block that is not a tool call leaves the whole text as content, whole and streamed")
    func unparseable() async throws {
        let script = ["Hi ", "<tool_call>", "not json", "</tool_call>"]
        let service = Self.service(script)
        try await makeTestApplication(service).test(.router) { client in
            let whole = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 4}"#)
            let choice = try #require(try choices(whole.json()).first)
            #expect((choice["message"] as? [String: Any])?["content"] as? String == script.joined())
            #expect(choice["finish_reason"] as? String == "length")
            let streamed = try await client.post("/v1/chat/completions", Self.ask + #", "max_tokens": 4, "stream": true}"#)
            let deltas = try streamed.events().flatMap { try choices($0) }.compactMap { $0["delta"] as? [String: Any] }
            #expect(deltas.compactMap { $0["content"] as? String }.joined() == script.joined())
        }
    }

    @Test(
        "tools and tool fields this server cannot honour are refused naming the field",
        arguments: [
            (#", "tool_choice": "required""#, "tool_choice", "\"required\" is not supported"),
            (#", "tool_choice": {"type": "function", "function": {"name": "get_time"}}"#, "tool_choice.function.name", "not among"),
            (
                #", "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "ignore_eos": true"#, "ignore_eos",
                "tool_choice naming a function"
            ),
            (#", "tool_choice": "sometimes""#, "tool_choice", "must be"),
            (#", "parallel_tool_calls": "yes""#, "parallel_tool_calls", "a boolean"),
        ])
    func refusals(_ extra: String, _ param: String, _ mentions: String) async throws {
        let service = Self.service(Self.call)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/chat/completions", Self.ask + extra + "}")
            #expect(response.status == .badRequest, "\(response.text)")
            let error = try response.errorObject()
            #expect(error["param"] as? String == param)
            #expect((error["message"] as? String)?.contains(mentions) == true, "\(error)")
        }
        #expect(service.submitted.isEmpty)
    }

    @Test(
        "malformed tools and tool calls are refused naming the entry",
        arguments: [
            (#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}"#, "tools[0].type"),
            (#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#, "tools[0].function"),
            (#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": ""}}]}"#, "tools[0].function.name"),
            (#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": "f", "extra": 1}}]}"#, "tools[0].function.extra"),
            (#"{"messages": [{"role": "user", "content": "x"}], "tools": {"a": 1}}"#, "tools"),
            (
                #"{"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{not"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments"
            ),
            (
                #"{"messages": [{"role": "user", "content": "x", "tool_calls": []}]}"#, "messages[0].tool_calls"
            ),
            (#"{"messages": [{"role": "user", "content": "x", "refusal": "no"}]}"#, "messages[0].refusal"),
            (#"{"messages": [{"role": "user", "content": "x", "colour": "red"}]}"#, "messages[0].colour"),
        ])
    func malformed(_ body: String, _ param: String) async throws {
        let service = Self.service(Self.call)
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/chat/completions", body)
            #expect(response.status == .badRequest, "\(response.text)")
            #expect(try response.errorObject()["param"] as? String == param, "\(response.text)")
        }
    }

    @Test("tools for a template that does not write <tool_call> blocks are refused, on chat and /tokenize")
    func templateWithoutToolCalls() async throws {
        try await makeTestApplication(FakeGenerationService()).test(.router) { client in
            for path in ["/v1/chat/completions", "/tokenize"] {
                let response = try await client.post(path, Self.ask + "}")
                #expect(response.status == .badRequest, "\(response.text)")
                let error = try response.errorObject()
                #expect(error["param"] as? String == "tools")
                #expect((error["message"] as? String)?.contains("<tool_call>") == true)
            }
        }
    }
}

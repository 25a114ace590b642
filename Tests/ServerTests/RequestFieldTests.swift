// The request fields vLLM users send beyond the basic ones: each reaches the engine as the
// documented adjustment, or is refused with a 400 naming it; an unknown model is a 404.
import APIRequests
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Server
import Synchronization
import Testing
import Tokenization

@Suite("Request fields: honoured or refused by name")
struct RequestFieldTests {
    static let user = #""messages": [{"role": "user", "content": "hi"}]"#

    static let refused: [BadBody] = [
        BadBody(path: BadBody.completions, body: #"{"prompt": "x", "suffix": "y"}"#, param: "suffix", mentions: "not supported"),
        BadBody(path: BadBody.completions, body: #"{"prompt": "x", "best_of": 3}"#, param: "best_of", mentions: "only 1"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "presence_penalty": 2.5}"#, param: "presence_penalty",
            mentions: "[-2, 2]"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "frequency_penalty": -3}"#, param: "frequency_penalty",
            mentions: "[-2, 2]"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "repetition_penalty": 0}"#, param: "repetition_penalty",
            mentions: "greater than 0"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "max_tokens": 4, "min_tokens": 5}"#, param: "min_tokens",
            mentions: "between 0 and max_tokens (4)"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "logit_bias": {"abc": 1}}"#, param: "logit_bias",
            mentions: "not a token id"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "logit_bias": {"5": "up"}}"#, param: "logit_bias.5",
            mentions: "a number"),
        BadBody(
            path: BadBody.completions, body: #"{"prompt": "x", "logit_bias": [1]}"#, param: "logit_bias",
            mentions: "JSON object"),
        BadBody(path: BadBody.chat, body: "{\(user), \"tools\": [{\"type\": \"function\"}]}", param: "tools", mentions: "not supported"),
        BadBody(path: BadBody.chat, body: "{\(user), \"tool_choice\": \"required\"}", param: "tool_choice", mentions: "\"required\""),
        BadBody(
            path: BadBody.chat, body: "{\(user), \"chat_template_kwargs\": \"enable_thinking\"}",
            param: "chat_template_kwargs", mentions: "an object"),
        BadBody(
            path: BadBody.chat, body: "{\(user), \"chat_template_kwargs\": {\"messages\": [], \"x\": 1}}",
            param: "chat_template_kwargs.messages", mentions: "cannot be replaced"),
        BadBody(
            path: BadBody.chat, body: "{\(user), \"chat_template_kwargs\": {\"raise_exception\": 1}}",
            param: "chat_template_kwargs.raise_exception", mentions: "cannot be replaced"),
        BadBody(
            path: BadBody.chat, body: "{\(user), \"response_format\": {\"type\": \"xml\"}}", param: "response_format.type",
            mentions: "json_schema"),
        BadBody(
            path: BadBody.chat, body: "{\(user), \"response_format\": {\"type\": \"json_schema\"}}",
            param: "response_format.json_schema", mentions: "required"),
        BadBody(
            path: BadBody.chat,
            body: "{\(user), \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", "
                + "\"schema\": {\"type\": \"string\", \"pattern\": \"a+\"}}}}",
            param: "response_format.json_schema.schema.pattern", mentions: "'pattern' is not supported"),
        BadBody(
            path: BadBody.chat,
            body: "{\(user), \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": "
                + "{\"type\": \"object\", \"properties\": {\"a\": {\"anyOf\": []}}}}}}",
            param: "response_format.json_schema.schema.properties.a.anyOf", mentions: "'anyOf' is not supported"),
        BadBody(
            path: BadBody.chat,
            body: "{\(user), \"ignore_eos\": true, \"response_format\": {\"type\": \"json_object\"}}",
            param: "ignore_eos", mentions: "response_format"),
    ]

    @Test("an unsupported or out-of-range field is refused with 400 naming it", arguments: refused)
    func refusal(_ bad: BadBody) async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(bad.path, bad.body)
            #expect(response.status == .badRequest, "\(response.text)")
            let error = try response.errorObject()
            #expect(error["param"] as? String == bad.param)
            let message = try #require(error["message"] as? String)
            #expect(message.contains(bad.mentions), "message: \(message)")
        }
        #expect(service.submitted.isEmpty, "nothing reaches the engine")
    }

    @Test("penalties, logit_bias (clamped to ±100), min_tokens and response_format reach the engine")
    func adjustmentsPassThrough() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let body = #"""
                {"prompt": "x", "max_tokens": 8, "presence_penalty": 0.5, "frequency_penalty": -1,
                 "repetition_penalty": 1.3, "logit_bias": {"3": 250, "7": -2.5}, "min_tokens": 4, "best_of": 1}
                """#
            let completion = try await client.post("/v1/completions", body)
            #expect(completion.status == .ok)
            let chat = """
                {\(Self.user), "max_tokens": 8, "tool_choice": "none", "tools": [],
                 "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema":
                   {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}
                """
            let chatResponse = try await client.post("/v1/chat/completions", chat)
            #expect(chatResponse.status == .ok)
        }
        let first = try #require(service.submitted.first)
        #expect(
            first.adjustments
                == LogitsAdjustments(
                    presencePenalty: 0.5, frequencyPenalty: -1, repetitionPenalty: 1.3, logitBias: [3: 100, 7: -2.5],
                    minTokens: 4))
        #expect(service.submitted.last?.adjustments.grammar != nil)
    }

    @Test("chat_template_kwargs reach the chat template as JSON values")
    func chatTemplateKwargs() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let chat = """
                {\(Self.user), "max_tokens": 2, "chat_template_kwargs": {"enable_thinking": false, "reasoning_effort": "high", "n": 1.5}}
                """
            let response = try await client.post("/v1/chat/completions", chat)
            #expect(response.status == .ok, "\(response.text)")
        }
        let arguments = try ChatTemplateArguments([
            "enable_thinking": .bool(false), "reasoning_effort": .string("high"), "n": .number(1.5),
        ])
        let rendered = try service.applyChatTemplate(
            [.init(role: "user", content: "hi")], addGenerationPrompt: true, arguments: arguments)
        #expect(rendered.contains("<|enable_thinking|>false\n<|n|>1.5\n<|reasoning_effort|>\"high\"\n"))
        #expect(service.submitted.first?.prompt == .tokenIDs(service.tokenizer.encodeChatPrompt(rendered)))
    }

    @Test("a model name the server does not serve is 404 in vLLM's words; the served name and none are accepted")
    func unknownModel() async throws {
        let service = FakeGenerationService()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"model": "gpt-4", "prompt": "x"}"#)
            #expect(response.status == .notFound)
            let error = try response.errorObject()
            #expect(error["message"] as? String == "The model `gpt-4` does not exist.")
            #expect(error["param"] as? String == "model")
            let chat = try await client.post("/v1/chat/completions", "{\"model\": \"other\", \(Self.user)}")
            #expect(chat.status == .notFound)
            let served = try await client.post("/v1/completions", #"{"model": "fake-moe", "prompt": "x", "max_tokens": 2}"#)
            #expect(served.status == .ok)
            let listed = try await client.get("/v1/models")
            let data = try #require(try listed.json()["data"] as? [[String: Any]])
            #expect(data.map { $0["id"] as? String } == ["fake-moe"])
        }
        #expect(service.submitted.count == 1)
    }
}

/// One request field, a body that sets it, and what it must do: the field the issue and vLLM's and
/// OpenAI's request types list is either honoured (its effect checked) or refused by name.
struct FieldCase: Sendable, CustomTestStringConvertible {
    enum Check: Sendable {
        /// 400 naming `param`, the message containing `mentions`; nothing reaches the engine.
        case refused(param: String, mentions: String)
        /// 404 naming `param`.
        case notFound(param: String)
        /// The engine request the body became.
        case engine(@Sendable (GenerationRequest) -> Bool)
        /// The response body (JSON, or the event stream's text).
        case response(@Sendable (String) -> Bool)
        /// The checked plan (fields that shape the response or the log, not the engine request).
        case plan(@Sendable (GenerationPlan) -> Bool)
        /// What the chat template was given.
        case rendered(@Sendable (ChatRendering) -> Bool)
    }

    /// The field as the API spells it (a message field by its own name).
    let field: String
    let path: String
    let body: String
    /// The fake's generated texts; tool-call cases script a `<tool_call>` and render Qwen3's template.
    var toolScript: [String]? = nil
    let check: Check

    var testDescription: String { "\(field): \(path) \(body)" }

    static let user = #""messages": [{"role": "user", "content": "hi"}]"#
    static let completions = "/v1/completions"
    static let chat = "/v1/chat/completions"
    static let call = ToolCallTests.call
    static let weatherAsk = ToolCallTests.ask

    static func engine(_ field: String, _ path: String, _ body: String, _ check: @escaping @Sendable (GenerationRequest) -> Bool) -> FieldCase {
        FieldCase(field: field, path: path, body: body, check: .engine(check))
    }

    static func refused(_ field: String, _ path: String, _ body: String, mentions: String = "not supported") -> FieldCase {
        FieldCase(field: field, path: path, body: body, check: .refused(param: field, mentions: mentions))
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func message(_ text: String) -> [String: Any] {
        ((json(text)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]) ?? [:]
    }

    static func prompt(_ text: String, addSpecialTokens: Bool = false) -> Prompt {
        .tokenIDs(FakeGenerationService.sharedTokenizer.encode(text, addSpecialTokens: addSpecialTokens))
    }

    static let all: [FieldCase] = honoured + refusedByTable + unknown

    static let honoured: [FieldCase] = [
        // Both endpoints: sampling, penalties, endings, output shape.
        FieldCase(field: "model", path: completions, body: #"{"prompt": "x", "model": "gpt-4"}"#, check: .notFound(param: "model")),
        engine("prompt", completions, #"{"prompt": [5, 6]}"#) { $0.prompt == .tokenIDs([5, 6]) },
        engine("max_tokens", completions, #"{"prompt": [5], "max_tokens": 3}"#) { $0.maxTokens == 3 },
        FieldCase(
            field: "n", path: completions, body: #"{"prompt": [5], "n": 2, "max_tokens": 1}"#,
            check: .response { (json($0)["choices"] as? [Any])?.count == 2 }),
        engine("seed", completions, #"{"prompt": [5], "seed": 7}"#) { $0.sampling.seed == 7 },
        FieldCase(
            field: "stop", path: completions, body: #"{"prompt": [5], "stop": [" gamma"], "max_tokens": 4}"#,
            check: .response { (json($0)["choices"] as? [[String: Any]])?.first?["text"] as? String == " alpha beta" }),
        FieldCase(
            field: "stream", path: completions, body: #"{"prompt": [5], "stream": true, "max_tokens": 2}"#,
            check: .response { $0.hasPrefix("data: ") && $0.hasSuffix("data: [DONE]\n\n") }),
        FieldCase(
            field: "stream_options", path: completions,
            body: #"{"prompt": [5], "stream": true, "max_tokens": 2, "stream_options": {"include_usage": true, "continuous_usage_stats": true}}"#,
            check: .response { text in
                let events = text.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }
                return events.count == 4 && events.allSatisfy { $0.contains(#""usage":{"#) }
            }),
        engine("temperature", completions, #"{"prompt": [5], "temperature": 0.5}"#) { $0.sampling.temperature == 0.5 },
        engine("top_p", completions, #"{"prompt": [5], "top_p": 0.5}"#) { $0.sampling.topP == 0.5 },
        engine("top_k", completions, #"{"prompt": [5], "top_k": 5}"#) { $0.sampling.topK == 5 },
        engine("min_p", completions, #"{"prompt": [5], "min_p": 0.25}"#) { $0.sampling.minP == 0.25 },
        engine("presence_penalty", completions, #"{"prompt": [5], "presence_penalty": 0.5}"#) {
            $0.adjustments.presencePenalty == 0.5
        },
        engine("frequency_penalty", completions, #"{"prompt": [5], "frequency_penalty": -1}"#) {
            $0.adjustments.frequencyPenalty == -1
        },
        engine("repetition_penalty", completions, #"{"prompt": [5], "repetition_penalty": 1.5}"#) {
            $0.adjustments.repetitionPenalty == 1.5
        },
        engine("logit_bias", completions, #"{"prompt": [5], "logit_bias": {"3": 250}}"#) { $0.adjustments.logitBias == [3: 100] },
        engine("logprobs", completions, #"{"prompt": [5], "logprobs": 2}"#) { $0.logprobs == 2 },
        engine("min_tokens", completions, #"{"prompt": [5], "max_tokens": 8, "min_tokens": 4}"#) { $0.adjustments.minTokens == 4 },
        engine("ignore_eos", completions, #"{"prompt": [5], "ignore_eos": true}"#) { $0.ignoreEOS },
        engine("stop_token_ids", completions, #"{"prompt": [5], "stop_token_ids": [3, 4]}"#) { $0.stopTokenIDs == [3, 4] },
        engine("include_stop_str_in_output", completions, #"{"prompt": [5], "include_stop_str_in_output": true}"#) {
            $0.includeStopInText
        },
        engine("skip_special_tokens", completions, #"{"prompt": [5], "skip_special_tokens": false}"#) { !$0.skipSpecialTokens },
        engine("response_format", completions, #"{"prompt": [5], "response_format": {"type": "json_object"}}"#) {
            $0.adjustments.grammar == .anyValue
        },
        engine("allowed_token_ids", completions, #"{"prompt": [5], "allowed_token_ids": [5, 6]}"#) {
            $0.adjustments.allowedTokenIDs == [5, 6]
        },
        FieldCase(field: "user", path: completions, body: #"{"prompt": [5], "user": "alice"}"#, check: .plan { $0.user == "alice" }),
        FieldCase(
            field: "request_id", path: completions, body: #"{"prompt": [5], "max_tokens": 1, "request_id": "abc-1"}"#,
            check: .response { json($0)["id"] as? String == "cmpl-abc-1" }),
        refused("use_beam_search", completions, #"{"prompt": [5], "use_beam_search": true}"#),
        refused("priority", completions, #"{"prompt": [5], "priority": 1}"#, mentions: "arrival order"),
        refused("store", completions, #"{"prompt": [5], "store": true}"#),
        refused("service_tier", completions, #"{"prompt": [5], "service_tier": "flex"}"#, mentions: "one tier"),
        // /v1/completions only.
        engine("add_special_tokens", completions, #"{"prompt": "hello", "add_special_tokens": false}"#) {
            $0.prompt == prompt("hello") && $0.prompt != prompt("hello", addSpecialTokens: true)
        },
        refused("echo", completions, #"{"prompt": [5], "echo": true}"#),
        refused("suffix", completions, #"{"prompt": [5], "suffix": "y"}"#),
        refused("best_of", completions, #"{"prompt": [5], "best_of": 3}"#, mentions: "only 1"),
        // /v1/chat/completions only.
        engine("messages", chat, "{\(user)}") { $0.prompt == prompt("<|user|>hi\n<|assistant|>") },
        engine("max_completion_tokens", chat, "{\(user), \"max_completion_tokens\": 3}") { $0.maxTokens == 3 },
        engine("top_logprobs", chat, "{\(user), \"logprobs\": true, \"top_logprobs\": 3}") { $0.logprobs == 3 },
        engine("add_generation_prompt", chat, "{\(user), \"add_generation_prompt\": false}") { $0.prompt == prompt("<|user|>hi\n") },
        engine(
            "continue_final_message", chat,
            #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Once upon"}], "add_generation_prompt": false, "continue_final_message": true}"#
        ) { $0.prompt == prompt("<|user|>hi\n<|assistant|>Once upon") },
        // The fake renders each template variable as a `<|name|>value` line after the messages.
        engine("chat_template_kwargs", chat, "{\(user), \"chat_template_kwargs\": {\"enable_thinking\": false}}") {
            $0.prompt == prompt("<|user|>hi\n<|enable_thinking|>false\n<|assistant|>")
        },
        FieldCase(
            field: "tools", path: chat, body: weatherAsk + #", "max_tokens": 4}"#, toolScript: call,
            check: .response { (message($0)["tool_calls"] as? [Any])?.count == 1 }),
        FieldCase(
            field: "tool_choice", path: chat, body: weatherAsk + #", "max_tokens": 4, "tool_choice": "none"}"#, toolScript: call,
            check: .response { message($0)["tool_calls"] == nil && message($0)["content"] as? String == call.joined() }),
        FieldCase(
            field: "parallel_tool_calls", path: chat, body: weatherAsk + #", "max_tokens": 8, "parallel_tool_calls": false}"#,
            toolScript: call + call, check: .response { (message($0)["tool_calls"] as? [Any])?.count == 1 }),
        FieldCase(
            field: "add_special_tokens", path: chat, body: "{\(user), \"add_special_tokens\": true}",
            check: .engine { $0.prompt == prompt("<|user|>hi\n<|assistant|>", addSpecialTokens: true) }),
        refused("echo", chat, "{\(user), \"echo\": true}"),
        // Message fields: passed to the chat template as vLLM passes them, or refused.
        FieldCase(
            field: "name", path: chat, body: #"{"messages": [{"role": "user", "content": "hi", "name": "bob"}]}"#,
            check: .rendered { $0.messages.first?.templateMembers == [.init("name", .string("bob"))] }),
        FieldCase(
            field: "tool_call_id", path: chat, body: #"{"messages": [{"role": "tool", "content": "21", "tool_call_id": "c1"}]}"#,
            check: .rendered { $0.messages.first?.templateMembers == [.init("tool_call_id", .string("c1"))] }),
        FieldCase(
            field: "reasoning_content", path: chat,
            body: #"{"messages": [{"role": "assistant", "content": "4", "reasoning_content": "2+2"}, {"role": "user", "content": "ok"}]}"#,
            check: .rendered { $0.messages.first?.templateMembers == [.init("reasoning_content", .string("2+2"))] }),
        FieldCase(
            field: "tool_calls", path: chat,
            body: #"{"messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": [2.0]}"}}]}]}"#,
            check: .rendered { rendering in
                let call = OrderedJSON.object([
                    .init("id", .string("c1")), .init("type", .string("function")),
                    .init("function", .object([
                        .init("name", .string("f")),
                        .init("arguments", .object([.init("b", .integer(1)), .init("a", .array([.float(2)]))])),
                    ])),
                ])
                return rendering.messages.first?.templateMembers == [.init("tool_calls", .array([call]))]
            }),
        FieldCase(
            field: "role", path: chat, body: #"{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}"#,
            check: .engine { $0.prompt == prompt("<|system|>be brief\n<|user|>hi\n<|assistant|>") }),
        FieldCase(
            field: "content", path: chat, body: #"{"messages": [{"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}]}"#,
            check: .engine { $0.prompt == prompt("<|user|>hi\n<|assistant|>") }),
    ]

    /// Every field of the refusal tables, on chat (a message field inside a message).
    static let refusedByTable: [FieldCase] =
        RequestFields.refused.keys.sorted().map { (field: String) -> FieldCase in
            refused(field, chat, "{\(user), \"\(field)\": 1}")
        }
        + RequestFields.refusedMessageFields.keys.sorted().map { (field: String) -> FieldCase in
            FieldCase(
                field: field, path: chat, body: #"{"messages": [{"role": "assistant", "content": "x", "\#(field)": 1}]}"#,
                check: .refused(param: "messages[0].\(field)", mentions: "not supported"))
        }

    /// Fields nobody defines (typos) are refused too.
    static let unknown: [FieldCase] = [
            FieldCase(
                field: "max_token", path: completions, body: #"{"prompt": [5], "max_token": 3}"#,
                check: .refused(param: "max_token", mentions: "not a field")),
            FieldCase(
                field: "temprature", path: chat, body: "{\(user), \"temprature\": 0}",
                check: .refused(param: "temprature", mentions: "not a field")),
    ]
}

@Suite("Every request field: honoured as documented or refused by name")
struct EveryRequestFieldTests {
    @Test("the table covers every field the routes read and every OpenAI or vLLM field they refuse")
    func tableCoversEveryField() {
        let covered = Set(FieldCase.all.map(\.field))
        let fields = RequestFields.completions.union(RequestFields.chat).union(RequestFields.refused.keys)
            .union(RequestFields.message).union(RequestFields.refusedMessageFields.keys)
        #expect(fields.subtracting(covered).isEmpty, "fields without a case: \(fields.subtracting(covered).sorted())")
        // The fields issue 19 names.
        for named in [
            "logit_bias", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_tokens", "best_of", "suffix",
            "response_format", "tools", "tool_choice", "chat_template_kwargs", "model", "echo",
        ] {
            #expect(covered.contains(named), "\(named)")
        }
    }

    @Test("each field changes the request, the response or the template's input as documented, or is refused by name", arguments: FieldCase.all)
    func field(_ field: FieldCase) async throws {
        let service =
            field.toolScript.map { ToolCallTests.service($0) }
            ?? FakeGenerationService()
        switch field.check {
        case .plan(let check):
            let body = try JSONObject(parsing: Array(field.body.utf8))
            let plan: GenerationPlan
            if field.path == FieldCase.chat {
                plan = try GenerationPlan.chat(body, tokenizer: service.tokenizer, contextLength: 256) { chat throws(SubmitError) in
                    try service.applyChatTemplate(chat.messages, tools: chat.tools, addGenerationPrompt: chat.addGenerationPrompt)
                }
            } else {
                plan = try GenerationPlan.completions(body, tokenizer: service.tokenizer, contextLength: 256)
            }
            #expect(check(plan))
            return
        case .rendered(let check):
            let body = try JSONObject(parsing: Array(field.body.utf8))
            var seen: ChatRendering?
            _ = try GenerationPlan.chat(body, tokenizer: service.tokenizer, contextLength: 256) { chat throws(SubmitError) in
                seen = chat
                return try service.applyChatTemplate(chat.messages, tools: chat.tools, addGenerationPrompt: chat.addGenerationPrompt)
            }
            let rendering = try #require(seen)
            #expect(check(rendering), "\(rendering)")
            return
        default:
            break
        }
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(field.path, field.body)
            switch field.check {
            case .refused(let param, let mentions):
                #expect(response.status == .badRequest, "\(response.text)")
                let error = try response.errorObject()
                #expect(error["param"] as? String == param, "\(response.text)")
                #expect((error["message"] as? String)?.contains(mentions) == true, "\(response.text)")
            case .notFound(let param):
                #expect(response.status == .notFound, "\(response.text)")
                #expect(try response.errorObject()["param"] as? String == param)
            case .engine(let check):
                #expect(response.status == .ok, "\(response.text)")
                let request = try #require(service.submitted.first)
                #expect(check(request), "\(request)")
            case .response(let check):
                #expect(response.status == .ok, "\(response.text)")
                #expect(check(response.text), "\(response.text)")
            case .plan, .rendered:
                break
            }
        }
        if case .refused = field.check { #expect(service.submitted.isEmpty, "nothing reaches the engine") }
        if case .notFound = field.check { #expect(service.submitted.isEmpty, "nothing reaches the engine") }
    }

    @Test("user is written to the access log line, quoted, and the prompt is not")
    func userInAccessLog() async throws {
        let lines = LogLines()
        var logger = Logger(label: "access") { _ in CapturingLogHandler(lines: lines) }
        logger.logLevel = .info
        let app = makeApplication(
            service: FakeGenerationService(), configuration: ServerConfiguration(host: "127.0.0.1", port: 0), logger: logger)
        try await app.test(.router) { client in
            let response = try await client.post(
                "/v1/completions", #"{"prompt": "secret words", "max_tokens": 2, "user": "alice \"a\"\n"}"#)
            #expect(response.status == .ok)
        }
        let access = lines.all.filter { $0.hasPrefix("POST /v1/completions 200") }
        #expect(access.count == 1, "\(lines.all)")
        #expect(access.first?.hasSuffix(#" user="alice \"a\"\u{a}""#) == true, "\(access)")
        #expect(!lines.all.contains { $0.contains("secret") })
    }
}

/// Log lines captured by ``CapturingLogHandler``.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// A swift-log handler that keeps the messages.
struct CapturingLogHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.append(event.message.description)
    }
}

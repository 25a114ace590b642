// The request fields vLLM users send beyond the basic ones: each reaches the engine as the
// documented adjustment, or is refused with a 400 naming it; an unknown model is a 404.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
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
        BadBody(path: BadBody.chat, body: "{\(user), \"tool_choice\": \"required\"}", param: "tool_choice", mentions: "\"none\""),
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

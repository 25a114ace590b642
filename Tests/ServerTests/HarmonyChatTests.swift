// gpt-oss through the HTTP API: chats rendered with its harmony template (chat_template_kwargs such as
// reasoning_effort included) give transformers' prompt ids, and a harmony completion comes back split
// as vLLM splits it: the final channel as `content`, the analysis channel as `reasoning_content`.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing
import Tokenization

/// The o200k-harmony tokenizer fixture (gpt-oss's tokenizer.json shape) and its recorded chats.
private enum HarmonyFixture {
    static let directory = TestPaths.fixtures.appendingPathComponent("tokenizers/o200k-harmony")

    /// The fixture's tokenizer with gpt-oss's chat template as its chat_template.jinja.
    static func tokenizer() throws -> Tokenizer {
        try Tokenizer(
            tokenizerJSON: Data(contentsOf: directory.appendingPathComponent("tokenizer.json")),
            tokenizerConfigJSON: Data(contentsOf: directory.appendingPathComponent("tokenizer_config.json")),
            chatTemplateJinja: HarmonyChatTemplate.source)
    }

    /// chat_cases.json: transformers' apply_chat_template of each conversation, at the recorded time.
    static func chatCases() throws -> (now: Date, cases: [[String: Any]]) {
        let data = try Data(contentsOf: directory.appendingPathComponent("chat_cases.json"))
        let record = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let now = try #require(record["now"] as? String, "the harmony chat cases record the time they were rendered at")
        return (localTime(now), try #require(record["cases"] as? [[String: Any]]))
    }

    /// `2026-01-15T12:00:00` in the local time zone, as Python's naive datetime the fixture was rendered at.
    static func localTime(_ iso: String) -> Date {
        let numbers = iso.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let components = DateComponents(
            year: numbers[0], month: numbers[1], day: numbers[2], hour: numbers[3], minute: numbers[4],
            second: numbers[5])
        return calendar.date(from: components) ?? Date()
    }

    /// What a gpt-oss model generates: its reasoning, then its answer, then `<|return|>`.
    static let completion =
        "<|channel|>analysis<|message|>The user greets; answer briefly in kind.<|end|>"
        + "<|start|>assistant<|channel|>final<|message|>Hello! Café 🦜, 12345.<|return|>"

    /// A fake engine that generates `completion` (ending at `<|return|>`) with the fixture's tokenizer.
    static func service(completion: String = completion, renderDate: Date = Date()) throws -> FakeGenerationService {
        let tokenizer = try tokenizer()
        let script = tokenizer.encode(completion, addSpecialTokens: false)
        let harmony = try #require(tokenizer.harmonyTokens, "the o200k-harmony fixture has the harmony tokens")
        return FakeGenerationService(
            tokenizer: tokenizer, script: script, stopTokenIDs: harmony.turnEnds, renderDate: renderDate)
    }
}

@Suite("Harmony chat (gpt-oss)")
struct HarmonyChatTests {
    @Test("a chat answers the final channel as content and the analysis channel as reasoning_content")
    func wholeResponse() async throws {
        let service = try HarmonyFixture.service()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 200, "chat_template_kwargs": {"reasoning_effort": "low"}}"#
            )
            #expect(response.status == .ok, "\(response.text)")
            let choice = try #require(try choices(try response.json()).first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["content"] as? String == "Hello! Café 🦜, 12345.")
            #expect(message["reasoning_content"] as? String == "The user greets; answer briefly in kind.")
            #expect(choice["finish_reason"] as? String == "stop", "<|return|> ends the turn")
        }
        let prompt = try #require(service.submitted.first?.prompt)
        guard case .tokenIDs(let ids) = prompt else {
            Issue.record("a chat prompt is submitted as token ids")
            return
        }
        let text = service.tokenizer.decode(ids)
        #expect(text.contains("Reasoning: low"), "chat_template_kwargs reached the template: \(text)")
        #expect(text.hasSuffix("<|start|>user<|message|>Hello!<|end|><|start|>assistant"))
    }

    @Test("a streamed chat sends the analysis as delta.reasoning_content and the final channel as delta.content")
    func streamedResponse() async throws {
        let service = try HarmonyFixture.service()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 200, "stream": true}"#)
            #expect(response.status == .ok, "\(response.text)")
            var reasoning = ""
            var content = ""
            var finishReasons: [String] = []
            for event in try response.events() {
                for choice in try choices(event) {
                    let delta = try #require(choice["delta"] as? [String: Any])
                    if let text = delta["reasoning_content"] as? String {
                        #expect(content.isEmpty, "no reasoning after the answer started")
                        reasoning += text
                    }
                    if let text = delta["content"] as? String { content += text }
                    if let reason = choice["finish_reason"] as? String { finishReasons.append(reason) }
                }
            }
            #expect(reasoning == "The user greets; answer briefly in kind.")
            #expect(content == "Hello! Café 🦜, 12345.")
            #expect(finishReasons == ["stop"])
            #expect(!response.text.contains("<|channel|>") && !response.text.contains("analysis<"), "no header text")
        }
    }

    @Test("a completion cut off in its analysis has reasoning_content and a null content")
    func cutOffInAnalysis() async throws {
        let service = try HarmonyFixture.service()
        let script = try #require(service.idScript)
        let message = try #require(service.tokenizer.harmonyTokens?.message)
        // Two tokens past the analysis header's <|message|>: inside the reasoning.
        let cutOff = try #require(script.firstIndex(of: message)) + 3
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post(
                "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": \#(cutOff)}"#)
            let choice = try #require(try choices(try response.json()).first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["content"] is NSNull)
            let reasoning = try #require(message["reasoning_content"] as? String)
            #expect(!reasoning.isEmpty && "The user greets; answer briefly in kind.".hasPrefix(reasoning))
            #expect(choice["finish_reason"] as? String == "length")
        }
    }

    @Test("/v1/completions returns the raw text; only chats are split into channels")
    func completionsUnsplit() async throws {
        let service = try HarmonyFixture.service()
        try await makeTestApplication(service).test(.router) { client in
            let response = try await client.post("/v1/completions", #"{"prompt": "x", "max_tokens": 200}"#)
            let choice = try #require(try choices(try response.json()).first)
            // Special tokens are skipped in text, as vLLM's default skip_special_tokens.
            #expect(
                choice["text"] as? String
                    == "analysisThe user greets; answer briefly in kind.assistantfinalHello! Café 🦜, 12345.")
        }
    }

    @Test("/tokenize of a chat through the harmony template equals transformers' apply_chat_template ids")
    func tokenizeEqualsTransformers() async throws {
        let (now, cases) = try HarmonyFixture.chatCases()
        #expect(cases.contains { $0["chat_template_kwargs"] != nil }, "the fixture has reasoning_effort cases")
        // Each case as the /tokenize body that asks for it and the ids transformers gave.
        let requests = try cases.map { recorded -> (body: String, ids: [Int]) in
            var body: [String: Any] = [
                "messages": try #require(recorded["messages"]),
                "add_generation_prompt": try #require(recorded["add_generation_prompt"]),
            ]
            if let kwargs = recorded["chat_template_kwargs"] { body["chat_template_kwargs"] = kwargs }
            let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            return (json, try #require(recorded["ids"] as? [Int]))
        }
        let service = try HarmonyFixture.service(renderDate: now)
        try await makeTestApplication(service).test(.router) { client in
            for request in requests {
                let response = try await client.post("/tokenize", request.body)
                #expect(response.status == .ok, "\(response.text)")
                #expect(try response.json()["tokens"] as? [Int] == request.ids, "\(request.body)")
            }
        }
    }
}

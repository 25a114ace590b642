// The server's pure parts without HTTP: body parsing into plans, response assembly from events,
// token strings, the Prometheus text, the key comparison.
import APIRequests
import Coordinator
import Foundation
import Hummingbird
import Testing
import Tokenization

@testable import Server

@Suite("Server logic")
struct PureLogicTests {
    let tokenizer = FakeGenerationService.sharedTokenizer

    func plan(_ json: String, contextLength: Int = 64) throws -> GenerationPlan {
        let body = try JSONObject(JSONValue.parse(Array(json.utf8)))
        return try GenerationPlan.completions(body, tokenizer: tokenizer, contextLength: contextLength)
    }

    @Test("each choice is one engine request; choice i gets seed + i, and without a seed none is set")
    func choiceSeeds() throws {
        let seeded = try plan(#"{"prompt": [5, 6], "n": 3, "seed": 7, "max_tokens": 4}"#)
        #expect(seeded.requests.map(\.sampling.seed) == [7, 8, 9])
        #expect(seeded.requests.allSatisfy { $0.maxTokens == 4 && $0.prompt == .tokenIDs([5, 6]) })
        let unseeded = try plan(#"{"prompt": [5], "n": 2}"#)
        #expect(unseeded.requests.map(\.sampling.seed) == [nil, nil])
    }

    @Test("logprobs 0 still asks the engine for one alternative so the chosen token's logprob is known")
    func logprobsZero() throws {
        let zero = try plan(#"{"prompt": [5], "logprobs": 0}"#)
        #expect(zero.reportsLogprobs && zero.topLogprobs == 0)
        #expect(zero.requests.first?.logprobs == 1)
        let none = try plan(#"{"prompt": [5]}"#)
        #expect(!none.reportsLogprobs && none.requests.first?.logprobs == 0)
    }

    @Test("without max_tokens a completion gets 16 tokens, or what is left of the context if less")
    func defaultMaxTokens() throws {
        #expect(try plan(#"{"prompt": [1, 2]}"#).maxTokens == 16)
        #expect(try plan(#"{"prompt": [1, 2]}"#, contextLength: 10).maxTokens == 8)
    }

    @Test(
        "a chat prompt is the rendered text's ids without added special tokens, so a template's BOS appears once")
    func chatPromptHoldsOneBOS() throws {
        let rendered = "<s>[INST] hi [/INST]"
        let body = try JSONObject(JSONValue.parse(Array(#"{"messages": [{"role": "user", "content": "hi"}]}"#.utf8)))
        let plan = try GenerationPlan.chat(body, tokenizer: tokenizer, contextLength: 64) { _ throws(SubmitError) in
            rendered
        }
        let bos = try #require(tokenizer.bosTokenID)
        let expected = tokenizer.encode(rendered, addSpecialTokens: false)
        #expect(expected.first == bos && expected.filter { $0 == bos }.count == 1)
        #expect(plan.requests.map(\.prompt) == [.tokenIDs(expected)])
        #expect(plan.promptTokenCount == expected.count)
    }

    @Test("a chat stream opens with the role, carries text, and ends with the trailing text and the finish reason")
    func chatChunks() throws {
        let body = try JSONObject(JSONValue.parse(Array(#"{"messages": [{"role": "user", "content": "hi"}]}"#.utf8)))
        let plan = try GenerationPlan.chat(body, tokenizer: tokenizer, contextLength: 64) { _ throws(SubmitError) in
            "hi"
        }
        var assembler = ResponseAssembler(
            endpoint: .chat, id: "chatcmpl-1", created: 0, model: "m", plan: plan,
            strings: TokenStrings(tokenizer: tokenizer))
        let opening = assembler.opening(choice: 0)
        #expect(opening?.choices == [ChoiceJSON(index: 0, delta: MessageJSON(role: "assistant", content: ""))])
        let again = assembler.opening(choice: 0)
        #expect(again == nil, "the role is sent once")

        let token = assembler.record(.token(TokenEvent(tokenID: 10, text: "Hi", logprob: nil)), choice: 0)
        #expect(token.map(\.choices) == [[ChoiceJSON(index: 0, delta: MessageJSON(content: "Hi"))]])
        let silent = assembler.record(.token(TokenEvent(tokenID: 11, text: "", logprob: nil)), choice: 0)
        #expect(silent.isEmpty, "an empty piece of text sends nothing")

        let finish = FinishEvent(
            reason: .cancelled, promptTokenIDs: [1, 2, 3], completionTokenIDs: [10, 11], trailingText: "!",
            expertLoad: ExpertLoad(layerCount: 1, expertCount: 2), queueSeconds: 0)
        let last = assembler.record(.finished(finish), choice: 0)
        #expect(
            last.map(\.choices) == [[ChoiceJSON(index: 0, delta: MessageJSON(content: "!"), finishReason: "abort")]])
        #expect(assembler.usage == UsageJSON(promptTokens: 3, completionTokens: 2))
        #expect(assembler.response.choices.first?.message == MessageJSON(role: "assistant", content: "Hi!"))
        #expect(assembler.usageChunk.choices.isEmpty && assembler.usageChunk.object == "chat.completion.chunk")
    }

    @Test("a byte-fallback token reports its one byte; other tokens report their text's UTF-8")
    func tokenStrings() throws {
        let strings = TokenStrings(tokenizer: tokenizer)
        let byteToken = try #require(tokenizer.tokenID(for: "<0xE2>"))
        #expect(strings.describe(byteToken).bytes == [0xE2])
        let described = strings.describe(FakeGenerationService.firstTokenID + 40)
        #expect(described.bytes == Array(described.text.utf8))
        #expect(!described.text.isEmpty)
    }

    @Test("the exposition writes cumulative buckets and Prometheus's special values")
    func exposition() {
        var metrics = EngineMetrics()
        metrics.queueTime.observe(0.002)
        metrics.queueTime.observe(0.002)
        metrics.queueTime.observe(1000)
        let text = PrometheusExposition.render(metrics)
        #expect(text.contains(#"switchyard_request_queue_time_seconds_bucket{le="0.001"} 0"#))
        #expect(text.contains(#"switchyard_request_queue_time_seconds_bucket{le="0.0025"} 2"#))
        #expect(text.contains(#"switchyard_request_queue_time_seconds_bucket{le="60.0"} 2"#))
        #expect(text.contains(#"switchyard_request_queue_time_seconds_bucket{le="+Inf"} 3"#))
        #expect(PrometheusExposition.number(.infinity) == "+Inf")
        #expect(PrometheusExposition.number(.nan) == "NaN")
    }

    @Test("API keys compare equal only when identical, whatever their lengths")
    func keyComparison() {
        typealias Auth = BearerAuthMiddleware<Hummingbird.BasicRequestContext>
        #expect(Auth.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!Auth.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!Auth.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!Auth.constantTimeEqual([], Array("a".utf8)))
    }
}

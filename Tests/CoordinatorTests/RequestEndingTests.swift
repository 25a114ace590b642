// vLLM's request fields that decide where a sequence ends and what its text holds
// (`stop_token_ids`, `include_stop_str_in_output`, `skip_special_tokens`), and the sampling fields
// `min_p` and `allowed_token_ids`, on the fixture model: the in-process engine and the batching
// scheduler give the same tokens and text.
import Foundation
import Models
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

@Suite("Request endings and token filters", .serialized)
struct RequestEndingTests {
    static func engine() throws -> (GenerationEngine, LocalExperts) {
        let directory = TestPaths.fixtures.appendingPathComponent("models/top2")
        let checkpoint = try Checkpoint(directory: directory)
        let engine = GenerationEngine(model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: directory))
        let local = LocalExperts(store: try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<checkpoint.shape.layerCount).flatMap { layer in
                (0..<checkpoint.shape.expertCount).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
            }))
        return (engine, local)
    }

    static func greedy(_ maxTokens: Int, ignoreEOS: Bool = true) -> GenerationRequest {
        GenerationRequest(prompt: .text("Once upon a time"), maxTokens: maxTokens, sampling: .init(temperature: 0), ignoreEOS: ignoreEOS)
    }

    @Test("a stop token ends the sequence (even with ignore_eos) and its text is left out unless include_stop_str_in_output")
    func stopTokenIDs() async throws {
        var (engine, local) = try Self.engine()
        let plain = try engine.generate(Self.greedy(12), experts: &local)
        let stopAt = try #require(plain.completionTokenIDs.indices.first { index in
            !plain.completionTokenIDs[..<index].contains(plain.completionTokenIDs[index])
                && !engine.tokenizer.decode([plain.completionTokenIDs[index]]).isEmpty && index >= 2
        })
        let stopID = plain.completionTokenIDs[stopAt]
        var request = Self.greedy(12)
        request.stopTokenIDs = [stopID]
        let stopped = try engine.generate(request, experts: &local)
        #expect(stopped.completionTokenIDs == Array(plain.completionTokenIDs[...stopAt]))
        #expect(stopped.finishReason == "stop")
        let before = engine.tokenizer.decode(Array(plain.completionTokenIDs[..<stopAt]), skipSpecialTokens: true)
        #expect(stopped.text == before)
        request.includeStopInText = true
        let included = try engine.generate(request, experts: &local)
        #expect(included.text == engine.tokenizer.decode(Array(plain.completionTokenIDs[...stopAt]), skipSpecialTokens: true))

        // The batching scheduler ends and cuts the same way.
        let running = try RunningScheduler()
        request.includeStopInText = false
        let scheduled = try await collect(running.scheduler.submit(request))
        #expect(scheduled.tokens == stopped.completionTokenIDs)
        #expect(scheduled.text == stopped.text)
        #expect(scheduled.finish?.reason == .stop)
        request.includeStopInText = true
        #expect(try await collect(running.scheduler.submit(request)).text == included.text)

        // Like end of sequence, a stop token is masked until min_tokens.
        request.adjustments.minTokens = stopAt + 3
        request.maxTokens = stopAt + 3
        let held = try engine.generate(request, experts: &local)
        #expect(!held.completionTokenIDs.contains(stopID))
    }

    @Test("skip_special_tokens false keeps special tokens' text; the end-of-sequence token that ended a sequence stays out")
    func skipSpecialTokens() async throws {
        var (engine, local) = try Self.engine()
        let eos = try #require(engine.endOfSequenceTokenIDs.min())
        var request = Self.greedy(3)
        request.adjustments.logitBias = [eos: 100]
        let skipped = try engine.generate(request, experts: &local)
        #expect(skipped.completionTokenIDs == [eos, eos, eos])
        #expect(skipped.text.isEmpty)
        request.skipSpecialTokens = false
        let kept = try engine.generate(request, experts: &local)
        let eosText = try #require(engine.tokenizer.token(for: eos))
        #expect(kept.text == String(repeating: eosText, count: 3))
        let running = try RunningScheduler()
        #expect(try await collect(running.scheduler.submit(request)).text == kept.text)
        // Without ignore_eos the first EOS ends the sequence, and its text is left out.
        request.ignoreEOS = false
        let ended = try engine.generate(request, experts: &local)
        #expect(ended.completionTokenIDs == [eos] && ended.text.isEmpty)
        request.includeStopInText = true
        #expect(try engine.generate(request, experts: &local).text == eosText)
    }

    @Test("allowed_token_ids restricts every sampled token to the list")
    func allowedTokens() async throws {
        var (engine, local) = try Self.engine()
        var request = Self.greedy(8)
        request.sampling = .init(temperature: 1, seed: 5)
        request.adjustments.allowedTokenIDs = [40, 41, 42]
        let result = try engine.generate(request, experts: &local)
        #expect(result.completionTokenIDs.allSatisfy { [40, 41, 42].contains($0) })
        let running = try RunningScheduler()
        #expect(try await collect(running.scheduler.submit(request)).tokens == result.completionTokenIDs)
        request.adjustments.allowedTokenIDs = [999_999]
        #expect(throws: GenerationError.self) { try engine.checkedPromptTokenIDs(for: request) }
    }

    @Test("min_p keeps only tokens at least min_p times as likely as the most likely one")
    func minP() {
        // Relative probabilities at temperature 1: 1, e^-1 ≈ 0.37, e^-2 ≈ 0.14, e^-10.
        let logits: [Float] = [0, -1, -2, -10]
        func drawn(minP: Float) -> Set<Int32> {
            Set((0..<400).map { seed -> Int32 in
                var sampler = Sampler(SamplingParameters(temperature: 1, minP: minP, seed: UInt64(seed)))
                return sampler.sample(logits)
            })
        }
        #expect(drawn(minP: 0.5) == [0])
        #expect(drawn(minP: 0.3) == [0, 1])
        #expect(drawn(minP: 0.1) == [0, 1, 2])
        #expect(drawn(minP: 0).isSuperset(of: [0, 1, 2]))
        #expect(throws: GenerationError.self) { try SamplingParameters(minP: 1.5).validate() }
    }

    @Test("include_stop_str_in_output keeps the matched stop string at the end of the text")
    func stopStringIncluded() {
        var plain = StopMatcher(stops: ["END", "ND"])
        #expect(plain.append("abcEND more") == .init(released: "abc", stopped: true))
        var included = StopMatcher(stops: ["END", "ND"], includesStop: true)
        #expect(included.append("abcEN") == .init(released: "abc", stopped: false))
        #expect(included.append("D more") == .init(released: "END", stopped: true))
    }
}

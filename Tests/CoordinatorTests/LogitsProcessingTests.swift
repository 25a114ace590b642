import Foundation
import Models
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

/// The fixture model's engine and in-process experts, for single-sequence generation.
private func fixtureEngine() throws -> (GenerationEngine, LocalExperts) {
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

private func greedy(
    _ prompt: String, maxTokens: Int, _ adjustments: LogitsAdjustments, ignoreEOS: Bool = true
) -> GenerationRequest {
    GenerationRequest(
        prompt: .text(prompt), maxTokens: maxTokens, sampling: .init(temperature: 0), ignoreEOS: ignoreEOS,
        adjustments: adjustments)
}

@Suite("Logits adjustments: vLLM's penalties, logit_bias and min_tokens")
struct LogitsProcessingTests {
    @Test("penalties follow vLLM: repetition over prompt and completion (divide positive, multiply negative), presence and frequency over the completion")
    func penaltyArithmetic() throws {
        let adjustments = LogitsAdjustments(
            presencePenalty: 0.5, frequencyPenalty: 0.25, repetitionPenalty: 2, logitBias: [4: 3])
        var processor = SequenceLogitsProcessor(adjustments, promptIDs: [0], vocabulary: { preconditionFailure("no grammar") })
        for token: Int32 in [1, 2, 2] { processor.accept(token) }
        var sampler = Sampler(.init(temperature: 0))
        let logits: [Float] = [2, -2, 1, 0.5, 0.5]
        // Token 4: 0.5 + 3 (bias) = 3.5 is the largest after the adjustments; without them token 0 (2) is.
        let token = try logits.withUnsafeBufferPointer {
            try processor.sample($0, with: &sampler, endOfSequence: [])
        }
        #expect(token == 4)
        var check = SequenceLogitsProcessor(adjustments, promptIDs: [0], vocabulary: { preconditionFailure() })
        for token: Int32 in [1, 2, 2] { check.accept(token) }
        let adjusted = try #require(try logits.withUnsafeBufferPointer { try check.applyForTesting($0) })
        // 0: prompt, positive: 2 / 2. 1: -2 * 2 - (0.25 * 1 + 0.5). 2: 1 / 2 - (0.25 * 2 + 0.5). 3: untouched.
        #expect(adjusted == [1, -4.75, -0.5, 0.5, 3.5])
    }

    @Test("logit_bias +100 on a token makes it every greedy and every sampled token")
    func logitBiasForces() throws {
        var (engine, local) = try fixtureEngine()
        let forced: Int32 = 77
        let plain = try engine.generate(greedy("Once upon a time", maxTokens: 8, .init()), experts: &local)
        #expect(plain.completionTokenIDs != Array(repeating: forced, count: 8))
        let biased = try engine.generate(greedy("Once upon a time", maxTokens: 8, .init(logitBias: [forced: 100])), experts: &local)
        #expect(biased.completionTokenIDs == Array(repeating: forced, count: 8))
        var sampled = greedy("Once upon a time", maxTokens: 8, .init(logitBias: [forced: 100]))
        sampled.sampling = .init(temperature: 1, seed: 3)
        #expect(try engine.generate(sampled, experts: &local).completionTokenIDs == Array(repeating: forced, count: 8))
        // -100 removes a token the model picks greedily.
        let first = plain.completionTokenIDs[0]
        let banned = try engine.generate(greedy("Once upon a time", maxTokens: 8, .init(logitBias: [first: -100])), experts: &local)
        #expect(!banned.completionTokenIDs.contains(first))
    }

    @Test("presence, frequency and repetition penalties change the greedy output of a repetitive model")
    func penaltiesChangeOutput() throws {
        var (engine, local) = try fixtureEngine()
        let prompt = "1, 2, 3, 4,"
        let plain = try engine.generate(greedy(prompt, maxTokens: 24, .init()), experts: &local).completionTokenIDs
        try #require(Set(plain).count < plain.count, "the fixture repeats tokens greedily: \(plain)")
        let presence = try engine.generate(greedy(prompt, maxTokens: 24, .init(presencePenalty: 2)), experts: &local)
            .completionTokenIDs
        let frequency = try engine.generate(greedy(prompt, maxTokens: 24, .init(frequencyPenalty: 2)), experts: &local)
            .completionTokenIDs
        let repetition = try engine.generate(greedy(prompt, maxTokens: 24, .init(repetitionPenalty: 2)), experts: &local)
            .completionTokenIDs
        // Presence and frequency see only the completion: the first token is the same.
        #expect(presence[0] == plain[0] && frequency[0] == plain[0])
        #expect(presence != plain)
        #expect(frequency != plain)
        #expect(repetition != plain)
        // Fewer repeats with a positive presence penalty.
        #expect(Set(presence).count > Set(plain).count)
    }

    @Test("min_tokens masks end of sequence until the completion holds that many tokens")
    func minTokens() throws {
        var (engine, local) = try fixtureEngine()
        let eos = try #require(engine.endOfSequenceTokenIDs.min())
        // +100 on EOS makes it the next token whenever it is allowed.
        let early = try engine.generate(
            greedy("Once upon a time", maxTokens: 20, .init(logitBias: [eos: 100]), ignoreEOS: false), experts: &local)
        #expect(early.completionTokenIDs == [eos])
        #expect(early.finishReason == "stop")
        let held = try engine.generate(
            greedy("Once upon a time", maxTokens: 20, .init(logitBias: [eos: 100], minTokens: 5), ignoreEOS: false),
            experts: &local)
        #expect(held.completionTokenIDs.count == 6)
        #expect(!held.completionTokenIDs.prefix(5).contains { engine.endOfSequenceTokenIDs.contains($0) })
        #expect(held.completionTokenIDs.last == eos)
        #expect(held.finishReason == "stop")
    }

    @Test("requests with different adjustments batched together give the tokens each gives alone")
    func batchInvariance() async throws {
        let running = try RunningScheduler(limits: SchedulerLimits(maxTokensPerStep: 24))
        let schema = try JSONGrammar.compile(
            schema: .object(["type": .string("object"), "properties": .object(["n": .object(["type": .string("integer")])])]),
            path: "schema")
        let variants: [LogitsAdjustments] = [
            .init(), .init(presencePenalty: 1.5), .init(frequencyPenalty: 1), .init(repetitionPenalty: 1.8),
            .init(logitBias: [5: 4, 9: -3]), .init(minTokens: 6), .init(grammar: schema),
            .init(presencePenalty: -1, repetitionPenalty: 0.7),
        ]
        func request(_ index: Int) -> GenerationRequest {
            GenerationRequest(
                prompt: .text(SchedulerTests.prompts[index]), maxTokens: 12, sampling: .init(temperature: 0),
                ignoreEOS: variants[index].grammar == nil, adjustments: variants[index])
        }
        var solo: [[Int32]] = []
        for index in variants.indices { solo.append(try await collect(running.scheduler.submit(request(index))).tokens) }
        let together = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for index in variants.indices {
                let stream = try running.scheduler.submit(request(index))
                group.addTask { (index, try await collect(stream).tokens) }
            }
            var results = [[Int32]](repeating: [], count: variants.count)
            for try await (index, tokens) in group { results[index] = tokens }
            return results
        }
        for index in variants.indices {
            #expect(together[index] == solo[index], "variant \(index): \(variants[index])")
        }
    }
}

extension SequenceLogitsProcessor {
    /// The adjusted logits, for checking the arithmetic.
    mutating func applyForTesting(_ logits: UnsafeBufferPointer<Float>) throws -> [Float]? {
        try apply(logits, endOfSequence: [])
    }
}

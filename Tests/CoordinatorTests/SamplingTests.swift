import Foundation
import Tensors
import Testing

@testable import Coordinator

@Suite("Sampling")
struct SamplingTests {
    let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5, 2.0, -3.0, 0.0]

    @Test("temperature 0 is argmax, and ties go to the lowest token id")
    func greedy() {
        var sampler = Sampler(SamplingParameters(temperature: 0))
        #expect(sampler.sample(logits) == 1)
    }

    @Test("the same seed gives the same tokens", arguments: [UInt64(0), 7, 12345])
    func seeded(seed: UInt64) {
        let parameters = SamplingParameters(temperature: 1.3, topP: 0.95, topK: 6, seed: seed)
        var first = Sampler(parameters)
        var second = Sampler(parameters)
        let a = (0..<50).map { _ in first.sample(logits) }
        let b = (0..<50).map { _ in second.sample(logits) }
        #expect(a == b)
    }

    @Test("top-k 2 only ever picks the two most likely tokens")
    func topK() {
        var sampler = Sampler(SamplingParameters(temperature: 5, topK: 2, seed: 1))
        let picks = Set((0..<200).map { _ in sampler.sample(logits) })
        #expect(picks.isSubset(of: [1, 5]))
        #expect(picks.count == 2)
    }

    @Test("top-p keeps the smallest set reaching p")
    func topP() {
        // Probabilities ≈ [0.88, 0.12, ~0]: p = 0.5 keeps only the first.
        var sampler = Sampler(SamplingParameters(temperature: 1, topP: 0.5, seed: 3))
        let picks = Set((0..<100).map { _ in sampler.sample([4, 2, -10]) })
        #expect(picks == [0])
    }

    @Test("sampling without top-k or top-p reaches every token with real probability")
    func fullDistribution() {
        var sampler = Sampler(SamplingParameters(temperature: 1, seed: 9))
        let picks = Set((0..<2000).map { _ in sampler.sample([0, 0, 0, 0]) })
        #expect(picks == [0, 1, 2, 3])
    }

    @Test("logprobs are a log-softmax of the raw logits with the top alternatives in order")
    func logprobs() {
        let entry = TokenLogprob(chosen: 3, logits: logits, top: 3)
        let total = logits.map { exp(Double($0)) }.reduce(0, +)
        // The normaliser sums f32 exps (each within about 2 ulp) in f64: about 1e-7 relative.
        #expect(abs(entry.logprob - log(exp(Double(Float(1.9))) / total)) < 1e-6)
        #expect(entry.topLogprobs.map(\.tokenID) == [1, 5, 3])
    }

    @Test("out-of-range parameters are refused naming the parameter", arguments: [
        (SamplingParameters(temperature: -1), "temperature"),
        (SamplingParameters(topP: 0), "top_p"),
        (SamplingParameters(topP: 1.5), "top_p"),
        (SamplingParameters(topK: -2), "top_k"),
    ])
    func invalid(parameters: SamplingParameters, field: String) {
        do {
            try parameters.validate()
            Issue.record("expected \(field) to be refused")
        } catch {
            #expect(error.description.contains(field))
        }
    }

    @Test("the top indices equal a full sort by value (descending, lower index first on ties)", arguments: [1, 3, 20, 64, 65, 500])
    func topIndicesMatchSort(count: Int) {
        var generator = SplitMix64(seed: UInt64(count))
        // Few distinct values, so ties are common.
        let values = (0..<400).map { _ in Float(generator.next() % 37) / 4 }
        let sorted = values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
        #expect(Sampler.topIndices(values, count: count) == Array(sorted.prefix(count)))
    }
}

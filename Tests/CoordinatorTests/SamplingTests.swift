import Foundation
import Kernels
import Tensors
import Testing

@testable import Coordinator

@Suite("Sampling")
struct SamplingTests {
    let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5, 2.0, -3.0, 0.0]

    @Test("argmax over a vocabulary-sized row is the first of the largest values, NaNs passed over", arguments: [0, 1, 2, 3])
    func argmaxLargeRow(variant: Int) {
        var generator = SplitMix64(seed: UInt64(variant))
        var row = (0..<32_003).map { _ in Float(generator.next() % 400) / 8 - 25 }
        if variant >= 1 { for index in stride(from: 1, to: row.count, by: 7) { row[index] = .nan } }
        if variant == 2 { row[0] = .nan }
        if variant == 3 { row[31_999] = 50; row[32_002] = 50 }
        var expected = 0
        for index in row.indices.dropFirst() where row[index] > row[expected] { expected = index }
        #expect(Sampler.argmax(row) == expected)
        var sampler = Sampler(SamplingParameters(temperature: 0))
        #expect(sampler.sample(row) == Int32(expected))
    }

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

    @Test("draws follow the softmax of logits ÷ temperature, renormalised over top-k and min-p", arguments: [
        SamplingParameters(temperature: 1, seed: 11),
        SamplingParameters(temperature: 2, seed: 12),
        SamplingParameters(temperature: 1, topK: 3, seed: 13),
        // e^0..e^3 relative to e^3: 0.05, 0.14, 0.37, 1; min-p 0.2 keeps tokens 2 and 3.
        SamplingParameters(temperature: 1, minP: 0.2, seed: 14),
    ])
    func frequencies(parameters: SamplingParameters) {
        let logits: [Float] = [0, 1, 2, 3]
        var weights = logits.map { exp(Double($0) / Double(parameters.temperature)) }
        if parameters.topK > 0 { weights[0] = 0 }
        if parameters.minP > 0 { weights = weights.map { $0 >= Double(parameters.minP) * weights[3] ? $0 : 0 } }
        let total = weights.reduce(0, +)
        var sampler = Sampler(parameters)
        var counts = [0, 0, 0, 0]
        let draws = 40_000
        for _ in 0..<draws { counts[Int(sampler.sample(logits))] += 1 }
        for token in 0..<4 {
            let expected = weights[token] / total
            // 40,000 draws: one standard deviation is at most 0.0025.
            #expect(abs(Double(counts[token]) / Double(draws) - expected) < 0.01, "token \(token): \(counts) against \(expected)")
            if expected == 0 { #expect(counts[token] == 0) }
        }
    }

    /// Logits spread like a model's: most tokens far below a few likely ones.
    static func spreadLogits(count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let u = Float(generator.next() >> 40) / Float(1 << 24)
            return 12 * u * u * u - 4 + Float(generator.next() % 8) / 8
        }
    }

    /// The smallest prefix of the full sort (probability descending, token id ascending) whose share
    /// reaches p, from the same f32 probabilities the sampler computes.
    static func nucleus(_ logits: [Float], temperature: Float, topP: Float) -> (sorted: [Int], probabilities: [Float]) {
        var probabilities = logits.map { $0 / temperature }
        softmax(&probabilities, count: probabilities.count)
        let order = probabilities.indices.sorted {
            probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1
        }
        let total = probabilities.reduce(0.0) { $0 + Double($1) }
        var cumulative = 0.0
        for (position, token) in order.enumerated() {
            cumulative += Double(probabilities[token]) / total
            if cumulative >= Double(topP) { return (Array(order.prefix(position + 1)), probabilities) }
        }
        return (order, probabilities)
    }

    @Test("top-p on a large vocabulary draws only from the smallest prefix reaching p, without sorting it all",
          arguments: [(Float(0.7), Float(0.5)), (1, 0.9), (1.3, 0.95), (0.5, 0.99)])
    func topPLargeVocabulary(temperature: Float, topP: Float) {
        let logits = Self.spreadLogits(count: 20_000, seed: UInt64(topP * 100))
        let (expected, probabilities) = Self.nucleus(logits, temperature: temperature, topP: topP)
        // The candidates the sampler orders: a prefix of the full sort that contains the nucleus.
        let total = probabilities.reduce(0.0) { $0 + Double($1) }
        let ordered = probabilities.withUnsafeBufferPointer { buffer in
            Sampler.nucleusOrder(
                UnsafeMutableBufferPointer(mutating: buffer), floor: .leastNonzeroMagnitude, topP: topP, total: total)
        }
        let fullSort = probabilities.indices.filter { probabilities[$0] > 0 }.sorted {
            probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1
        }
        #expect(ordered == Array(fullSort.prefix(ordered.count)))
        #expect(ordered.count >= expected.count)
        #expect(ordered.count < logits.count / 2, "only the likely tokens are sorted")
        var sampler = Sampler(SamplingParameters(temperature: temperature, topP: topP, seed: 5))
        let allowed = Set(expected.map { Int32($0) })
        var picks: [Int32: Int] = [:]
        for _ in 0..<3000 { picks[sampler.sample(logits), default: 0] += 1 }
        #expect(Set(picks.keys).isSubset(of: allowed))
        // The most likely token is drawn about as often as its share of the nucleus.
        let nucleusTotal = expected.reduce(0.0) { $0 + Double(probabilities[$1]) }
        let share = Double(probabilities[expected[0]]) / nucleusTotal
        #expect(abs(Double(picks[Int32(expected[0]), default: 0]) / 3000 - share) < 0.04)
    }

    @Test("masked tokens (-infinity) are never drawn, with or without top-p", arguments: [Float(1), 0.8])
    func masked(topP: Float) {
        var logits = Self.spreadLogits(count: 1000, seed: 3)
        for token in stride(from: 0, to: 1000, by: 2) { logits[token] = -.infinity }
        var sampler = Sampler(SamplingParameters(temperature: 1.5, topP: topP, seed: 8))
        for _ in 0..<2000 { #expect(sampler.sample(logits) % 2 == 1) }
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

    @Test("the top indices equal a full sort by value (descending, lower index first on ties)", arguments: [1, 3, 20, 64, 65, 399, 400, 500])
    func topIndicesMatchSort(count: Int) {
        var generator = SplitMix64(seed: UInt64(count))
        // Few distinct values, so ties are common.
        let values = (0..<400).map { _ in Float(generator.next() % 37) / 4 }
        let sorted = values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
        #expect(Sampler.topIndices(values, count: count) == Array(sorted.prefix(count)))
    }
}

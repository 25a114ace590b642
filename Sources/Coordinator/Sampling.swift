// Sampling: turning one step's logits into the next token, and the log-probabilities reported
// with it.
//
// Order (as vLLM): temperature, then min-p, then top-k, then top-p over the renormalised
// distribution. Temperature 0 is greedy (argmax; ties go to the lowest token id, as torch.argmax),
// and then min-p, top-k and top-p change nothing, as in vLLM.
import Foundation
import Kernels
import Tensors

/// How to pick each next token.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 is greedy; otherwise logits are divided by it before the softmax.
    public var temperature: Float
    /// Keep the smallest set of most likely tokens whose probabilities sum to at least this (0, 1].
    public var topP: Float
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int
    /// Keep only tokens at least this likely relative to the most likely one (after temperature),
    /// [0, 1]; 0 keeps all. vLLM's `min_p`.
    public var minP: Float = 0
    /// Same seed, same tokens. Nil draws a seed from the system.
    public var seed: UInt64?

    public init(temperature: Float = 1, topP: Float = 1, topK: Int = 0, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }

    /// ``init(temperature:topP:topK:seed:)`` with `min_p`.
    public init(temperature: Float = 1, topP: Float = 1, topK: Int = 0, minP: Float, seed: UInt64? = nil) {
        self.init(temperature: temperature, topP: topP, topK: topK, seed: seed)
        self.minP = minP
    }

    /// Checks ranges; the message names the parameter and the valid range.
    public func validate() throws(GenerationError) {
        guard temperature.isFinite, temperature >= 0 else {
            throw .invalidRequest(field: "temperature", "temperature is \(temperature), but must be a finite number >= 0")
        }
        guard topP.isFinite, topP > 0, topP <= 1 else {
            throw .invalidRequest(field: "top_p", "top_p is \(topP), but must be in (0, 1]")
        }
        guard topK >= 0 else { throw .invalidRequest(field: "top_k", "top_k is \(topK), but must be >= 0 (0 disables it)") }
        guard minP.isFinite, (0...1).contains(minP) else {
            throw .invalidRequest(field: "min_p", "min_p is \(minP), but must be in [0, 1]")
        }
    }
}

/// Picks tokens from logits according to `SamplingParameters`.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        var system = SystemRandomNumberGenerator()
        generator = SplitMix64(seed: parameters.seed ?? system.next())
    }

    /// - Parameter logits: [vocabularySize], f32, raw model logits
    /// - Returns: the chosen token id
    public mutating func sample(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { sample($0) }
    }

    /// - Parameter logits: [vocabularySize], f32, raw model logits (read in place, e.g. a row of a
    ///   batch's logits)
    /// - Returns: the chosen token id
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if parameters.temperature == 0 { return Int32(Self.argmax(logits)) }
        // Candidates sorted by logit, descending; ties by token id so the order is deterministic.
        var candidates =
            parameters.topK > 0 ? Self.topIndices(logits, count: parameters.topK) : Self.topIndices(logits, count: logits.count)
        let scale = Double(1 / parameters.temperature)
        let maxLogit = Double(logits[candidates[0]])
        // Each candidate's probability relative to the most likely one (unnormalised weights).
        var probabilities = candidates.map { exp((Double(logits[$0]) - maxLogit) * scale) }
        if parameters.minP > 0 {
            // min-p keeps a prefix of the candidates (they are sorted), so it commutes with top-k.
            let threshold = Double(parameters.minP)
            let keep = probabilities.firstIndex { $0 < threshold } ?? probabilities.count
            probabilities.removeSubrange(max(keep, 1)...)
            candidates.removeSubrange(max(keep, 1)...)
        }
        var total = probabilities.reduce(0, +)
        if parameters.topP < 1 {
            var cumulative = 0.0
            var keep = probabilities.count
            for (index, probability) in probabilities.enumerated() {
                cumulative += probability / total
                if cumulative >= Double(parameters.topP) {
                    keep = index + 1
                    break
                }
            }
            probabilities.removeSubrange(keep...)
            candidates.removeSubrange(keep...)
            total = probabilities.reduce(0, +)
        }
        var threshold = generator.nextUnit() * total
        for (index, probability) in probabilities.enumerated() {
            threshold -= probability
            if threshold < 0 { return Int32(candidates[index]) }
        }
        return Int32(candidates[candidates.count - 1])
    }

    /// The indices of the `count` largest values, largest first; among equal values the lower index
    /// comes first. Small counts are selected in one pass (no sort of the whole vocabulary).
    public static func topIndices(_ values: [Float], count: Int) -> [Int] {
        values.withUnsafeBufferPointer { topIndices($0, count: count) }
    }

    /// ``topIndices(_:count:)`` of values read in place.
    public static func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int] {
        let count = min(max(count, 0), values.count)
        guard count > 0 else { return [] }
        if count == 1 { return [argmax(values)] }
        if count > 64 {
            var pairs = values.enumerated().map { (value: $0.element, index: $0.offset) }
            pairs.sort { $0.value != $1.value ? $0.value > $1.value : $0.index < $1.index }
            return pairs.prefix(count).map(\.index)
        }
        // A sorted buffer of the best `count` so far; a value enters only when it beats the last.
        var best: [(value: Float, index: Int)] = []
        best.reserveCapacity(count + 1)
        for (index, value) in values.enumerated() {
            if best.count == count, !(value > best[count - 1].value) { continue }
            var position = best.count
            while position > 0, value > best[position - 1].value { position -= 1 }
            best.insert((value, index), at: position)
            if best.count > count { best.removeLast() }
        }
        return best.map(\.index)
    }

    /// The index of the largest value; the lowest index wins ties.
    public static func argmax(_ values: [Float]) -> Int {
        values.withUnsafeBufferPointer { argmax($0) }
    }

    /// ``argmax(_:)`` of values read in place.
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        guard var bestValue = values.first else { return 0 }
        var best = 0
        for index in values.indices where values[index] > bestValue {
            best = index
            bestValue = values[index]
        }
        return best
    }
}

/// One token's log-probability and the most likely alternatives at its step.
public struct TokenLogprob: Sendable, Equatable, Codable {
    public struct Alternative: Sendable, Equatable, Codable {
        public let tokenID: Int32
        public let logprob: Double
        enum CodingKeys: String, CodingKey {
            case tokenID = "token_id"
            case logprob
        }
    }
    public let tokenID: Int32
    public let logprob: Double
    public let topLogprobs: [Alternative]
    enum CodingKeys: String, CodingKey {
        case tokenID = "token_id"
        case logprob
        case topLogprobs = "top_logprobs"
    }

    /// Log-softmax of the raw logits (temperature does not apply, as in vLLM's default).
    /// - Parameter logits: [vocabularySize], f32
    public init(chosen: Int32, logits: [Float], top count: Int) {
        self = logits.withUnsafeBufferPointer { TokenLogprob(chosen: chosen, logits: $0, top: count) }
    }

    /// Log-softmax of raw logits read in place (e.g. a row of a batch's logits).
    /// - Parameter logits: [vocabularySize], f32
    public init(chosen: Int32, logits: UnsafeBufferPointer<Float>, top count: Int) {
        let logNormaliser = logSumExp(logits)
        tokenID = chosen
        logprob = Double(logits[Int(chosen)]) - logNormaliser
        topLogprobs = Sampler.topIndices(logits, count: count).map {
            Alternative(tokenID: Int32($0), logprob: Double(logits[$0]) - logNormaliser)
        }
    }
}

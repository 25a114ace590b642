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
    ///
    /// As vLLM: the logits divided by the temperature in f32, a softmax in f32 (over the top-k when
    /// set; the kernel's softmax, the same bits on every CPU), then min-p and top-p on those
    /// probabilities and the draw in f64. Only top-p needs the candidates in order, and only those
    /// that reach p: the vocabulary is never sorted as a whole. A full sort took 2.9 ms a token at
    /// 32k tokens and 16 ms at 152k; this takes 0.03 / 0.14 ms, 0.06 / 0.28 with top-p 0.9
    /// (`switchyard-bench sampling`, which prints transformers' figure beside it).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let best = Self.argmax(logits)
        if parameters.temperature == 0 { return Int32(best) }
        // Every logit -infinity or NaN: nothing to weigh.
        guard logits[best].isFinite else { return Int32(best) }
        // Top-k: the k most likely in order (largest first, ties by token id); otherwise every token.
        let candidates: [Int]? =
            parameters.topK > 0 && parameters.topK < logits.count ? Self.topIndices(logits, count: parameters.topK) : nil
        let count = candidates?.count ?? logits.count
        if probabilities.count < count { probabilities = [Float](repeating: 0, count: count) }
        let (temperature, parameters) = (parameters.temperature, parameters)
        let unit = generator.nextUnit()
        return probabilities.withUnsafeMutableBufferPointer { scratch in
            let probabilities = UnsafeMutableBufferPointer(rebasing: scratch[0..<count])
            if let candidates {
                for (slot, token) in candidates.enumerated() { probabilities[slot] = logits[token] / temperature }
            } else {
                for token in 0..<count { probabilities[token] = logits[token] / temperature }
            }
            softmax(probabilities.baseAddress!, count: count)
            // min-p relative to the most likely; probability 0 (masked, or below f32's range) never wins.
            let most = probabilities[candidates == nil ? best : 0]
            // A temperature so small that a logit ÷ it overflows f32: the most likely token.
            guard most > 0 else { return Int32(best) }
            let floor = max(parameters.minP * most, .leastNonzeroMagnitude)
            let slot = Self.draw(probabilities, floor: floor, topP: parameters.topP, sorted: candidates != nil, unit: unit)
            return Int32(candidates?[slot] ?? slot)
        }
    }

    /// Scratch for one step's probabilities, kept between steps.
    private var probabilities: [Float] = []

    /// The slot drawn from the probabilities at least `floor`, after top-p.
    /// - Parameters:
    ///   - probabilities: [count], f32, a softmax (some entries may be 0)
    ///   - sorted: the slots are already in descending order of probability (top-k candidates)
    ///   - unit: uniform in [0, 1), the step's draw
    static func draw(
        _ probabilities: UnsafeMutableBufferPointer<Float>, floor: Float, topP: Float, sorted: Bool, unit: Double
    ) -> Int {
        // Sums of blocks of slots, four f64 accumulators each (one running sum over a vocabulary of
        // 150k waits on each add in turn: 4 cycles a token), then the walk only inside its block.
        let blockSize = 512
        let blockCount = (probabilities.count + blockSize - 1) / blockSize
        var blockSums = [Double](repeating: 0, count: blockCount)
        var total = 0.0
        for block in 0..<blockCount {
            let end = min(probabilities.count, (block + 1) * blockSize)
            var sums = SIMD4<Double>()
            var slot = block * blockSize
            while slot + 4 <= end {
                let four = SIMD4(probabilities[slot], probabilities[slot + 1], probabilities[slot + 2], probabilities[slot + 3])
                sums += SIMD4<Double>(four.replacing(with: 0, where: four .< floor))
                slot += 4
            }
            var sum = sums.sum()
            while slot < end {
                if probabilities[slot] >= floor { sum += Double(probabilities[slot]) }
                slot += 1
            }
            blockSums[block] = sum
            total += sum
        }
        let lastKept = probabilities.lastIndex { $0 >= floor } ?? 0
        guard topP < 1 else {
            // Without top-p the order of the walk does not change the distribution: slot order.
            var threshold = unit * total
            for block in 0..<blockCount {
                if threshold >= blockSums[block] {
                    threshold -= blockSums[block]
                    continue
                }
                // The block's own sum and the walk's round differently: a draw left over passes on.
                for slot in block * blockSize..<min(probabilities.count, (block + 1) * blockSize) where probabilities[slot] >= floor {
                    threshold -= Double(probabilities[slot])
                    if threshold < 0 { return slot }
                }
            }
            return lastKept
        }
        let order = sorted ? Array(0..<probabilities.count) : nucleusOrder(probabilities, floor: floor, topP: topP, total: total)
        // The smallest prefix, in descending order, whose share of the total reaches p.
        var cumulative = 0.0
        var keep = 0
        var kept = 0.0
        for slot in order where probabilities[slot] >= floor {
            cumulative += Double(probabilities[slot]) / total
            kept += Double(probabilities[slot])
            keep += 1
            if cumulative >= Double(topP) { break }
        }
        var threshold = unit * kept
        var walked = 0
        for slot in order where probabilities[slot] >= floor {
            threshold -= Double(probabilities[slot])
            walked += 1
            if threshold < 0 || walked == keep { return slot }
        }
        return lastKept
    }

    /// The slots whose probabilities could lie in the top-p prefix, largest first (ties by slot):
    /// the probabilities grouped by their f32 exponent (one pass), the groups taken from the top until
    /// their mass reaches p of the total, one more group for rounding, and only those sorted. Falls
    /// back to every slot above `floor` when the groups' sum and the walk's disagree.
    static func nucleusOrder(_ probabilities: UnsafeMutableBufferPointer<Float>, floor: Float, topP: Float, total: Double) -> [Int] {
        // Four histograms, slot by slot in turn, so that the adds to one exponent's mass (most values
        // share a few) do not each wait for the last.
        var mass = [Double](repeating: 0, count: 4 * 256)
        mass.withUnsafeMutableBufferPointer { mass in
            for (slot, probability) in probabilities.enumerated() where probability >= floor {
                mass[(slot & 3) << 8 | Int(probability.bitPattern >> 23)] += Double(probability)
            }
        }
        var exponent = 255
        var cumulative = 0.0
        while exponent > 0 {
            cumulative += mass[exponent] + mass[256 + exponent] + mass[512 + exponent] + mass[768 + exponent]
            if cumulative >= Double(topP) * total { break }
            exponent -= 1
        }
        // The slots at least `least` (and at least `floor`), found by the vector scan (its "above" is
        // strict, so it looks above the float just under), largest first.
        let base = UnsafeBufferPointer(probabilities)
        func slots(atLeast least: Float) -> [Int] {
            let below = max(least, floor).nextDown
            var slots: [Int] = []
            var slot = firstIndex(in: base, above: below)
            while slot < base.count {
                slots.append(slot)
                slot += 1 + firstIndex(in: UnsafeBufferPointer(rebasing: base[(slot + 1)...]), above: below)
            }
            slots.sort { probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1 }
            return slots
        }
        // Every slot at least the smallest value of the exponent below the last group taken.
        let candidates = slots(atLeast: Float(bitPattern: UInt32(max(exponent - 1, 0)) << 23))
        var reached = 0.0
        for slot in candidates {
            reached += Double(probabilities[slot]) / total
            if reached >= Double(topP) { return candidates }
        }
        return slots(atLeast: floor)
    }

    /// The indices of the `count` largest values, largest first; among equal values the lower index
    /// comes first. Small counts are kept in a sorted buffer, larger ones in a heap: one pass, no sort
    /// of the whole vocabulary.
    public static func topIndices(_ values: [Float], count: Int) -> [Int] {
        values.withUnsafeBufferPointer { topIndices($0, count: count) }
    }

    /// ``topIndices(_:count:)`` of values read in place.
    public static func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int] {
        let count = min(max(count, 0), values.count)
        guard count > 0 else { return [] }
        if count == 1 { return [argmax(values)] }
        if count > 64 { return topIndicesByHeap(values, count: count) }
        // A sorted buffer of the best `count` so far; a value enters only when it beats the last. Once
        // it is full, the next value above its last is found by a vector scan (`firstIndex(in:above:)`),
        // so the values that cannot enter (nearly all of a vocabulary) are passed over 16 at a time.
        var best: [(value: Float, index: Int)] = []
        best.reserveCapacity(count + 1)
        let base = values.baseAddress!
        var index = 0
        while index < values.count {
            if best.count == count {
                let rest = UnsafeBufferPointer(start: base + index, count: values.count - index)
                index += firstIndex(in: rest, above: best[count - 1].value)
                if index == values.count { break }
            }
            let value = values[index]
            var position = best.count
            while position > 0, value > best[position - 1].value { position -= 1 }
            best.insert((value, index), at: position)
            if best.count > count { best.removeLast() }
            index += 1
        }
        return best.map(\.index)
    }

    /// ``topIndices(_:count:)`` through a min-heap of `count` keys: each key the value's bits made
    /// order-preserving in the high half and the complement of the index in the low half, so a larger
    /// key is the better entry (a larger value, or an equal one at a lower index); NaN ranks lowest.
    static func topIndicesByHeap(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int] {
        func key(_ index: Int) -> UInt64 {
            let value = values[index]
            let bits = value.isNaN ? 0 : (value.sign == .minus ? ~value.bitPattern : value.bitPattern | 0x8000_0000)
            return UInt64(bits) << 32 | UInt64(UInt32.max - UInt32(index))
        }
        var heap = (0..<count).map(key)
        // Sift-down of a min-heap stored in an array.
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                var smallest = parent
                let left = 2 * parent + 1, right = left + 1
                if left < count, heap[left] < heap[smallest] { smallest = left }
                if right < count, heap[right] < heap[smallest] { smallest = right }
                if smallest == parent { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        for start in stride(from: count / 2 - 1, through: 0, by: -1) { siftDown(start) }
        for index in count..<values.count {
            let candidate = key(index)
            if candidate > heap[0] {
                heap[0] = candidate
                siftDown(0)
            }
        }
        heap.sort(by: >)
        return heap.map { Int(UInt32.max - UInt32(truncatingIfNeeded: $0)) }
    }

    /// The index of the largest value; the lowest index wins ties.
    public static func argmax(_ values: [Float]) -> Int {
        values.withUnsafeBufferPointer { argmax($0) }
    }

    /// ``argmax(_:)`` of values read in place.
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        Kernels.argmax(values)
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

// Batch invariance: a row's (a sequence's) result is bitwise the same whatever else is in the
// batch. Kernels on every instruction-set path against double-precision references and against
// themselves at every batch size; the batched Mixtral step against each sequence run alone.
import Foundation
import Kernels
import Models
import Tensors
import Testing

/// Largest accepted |kernel - double reference| relative to Σ|x·w| (f32 accumulation).
private let relativeKernelTolerance: Double = 1e-6

/// The bit patterns, so that `==` means bitwise equality (not -0 == 0, and NaN == NaN).
private func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

/// Expects `actual` to equal `expected` bit for bit; on failure reports the largest difference and
/// the first mismatch rather than both arrays.
private func expectBitwiseEqual(
    _ actual: [Float], _ expected: [Float], _ context: @autoclosure () -> String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let equal = actual.count == expected.count && bits(actual) == bits(expected)
    guard !equal else { return }
    let detail =
        actual.count == expected.count
        ? "\(Difference(actual, expected, tolerance: 0))" : "\(actual.count) vs \(expected.count) values"
    Issue.record("\(context()): not bitwise equal, \(detail)", sourceLocation: sourceLocation)
}

/// `x · wᵀ` in double precision, and Σ|x·w| per element (the scale of the rounding error).
private func referenceProduct(
    _ x: [Float], rows: Int, _ w: [Float], outputs: Int, inputs: Int
) -> (values: [Double], magnitudes: [Double]) {
    var values = [Double](repeating: 0, count: rows * outputs)
    var magnitudes = values
    for r in 0..<rows {
        for o in 0..<outputs {
            for i in 0..<inputs {
                let product = Double(x[r * inputs + i]) * Double(w[o * inputs + i])
                values[r * outputs + o] += product
                magnitudes[r * outputs + o] += abs(product)
            }
        }
    }
    return (values, magnitudes)
}

@Suite("Batch-invariant kernels")
struct InvariantKernelTests {
    @Test(
        "the invariant product equals a double-precision x·Wᵀ on every supported path, tails included",
        arguments: KernelISA.alike,
        [(1, 1, 1), (1, 17, 5), (3, 15, 7), (5, 16, 4), (7, 33, 9), (9, 100, 13), (13, 257, 6), (2, 1024, 3)])
    func productMatchesReference(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 1000 + shape.inputs))
        let x = random.floats(shape.rows * shape.inputs)
        let w = random.floats(shape.outputs * shape.inputs)
        let reference = referenceProduct(x, rows: shape.rows, w, outputs: shape.outputs, inputs: shape.inputs)
        let base = random.floats(shape.rows * shape.outputs)
        var accumulated = base
        let y = linear(x, rowCount: shape.rows, weight: w, outputCount: shape.outputs, isa: isa)
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                accumulated.withUnsafeMutableBufferPointer { yp in
                    linear(
                        xp.baseAddress!, rowCount: shape.rows, inputCount: shape.inputs, weight: wp.baseAddress!,
                        outputCount: shape.outputs, into: yp.baseAddress!, accumulate: true, isa: isa)
                }
            }
        }
        var worst = 0.0
        for index in y.indices {
            let bound = relativeKernelTolerance * max(reference.magnitudes[index], 1e-30)
            worst = max(worst, abs(Double(y[index]) - reference.values[index]) / bound)
            #expect(
                abs(Double(y[index]) - reference.values[index]) <= bound,
                "\(isa) \(shape) index \(index): \(y[index]) vs \(reference.values[index])")
            // y + (x·w) is one f32 addition after the product.
            #expect(accumulated[index] == base[index] + y[index], "\(isa) accumulate, index \(index)")
        }
        #expect(worst <= 1, "\(isa) \(shape): worst error \(worst) × tolerance")
    }

    @Test(
        "every supported path gives bitwise the same products (one reduction shape for all), narrow rows and tails included",
        arguments: [(1, 203, 9), (2, 17, 5), (3, 31, 3), (4, 1, 2), (5, 33, 7), (11, 203, 9)])
    func pathsAgreeBitwise(shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(11 + shape.rows))
        let (rows, inputs, outputs) = shape
        let x = random.floats(rows * inputs)
        let w = random.floats(outputs * inputs)
        let scalar = linear(x, rowCount: rows, weight: w, outputCount: outputs, isa: .scalar)
        for isa in KernelISA.alike {
            expectBitwiseEqual(
                linear(x, rowCount: rows, weight: w, outputCount: outputs, isa: isa), scalar, "\(isa) \(shape)")
        }
        #expect(KernelISA.active.isSupported)
        // amx gives the fast products bits of their own: only SWITCHYARD_KERNEL=amx may choose it.
        if ProcessInfo.processInfo.environment["SWITCHYARD_KERNEL"] != "amx" {
            #expect(KernelISA.active != .amx, "the default path must share the other paths' bits")
        }
    }

    @Test(
        "a row's product is bitwise identical for m = 1 … 40 and at any position in the batch",
        arguments: KernelISA.alike)
    func productIsBatchInvariant(isa: KernelISA) {
        var random = TestRandom(seed: 12)
        let (inputs, outputs) = (67, 37)
        let w = random.floats(outputs * inputs)
        let row = random.floats(inputs)
        let alone = linear(row, rowCount: 1, weight: w, outputCount: outputs, isa: isa)
        for rowCount in 1...40 {
            for position in Set([0, rowCount / 2, rowCount - 1]) {
                var x = random.floats(rowCount * inputs)
                x.replaceSubrange((position * inputs)..<((position + 1) * inputs), with: row)
                let y = linear(x, rowCount: rowCount, weight: w, outputCount: outputs, isa: isa)
                let found = Array(y[(position * outputs)..<((position + 1) * outputs)])
                expectBitwiseEqual(found, alone, "\(isa): m = \(rowCount), row at \(position)")
            }
        }
    }

    @Test(
        "attention equals a double-precision reference on every path, and each query is bitwise its value alone",
        arguments: KernelISA.alike,
        [(4, 2, 6, 0, 5, nil), (6, 2, 17, 3, 4, 2), (4, 1, 32, 7, 9, 4), (2, 2, 20, 0, 12, nil)]
            as [(Int, Int, Int, Int, Int, Int?)])
    func attentionIsInvariant(
        isa: KernelISA,
        parameters: (heads: Int, keyValueHeads: Int, headDimension: Int, cached: Int, queries: Int, window: Int?)
    ) {
        let p = parameters
        var random = TestRandom(seed: 13)
        let keyCount = p.cached + p.queries
        let queryWidth = p.heads * p.headDimension
        let keyWidth = p.keyValueHeads * p.headDimension
        let q = random.floats(p.queries * queryWidth)
        let k = random.floats(keyCount * keyWidth)
        let v = random.floats(keyCount * keyWidth)
        let shape = AttentionShape(
            headCount: p.heads, keyValueHeadCount: p.keyValueHeads, headDimension: p.headDimension,
            slidingWindow: p.window)
        let chunk = attention(queries: q, keys: k, values: v, firstQueryPosition: p.cached, shape: shape, isa: isa)
        let group = p.heads / p.keyValueHeads
        for t in 0..<p.queries {
            let position = p.cached + t
            // The query alone, as a decode step at its position sees it: only keys up to itself.
            let alone = attention(
                queries: Array(q[(t * queryWidth)..<((t + 1) * queryWidth)]),
                keys: Array(k[..<((position + 1) * keyWidth)]), values: Array(v[..<((position + 1) * keyWidth)]),
                firstQueryPosition: position, shape: shape, isa: isa)
            let inChunk = Array(chunk[(t * queryWidth)..<((t + 1) * queryWidth)])
            expectBitwiseEqual(inChunk, alone, "\(isa) query \(t) of \(p.queries)")
            for h in 0..<p.heads {
                let g = h / group
                let visible = (0...position).filter { p.window == nil || $0 > position - p.window! }
                let scores = visible.map { s in
                    (0..<p.headDimension).reduce(0.0) { sum, d in
                        sum + Double(q[t * queryWidth + h * p.headDimension + d])
                            * Double(k[s * keyWidth + g * p.headDimension + d])
                    } / Double(p.headDimension).squareRoot()
                }
                let maximum = scores.max()!
                let exps = scores.map { exp($0 - maximum) }
                let total = exps.reduce(0, +)
                for d in 0..<p.headDimension {
                    var expected = 0.0
                    for (j, s) in visible.enumerated() {
                        expected += exps[j] / total * Double(v[s * keyWidth + g * p.headDimension + d])
                    }
                    let actual = inChunk[h * p.headDimension + d]
                    #expect(abs(Double(actual) - expected) <= 1e-5, "\(isa) query \(t) head \(h) dim \(d)")
                }
            }
        }
    }
}

/// A fixture model with every expert in one store.
private struct LoadedModel {
    let model: DecoderStack
    let store: ExpertStore
    let checkpoint: Checkpoint
    let prompt: [Int32]

    init(_ name: String) throws {
        checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        model = try DecoderStack(checkpoint: checkpoint)
        store = try ExpertStore(checkpoint: checkpoint, experts: checkpoint.shape.allExperts)
        let reference = try Fixtures.reference(name)
        prompt = reference.cases[0].promptTokenIDs + reference.cases[0].completionTokenIDs
    }

    static func allExperts(_ c: ModelShape) -> [LayerExpert] { c.allExperts }

    var experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float] {
        { [store] in try store.compute(layer: $0, hidden: $1, routing: $2) }
    }

    /// `count` tokens of sequence `sequence`: the prompt shifted, so sequences differ.
    func tokens(sequence: Int, count: Int) -> [Int32] {
        let vocabulary = Int32(model.shape.vocabularySize)
        return (0..<count).map { (prompt[$0 % prompt.count] + Int32(sequence * 7)) % vocabulary }
    }
}

@Suite("Batched Mixtral step")
struct BatchedForwardTests {
    /// Per sequence: tokens already cached, then the chunk of this step (1 = a decode step).
    static let sequences: [(history: Int, chunk: Int)] = [(3, 1), (0, 7), (5, 4), (0, 1), (9, 1)]

    @Test(
        "forward(batch:) of 5 sequences (prefill chunks and decode tokens) gives each one's logits alone, bitwise, and greedy decoding stays equal",
        arguments: Fixtures.modelNames)
    func batchEqualsAlone(name: String) throws {
        let loaded = try LoadedModel(name)
        let model = loaded.model
        let vocabulary = model.shape.vocabularySize
        let decodeSteps = 4
        let histories = Self.sequences.enumerated().map {
            loaded.tokens(sequence: $0.offset, count: $0.element.history)
        }
        let chunks = Self.sequences.enumerated().map {
            Array(
                loaded.tokens(sequence: $0.offset, count: $0.element.history + $0.element.chunk)[$0.element.history...])
        }
        let capacity = 20 + decodeSteps

        // Alone: each sequence on its own cache, history, then its chunk, then greedy decode steps.
        var aloneLogits: [[[Float]]] = []
        for index in Self.sequences.indices {
            var cache = model.makeCache(capacity: capacity)
            if !histories[index].isEmpty {
                _ = try model.forward(
                    tokens: histories[index], cache: &cache, logits: .lastToken, experts: loaded.experts)
            }
            var steps = [
                try model.forward(tokens: chunks[index], cache: &cache, logits: .lastToken, experts: loaded.experts)
            ]
            for _ in 0..<decodeSteps {
                let next = Int32(argmax(steps.last![...]))
                steps.append(
                    try model.forward(tokens: [next], cache: &cache, logits: .lastToken, experts: loaded.experts))
            }
            aloneLogits.append(steps)
        }

        // Batched: the histories as one batch, then every step as one batch of all sequences.
        let withHistory = Self.sequences.indices.filter { !histories[$0].isEmpty }
        var historyCaches = withHistory.map { _ in model.makeCache(capacity: capacity) }
        _ = try model.forward(batch: withHistory.map { histories[$0] }, caches: &historyCaches, experts: loaded.experts)
        var caches = Self.sequences.indices.map { index in
            withHistory.firstIndex(of: index).map { historyCaches[$0] } ?? model.makeCache(capacity: capacity)
        }
        historyCaches = []
        var stepChunks = chunks
        for step in 0...decodeSteps {
            let logits = try model.forward(batch: stepChunks, caches: &caches, experts: loaded.experts)
            #expect(logits.count == stepChunks.count * vocabulary)
            for index in Self.sequences.indices {
                let row = Array(logits[(index * vocabulary)..<((index + 1) * vocabulary)])
                let expected = aloneLogits[index][step]
                expectBitwiseEqual(row, expected, "\(name) sequence \(index) step \(step)")
                stepChunks[index] = [Int32(argmax(row[...]))]
            }
        }
        for (index, sequence) in Self.sequences.enumerated() {
            #expect(caches[index].count == sequence.history + sequence.chunk + decodeSteps)
        }
    }

    @Test(
        "a prompt prefilled in 3 chunks gives bitwise the logits of the whole prompt at once and of token-by-token",
        arguments: Fixtures.modelNames)
    func chunkedPrefillEqualsWhole(name: String) throws {
        let loaded = try LoadedModel(name)
        let model = loaded.model
        let prompt = loaded.prompt
        let vocabulary = model.shape.vocabularySize

        var wholeCache = model.makeCache(capacity: prompt.count)
        let all = try model.forward(tokens: prompt, cache: &wholeCache, logits: .allTokens, experts: loaded.experts)

        var chunkCaches = [model.makeCache(capacity: prompt.count)]
        let cuts = [0, prompt.count / 3, prompt.count / 3 + 1, prompt.count]
        var chunked: [Float] = []
        for part in 0..<3 {
            chunked = try model.forward(
                batch: [Array(prompt[cuts[part]..<cuts[part + 1]])], caches: &chunkCaches, experts: loaded.experts)
            let expected = Array(all[((cuts[part + 1] - 1) * vocabulary)..<(cuts[part + 1] * vocabulary)])
            expectBitwiseEqual(chunked, expected, "\(name) chunk \(part) ends at \(cuts[part + 1])")
        }

        var stepCache = model.makeCache(capacity: prompt.count)
        for (index, token) in prompt.enumerated() {
            let logits = try model.forward(
                tokens: [token], cache: &stepCache, logits: .lastToken, experts: loaded.experts)
            let expected = Array(all[(index * vocabulary)..<((index + 1) * vocabulary)])
            expectBitwiseEqual(logits, expected, "\(name) position \(index)")
        }
        #expect(chunkCaches[0].count == prompt.count && stepCache.count == prompt.count)
    }

    @Test(
        "a batched step with the experts split over 2 or 3 stores gives the tokens of one store",
        arguments: Fixtures.modelNames, [2, 3])
    func splitStoresInBatch(name: String, storeCount: Int) throws {
        let loaded = try LoadedModel(name)
        let model = loaded.model
        let c = model.shape
        let all = LoadedModel.allExperts(c)
        let shards = try (0..<storeCount).map { shard in
            try ExpertStore(
                checkpoint: loaded.checkpoint, experts: all.filter { $0.expert.rawValue % storeCount == shard })
        }
        // Each store gets the rows routed to its experts (CSR); the partial sums are added up.
        func split(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
            var combined = [Float](repeating: 0, count: hidden.count)
            for store in shards {
                var rows: [Int] = []
                var offsets: [UInt32] = [0]
                var ids: [UInt32] = []
                var weights: [Float] = []
                for token in 0..<routing.tokenCount {
                    let before = ids.count
                    for slot in 0..<routing.expertsPerToken {
                        let index = token * routing.expertsPerToken + slot
                        let expert = LayerExpert(layer: layer, expert: ExpertID(Int(routing.expertIDs[index])))
                        guard store.heldExperts.contains(expert) else { continue }
                        ids.append(UInt32(routing.expertIDs[index]))
                        weights.append(routing.weights[index])
                    }
                    if ids.count > before {
                        rows.append(token)
                        offsets.append(UInt32(ids.count))
                    }
                }
                guard !rows.isEmpty else { continue }
                let gathered = rows.flatMap { hidden[($0 * c.hiddenSize)..<(($0 + 1) * c.hiddenSize)] }
                let partial = try store.compute(
                    layer: layer, hidden: gathered, rowCount: rows.count, rowExpertOffsets: offsets, expertIDs: ids,
                    weights: weights)
                for (slot, token) in rows.enumerated() {
                    for column in 0..<c.hiddenSize {
                        combined[token * c.hiddenSize + column] += partial[slot * c.hiddenSize + column]
                    }
                }
            }
            return combined
        }
        func greedy(_ experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float]) throws -> [[Int32]] {
            var caches = (0..<3).map { _ in model.makeCache(capacity: 20) }
            var chunks = (0..<3).map { loaded.tokens(sequence: $0, count: 3 + 2 * $0) }
            var tokens: [[Int32]] = [[], [], []]
            for _ in 0..<6 {
                let logits = try model.forward(batch: chunks, caches: &caches, experts: experts)
                for index in 0..<3 {
                    let next = Int32(argmax(logits[(index * c.vocabularySize)..<((index + 1) * c.vocabularySize)]))
                    tokens[index].append(next)
                    chunks[index] = [next]
                }
            }
            return tokens
        }
        #expect(try greedy(split) == greedy(loaded.experts), "\(name) with \(storeCount) stores")
    }

    @Test(
        "forward(batch:) in 1 to 6 micro-batches gives the logits of one batch bitwise, splits whole sequences by rows, and starts each micro-batch's next layer before collecting the next micro-batch"
    )
    func microBatchesEqualOneBatch() throws {
        let loaded = try LoadedModel(Fixtures.modelNames[0])
        let model = loaded.model
        let hiddenSize = model.shape.hiddenSize, layerCount = model.shape.layerCount
        // 5 sequences of 1, 7, 4, 1 and 1 rows.
        let chunks = Self.sequences.enumerated().map { loaded.tokens(sequence: $0.offset, count: $0.element.chunk) }
        let starts = [0, 1, 8, 12, 13]
        var caches = chunks.map { _ in model.makeCache(capacity: 16) }
        let oneBatch = try model.forward(batch: chunks, caches: &caches, experts: loaded.experts)
        for count in 1...6 {
            caches = chunks.map { _ in model.makeCache(capacity: 16) }
            var events: [String] = []
            var groups: [Range<Int>] = []
            let logits = try model.forward(
                batch: chunks, caches: &caches, microBatchCount: count,
                dispatch: { layer, rows, hidden, routing -> (layer: Int, group: Int, output: [Float]) in
                    #expect(hidden.count == rows.count * hiddenSize && routing.tokenCount == rows.count)
                    if layer.rawValue == 0 { groups.append(rows) }
                    let group = groups.firstIndex(of: rows) ?? -1
                    events.append("start \(layer.rawValue).\(group)")
                    return (layer.rawValue, group, try loaded.experts(layer, hidden, routing))
                },
                collect: { pending in
                    events.append("collect \(pending.layer).\(pending.group)")
                    return pending.output
                })
            expectBitwiseEqual(logits, oneBatch, "\(count) micro-batches")
            #expect(caches.map(\.count) == chunks.map(\.count))
            // Whole sequences, consecutive, covering every row once.
            let groupCount = min(count, chunks.count)
            #expect(groups.count == groupCount)
            #expect(groups.first?.lowerBound == 0 && groups.last?.upperBound == 14)
            #expect(zip(groups, groups.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            #expect(groups.allSatisfy { starts.contains($0.lowerBound) && !$0.isEmpty })
            // Two micro-batches split the 14 rows as 8 + 6: the first two sequences, then the other three.
            if count == 2 { #expect(groups == [0..<8, 8..<14]) }
            var expected = (0..<groupCount).map { "start 0.\($0)" }
            for layer in 0..<layerCount {
                for group in 0..<groupCount {
                    expected.append("collect \(layer).\(group)")
                    if layer + 1 < layerCount { expected.append("start \(layer + 1).\(group)") }
                }
            }
            #expect(events == expected, "\(count) micro-batches")
        }

        // A failure at a later layer's collect leaves every cache as it was; 0 micro-batches is refused.
        caches = chunks.map { _ in model.makeCache(capacity: 16) }
        struct Refused: Error {}
        #expect(throws: Refused.self) {
            _ = try model.forward(
                batch: chunks, caches: &caches, microBatchCount: 2,
                dispatch: { layer, _, hidden, routing in (layer, try loaded.experts(layer, hidden, routing)) },
                collect: { pending in
                    if pending.0.rawValue == layerCount - 1 { throw Refused() }
                    return pending.1
                })
        }
        #expect(caches.map(\.count) == [0, 0, 0, 0, 0])
        #expect(
            modelError {
                _ = try model.forward(
                    batch: chunks, caches: &caches, microBatchCount: 0, dispatch: { _, _, _, _ in 0 },
                    collect: { _ in [] })
            } == .invalidInput("forward: 0 micro-batches; at least 1 is needed"))
    }

    @Test("forward(batch:) rejects mismatched caches and empty chunks, and changes no cache when experts throw")
    func batchErrors() throws {
        let loaded = try LoadedModel(Fixtures.modelNames[0])
        let model = loaded.model
        var caches = [model.makeCache(capacity: 8), model.makeCache(capacity: 8)]
        #expect(
            modelError { _ = try model.forward(batch: [[1]], caches: &caches, experts: loaded.experts) }
                == .invalidInput("forward: 1 chunks but 2 caches; expected one each"))
        #expect(
            modelError { _ = try model.forward(batch: [[1], []], caches: &caches, experts: loaded.experts) }
                == .invalidInput("forward: chunk 1 is empty"))
        #expect(
            modelError {
                _ = try model.forward(
                    batch: [[1], [1, 2, 3, 4, 5, 6, 7, 8, 9]], caches: &caches, experts: loaded.experts)
            }
                == .invalidInput("forward: KV cache of chunk 1 holds 0 of 8 tokens; 9 more do not fit"))
        struct Refused: Error {}
        #expect(throws: Refused.self) {
            _ = try model.forward(batch: [[1, 2], [3]], caches: &caches) { _, _, _ in throw Refused() }
        }
        #expect(caches.map(\.count) == [0, 0])
        _ = try model.forward(batch: [[1, 2], [3]], caches: &caches, experts: loaded.experts)
        #expect(caches.map(\.count) == [2, 1])
    }
}

import Kernels
// The generic decoder: embed -> decoder layers -> final norm -> LM head, for every architecture. It
// owns batching (several sequences' chunks in one pass), micro-batches, input validation and the
// KV-cache policy; an architecture only assembles the layers (Architectures/).
//
// Legend: T = tokens in this forward pass, H = hidden size, V = vocabulary size.
public import Tensors

/// The parts of a model that an architecture assembles from a checkpoint.
public struct DecoderStackParts: Sendable {
    /// [V, H], f32 or bf16 (as stored; f16 converted)
    let embedding: WeightTensor
    let layers: [DecoderLayer]
    /// [H], f32
    let finalNorm: FloatTensor
    /// ε of the final norm.
    let finalNormEpsilon: Float
    /// [V, H], f32 or bf16 (the embedding matrix when tied)
    let lmHead: WeightTensor
}

/// The dense part of a model (what the coordinator runs): embeddings, attention with the KV cache,
/// norms, routers, dense MLPs and shared experts, and the LM head. It holds no routed experts.
public final class DecoderStack: Sendable {
    /// The architecture of the checkpoint it was loaded from.
    public let architecture: Architecture
    /// The architecture-neutral shape of the model.
    public let shape: ModelShape
    /// [V, H], f32 or bf16 (as stored; f16 converted)
    private let embedding: WeightTensor
    private let layers: [DecoderLayer]
    /// [H], f32
    private let finalNorm: FloatTensor
    private let finalNormEpsilon: Float
    /// [V, H], f32 or bf16 (the embedding matrix when tied)
    private let lmHead: WeightTensor
    /// The arithmetic of the projections and the LM head when their weights are bf16. The router
    /// is always exact: it is small, and its choices are what the experts' load depends on.
    public let arithmetic: BFloat16Arithmetic
    /// How the KV caches made by ``makeCache(capacity:)`` store keys and values (f32 or bf16).
    public let keyValueCacheDType: DType
    /// How the matrices of attention, dense MLPs, shared experts and the LM head are held.
    public let quantization: WeightQuantization

    /// Loads the dense tensors of `checkpoint`: matrices f32 or bf16 as stored (f16 converted to
    /// f32), used in place from the memory map when possible; norms as f32.
    /// - Parameters:
    ///   - arithmetic: how products with bf16 weights treat activations (f32 weights are always exact).
    ///   - keyValueCacheDType: f32 or bf16; nil picks ``defaultKeyValueCacheDType(checkpoint:arithmetic:)``.
    ///   - quantization: ``WeightQuantization/q8`` quantizes at load time the q/k/v/o projections of
    ///     standard attention, the dense MLPs and shared experts, and the LM head (owned copies, 1.125
    ///     bytes a weight; FP8 matrices stay FP8), as llama.cpp's q8_0 holds them. The embedding stays
    ///     as stored (a lookup reads one row a token), as do the routers, the shared experts' gates and
    ///     latent attention (DeepSeek).
    /// - Throws: `ModelError` when a tensor cannot be read or the cache dtype is neither f32 nor bf16.
    public init(
        checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic = .exact, keyValueCacheDType: DType? = nil,
        quantization: WeightQuantization = .none
    ) throws {
        architecture = checkpoint.architecture
        shape = checkpoint.shape
        self.arithmetic = arithmetic
        let cacheDType = keyValueCacheDType ?? Self.defaultKeyValueCacheDType(checkpoint: checkpoint, arithmetic: arithmetic)
        guard cacheDType == .f32 || cacheDType == .bf16 else {
            throw ModelError.invalidInput("the KV cache dtype is \(cacheDType), but must be f32 or bf16")
        }
        self.keyValueCacheDType = cacheDType
        let parts = try checkpoint.configuration.assemble(from: checkpoint, arithmetic: arithmetic)
        precondition(parts.layers.count == shape.layerCount, "\(architecture.name): assembled a layer count unlike the shape's")
        self.quantization = quantization
        embedding = parts.embedding
        finalNorm = parts.finalNorm
        finalNormEpsilon = parts.finalNormEpsilon
        // The matrices read every token (attention, dense MLPs, shared experts, the LM head) in memory
        // of the model's own: quantized to q8, or copied as stored into a weight arena (huge pages),
        // which streams faster than the checkpoint's file mapping (see ``WeightArena``).
        let arena = WeightArena()
        // On the amx path with fast arithmetic (SWITCHYARD_KERNEL=amx) the bf16 ones are packed for it.
        let transform: (WeightTensor) -> WeightTensor =
            switch quantization {
            case .none where holdsPackedForAMX(arithmetic): { $0.packedForAMX(in: arena) }
            case .none: { $0.resident(in: arena, copier: parallelCopier) }
            case .q8: { $0.quantizedQ8(in: arena) }
            }
        layers = parts.layers.map { $0.mappingMatrices(transform) }
        lmHead = transform(parts.lmHead)
        arena.seal()
        checkpoint.releaseMappedPages()
    }

    /// The KV cache dtype a model loads with unless told otherwise: bf16 when its key and value
    /// projections are stored in bf16 and computed with ``BFloat16Arithmetic/fast`` (as transformers
    /// caches a bf16 model's keys and values in bf16), else f32 (exact arithmetic stays bitwise the
    /// f32 model's).
    public static func defaultKeyValueCacheDType(checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) -> DType {
        guard arithmetic == .fast else { return .f32 }
        let projections = checkpoint.configuration.keyValueProjectionNames
        return projections.allSatisfy { checkpoint.entry(named: $0)?.dtype == .bf16 } ? .bf16 : .f32
    }

    /// An empty KV cache for one sequence of up to `capacity` tokens, stored as ``keyValueCacheDType``.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(
            capacity: capacity, rowWidths: shape.keyValueWidths, valueRowWidths: shape.valueWidths,
            dtype: keyValueCacheDType)
    }

    /// Runs `tokens` at positions `cache.count ..< cache.count + tokens.count` and appends them to the cache.
    ///
    /// `experts` is called once per MoE layer, in layer order, with the post-attention-normed hidden
    /// states [tokens, hiddenSize] f32 and the routing; it returns the combined expert output
    /// [tokens, hiddenSize] f32 (per token, the sum over its experts of weight × FFN(x)).
    /// If `experts` throws, the error is rethrown and `cache.count` is unchanged.
    /// The same code as ``forward(batch:caches:experts:)``: the result is bitwise that of a batch of one.
    /// - Throws: `ModelError.invalidInput` for an empty or out-of-vocabulary token, a full cache, a
    ///   cache made for another model, or an expert output of the wrong size; whatever `experts` throws.
    /// - Returns: logits, [1 or tokens, vocabularySize], f32
    public func forward(
        tokens: [Int32], cache: inout KVCache, logits selection: LogitsSelection,
        experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float]
    ) throws -> [Float] {
        // A pointer to the caller's cache, not a copy in an array: a copy would share the cache's
        // storage and the first write would duplicate every layer's keys and values.
        let hidden = try withUnsafeMutablePointer(to: &cache) { pointer in
            try forwardHidden(
                chunks: [tokens], caches: UnsafeMutableBufferPointer(start: pointer, count: 1), microBatchCount: 1,
                dispatch: { layer, _, hidden, routing in try experts(layer, hidden, routing) }, collect: { $0 })
        }
        let hiddenSize = shape.hiddenSize
        switch selection {
        case .allTokens: return logits(ofRows: hidden, rowCount: tokens.count)
        case .lastToken:
            return logits(ofRows: Array(hidden[((tokens.count - 1) * hiddenSize)...]), rowCount: 1)
        }
    }

    /// Runs one step for several sequences at once: chunk i's tokens are appended to caches[i] at
    /// positions `caches[i].count ..< +chunk.count`. One call of `experts` per MoE layer covers all
    /// rows of all chunks, in chunk order (rows of chunk 0 first).
    ///
    /// Batch-invariant: each chunk's logits are bitwise those of running it alone (every kernel is
    /// row-wise with a fixed reduction order, and attention runs per chunk), provided `experts`
    /// computes each row independently of the others (``ExpertStore`` does).
    /// A chunk may be a prefill (many tokens) or a decode step (one token). If anything throws,
    /// no cache count changes.
    /// - Parameters:
    ///   - chunks: [sequences][tokens of this step] token ids; each chunk non-empty.
    ///   - caches: one cache per chunk, made by ``makeCache(capacity:)``.
    ///   - experts: as in ``forward(tokens:cache:logits:experts:)``, with [rows of all chunks, hiddenSize].
    /// - Throws: `ModelError.invalidInput` for no chunks, a count mismatch, an empty chunk, an
    ///   out-of-vocabulary token, a full or foreign cache, or an expert output of the wrong size;
    ///   whatever `experts` throws.
    /// - Returns: logits of each chunk's last token, [chunks.count, vocabularySize], f32
    public func forward(
        batch chunks: [[Int32]], caches: inout [KVCache],
        experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float]
    ) throws -> [Float] {
        try forward(
            batch: chunks, caches: &caches, microBatchCount: 1,
            dispatch: { layer, _, hidden, routing in try experts(layer, hidden, routing) }, collect: { $0 })
    }

    /// ``forward(batch:caches:experts:)`` with the chunks in up to `microBatchCount` micro-batches
    /// (consecutive chunks, about as many rows each) whose layers interleave, so that the experts of
    /// one micro-batch can run elsewhere while this one computes the attention of the next: per
    /// layer, each micro-batch's experts are started with `dispatch` right after its attention and
    /// routing, and taken back with `collect` just before that micro-batch's next layer
    /// (micro-batch 0 of layer l, its attention of layer l + 1, then micro-batch 1 of layer l, ...).
    ///
    /// Every row's logits are bitwise those of one micro-batch: the split only changes which rows a
    /// product sees, and every kernel is row-wise.
    /// - Parameters:
    ///   - microBatchCount: at least 1; more than the chunks count as one micro-batch per chunk.
    ///   - dispatch: starts one micro-batch's experts of a layer: the layer, the micro-batch's rows
    ///     within the whole batch, its post-attention-normed rows [rows, hiddenSize] and their routing.
    ///   - collect: the combined expert output [rows, hiddenSize] of a dispatched micro-batch.
    /// - Throws: as ``forward(batch:caches:experts:)``; whatever `dispatch` or `collect` throw. No
    ///   cache count changes then.
    public func forward<Pending>(
        batch chunks: [[Int32]], caches: inout [KVCache], microBatchCount: Int,
        dispatch: (LayerIndex, Range<Int>, [Float], RoutingDecision) throws -> Pending,
        collect: (Pending) throws -> [Float]
    ) throws -> [Float] {
        guard chunks.count == caches.count else {
            throw ModelError.invalidInput(
                "forward: \(chunks.count) chunks but \(caches.count) caches; expected one each")
        }
        guard microBatchCount >= 1 else {
            throw ModelError.invalidInput("forward: \(microBatchCount) micro-batches; at least 1 is needed")
        }
        let hidden = try caches.withUnsafeMutableBufferPointer { buffer in
            try forwardHidden(
                chunks: chunks, caches: buffer, microBatchCount: microBatchCount, dispatch: dispatch, collect: collect)
        }
        let hiddenSize = shape.hiddenSize
        var lastRows = [Float](repeating: 0, count: chunks.count * hiddenSize)
        var end = 0
        for (index, chunk) in chunks.enumerated() {
            end += chunk.count
            let source = (end - 1) * hiddenSize
            lastRows.replaceSubrange(
                (index * hiddenSize)..<((index + 1) * hiddenSize), with: hidden[source..<(source + hiddenSize)])
        }
        return logits(ofRows: lastRows, rowCount: chunks.count)
    }

    /// Final norm and LM head.
    /// - Parameter rows: [rowCount, H], f32.
    /// - Returns: [rowCount, V], f32.
    private func logits(ofRows rows: [Float], rowCount: Int) -> [Float] {
        let normed = rmsNorm(rows, weight: finalNorm, epsilon: finalNormEpsilon)
        return linear(normed, rowCount: rowCount, weight: lmHead, arithmetic: arithmetic)
    }

    /// Validates the batch, runs every layer over the rows of all chunks (in micro-batches, as
    /// ``forward(batch:caches:microBatchCount:dispatch:collect:)`` says), then advances each cache.
    /// - Returns: the final residual stream, [rows of all chunks, H], f32, chunk 0 first.
    private func forwardHidden<Pending>(
        chunks: [[Int32]], caches: UnsafeMutableBufferPointer<KVCache>, microBatchCount: Int,
        dispatch: (LayerIndex, Range<Int>, [Float], RoutingDecision) throws -> Pending,
        collect: (Pending) throws -> [Float]
    ) throws -> [Float] {
        let c = shape
        guard !chunks.isEmpty else { throw ModelError.invalidInput("forward: no chunks given") }
        var spans: [ChunkSpan] = []
        spans.reserveCapacity(chunks.count)
        var rowCount = 0
        for (index, chunk) in chunks.enumerated() {
            let name = chunks.count == 1 ? "" : " of chunk \(index)"
            guard !chunk.isEmpty else {
                throw ModelError.invalidInput(
                    chunks.count == 1 ? "forward: no tokens given" : "forward: chunk \(index) is empty")
            }
            let cache = caches[index]
            guard cache.rowWidths == c.keyValueWidths, cache.valueRowWidths == c.valueWidths else {
                throw ModelError.invalidInput("forward: the KV cache\(name) was made for another model")
            }
            guard cache.count + chunk.count <= cache.capacity else {
                throw ModelError.invalidInput(
                    "forward: KV cache\(name) holds \(cache.count) of \(cache.capacity) tokens; \(chunk.count) more do not fit"
                )
            }
            for (position, token) in chunk.enumerated() where token < 0 || Int(token) >= c.vocabularySize {
                throw ModelError.invalidInput(
                    "forward: token id \(token) at index \(position)\(name) is outside the vocabulary (0 ..< \(c.vocabularySize))"
                )
            }
            spans.append(ChunkSpan(firstRow: rowCount, rowCount: chunk.count))
            rowCount += chunk.count
        }
        let hiddenSize = c.hiddenSize
        // Each micro-batch's residual stream, its rows embedded.
        let groups = Self.microBatches(spans, count: microBatchCount)
        var hiddens = groups.map { group -> [Float] in
            var hidden = [Float](repeating: 0, count: group.rows.count * hiddenSize)
            hidden.withUnsafeMutableBufferPointer { destination in
                var row = 0
                for chunk in chunks[group.chunks] {
                    for token in chunk {
                        embedding.copyRow(Int(token), into: destination.baseAddress! + row * hiddenSize)
                        row += 1
                    }
                }
            }
            return hidden
        }
        // Each micro-batch's chunks, numbered from its own first row.
        let groupSpans = groups.map { group in
            spans[group.chunks].map { ChunkSpan(firstRow: $0.firstRow - group.rows.lowerBound, rowCount: $0.rowCount) }
        }
        /// Micro-batch g through `layer` up to its experts, which it starts (a dense layer runs whole).
        func begin(_ layer: DecoderLayer, _ g: Int) throws -> Stage<Pending> {
            let normed = layer.attend(
                &hiddens[g], chunks: groupSpans[g], caches: UnsafeMutableBufferPointer(rebasing: caches[groups[g].chunks]))
            let rowCount = groups[g].rows.count
            switch layer.feedForward {
            case .dense(let mlp):
                try layer.add(mlp(normed, rowCount: rowCount), to: &hiddens[g])
                return .done
            case .experts(let router, let shared):
                let routing = router.route(normed, tokenCount: rowCount)
                let pending = try dispatch(LayerIndex(layer.index), groups[g].rows, normed, routing)
                // The shared expert runs here while the workers compute the routed ones.
                return .dispatched(pending, shared: shared.map { $0(normed, rowCount: rowCount) })
            }
        }
        /// The rest of micro-batch g's layer: its experts' output (routed, then the shared expert's
        /// added to it, in transformers' order) added to the residual stream.
        func finish(_ layer: DecoderLayer, _ stage: Stage<Pending>, _ g: Int) throws {
            guard case .dispatched(let pending, let shared) = stage else { return }
            var combined = try collect(pending)
            // A combined output of the wrong size is refused by `add` below.
            if let shared, shared.count == combined.count {
                for position in combined.indices { combined[position] += shared[position] }
            }
            try layer.add(combined, to: &hiddens[g])
        }
        var pending: [Stage<Pending>] = []
        pending.reserveCapacity(groups.count)
        for g in groups.indices { pending.append(try begin(layers[0], g)) }
        for (index, layer) in layers.enumerated() {
            for g in groups.indices {
                try finish(layer, pending[g], g)
                if index + 1 < layers.count { pending[g] = try begin(layers[index + 1], g) }
            }
        }
        for (index, chunk) in chunks.enumerated() { caches[index].count += chunk.count }
        return hiddens.count == 1 ? hiddens[0] : Array(hiddens.joined())
    }

    /// Consecutive chunks in up to `count` groups of about equal rows (each at least one chunk).
    static func microBatches(_ spans: [ChunkSpan], count: Int) -> [(chunks: Range<Int>, rows: Range<Int>)] {
        let total = spans.last.map { $0.firstRow + $0.rowCount } ?? 0
        let count = max(1, min(count, spans.count))
        var groups: [(chunks: Range<Int>, rows: Range<Int>)] = []
        var first = 0
        for g in 0..<count {
            var end = first + 1
            if g == count - 1 {
                end = spans.count
            } else {
                // Take chunks while this group's share of rows is not reached, leaving one chunk for each later group.
                let target = total * (g + 1) / count
                while end < spans.count - (count - 1 - g), spans[end - 1].firstRow + spans[end - 1].rowCount < target {
                    end += 1
                }
            }
            let rows = spans[first].firstRow..<(spans[end - 1].firstRow + spans[end - 1].rowCount)
            groups.append((first..<end, rows))
            first = end
        }
        return groups
    }

    /// Where a micro-batch's layer stands between its attention and its next layer.
    private enum Stage<Pending> {
        /// Its experts were dispatched; the shared expert's output, if any, waits beside them.
        case dispatched(Pending, shared: [Float]?)
        /// A dense layer, already added to the residual stream.
        case done
    }
}

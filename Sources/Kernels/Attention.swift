// Scaled dot-product attention over a sequence's cached keys and values, with grouped-query
// attention (several query heads share one key/value head), a causal mask and an optional
// sliding window.
//
// Legend: T = query tokens, S = keys (cached + new), H = query heads, G = key/value heads,
// D = query/key head dimension, Dv = value head dimension (D unless set: multi-head latent attention's
// heads have more query/key than value dimensions). Query token t is at position firstQueryPosition + t;
// key s is at position s.

internal import CKernels

/// The shape of an attention computation.
public struct AttentionShape: Sendable, Equatable {
    /// Query heads (H).
    public var headCount: Int
    /// Key/value heads (G); divides `headCount`.
    public var keyValueHeadCount: Int
    /// Dimensions per query and key head (D).
    public var headDimension: Int
    /// Dimensions per value head and so per output head (Dv).
    public var valueHeadDimension: Int
    /// The factor of every score q·k: 1/√D unless given (DeepSeek's YaRN multiplies it by mscale²).
    public var scale: Float
    /// When set, query position q sees key position k only if `q - slidingWindow < k`.
    public var slidingWindow: Int?
    /// When set, [H] learned logits, one per query head, that join each softmax as an extra key with
    /// no value (gpt-oss's attention sinks): the probabilities of the real keys then sum to less than 1.
    public var sinks: [Float]?

    /// Creates a shape; `headCount` must be a multiple of `keyValueHeadCount`.
    /// - Parameters:
    ///   - valueHeadDimension: Dv; nil: D.
    ///   - scale: the score factor; nil: 1/√D (f32).
    public init(
        headCount: Int, keyValueHeadCount: Int, headDimension: Int, valueHeadDimension: Int? = nil,
        scale: Float? = nil, slidingWindow: Int?, sinks: [Float]? = nil
    ) {
        precondition(
            headCount > 0 && keyValueHeadCount > 0 && headCount % keyValueHeadCount == 0,
            "attention: query heads must be a positive multiple of key/value heads")
        precondition(headDimension > 0, "attention: head dimension must be positive")
        precondition((valueHeadDimension ?? headDimension) > 0, "attention: value head dimension must be positive")
        self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDimension = headDimension
        self.valueHeadDimension = valueHeadDimension ?? headDimension
        self.scale = scale ?? 1 / Float(headDimension).squareRoot()
        self.slidingWindow = slidingWindow
        precondition(sinks.map { $0.count == headCount } ?? true, "attention: one sink per query head")
        self.sinks = sinks
    }

    /// Whether query position `query` may attend to key position `key`: `query - window < key <= query`.
    @inline(__always)
    public func isVisible(query: Int, key: Int) -> Bool {
        if key > query { return false }
        if let slidingWindow, key <= query - slidingWindow { return false }
        return true
    }
}

/// A sequence's cached keys [S, G, D] and values [S, G, Dv], row 0 at position 0, as stored: f32, or bf16
/// bit patterns (used widened exactly to f32).
public enum CachedKeyValues {
    case f32(keys: UnsafePointer<Float>, values: UnsafePointer<Float>)
    case bf16(keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>)

    /// The keys moved on by `keyElements` values and the values by `valueElements`.
    func advanced(keys keyElements: Int, values valueElements: Int) -> CachedKeyValues {
        switch self {
        case .f32(let keys, let values): .f32(keys: keys + keyElements, values: values + valueElements)
        case .bf16(let keys, let values): .bf16(keys: keys + keyElements, values: values + valueElements)
        }
    }

    /// Fetches ahead the keys of `rows` for key/value heads `heads` (rows of `keyStride` values, heads
    /// of `headDimension`), without waiting for them; an empty range fetches nothing.
    func prefetch(keys rows: Range<Int>, heads: Range<Int>, keyStride: Int, headDimension: Int) {
        guard !rows.isEmpty, !heads.isEmpty else { return }
        switch self {
        case .f32(let keys, _): Self.prefetch(keys, rows, heads, keyStride, headDimension)
        case .bf16(let keys, _): Self.prefetch(keys, rows, heads, keyStride, headDimension)
        }
    }

    /// ``prefetch(keys:heads:keyStride:headDimension:)`` for the values.
    func prefetch(values rows: Range<Int>, heads: Range<Int>, valueStride: Int, valueDimension: Int) {
        guard !rows.isEmpty, !heads.isEmpty else { return }
        switch self {
        case .f32(_, let values): Self.prefetch(values, rows, heads, valueStride, valueDimension)
        case .bf16(_, let values): Self.prefetch(values, rows, heads, valueStride, valueDimension)
        }
    }

    private static func prefetch<Element>(
        _ base: UnsafePointer<Element>, _ rows: Range<Int>, _ heads: Range<Int>, _ stride: Int, _ width: Int
    ) {
        let size = MemoryLayout<Element>.stride
        sy_prefetch_rows(
            base + rows.lowerBound * stride + heads.lowerBound * width, rows.count, stride * size, heads.count * width * size)
    }
}

/// Computes softmax(Q·Kᵀ · scale + mask)·V per head (scale 1/√D unless the shape sets it), batch-invariantly.
///
/// Each query is computed on its own visible keys only, in a fixed order: scores q·k with the
/// invariant dot product (then × the scale, as transformers scales after the product), a softmax per
/// row, and the value sum over keys in ascending position. So a query's output is bitwise the
/// same whatever other queries share the call (one token of a decode step, or a prefill chunk).
/// - Parameters:
///   - queries: [T, H, D], f32, already rotated.
///   - keys: [S, G, D], f32, already rotated; S = firstQueryPosition + T.
///   - values: [S, G, Dv], f32.
///   - output: [T, H, Dv], f32.
///   - isa: the kernel path; nil uses ``KernelISA/active``.
///   - keyValueHeads: the key/value heads (and so the query heads of their groups) to compute;
///     nil computes all. Calls on disjoint ranges write disjoint parts of `output`.
public func attention(
    queries: UnsafePointer<Float>, queryCount: Int, firstQueryPosition: Int,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyCount: Int,
    shape: AttentionShape, into output: UnsafeMutablePointer<Float>, isa: KernelISA? = nil,
    keyValueHeads: Range<Int>? = nil
) {
    attention(
        queries: queries, queryCount: queryCount, firstQueryPosition: firstQueryPosition,
        cached: .f32(keys: keys, values: values), keyCount: keyCount, shape: shape, into: output, isa: isa,
        keyValueHeads: keyValueHeads)
}

/// ``attention(queries:queryCount:firstQueryPosition:keys:values:keyCount:shape:into:isa:keyValueHeads:)``
/// over keys and values stored as f32 or bf16. With bf16, the result is bitwise that of the f32 call
/// on the same keys and values widened to f32.
public func attention(
    queries: UnsafePointer<Float>, queryCount: Int, firstQueryPosition: Int,
    cached: CachedKeyValues, keyCount: Int,
    shape: AttentionShape, into output: UnsafeMutablePointer<Float>, isa: KernelISA? = nil,
    keyValueHeads: Range<Int>? = nil
) {
    precondition(
        keyCount == firstQueryPosition + queryCount, "attention: keys must cover every position up to the last query")
    precondition(
        keyValueHeads.map { $0.lowerBound >= 0 && $0.upperBound <= shape.keyValueHeadCount } ?? true,
        "attention: key/value heads outside 0 ..< \(shape.keyValueHeadCount)")
    guard queryCount > 0 else { return }
    let headDimension = shape.headDimension
    let queryStride = shape.headCount * headDimension
    let keyStride = shape.keyValueHeadCount * headDimension
    let valueDimension = shape.valueHeadDimension
    let valueStride = shape.keyValueHeadCount * valueDimension
    let outputStride = shape.headCount * valueDimension
    let groupSize = shape.headCount / shape.keyValueHeadCount
    let scale = shape.scale
    let longestVisible = min(keyCount, shape.slidingWindow ?? keyCount)
    let groups = keyValueHeads ?? 0..<shape.keyValueHeadCount
    // scores[g, h, s] for the query heads of the computed key/value heads. The keys (and then the
    // values) are taken in blocks of `attentionKeyBlock` positions, every head of the block before
    // the next block, so each cached row is read from memory once per query instead of once per
    // key/value head. A score is the same dot product wherever its block starts, and the value sum
    // continues from block to block in ascending position, so the bits are those of one pass.
    // The query heads of a key/value head go to the kernels together: the vector paths widen each
    // key and value row once for several heads (each head's result bitwise its own call). While a
    // block is computed, the next block's rows are fetched ahead (`prefetch`): with many sequences
    // a step, each sequence's cache has left the CPU's caches by its next layer, and the rows read
    // one after another would each wait for memory.
    // A row holds a head's scores and, with sinks, the head's sink logit after them: the softmax
    // runs over both (as transformers concatenates the sink to the scores) and the sink is dropped.
    let sinkSlots = shape.sinks == nil ? 0 : 1
    let rowsPerGroup = groupSize * (longestVisible + sinkSlots)
    let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, groups.count * rowsPerGroup))
    defer { scores.deallocate() }
    for t in 0..<queryCount {
        let position = firstQueryPosition + t
        // The keys this query sees: a causal mask, and the sliding window when there is one.
        let firstKey = shape.slidingWindow.map { max(0, position - $0 + 1) } ?? 0
        let visibleCount = position + 1 - firstKey
        let rowStride = visibleCount + sinkSlots
        let row = { (group: Int, h: Int) in scores + (group - groups.lowerBound) * rowsPerGroup + h * rowStride }
        // The rows of the block starting at `start` (none past the last).
        let block = { (start: Int) in
            firstKey + min(start, visibleCount)..<firstKey + min(start + attentionKeyBlock, visibleCount)
        }
        // scores[h, s] = (q[h] · k[s]) / √D
        cached.prefetch(keys: block(0), heads: groups, keyStride: keyStride, headDimension: headDimension)
        for blockStart in stride(from: 0, to: visibleCount, by: attentionKeyBlock) {
            let blockCount = min(attentionKeyBlock, visibleCount - blockStart)
            cached.prefetch(
                keys: block(blockStart + attentionKeyBlock), heads: groups, keyStride: keyStride,
                headDimension: headDimension)
            for keyValueHead in groups {
                attentionScores(
                    queries: queries + t * queryStride + keyValueHead * groupSize * headDimension, heads: groupSize,
                    dimension: headDimension,
                    keys: cached.advanced(
                        keys: (firstKey + blockStart) * keyStride + keyValueHead * headDimension, values: 0),
                    keyStride: keyStride, count: blockCount, scale: scale, into: row(keyValueHead, 0) + blockStart,
                    scoresStride: rowStride, isa: isa)
            }
        }
        cached.prefetch(values: block(0), heads: groups, valueStride: valueStride, valueDimension: valueDimension)
        for keyValueHead in groups {
            for h in 0..<groupSize {
                if let sinks = shape.sinks { row(keyValueHead, h)[visibleCount] = sinks[keyValueHead * groupSize + h] }
                softmax(row(keyValueHead, h), count: rowStride, isa: isa)
            }
        }
        // output[t, head] = Σ_s p[s] · v[s], keys in ascending position
        for blockStart in stride(from: 0, to: visibleCount, by: attentionKeyBlock) {
            let blockCount = min(attentionKeyBlock, visibleCount - blockStart)
            cached.prefetch(
                values: block(blockStart + attentionKeyBlock), heads: groups, valueStride: valueStride,
                valueDimension: valueDimension)
            for keyValueHead in groups {
                let v = cached.advanced(
                    keys: 0, values: (firstKey + blockStart) * valueStride + keyValueHead * valueDimension)
                weightedSum(
                    heads: groupSize, weights: row(keyValueHead, 0) + blockStart, weightsStride: rowStride,
                    count: blockCount, values: v, rowStride: valueStride, width: valueDimension,
                    into: output + t * outputStride + keyValueHead * groupSize * valueDimension,
                    outputStride: valueDimension, accumulate: blockStart > 0, isa: isa)
            }
        }
    }
}

/// Cached positions taken at a time by ``attention(queries:queryCount:firstQueryPosition:keys:values:keyCount:shape:into:isa:keyValueHeads:)``:
/// 32 rows of a few KiB each stay in L2 while every head uses them.
let attentionKeyBlock = 32

/// Array form of ``attention(queries:queryCount:firstQueryPosition:keys:values:keyCount:shape:into:)``.
/// - Parameters:
///   - queries: [T, H, D], f32.
///   - keys: [S, G, D], f32.
///   - values: [S, G, Dv], f32.
///   - isa: the kernel path; nil uses ``KernelISA/active``.
/// - Returns: [T, H, Dv], f32.
public func attention(
    queries: [Float], keys: [Float], values: [Float], firstQueryPosition: Int, shape: AttentionShape,
    isa: KernelISA? = nil
) -> [Float] {
    let queryCount = queries.count / (shape.headCount * shape.headDimension)
    let keyCount = keys.count / (shape.keyValueHeadCount * shape.headDimension)
    precondition(
        keys.count / shape.headDimension == values.count / shape.valueHeadDimension,
        "attention: keys and values differ in rows")
    var output = [Float](repeating: 0, count: queryCount * shape.headCount * shape.valueHeadDimension)
    queries.withUnsafeBufferPointer { q in
        keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    guard let qBase = q.baseAddress, let kBase = k.baseAddress, let vBase = v.baseAddress,
                        let oBase = o.baseAddress
                    else { return }
                    attention(
                        queries: qBase, queryCount: queryCount, firstQueryPosition: firstQueryPosition,
                        keys: kBase, values: vBase, keyCount: keyCount, shape: shape, into: oBase, isa: isa)
                }
            }
        }
    }
    return output
}

// Scaled dot-product attention over a sequence's cached keys and values, with grouped-query
// attention (several query heads share one key/value head), a causal mask and an optional
// sliding window.
//
// Legend: T = query tokens, S = keys (cached + new), H = query heads, G = key/value heads,
// D = head dimension. Query token t is at position firstQueryPosition + t; key s is at position s.

/// The shape of an attention computation.
public struct AttentionShape: Sendable, Equatable {
    /// Query heads (H).
    public var headCount: Int
    /// Key/value heads (G); divides `headCount`.
    public var keyValueHeadCount: Int
    /// Dimensions per head (D).
    public var headDimension: Int
    /// When set, query position q sees key position k only if `q - slidingWindow < k`.
    public var slidingWindow: Int?

    /// Creates a shape; `headCount` must be a multiple of `keyValueHeadCount`.
    public init(headCount: Int, keyValueHeadCount: Int, headDimension: Int, slidingWindow: Int?) {
        precondition(
            headCount > 0 && keyValueHeadCount > 0 && headCount % keyValueHeadCount == 0,
            "attention: query heads must be a positive multiple of key/value heads")
        precondition(headDimension > 0, "attention: head dimension must be positive")
        self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDimension = headDimension
        self.slidingWindow = slidingWindow
    }

    /// Whether query position `query` may attend to key position `key`: `query - window < key <= query`.
    @inline(__always)
    public func isVisible(query: Int, key: Int) -> Bool {
        if key > query { return false }
        if let slidingWindow, key <= query - slidingWindow { return false }
        return true
    }
}

/// Computes softmax(Q·Kᵀ / √D + mask)·V per head.
/// - Parameters:
///   - queries: [T, H, D], f32, already rotated.
///   - keys: [S, G, D], f32, already rotated; S = firstQueryPosition + T.
///   - values: [S, G, D], f32.
///   - output: [T, H, D], f32.
public func attention(
    queries: UnsafePointer<Float>, queryCount: Int, firstQueryPosition: Int,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyCount: Int,
    shape: AttentionShape, into output: UnsafeMutablePointer<Float>
) {
    precondition(
        keyCount == firstQueryPosition + queryCount, "attention: keys must cover every position up to the last query")
    guard queryCount > 0 else { return }
    let headDimension = shape.headDimension
    let queryStride = shape.headCount * headDimension
    let keyStride = shape.keyValueHeadCount * headDimension
    let groupSize = shape.headCount / shape.keyValueHeadCount
    let scale = 1 / Float(headDimension).squareRoot()
    // Only keys that some query can see are multiplied: with a sliding window, older keys are skipped.
    let firstVisibleKey = shape.slidingWindow.map { max(0, firstQueryPosition - $0 + 1) } ?? 0
    let visibleCount = keyCount - firstVisibleKey
    var scores = [Float](repeating: 0, count: queryCount * visibleCount)
    scores.withUnsafeMutableBufferPointer { buffer in
        guard let scores = buffer.baseAddress else { return }
        for head in 0..<shape.headCount {
            let keyValueHead = head / groupSize
            let q = queries + head * headDimension
            let k = keys + firstVisibleKey * keyStride + keyValueHead * headDimension
            let v = values + firstVisibleKey * keyStride + keyValueHead * headDimension
            // scores[t, s] = scale · q[t] · k[s]
            gemmTransposedB(
                m: queryCount, n: visibleCount, k: headDimension, alpha: scale,
                a: q, aStride: queryStride, b: k, bStride: keyStride,
                beta: 0, c: scores, cStride: visibleCount)
            for t in 0..<queryCount {
                let row = scores + t * visibleCount
                let queryPosition = firstQueryPosition + t
                for s in 0..<visibleCount where !shape.isVisible(query: queryPosition, key: firstVisibleKey + s) {
                    row[s] = -.infinity
                }
                softmax(row, count: visibleCount)
            }
            // output[t, head] = Σ_s p[t, s] · v[s]
            gemm(
                m: queryCount, n: headDimension, k: visibleCount,
                a: scores, aStride: visibleCount, b: v, bStride: keyStride,
                c: output + head * headDimension, cStride: queryStride)
        }
    }
}

/// Array form of ``attention(queries:queryCount:firstQueryPosition:keys:values:keyCount:shape:into:)``.
/// - Parameters:
///   - queries: [T, H, D], f32.
///   - keys: [S, G, D], f32.
///   - values: [S, G, D], f32.
/// - Returns: [T, H, D], f32.
public func attention(
    queries: [Float], keys: [Float], values: [Float], firstQueryPosition: Int, shape: AttentionShape
) -> [Float] {
    let queryCount = queries.count / (shape.headCount * shape.headDimension)
    let keyCount = keys.count / (shape.keyValueHeadCount * shape.headDimension)
    precondition(keys.count == values.count, "attention: keys and values differ in size")
    var output = [Float](repeating: 0, count: queries.count)
    queries.withUnsafeBufferPointer { q in
        keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    guard let qBase = q.baseAddress, let kBase = k.baseAddress, let vBase = v.baseAddress,
                        let oBase = o.baseAddress
                    else { return }
                    attention(
                        queries: qBase, queryCount: queryCount, firstQueryPosition: firstQueryPosition,
                        keys: kBase, values: vBase, keyCount: keyCount, shape: shape, into: oBase)
                }
            }
        }
    }
    return output
}

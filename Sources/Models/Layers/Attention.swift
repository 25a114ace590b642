import Kernels
// Self-attention with the options the supported architectures use: q/k/v biases (Qwen2-MoE), an RMS
// norm of queries and keys per head (Qwen3-MoE) or over the whole projection (OLMoE), a clip of
// q/k/v (OLMoE's clip_qkv), a sliding window; RoPE (default, rotate-half) and grouped-query
// attention over the KV cache with a causal mask.
//
// Legend: T = tokens in this forward pass, H = hidden size, D = head dimension.
import Tensors

/// The options of one attention block beyond its projections.
struct AttentionOptions: Sendable {
    /// [heads × D], [kvHeads × D], [kvHeads × D], f32: added after the q, k and v products (Qwen2-MoE).
    var queryBias: FloatTensor?
    var keyBias: FloatTensor?
    var valueBias: FloatTensor?
    /// [H], f32: added after the o_proj product (gpt-oss).
    var outputBias: FloatTensor?
    /// RMS norm weights applied to queries and keys after the projections and before RoPE, over
    /// groups of `weight.count` values: [D] normalises each head (Qwen3-MoE's q_norm/k_norm),
    /// [heads × D] the whole projection row (OLMoE's).
    var queryNorm: FloatTensor?
    var keyNorm: FloatTensor?
    /// ε of the query and key norms.
    var normEpsilon: Float = 1e-6
    /// When set, q, k and v are clamped to [-clip, clip] after the norms (OLMoE's clip_qkv).
    var clip: Float?
}

/// The self-attention of one decoder layer: projections, RoPE, grouped-query attention over the
/// KV cache with a causal (and optionally sliding-window) mask, output projection.
struct Attention: Sendable {
    /// [heads × D, H], f32 or bf16
    let queryWeight: WeightTensor
    /// [kvHeads × D, H], f32 or bf16
    let keyWeight: WeightTensor
    /// [kvHeads × D, H], f32 or bf16
    let valueWeight: WeightTensor
    /// [H, heads × D], f32 or bf16
    let outputWeight: WeightTensor
    let shape: AttentionShape
    let rotary: RotaryEmbedding
    let options: AttentionOptions
    let hiddenSize: Int
    /// The arithmetic of the projections when their weights are bf16.
    let arithmetic: BFloat16Arithmetic

    /// This block with `transform` applied to its four projections (held as q8, or copied into a
    /// weight arena); biases, norms and the rest unchanged.
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> Attention {
        Attention(
            queryWeight: transform(queryWeight), keyWeight: transform(keyWeight), valueWeight: transform(valueWeight),
            outputWeight: transform(outputWeight), shape: shape, rotary: rotary, options: options,
            hiddenSize: hiddenSize, arithmetic: arithmetic)
    }

    /// Attends each chunk's rows of `normed` (chunk i's tokens at positions `caches[i].count ..< +rowCount`)
    /// and writes their keys and values into the cache rows of `layer` (the caller advances the counts).
    ///
    /// Batch-invariant: the projections are row-wise, RoPE and attention run per chunk against
    /// its own cache, so a row's output does not depend on the other chunks.
    /// - Parameter normed: [T, H], f32 (input-normed hidden states of all chunks, chunk 0 first).
    /// - Returns: the attention output after o_proj, [T, H], f32.
    func callAsFunction(
        _ normed: [Float], chunks: [ChunkSpan], layer: Int, caches: UnsafeMutableBufferPointer<KVCache>
    ) -> [Float] {
        let rowCount = normed.count / hiddenSize
        let queryWidth = shape.headCount * shape.headDimension
        let keyValueWidth = shape.keyValueHeadCount * shape.headDimension
        var queries = [Float](repeating: 0, count: rowCount * queryWeight.shape[0])
        var keys = [Float](repeating: 0, count: rowCount * keyWeight.shape[0])
        var values = [Float](repeating: 0, count: rowCount * valueWeight.shape[0])
        normed.withUnsafeBufferPointer { x in
            queries.withUnsafeMutableBufferPointer { q in
                keys.withUnsafeMutableBufferPointer { k in
                    values.withUnsafeMutableBufferPointer { v in
                        linear(
                            x.baseAddress!, rowCount: rowCount, weights: [queryWeight, keyWeight, valueWeight],
                            into: [q.baseAddress!, k.baseAddress!, v.baseAddress!], arithmetic: arithmetic)
                    }
                }
            }
        }
        if let bias = options.queryBias { addBias(bias, to: &queries) }
        if let bias = options.keyBias { addBias(bias, to: &keys) }
        if let bias = options.valueBias { addBias(bias, to: &values) }
        if let weight = options.queryNorm { normalize(&queries, weight) }
        if let weight = options.keyNorm { normalize(&keys, weight) }
        if let clip = options.clip {
            clamp(&queries, clip)
            clamp(&keys, clip)
            clamp(&values, clip)
        }
        var attended = [Float](repeating: 0, count: rowCount * queryWidth)
        for (index, chunk) in chunks.enumerated() {
            let start = caches[index].count
            queries.withUnsafeMutableBufferPointer { q in
                rotary.apply(
                    to: q.baseAddress! + chunk.firstRow * queryWidth, rowCount: chunk.rowCount,
                    headCount: shape.headCount, firstPosition: start)
            }
            keys.withUnsafeMutableBufferPointer { k in
                rotary.apply(
                    to: k.baseAddress! + chunk.firstRow * keyValueWidth, rowCount: chunk.rowCount,
                    headCount: shape.keyValueHeadCount, firstPosition: start)
            }
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    caches[index].store(
                        layer: layer, at: start, rowCount: chunk.rowCount,
                        keys: k.baseAddress! + chunk.firstRow * keyValueWidth,
                        values: v.baseAddress! + chunk.firstRow * keyValueWidth)
                }
            }
        }
        // Tasks over the product threads: one per chunk when there are enough chunks (each task then
        // reads its sequence's cached rows front to back), else one per (chunk, key/value head). Each
        // task writes its own heads of its own rows, and a head's result does not depend on the split.
        let headGroups = chunks.count >= 4 * threadCount ? 1 : shape.keyValueHeadCount
        let headsPerTask = shape.keyValueHeadCount / headGroups
        queries.withUnsafeBufferPointer { q in
            attended.withUnsafeMutableBufferPointer { o in
                let queryBase = q.baseAddress!, outputBase = o.baseAddress!
                let cacheBase = UnsafePointer(caches.baseAddress!)
                parallelFor(chunks.count * headGroups) { task in
                    let index = task / headGroups, group = task % headGroups
                    // The cache's count advances after the whole step, so it is still this chunk's start.
                    let chunk = chunks[index], start = cacheBase[index].count
                    cacheBase[index].withRows(layer: layer) { cached in
                        attention(
                            queries: queryBase + chunk.firstRow * queryWidth, queryCount: chunk.rowCount,
                            firstQueryPosition: start, cached: cached, keyCount: start + chunk.rowCount, shape: shape,
                            into: outputBase + chunk.firstRow * queryWidth,
                            keyValueHeads: (group * headsPerTask)..<((group + 1) * headsPerTask))
                    }
                }
            }
        }
        var output = linear(attended, rowCount: rowCount, weight: outputWeight, arithmetic: arithmetic)
        if let bias = options.outputBias { addBias(bias, to: &output) }
        return output
    }

    /// RMS-normalises each group of `weight.count` values of `rows` in place.
    private func normalize(_ rows: inout [Float], _ weight: FloatTensor) {
        let width = weight.count
        rows.withUnsafeMutableBufferPointer { r in
            weight.withUnsafePointer { w in
                rmsNorm(
                    r.baseAddress!, rowCount: r.count / width, width: width, weight: w,
                    epsilon: options.normEpsilon, into: r.baseAddress!)
            }
        }
    }

    /// Clamps every value of `rows` to [-limit, limit] (NaN stays NaN, as torch.clamp keeps it).
    private func clamp(_ rows: inout [Float], _ limit: Float) {
        for index in rows.indices where !rows[index].isNaN {
            rows[index] = min(max(rows[index], -limit), limit)
        }
    }
}

/// The rows of one sequence's chunk inside a batch's hidden states.
struct ChunkSpan: Sendable, Equatable {
    /// The chunk's first row in [T, H].
    var firstRow: Int
    /// Tokens in the chunk (at least 1).
    var rowCount: Int
}

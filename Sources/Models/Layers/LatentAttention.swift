import Kernels
// Multi-head latent attention (MLA, DeepSeek-V2/V3): the keys and values of every head are expanded
// from one small per-token latent, and the KV cache holds only that latent.
// Port of DeepseekV3Attention (transformers/models/deepseek_v3/modeling_deepseek_v3.py, 5.23), f32.
//
// Per token: q = q_b_proj(RMSNorm(q_a_proj(x))) (or q_proj(x)), per head [nope | rope];
// kv_a_proj_with_mqa(x) = [latent (C) | k_pe (R)], latent RMS-normed (kv_a_layernorm), k_pe one key
// slice shared by every head; RoPE on q's rope slice and k_pe only. The cache row is [latent | rotated
// k_pe]. Attention expands every cached latent through kv_b_proj into per-head [k_nope (N) | v (Dv)]
// (the unabsorbed form, as transformers computes it), keys = [k_nope | k_pe], softmax scale
// 1/√(N + R).
//
// The absorbed form (``LatentAttention/absorbed()``, DeepSeek-V2 paper §2.1.3; vLLM's MLA decode)
// never expands the cache: kv_b_proj's key part W_uk (per head [N, C]) is multiplied into the query,
// q_lat = q_nope · W_uk, so q_nope · k_nope = q_lat · latent and every head attends the cached rows
// [latent | k_pe] directly (one shared key/value head, values = the latent); the per-head result
// [C] then goes through kv_b_proj's value part W_uv ([Dv, C]). Same math, another summation order:
// within a tolerance of the unabsorbed form, not bitwise.
//
// Legend: T = tokens in this forward pass, S = cached positions of a chunk, H = hidden size,
// h = heads, N = qk_nope_head_dim, R = qk_rope_head_dim, Dv = v_head_dim, C = kv_lora_rank,
// Q = q_lora_rank.
import Tensors

/// The query path of a latent attention layer.
enum LatentQuery: Sendable {
    /// `q_proj` [h × (N + R), H] (q_lora_rank null).
    case direct(WeightTensor)
    /// `q_a_proj` [Q, H] with an optional bias [Q], `q_a_layernorm` [Q], `q_b_proj` [h × (N + R), Q].
    case lowRank(down: WeightTensor, downBias: FloatTensor?, norm: FloatTensor, up: WeightTensor)
}

/// The widths of a latent attention layer.
struct LatentAttentionShape: Sendable, Equatable {
    /// h
    var headCount: Int
    /// N: the part of each query/key head without position.
    var nopeDimension: Int
    /// R: the rotated part of each query head, and the one key slice every head shares.
    var ropeDimension: Int
    /// Dv
    var valueDimension: Int
    /// C: the compressed key/value latent.
    var latentDimension: Int

    /// N + R
    var queryKeyDimension: Int { nopeDimension + ropeDimension }
    /// The cache row of one token: C + R.
    var cacheRowWidth: Int { latentDimension + ropeDimension }
}

/// The self-attention of one DeepSeek decoder layer.
struct LatentAttention: Sendable {
    let query: LatentQuery
    /// `kv_a_proj_with_mqa` [C + R, H], f32 or bf16, and its bias [C + R] (attention_bias).
    let latentWeight: WeightTensor
    let latentBias: FloatTensor?
    /// `kv_a_layernorm` [C], f32.
    let latentNorm: FloatTensor
    /// `kv_b_proj` [h × (N + Dv), C], f32 or bf16.
    let expandWeight: WeightTensor
    /// `o_proj` [H, h × Dv], f32 or bf16, and its bias [H] (attention_bias).
    let outputWeight: WeightTensor
    let outputBias: FloatTensor?
    let shape: LatentAttentionShape
    /// RoPE over R dimensions.
    let rotary: RotaryEmbedding
    /// DeepSeek stores each rope slice as interleaved pairs (x0, x1), (x2, x3), … (`rope_interleave`).
    let interleavedPairs: Bool
    /// The score factor: 1/√(N + R), × mscale² under YaRN with mscale_all_dim.
    let scale: Float
    /// ε of q_a_layernorm and kv_a_layernorm: DeepseekV3RMSNorm's default 1e-6 (not rms_norm_eps).
    let normEpsilon: Float
    let hiddenSize: Int
    /// The arithmetic of the projections when their weights are bf16.
    let arithmetic: BFloat16Arithmetic
    /// Set: attend in the absorbed form with these f32 copies of kv_b_proj's parts; nil: unabsorbed.
    var absorption: Absorption? = nil

    /// kv_b_proj split for the absorbed form, f32.
    struct Absorption: Sendable {
        /// Per head W_ukᵀ, [h, C, N]: q_lat = q_nope · W_uk as a product with this [C, N] weight.
        let keyUp: [Float]
        /// Per head W_uv, [h, Dv, C].
        let valueUp: [Float]
    }

    /// This layer attending in the absorbed form (f32 copies of kv_b_proj's key part, transposed,
    /// and value part: as many values as kv_b_proj).
    func absorbed() -> LatentAttention {
        let heads = shape.headCount, nope = shape.nopeDimension, value = shape.valueDimension
        let latent = shape.latentDimension
        let weight = expandWeight.values
        var keyUp = [Float](repeating: 0, count: heads * latent * nope)
        var valueUp = [Float](repeating: 0, count: heads * value * latent)
        for head in 0..<heads {
            let first = head * (nope + value)
            for n in 0..<nope {
                for c in 0..<latent { keyUp[(head * latent + c) * nope + n] = weight[(first + n) * latent + c] }
            }
            for d in 0..<value {
                for c in 0..<latent {
                    valueUp[(head * value + d) * latent + c] = weight[(first + nope + d) * latent + c]
                }
            }
        }
        var copy = self
        copy.absorption = Absorption(keyUp: keyUp, valueUp: valueUp)
        return copy
    }


    /// Attends each chunk's rows of `normed` (chunk i's tokens at positions `caches[i].count ..< +rowCount`)
    /// and writes their latent rows into the cache rows of `layer` (the caller advances the counts).
    ///
    /// Batch-invariant: the projections are row-wise, RoPE, the latent expansion and attention run per
    /// chunk against its own cache, so a row's output does not depend on the other chunks.
    /// - Parameter normed: [T, H], f32.
    /// - Returns: the attention output after o_proj, [T, H], f32.
    func callAsFunction(
        _ normed: [Float], chunks: [ChunkSpan], layer: Int, caches: UnsafeMutableBufferPointer<KVCache>
    ) -> [Float] {
        let rowCount = normed.count / hiddenSize
        let heads = shape.headCount, headWidth = shape.queryKeyDimension
        let queryWidth = heads * headWidth, rowWidth = shape.cacheRowWidth
        // [T, h, N + R]
        var queries = self.queries(normed, rowCount: rowCount)
        // [T, C + R]: the cache rows before RoPE.
        var latent = linear(normed, rowCount: rowCount, weight: latentWeight, arithmetic: arithmetic)
        if let latentBias { addBias(latentBias, to: &latent) }
        latent.withUnsafeMutableBufferPointer { rows in
            latentNorm.withUnsafePointer { weight in
                for row in 0..<rowCount {
                    let start = rows.baseAddress! + row * rowWidth
                    rmsNorm(
                        start, rowCount: 1, width: shape.latentDimension, weight: weight, epsilon: normEpsilon,
                        into: start)
                }
            }
        }
        var attended = [Float](repeating: 0, count: rowCount * heads * shape.valueDimension)
        for (index, chunk) in chunks.enumerated() {
            let start = caches[index].count
            queries.withUnsafeMutableBufferPointer { q in
                rotate(
                    q.baseAddress! + chunk.firstRow * queryWidth + shape.nopeDimension, rowCount: chunk.rowCount,
                    heads: heads, stride: headWidth, firstPosition: start)
            }
            latent.withUnsafeMutableBufferPointer { rows in
                let first = rows.baseAddress! + chunk.firstRow * rowWidth
                rotate(
                    first + shape.latentDimension, rowCount: chunk.rowCount, heads: 1, stride: rowWidth,
                    firstPosition: start)
                caches[index].store(layer: layer, at: start, rowCount: chunk.rowCount, keys: first, values: nil)
            }
            if let absorption {
                attendAbsorbed(
                    queries, chunk: chunk, start: start, cache: caches[index], layer: layer, absorption: absorption,
                    into: &attended)
                continue
            }
            let (keys, values) = expand(caches[index], layer: layer, positionCount: start + chunk.rowCount)
            let attentionShape = AttentionShape(
                headCount: heads, keyValueHeadCount: heads, headDimension: headWidth,
                valueHeadDimension: shape.valueDimension, scale: scale, slidingWindow: nil)
            queries.withUnsafeBufferPointer { q in
                keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        attended.withUnsafeMutableBufferPointer { o in
                            let queryBase = q.baseAddress! + chunk.firstRow * queryWidth
                            let outputBase = o.baseAddress! + chunk.firstRow * heads * shape.valueDimension
                            let keyBase = k.baseAddress!, valueBase = v.baseAddress!
                            // One task per head: each writes its own head of its own rows.
                            parallelFor(heads) { head in
                                attention(
                                    queries: queryBase, queryCount: chunk.rowCount, firstQueryPosition: start,
                                    keys: keyBase, values: valueBase, keyCount: start + chunk.rowCount,
                                    shape: attentionShape, into: outputBase, keyValueHeads: head..<(head + 1))
                            }
                        }
                    }
                }
            }
        }
        var output = linear(attended, rowCount: rowCount, weight: outputWeight, arithmetic: arithmetic)
        if let outputBias { addBias(outputBias, to: &output) }
        return output
    }

    /// Attends `chunk`'s rotated queries in the absorbed form against its cached latent rows.
    /// - Parameters:
    ///   - queries: [T, h, N + R], f32, rotated.
    ///   - attended: [T, h, Dv], f32; the chunk's rows are written.
    private func attendAbsorbed(
        _ queries: [Float], chunk: ChunkSpan, start: Int, cache: KVCache, layer: Int, absorption: Absorption,
        into attended: inout [Float]
    ) {
        let heads = shape.headCount, nope = shape.nopeDimension, rope = shape.ropeDimension
        let latent = shape.latentDimension, value = shape.valueDimension, headWidth = shape.queryKeyDimension
        let rows = chunk.rowCount, rowWidth = shape.cacheRowWidth, positionCount = start + rows
        // [T, h, C + R]: q_nope · W_uk beside the rotated q_pe.
        var absorbedQueries = [Float](repeating: 0, count: rows * heads * rowWidth)
        for head in 0..<heads {
            var nopes = [Float](repeating: 0, count: rows * nope)
            for row in 0..<rows {
                let source = ((chunk.firstRow + row) * heads + head) * headWidth
                for n in 0..<nope { nopes[row * nope + n] = queries[source + n] }
            }
            let keyUp = Array(absorption.keyUp[(head * latent * nope)..<((head + 1) * latent * nope)])
            let projected = linear(nopes, rowCount: rows, weight: keyUp, outputCount: latent)
            for row in 0..<rows {
                let target = (row * heads + head) * rowWidth
                let source = ((chunk.firstRow + row) * heads + head) * headWidth
                for c in 0..<latent { absorbedQueries[target + c] = projected[row * latent + c] }
                for r in 0..<rope { absorbedQueries[target + latent + r] = queries[source + nope + r] }
            }
        }
        let cached = cachedRows(cache, layer: layer, positionCount: positionCount)
        let latents = latentColumns(of: cached, positionCount: positionCount)
        // One key/value head shared by every query head: keys are the cache rows, values their latent.
        let attentionShape = AttentionShape(
            headCount: heads, keyValueHeadCount: 1, headDimension: rowWidth, valueHeadDimension: latent, scale: scale,
            slidingWindow: nil)
        var latentOutput = [Float](repeating: 0, count: rows * heads * latent)
        absorbedQueries.withUnsafeBufferPointer { q in
            cached.withUnsafeBufferPointer { k in
                latents.withUnsafeBufferPointer { v in
                    latentOutput.withUnsafeMutableBufferPointer { o in
                        attention(
                            queries: q.baseAddress!, queryCount: rows, firstQueryPosition: start, keys: k.baseAddress!,
                            values: v.baseAddress!, keyCount: positionCount, shape: attentionShape,
                            into: o.baseAddress!)
                    }
                }
            }
        }
        for head in 0..<heads {
            var perHead = [Float](repeating: 0, count: rows * latent)
            for row in 0..<rows {
                for c in 0..<latent { perHead[row * latent + c] = latentOutput[(row * heads + head) * latent + c] }
            }
            let valueUp = Array(absorption.valueUp[(head * value * latent)..<((head + 1) * value * latent)])
            let output = linear(perHead, rowCount: rows, weight: valueUp, outputCount: value)
            for row in 0..<rows {
                let target = ((chunk.firstRow + row) * heads + head) * value
                for d in 0..<value { attended[target + d] = output[row * value + d] }
            }
        }
    }

    /// The first `positionCount` cached rows of `layer` as f32 (bf16 widens exactly), [S, C + R].
    private func cachedRows(_ cache: KVCache, layer: Int, positionCount: Int) -> [Float] {
        let count = positionCount * shape.cacheRowWidth
        var rows = [Float](repeating: 0, count: count)
        cache.withRows(layer: layer) { cached in
            switch cached {
            case .f32(let keys, _):
                rows.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: keys, count: count) }
            case .bf16(let keys, _):
                for index in rows.indices { rows[index] = floatFromBFloat16Bits(keys[index]) }
            }
        }
        return rows
    }

    /// The latent columns of cache rows [S, C + R]: [S, C].
    private func latentColumns(of rows: [Float], positionCount: Int) -> [Float] {
        let rowWidth = shape.cacheRowWidth, latentWidth = shape.latentDimension
        var latents = [Float](repeating: 0, count: positionCount * latentWidth)
        for position in 0..<positionCount {
            for index in 0..<latentWidth { latents[position * latentWidth + index] = rows[position * rowWidth + index] }
        }
        return latents
    }

    /// The queries of `rowCount` rows, [T, h, N + R], f32, before RoPE.
    private func queries(_ normed: [Float], rowCount: Int) -> [Float] {
        switch query {
        case .direct(let weight):
            return linear(normed, rowCount: rowCount, weight: weight, arithmetic: arithmetic)
        case .lowRank(let down, let downBias, let norm, let up):
            var compressed = linear(normed, rowCount: rowCount, weight: down, arithmetic: arithmetic)
            if let downBias { addBias(downBias, to: &compressed) }
            let normalized = rmsNorm(compressed, weight: norm, epsilon: normEpsilon)
            return linear(normalized, rowCount: rowCount, weight: up, arithmetic: arithmetic)
        }
    }

    /// Rotates the R-wide slices at `values + r × heads × stride + head × stride` in place; row r is
    /// at position `firstPosition + r`.
    ///
    /// With interleaved pairs, transformers' `apply_rotary_pos_emb_interleave` returns the rotated
    /// pairs de-interleaved — [x0·c − x1·s, x2·c − x3·s, …, x1·c + x0·s, x3·c + x2·s, …] — which is
    /// rotate-half RoPE applied to [x0, x2, …, x1, x3, …]; queries and cached keys both keep that order.
    private func rotate(
        _ values: UnsafeMutablePointer<Float>, rowCount: Int, heads: Int, stride: Int, firstPosition: Int
    ) {
        let width = shape.ropeDimension, half = width / 2
        var slice = [Float](repeating: 0, count: width)
        slice.withUnsafeMutableBufferPointer { buffer in
            let scratch = buffer.baseAddress!
            for row in 0..<rowCount {
                for head in 0..<heads {
                    let x = values + (row * heads + head) * stride
                    for index in 0..<half {
                        scratch[index] = interleavedPairs ? x[2 * index] : x[index]
                        scratch[half + index] = interleavedPairs ? x[2 * index + 1] : x[half + index]
                    }
                    rotary.apply(to: scratch, rowCount: 1, headCount: 1, firstPosition: firstPosition + row)
                    x.update(from: scratch, count: width)
                }
            }
        }
    }

    /// Expands the first `positionCount` cached latent rows of `layer` into every head's keys and values.
    /// - Returns: keys [S, h, N + R] (k_nope from kv_b_proj, then the shared rotated k_pe) and
    ///   values [S, h, Dv], f32.
    private func expand(_ cache: KVCache, layer: Int, positionCount: Int) -> (keys: [Float], values: [Float]) {
        let rowWidth = shape.cacheRowWidth, latentWidth = shape.latentDimension
        let heads = shape.headCount, nope = shape.nopeDimension, rope = shape.ropeDimension
        let value = shape.valueDimension, headWidth = shape.queryKeyDimension
        let rows = cachedRows(cache, layer: layer, positionCount: positionCount)
        let latents = latentColumns(of: rows, positionCount: positionCount)
        // [S, h, N + Dv]
        let expanded = linear(latents, rowCount: positionCount, weight: expandWeight, arithmetic: arithmetic)
        var keys = [Float](repeating: 0, count: positionCount * heads * headWidth)
        var values = [Float](repeating: 0, count: positionCount * heads * value)
        for position in 0..<positionCount {
            for head in 0..<heads {
                let source = (position * heads + head) * (nope + value)
                let key = (position * heads + head) * headWidth
                for index in 0..<nope { keys[key + index] = expanded[source + index] }
                for index in 0..<rope { keys[key + nope + index] = rows[position * rowWidth + latentWidth + index] }
                let target = (position * heads + head) * value
                for index in 0..<value { values[target + index] = expanded[source + nope + index] }
            }
        }
        return (keys, values)
    }
}

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
// within a tolerance of the unabsorbed form, not bitwise. The runtime attends every chunk absorbed
// (``LatentAttention/absorbed()``): a decode step never expands the cache, and a prompt gives the same
// bits whether it is prefilled whole, in chunks or token by token (choosing the form by a chunk's cost,
// ``LatentAttention/cheaperForm()``, would make a long prefill chunk cheaper but change its bits).
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
    /// Which form attends a chunk (``LatentAttention/Form``); ``LatentAttention/Form/expanded`` unless set.
    var form: Form = .expanded
    /// kv_b_proj split per head for the absorbed form; nil: the layer attends only unabsorbed.
    var absorption: Absorption? = nil

    /// How a layer attends.
    enum Form: Sendable {
        /// Always unabsorbed, as transformers computes it.
        case expanded
        /// Always absorbed.
        case absorbed
        /// Per chunk, the form with fewer multiply-adds for the chunk's rows and cached positions
        /// (``LatentAttention/attendsAbsorbed(rowCount:positionCount:)``): decode steps absorbed,
        /// long prefill chunks unabsorbed.
        case cheaper
    }

    /// kv_b_proj split per head for the absorbed form, in kv_b_proj's element type (bf16 stays bf16,
    /// bit for bit; f32 and FP8 as f32 values).
    struct Absorption: Sendable {
        /// Per head W_ukᵀ [C, N]: q_lat = q_nope · W_uk is the product with this weight.
        let keyUp: [WeightTensor]
        /// Per head W_uv [Dv, C].
        let valueUp: [WeightTensor]
    }

    /// This layer attending in the absorbed form always (the runtime's form).
    func absorbed() -> LatentAttention {
        var copy = self
        copy.absorption = absorption ?? makeAbsorption()
        copy.form = .absorbed
        return copy
    }

    /// This layer attending unabsorbed always, as transformers computes it (for tests).
    func expanded() -> LatentAttention {
        var copy = self
        copy.form = .expanded
        return copy
    }

    /// This layer attending each chunk in the cheaper form. It holds kv_b_proj a second time, split
    /// per head: as stored for bf16 and f32, as f32 for FP8 (4 bytes a weight where the checkpoint
    /// holds 1, so that an FP8 checkpoint keeps the bits of the f32 one holding its dequantized weights).
    func cheaperForm() -> LatentAttention {
        var copy = self
        copy.absorption = absorption ?? makeAbsorption()
        copy.form = .cheaper
        return copy
    }

    /// Whether a chunk of `rowCount` rows whose last row sits at `positionCount − 1` attends absorbed.
    /// Per head, unabsorbed: the expansion S·C·(N + Dv), then T·S·(N + R + Dv) for scores and values;
    /// absorbed: T·C·(N + Dv) for the two absorbed products, then T·S·(2C + R). It depends on the
    /// chunk alone, so a chunk's result never depends on the other chunks of the batch.
    func attendsAbsorbed(rowCount: Int, positionCount: Int) -> Bool {
        guard absorption != nil else { return false }
        switch form {
        case .expanded: return false
        case .absorbed: return true
        case .cheaper:
            let nope = shape.nopeDimension, rope = shape.ropeDimension, value = shape.valueDimension
            let latent = shape.latentDimension
            let unabsorbed = positionCount * latent * (nope + value) + rowCount * positionCount * (nope + rope + value)
            let absorbed = rowCount * latent * (nope + value) + rowCount * positionCount * (2 * latent + rope)
            return absorbed < unabsorbed
        }
    }

    /// kv_b_proj's per-head parts: W_uk transposed and W_uv (a bf16 weight's bits copied as they are).
    private func makeAbsorption() -> Absorption {
        let heads = shape.headCount, nope = shape.nopeDimension, value = shape.valueDimension
        let latent = shape.latentDimension
        // element (head, n, c) of W_uk is kv_b_proj[head·(N + Dv) + n, c]; (head, d, c) of W_uv is
        // kv_b_proj[head·(N + Dv) + N + d, c].
        func parts<Element>(_ weight: (Int) -> Element, make: ([Int], [Element]) -> WeightTensor)
            -> Absorption
        {
            var keyUp: [WeightTensor] = [], valueUp: [WeightTensor] = []
            for head in 0..<heads {
                let first = head * (nope + value)
                var key: [Element] = [], values: [Element] = []
                key.reserveCapacity(latent * nope)
                values.reserveCapacity(value * latent)
                for c in 0..<latent {
                    for n in 0..<nope { key.append(weight((first + n) * latent + c)) }
                }
                for d in 0..<value {
                    for c in 0..<latent { values.append(weight((first + nope + d) * latent + c)) }
                }
                keyUp.append(make([latent, nope], key))
                valueUp.append(make([value, latent], values))
            }
            return Absorption(keyUp: keyUp, valueUp: valueUp)
        }
        if expandWeight.dtype == .bf16 {
            return expandWeight.withElements { elements in
                guard case .bf16(let bits) = elements else { preconditionFailure("dtype is bf16") }
                return parts({ bits[$0] }) { WeightTensor(shape: $0, bfloat16Bits: $1) }
            }
        }
        let weight = expandWeight.values
        return parts({ weight[$0] }) { WeightTensor(FloatTensor(shape: $0, values: $1)) }
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
            if let absorption, attendsAbsorbed(rowCount: chunk.rowCount, positionCount: start + chunk.rowCount) {
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

    /// Attends `chunk`'s rotated queries in the absorbed form against its cached latent rows, read in
    /// place: every head scores the rows [latent | k_pe] with q_lat = q_nope · W_uk beside its q_pe (one
    /// shared key/value head whose values are the latent), then its latent output goes through W_uv.
    /// The two per-head products run as one grouped job when kv_b_proj is bf16, the heads' attention
    /// one head a task; each head's bits are those of computing it alone.
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
        // [h, T, N]: head-major, so that each head's rows are one block of the grouped product.
        var nopes = [Float](repeating: 0, count: heads * rows * nope)
        for head in 0..<heads {
            for row in 0..<rows {
                let source = ((chunk.firstRow + row) * heads + head) * headWidth
                let target = (head * rows + row) * nope
                for n in 0..<nope { nopes[target + n] = queries[source + n] }
            }
        }
        // [h, T, C]
        let projected = headProducts(nopes, rowCount: rows, weights: absorption.keyUp, outputCount: latent)
        // [h, T, C + R]: q_lat beside the rotated q_pe, as the cache rows are laid out.
        var absorbedQueries = [Float](repeating: 0, count: heads * rows * rowWidth)
        for head in 0..<heads {
            for row in 0..<rows {
                let target = (head * rows + row) * rowWidth
                let lat = (head * rows + row) * latent
                let source = ((chunk.firstRow + row) * heads + head) * headWidth
                for c in 0..<latent { absorbedQueries[target + c] = projected[lat + c] }
                for r in 0..<rope { absorbedQueries[target + latent + r] = queries[source + nope + r] }
            }
        }
        // One head at a time against the one key/value head: keys are the cache rows, values their latent.
        let attentionShape = AttentionShape(
            headCount: 1, keyValueHeadCount: 1, headDimension: rowWidth, valueHeadDimension: latent, scale: scale,
            slidingWindow: nil)
        // [h, T, C]
        var latentOutput = [Float](repeating: 0, count: heads * rows * latent)
        func attendHeads(_ cached: CachedKeyValues) {
            absorbedQueries.withUnsafeBufferPointer { q in
                latentOutput.withUnsafeMutableBufferPointer { o in
                    let queryBase = q.baseAddress!, outputBase = o.baseAddress!
                    parallelFor(heads) { head in
                        attention(
                            queries: queryBase + head * rows * rowWidth, queryCount: rows, firstQueryPosition: start,
                            cached: cached, keyCount: positionCount, shape: attentionShape,
                            into: outputBase + head * rows * latent)
                    }
                }
            }
        }
        cache.withRows(layer: layer) { cached in
            // The values are the rows' first C columns; the attention kernel reads values C apart.
            switch cached {
            case .f32(let keys, _):
                var latents = [Float](repeating: 0, count: positionCount * latent)
                for position in 0..<positionCount {
                    for c in 0..<latent { latents[position * latent + c] = keys[position * rowWidth + c] }
                }
                latents.withUnsafeBufferPointer { attendHeads(.f32(keys: keys, values: $0.baseAddress!)) }
            case .bf16(let keys, _):
                var latents = [UInt16](repeating: 0, count: positionCount * latent)
                for position in 0..<positionCount {
                    for c in 0..<latent { latents[position * latent + c] = keys[position * rowWidth + c] }
                }
                latents.withUnsafeBufferPointer { attendHeads(.bf16(keys: keys, values: $0.baseAddress!)) }
            }
        }
        // [h, T, Dv]
        let output = headProducts(latentOutput, rowCount: rows, weights: absorption.valueUp, outputCount: value)
        for head in 0..<heads {
            for row in 0..<rows {
                let target = ((chunk.firstRow + row) * heads + head) * value
                let source = (head * rows + row) * value
                for d in 0..<value { attended[target + d] = output[source + d] }
            }
        }
    }

    /// Head h's rows `h·rowCount ..< (h + 1)·rowCount` of `input` times `weights[h]`ᵀ, for every head:
    /// one grouped job when the weights are bf16, else one product a head (the same bits either way).
    /// - Parameters:
    ///   - input: [h, T, inputCount], f32.
    ///   - weights: h matrices [outputCount, inputCount].
    /// - Returns: [h, T, outputCount], f32.
    private func headProducts(_ input: [Float], rowCount: Int, weights: [WeightTensor], outputCount: Int) -> [Float] {
        let heads = weights.count, inputCount = input.count / max(1, heads * rowCount)
        var output = [Float](repeating: 0, count: heads * rowCount * outputCount)
        guard rowCount > 0 else { return output }
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                let fused = withBFloat16Elements(of: weights) { pointers -> Bool in
                    let products = pointers.enumerated().map { head, weight in
                        GroupedBFloat16Product(
                            firstRow: head * rowCount, rowCount: rowCount, weight: weight, outputCount: outputCount,
                            output: y.baseAddress! + head * rowCount * outputCount)
                    }
                    linear(
                        x.baseAddress!, rowCount: heads * rowCount, inputCount: inputCount, groupedProducts: products,
                        arithmetic: arithmetic)
                    return true
                }
                guard fused == nil else { return }
                for (head, weight) in weights.enumerated() {
                    linear(
                        x.baseAddress! + head * rowCount * inputCount, rowCount: rowCount, weight: weight,
                        into: y.baseAddress! + head * rowCount * outputCount, arithmetic: arithmetic)
                }
            }
        }
        return output
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

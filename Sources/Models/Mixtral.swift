import Kernels
// Mixtral: a decoder-only transformer whose feed-forward blocks are sparse mixtures of SwiGLU experts.
// Port of transformers/models/mixtral/modeling_mixtral.py (transformers 5.23), f32 compute.
//
// Legend: T = tokens in this forward pass, H = hidden size, E = experts per layer, k = experts per
// token, V = vocabulary size, D = head dimension.
public import Tensors

// MARK: - Configuration

/// The Mixtral hyper-parameters, decoded from a Hugging Face `config.json`.
///
/// Reads both the transformers-5 layout (`rope_parameters.rope_theta`, `head_dim: null`) and the
/// older one (top-level `rope_theta`); `eos_token_id` may be an integer, a list or null.
public struct MixtralConfiguration: Codable, Sendable, Equatable {
    /// Width of the residual stream (H).
    public var hiddenSize: Int
    /// Width of each expert's hidden layer.
    public var intermediateSize: Int
    /// Decoder layers.
    public var layerCount: Int
    /// Query heads.
    public var attentionHeadCount: Int
    /// Key/value heads (grouped-query attention); divides `attentionHeadCount`.
    public var keyValueHeadCount: Int
    /// Dimensions per attention head (D); `hiddenSize / attentionHeadCount` unless config.json says otherwise.
    public var headDimension: Int
    /// Experts per MoE layer (E).
    public var expertCount: Int
    /// Experts chosen per token (k).
    public var expertsPerToken: Int
    /// Vocabulary size (V).
    public var vocabularySize: Int
    /// ε of every RMS norm.
    public var rmsNormEpsilon: Double
    /// RoPE base θ.
    public var ropeTheta: Double
    /// When set, a token attends only to the last `slidingWindow` positions (itself included).
    public var slidingWindow: Int?
    /// The longest sequence the model was trained for (informational; not enforced).
    public var maxPositionEmbeddings: Int
    /// Whether the LM head reuses the token embedding matrix.
    public var tieWordEmbeddings: Bool
    /// The beginning-of-sequence token, if any.
    public var bosTokenID: Int?
    /// The end-of-sequence tokens (empty when none).
    public var eosTokenIDs: [Int]
    /// The expert activation (`hidden_act`); only `silu` is supported.
    public var hiddenActivation: String
    /// The RoPE variant (`rope_type`); only `default` is supported.
    public var ropeType: String

    /// Creates a configuration; `headDimension` defaults to `hiddenSize / attentionHeadCount`.
    public init(
        hiddenSize: Int, intermediateSize: Int, layerCount: Int, attentionHeadCount: Int, keyValueHeadCount: Int,
        headDimension: Int? = nil, expertCount: Int, expertsPerToken: Int, vocabularySize: Int,
        rmsNormEpsilon: Double = 1e-5, ropeTheta: Double = 1e6, slidingWindow: Int? = nil,
        maxPositionEmbeddings: Int = 4096, tieWordEmbeddings: Bool = false, bosTokenID: Int? = 1,
        eosTokenIDs: [Int] = [2], hiddenActivation: String = "silu", ropeType: String = "default"
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.attentionHeadCount = attentionHeadCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDimension = headDimension ?? (attentionHeadCount > 0 ? hiddenSize / attentionHeadCount : 0)
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.vocabularySize = vocabularySize
        self.rmsNormEpsilon = rmsNormEpsilon
        self.ropeTheta = ropeTheta
        self.slidingWindow = slidingWindow
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
        self.hiddenActivation = hiddenActivation
        self.ropeType = ropeType
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case layerCount = "num_hidden_layers"
        case attentionHeadCount = "num_attention_heads"
        case keyValueHeadCount = "num_key_value_heads"
        case headDimension = "head_dim"
        case expertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case vocabularySize = "vocab_size"
        case rmsNormEpsilon = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case slidingWindow = "sliding_window"
        case maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case hiddenActivation = "hidden_act"
    }

    enum RopeParameterKeys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
    }

    /// Decodes config.json (either layout); range checks are left to ``validate(file:)``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try container.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try container.decode(Int.self, forKey: .intermediateSize)
        layerCount = try container.decode(Int.self, forKey: .layerCount)
        attentionHeadCount = try container.decode(Int.self, forKey: .attentionHeadCount)
        // HF defaults num_key_value_heads to num_attention_heads when absent.
        keyValueHeadCount = try container.decodeIfPresent(Int.self, forKey: .keyValueHeadCount) ?? attentionHeadCount
        let explicitHeadDimension = try container.decodeIfPresent(Int.self, forKey: .headDimension)
        headDimension = explicitHeadDimension ?? (attentionHeadCount > 0 ? hiddenSize / attentionHeadCount : 0)
        expertCount = try container.decode(Int.self, forKey: .expertCount)
        expertsPerToken = try container.decode(Int.self, forKey: .expertsPerToken)
        vocabularySize = try container.decode(Int.self, forKey: .vocabularySize)
        rmsNormEpsilon = try container.decodeIfPresent(Double.self, forKey: .rmsNormEpsilon) ?? 1e-5
        // transformers 5 nests θ in rope_parameters; older files have it at the top level (or in rope_scaling).
        var theta = try container.decodeIfPresent(Double.self, forKey: .ropeTheta)
        var type: String?
        for key in [CodingKeys.ropeParameters, .ropeScaling]
        where try container.contains(key) && !container.decodeNil(forKey: key) {
            let rope = try container.nestedContainer(keyedBy: RopeParameterKeys.self, forKey: key)
            theta = try rope.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? theta
            type = try rope.decodeIfPresent(String.self, forKey: .ropeType) ?? type
        }
        ropeTheta = theta ?? 1e6
        ropeType = type ?? "default"
        slidingWindow = try container.decodeIfPresent(Int.self, forKey: .slidingWindow)
        maxPositionEmbeddings = try container.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 4096 * 32
        tieWordEmbeddings = try container.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        bosTokenID = try container.decodeIfPresent(Int.self, forKey: .bosTokenID)
        if try !container.contains(.eosTokenID) || container.decodeNil(forKey: .eosTokenID) {
            eosTokenIDs = []
        } else if let single = try? container.decode(Int.self, forKey: .eosTokenID) {
            eosTokenIDs = [single]
        } else {
            eosTokenIDs = try container.decode([Int].self, forKey: .eosTokenID)
        }
        hiddenActivation = try container.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "silu"
    }

    /// Encodes in the transformers-5 layout (θ under `rope_parameters`, explicit `head_dim`).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(hiddenSize, forKey: .hiddenSize)
        try container.encode(intermediateSize, forKey: .intermediateSize)
        try container.encode(layerCount, forKey: .layerCount)
        try container.encode(attentionHeadCount, forKey: .attentionHeadCount)
        try container.encode(keyValueHeadCount, forKey: .keyValueHeadCount)
        try container.encode(headDimension, forKey: .headDimension)
        try container.encode(expertCount, forKey: .expertCount)
        try container.encode(expertsPerToken, forKey: .expertsPerToken)
        try container.encode(vocabularySize, forKey: .vocabularySize)
        try container.encode(rmsNormEpsilon, forKey: .rmsNormEpsilon)
        var rope = container.nestedContainer(keyedBy: RopeParameterKeys.self, forKey: .ropeParameters)
        try rope.encode(ropeTheta, forKey: .ropeTheta)
        try rope.encode(ropeType, forKey: .ropeType)
        if let slidingWindow {
            try container.encode(slidingWindow, forKey: .slidingWindow)
        } else {
            try container.encodeNil(forKey: .slidingWindow)
        }
        try container.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try container.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try container.encodeIfPresent(bosTokenID, forKey: .bosTokenID)
        if eosTokenIDs.count == 1 {
            try container.encode(eosTokenIDs[0], forKey: .eosTokenID)
        } else if !eosTokenIDs.isEmpty {
            try container.encode(eosTokenIDs, forKey: .eosTokenID)
        }
        try container.encode(hiddenActivation, forKey: .hiddenActivation)
    }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        let positive: [(String, Int)] = [
            ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", layerCount),
            ("num_attention_heads", attentionHeadCount), ("num_key_value_heads", keyValueHeadCount),
            ("num_local_experts", expertCount), ("vocab_size", vocabularySize),
            ("max_position_embeddings", maxPositionEmbeddings),
        ]
        for (field, value) in positive where value < 1 {
            throw fail("\(field) is \(value), but must be at least 1")
        }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but must be between 1 and num_local_experts (\(expertCount))"
            )
        }
        guard keyValueHeadCount <= attentionHeadCount, attentionHeadCount % keyValueHeadCount == 0 else {
            throw fail(
                "num_key_value_heads is \(keyValueHeadCount), but must divide num_attention_heads (\(attentionHeadCount))"
            )
        }
        guard headDimension >= 2, headDimension % 2 == 0 else {
            throw fail("head_dim is \(headDimension), but must be a positive even number (RoPE rotates pairs)")
        }
        guard rmsNormEpsilon.isFinite, rmsNormEpsilon > 0 else {
            throw fail("rms_norm_eps is \(rmsNormEpsilon), but must be a positive number")
        }
        guard ropeTheta.isFinite, ropeTheta > 0 else {
            throw fail("rope_theta is \(ropeTheta), but must be a positive number")
        }
        if let slidingWindow, slidingWindow < 1 {
            throw fail("sliding_window is \(slidingWindow), but must be null or at least 1")
        }
        guard hiddenActivation == "silu" else {
            throw fail("hidden_act is \(hiddenActivation), but only silu is supported")
        }
        guard ropeType == "default" else {
            throw fail("rope_type is \(ropeType), but only default is supported")
        }
        if let bosTokenID, bosTokenID < 0 || bosTokenID >= vocabularySize {
            throw fail(
                "bos_token_id is \(bosTokenID), but must be between 0 and vocab_size - 1 (\(vocabularySize - 1))")
        }
        for eos in eosTokenIDs where eos < 0 || eos >= vocabularySize {
            throw fail("eos_token_id \(eos) must be between 0 and vocab_size - 1 (\(vocabularySize - 1))")
        }
    }
}

// MARK: - Checkpoint tensor names

/// The checkpoint tensor names and shapes of a Mixtral model (the legacy hub layout that
/// `save_pretrained` writes); the only place these names are spelled.
public enum MixtralTensorNames {
    /// Token embeddings, [V, H].
    public static let embedding = "model.embed_tokens.weight"
    /// Final RMS norm weight, [H].
    public static let finalNorm = "model.norm.weight"
    /// LM head, [V, H]; absent when embeddings are tied.
    public static let lmHead = "lm_head.weight"

    static func layer(_ layer: Int) -> String { "model.layers.\(layer)" }
    /// [H]
    public static func inputNorm(_ layer: Int) -> String { "\(self.layer(layer)).input_layernorm.weight" }
    /// [H]
    public static func postAttentionNorm(_ layer: Int) -> String {
        "\(self.layer(layer)).post_attention_layernorm.weight"
    }
    /// [heads × D, H]
    public static func query(_ layer: Int) -> String { "\(self.layer(layer)).self_attn.q_proj.weight" }
    /// [kvHeads × D, H]
    public static func key(_ layer: Int) -> String { "\(self.layer(layer)).self_attn.k_proj.weight" }
    /// [kvHeads × D, H]
    public static func value(_ layer: Int) -> String { "\(self.layer(layer)).self_attn.v_proj.weight" }
    /// [H, heads × D]
    public static func output(_ layer: Int) -> String { "\(self.layer(layer)).self_attn.o_proj.weight" }
    /// The router, [E, H].
    public static func router(_ layer: Int) -> String { "\(self.layer(layer)).block_sparse_moe.gate.weight" }
    /// Expert gate projection w1, [I, H].
    public static func expertGate(_ layer: Int, _ expert: Int) -> String {
        "\(self.layer(layer)).block_sparse_moe.experts.\(expert).w1.weight"
    }
    /// Expert down projection w2, [H, I].
    public static func expertDown(_ layer: Int, _ expert: Int) -> String {
        "\(self.layer(layer)).block_sparse_moe.experts.\(expert).w2.weight"
    }
    /// Expert up projection w3, [I, H].
    public static func expertUp(_ layer: Int, _ expert: Int) -> String {
        "\(self.layer(layer)).block_sparse_moe.experts.\(expert).w3.weight"
    }

    /// Every tensor a checkpoint with `configuration` must hold, with its shape, in model order.
    public static func expectedShapes(_ configuration: MixtralConfiguration) -> [(name: String, shape: [Int])] {
        let c = configuration
        let hidden = c.hiddenSize
        let queryWidth = c.attentionHeadCount * c.headDimension
        let keyValueWidth = c.keyValueHeadCount * c.headDimension
        var shapes: [(name: String, shape: [Int])] = [(embedding, [c.vocabularySize, hidden])]
        for layer in 0..<c.layerCount {
            shapes += [
                (inputNorm(layer), [hidden]), (postAttentionNorm(layer), [hidden]),
                (query(layer), [queryWidth, hidden]), (key(layer), [keyValueWidth, hidden]),
                (value(layer), [keyValueWidth, hidden]), (output(layer), [hidden, queryWidth]),
                (router(layer), [c.expertCount, hidden]),
            ]
            for expert in 0..<c.expertCount {
                shapes += [
                    (expertGate(layer, expert), [c.intermediateSize, hidden]),
                    (expertUp(layer, expert), [c.intermediateSize, hidden]),
                    (expertDown(layer, expert), [hidden, c.intermediateSize]),
                ]
            }
        }
        shapes.append((finalNorm, [hidden]))
        if !c.tieWordEmbeddings { shapes.append((lmHead, [c.vocabularySize, hidden])) }
        return shapes
    }
}

// MARK: - Attention

/// The self-attention of one decoder layer: projections, RoPE, grouped-query attention over the
/// KV cache with a causal (and optionally sliding-window) mask, output projection.
struct MixtralAttention: Sendable {
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
    let hiddenSize: Int
    /// The arithmetic of the projections when their weights are bf16.
    let arithmetic: BFloat16Arithmetic

    init(checkpoint: Checkpoint, layer: Int, arithmetic: BFloat16Arithmetic) throws(ModelError) {
        let c = checkpoint.configuration
        self.arithmetic = arithmetic
        queryWeight = try checkpoint.weight(named: MixtralTensorNames.query(layer))
        keyWeight = try checkpoint.weight(named: MixtralTensorNames.key(layer))
        valueWeight = try checkpoint.weight(named: MixtralTensorNames.value(layer))
        outputWeight = try checkpoint.weight(named: MixtralTensorNames.output(layer))
        shape = AttentionShape(
            headCount: c.attentionHeadCount, keyValueHeadCount: c.keyValueHeadCount,
            headDimension: c.headDimension, slidingWindow: c.slidingWindow)
        rotary = RotaryEmbedding(headDimension: c.headDimension, theta: c.ropeTheta)
        hiddenSize = c.hiddenSize
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
        return linear(attended, rowCount: rowCount, weight: outputWeight, arithmetic: arithmetic)
    }
}

/// The rows of one sequence's chunk inside a batch's hidden states.
struct ChunkSpan: Sendable, Equatable {
    /// The chunk's first row in [T, H].
    var firstRow: Int
    /// Tokens in the chunk (at least 1).
    var rowCount: Int
}

// MARK: - MoE block: router

/// The router of one MoE layer: a linear scoring of the E experts per token, then top-k.
struct MixtralRouter: Sendable {
    /// [E, H], f32 or bf16
    let weight: WeightTensor
    let expertCount: Int
    let expertsPerToken: Int

    /// Routes each token of `normed` to its top-k experts.
    /// - Parameter normed: [T, H], f32 (post-attention-normed hidden states).
    func route(_ normed: [Float], tokenCount: Int) -> RoutingDecision {
        var probabilities = linear(normed, rowCount: tokenCount, weight: weight)
        var expertIDs: [Int32] = []
        var weights: [Float] = []
        expertIDs.reserveCapacity(tokenCount * expertsPerToken)
        weights.reserveCapacity(tokenCount * expertsPerToken)
        probabilities.withUnsafeMutableBufferPointer { buffer in
            for token in 0..<tokenCount {
                let row = buffer.baseAddress! + token * expertCount
                // Mixtral takes the softmax over all E experts (in f32) *before* top-k, then renormalises
                // the k chosen probabilities to sum to 1. Softmax over only the top-k logits gives the
                // same weights mathematically, but not the same rounding: follow HF's order.
                softmax(row, count: expertCount)
                let chosen = topK(row, count: expertCount, k: expertsPerToken)
                var sum: Float = 0
                for expert in chosen { sum += row[expert] }
                for expert in chosen {
                    expertIDs.append(Int32(expert))
                    weights.append(row[expert] / sum)
                }
            }
        }
        return RoutingDecision(
            tokenCount: tokenCount, expertsPerToken: expertsPerToken, expertIDs: expertIDs, weights: weights)
    }
}

// MARK: - Decoder layer

/// One decoder layer's dense part: input norm, attention, post-attention norm, router. The experts
/// run outside (in an `ExpertStore`, possibly on other machines) through the `experts` callback.
struct MixtralDecoderLayer: Sendable {
    /// [H], f32
    let inputNorm: FloatTensor
    /// [H], f32
    let postAttentionNorm: FloatTensor
    let attention: MixtralAttention
    let router: MixtralRouter
    let epsilon: Float
    let index: Int

    init(checkpoint: Checkpoint, layer: Int, arithmetic: BFloat16Arithmetic) throws(ModelError) {
        let c = checkpoint.configuration
        inputNorm = try checkpoint.tensor(named: MixtralTensorNames.inputNorm(layer))
        postAttentionNorm = try checkpoint.tensor(named: MixtralTensorNames.postAttentionNorm(layer))
        attention = try MixtralAttention(checkpoint: checkpoint, layer: layer, arithmetic: arithmetic)
        router = MixtralRouter(
            weight: try checkpoint.weight(named: MixtralTensorNames.router(layer)),
            expertCount: c.expertCount, expertsPerToken: c.expertsPerToken)
        epsilon = Float(c.rmsNormEpsilon)
        index = layer
    }

    /// The layer up to its experts: adds the attention output to `hidden` in place, then norms and
    /// routes the rows for the experts.
    /// - Parameter hidden: the residual stream, [T, H], f32, chunk 0's rows first.
    /// - Returns: the post-attention-normed rows [T, H] the experts take, and their routing.
    func attendAndRoute(
        _ hidden: inout [Float], chunks: [ChunkSpan], caches: UnsafeMutableBufferPointer<KVCache>
    ) -> (normed: [Float], routing: RoutingDecision) {
        let tokenCount = hidden.count / inputNorm.count
        let attended = attention(
            rmsNorm(hidden, weight: inputNorm, epsilon: epsilon), chunks: chunks, layer: index, caches: caches)
        for position in hidden.indices { hidden[position] += attended[position] }
        let normed = rmsNorm(hidden, weight: postAttentionNorm, epsilon: epsilon)
        return (normed, router.route(normed, tokenCount: tokenCount))
    }

    /// The rest of the layer: adds the experts' combined output [T, H] to `hidden`.
    /// - Throws: `ModelError.invalidInput` when `combined` has the wrong size.
    func addExperts(_ combined: [Float], to hidden: inout [Float]) throws(ModelError) {
        let tokenCount = hidden.count / inputNorm.count
        guard combined.count == hidden.count else {
            throw ModelError.invalidInput(
                "experts of layer \(index) returned \(combined.count) values, expected [\(tokenCount), \(inputNorm.count)]"
            )
        }
        for position in hidden.indices { hidden[position] += combined[position] }
    }
}

// MARK: - Model

/// The dense part of a Mixtral model (what the coordinator runs): embeddings, attention with the
/// KV cache, norms, routers and the LM head. It holds no experts.
public final class MixtralDenseModel: Sendable {
    /// The model's hyper-parameters.
    public let configuration: MixtralConfiguration
    /// [V, H], f32 or bf16 (as stored; f16 converted)
    private let embedding: WeightTensor
    private let layers: [MixtralDecoderLayer]
    /// [H], f32
    private let finalNorm: FloatTensor
    /// [V, H], f32 or bf16 (the embedding matrix when tied)
    private let lmHead: WeightTensor
    /// The arithmetic of the projections and the LM head when their weights are bf16. The router
    /// is always exact: it is small, and its choices are what the experts' load depends on.
    public let arithmetic: BFloat16Arithmetic
    /// How the KV caches made by ``makeCache(capacity:)`` store keys and values (f32 or bf16).
    public let keyValueCacheDType: DType

    /// Loads the dense tensors of `checkpoint`: matrices f32 or bf16 as stored (f16 converted to
    /// f32), used in place from the memory map when possible; norms as f32.
    /// - Parameters:
    ///   - arithmetic: how products with bf16 weights treat activations (f32 weights are always exact).
    ///   - keyValueCacheDType: f32 or bf16; nil picks ``defaultKeyValueCacheDType(checkpoint:arithmetic:)``.
    /// - Throws: `ModelError` when a tensor cannot be read or the cache dtype is neither f32 nor bf16.
    public init(
        checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic = .exact, keyValueCacheDType: DType? = nil
    ) throws {
        configuration = checkpoint.configuration
        self.arithmetic = arithmetic
        let cacheDType = keyValueCacheDType ?? Self.defaultKeyValueCacheDType(checkpoint: checkpoint, arithmetic: arithmetic)
        guard cacheDType == .f32 || cacheDType == .bf16 else {
            throw ModelError.invalidInput("the KV cache dtype is \(cacheDType), but must be f32 or bf16")
        }
        self.keyValueCacheDType = cacheDType
        embedding = try checkpoint.weight(named: MixtralTensorNames.embedding)
        var layers: [MixtralDecoderLayer] = []
        for layer in 0..<configuration.layerCount {
            layers.append(try MixtralDecoderLayer(checkpoint: checkpoint, layer: layer, arithmetic: arithmetic))
        }
        self.layers = layers
        finalNorm = try checkpoint.tensor(named: MixtralTensorNames.finalNorm)
        lmHead = configuration.tieWordEmbeddings ? embedding : try checkpoint.weight(named: MixtralTensorNames.lmHead)
    }

    /// The KV cache dtype a model loads with unless told otherwise: bf16 when its key and value
    /// projections are stored in bf16 and computed with ``BFloat16Arithmetic/fast`` (as transformers
    /// caches a bf16 model's keys and values in bf16), else f32 (exact arithmetic stays bitwise the
    /// f32 model's).
    public static func defaultKeyValueCacheDType(checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) -> DType {
        guard arithmetic == .fast else { return .f32 }
        let projections = (0..<checkpoint.configuration.layerCount).flatMap {
            [MixtralTensorNames.key($0), MixtralTensorNames.value($0)]
        }
        return projections.allSatisfy { checkpoint.entry(named: $0)?.dtype == .bf16 } ? .bf16 : .f32
    }

    /// An empty KV cache for one sequence of up to `capacity` tokens, stored as ``keyValueCacheDType``.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(
            capacity: capacity, layerCount: configuration.layerCount,
            rowWidth: configuration.keyValueHeadCount * configuration.headDimension, dtype: keyValueCacheDType)
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
        let hiddenSize = configuration.hiddenSize
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
        let hiddenSize = configuration.hiddenSize
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
        let normed = rmsNorm(rows, weight: finalNorm, epsilon: Float(configuration.rmsNormEpsilon))
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
        let c = configuration
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
            guard cache.layerCount == c.layerCount, cache.rowWidth == c.keyValueHeadCount * c.headDimension else {
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
        /// Micro-batch g through `layer` up to its experts, which it starts.
        func begin(_ layer: MixtralDecoderLayer, _ g: Int) throws -> Pending {
            let (normed, routing) = layer.attendAndRoute(
                &hiddens[g], chunks: groupSpans[g], caches: UnsafeMutableBufferPointer(rebasing: caches[groups[g].chunks]))
            return try dispatch(LayerIndex(layer.index), groups[g].rows, normed, routing)
        }
        var pending: [Pending] = []
        pending.reserveCapacity(groups.count)
        for g in groups.indices { pending.append(try begin(layers[0], g)) }
        for (index, layer) in layers.enumerated() {
            for g in groups.indices {
                try layer.addExperts(try collect(pending[g]), to: &hiddens[g])
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
}

// DeepSeek-V3 (DeepSeek-AI): multi-head latent attention (Layers/LatentAttention.swift: a low-rank
// query, keys and values expanded from a cached per-token latent, RoPE on a separate slice), the
// noaux_tc sigmoid router with expert groups, ungated shared experts and `first_k_dense_replace`
// dense first layers (Layers/GroupedSigmoidMoE.swift, as GLM-4.5).
// Port of transformers/models/deepseek_v3/modeling_deepseek_v3.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, h = heads, N = qk_nope_head_dim, R = qk_rope_head_dim, Dv = v_head_dim,
// C = kv_lora_rank, Q = q_lora_rank.
import Foundation
import Kernels
public import Tensors

// MARK: - Configuration

/// The DeepSeek-V3 hyper-parameters, decoded from a Hugging Face `config.json`.
public struct DeepseekV3Configuration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens (`head_dim` is R, as DeepseekV3Config sets it).
    public var fields: TransformerFields
    /// The MoE feed-forward blocks and the dense first layers.
    public var moe: GroupedSigmoidMoEFields
    /// Q (`q_lora_rank`); nil: the queries come from one `q_proj`.
    public var queryLowRank: Int?
    /// C (`kv_lora_rank`).
    public var keyValueLowRank: Int
    /// N (`qk_nope_head_dim`).
    public var nopeHeadDimension: Int
    /// R (`qk_rope_head_dim`).
    public var ropeHeadDimension: Int
    /// Dv (`v_head_dim`; null is refused).
    public var valueHeadDimension: Int?
    /// Biases on q_a_proj, kv_a_proj_with_mqa and o_proj (`attention_bias`).
    public var attentionBias: Bool
    /// The rope slices are interleaved pairs (`rope_interleave`; null counts as false, as transformers tests it).
    public var ropeInterleave: Bool
    /// `scoring_func` when config.json has it (transformers 5.23 ignores it and always uses sigmoid).
    public var scoringFunction: String?
    /// `topk_method` when config.json has it (transformers 5.23 ignores it and always uses noaux_tc).
    public var topKMethod: String?
    /// Multi-token-prediction layers after the decoder (`num_nextn_predict_layers`). Their tensors are
    /// not loaded: transformers generates without them unless asked to.
    public var multiTokenPredictionLayerCount: Int
    /// YaRN's parameters when rope_type is yarn (`factor`, `original_max_position_embeddings`,
    /// `beta_fast`, `beta_slow`, `attention_factor` or `mscale` / `mscale_all_dim`, `truncate`).
    var yarn: RotaryEmbedding.YaRN?
    /// The softmax scale's factor: yarn_get_mscale(factor, mscale_all_dim)² under YaRN when
    /// mscale_all_dim is set and not 0, else 1 (`yarn_apply_mscale`).
    public var softmaxScaleFactor: Double

    enum CodingKeys: String, CodingKey {
        case queryLowRank = "q_lora_rank"
        case keyValueLowRank = "kv_lora_rank"
        case nopeHeadDimension = "qk_nope_head_dim"
        case ropeHeadDimension = "qk_rope_head_dim"
        case valueHeadDimension = "v_head_dim"
        case attentionBias = "attention_bias"
        case ropeInterleave = "rope_interleave"
        case scoringFunction = "scoring_func"
        case topKMethod = "topk_method"
        case multiTokenPredictionLayerCount = "num_nextn_predict_layers"
        case keyValueHeadCount = "num_key_value_heads"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case ropeTheta = "rope_theta"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
    }

    /// N + R: the width of each query and key head.
    public var queryKeyHeadDimension: Int { nopeHeadDimension + ropeHeadDimension }

    /// The shape of one latent attention layer.
    var latentShape: LatentAttentionShape {
        LatentAttentionShape(
            headCount: fields.attentionHeadCount, nopeDimension: nopeHeadDimension, ropeDimension: ropeHeadDimension,
            valueDimension: valueHeadDimension ?? 0, latentDimension: keyValueLowRank)
    }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try validateLatentAttention(file: file)
        try moe.validate(layerCount: fields.layerCount, file: file)
        if let scoringFunction, scoringFunction != "sigmoid" {
            throw fail("scoring_func is \(scoringFunction), but DeepSeek-V3 routes with sigmoid only")
        }
        if let topKMethod, topKMethod != "noaux_tc" {
            throw fail("topk_method is \(topKMethod), but DeepSeek-V3 routes with noaux_tc only")
        }
        guard multiTokenPredictionLayerCount >= 0 else {
            throw fail("num_nextn_predict_layers is \(multiTokenPredictionLayerCount), but must be at least 0")
        }
    }

    /// Checks the shared transformer fields and the multi-head latent attention fields (DeepSeek-V2
    /// checks the same ones).
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    func validateLatentAttention(file: String) throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        // head_dim is R here: name the field config.json has before the shared checks name head_dim.
        guard ropeHeadDimension >= 2, ropeHeadDimension % 2 == 0 else {
            throw fail(
                "qk_rope_head_dim is \(ropeHeadDimension), but must be a positive even number (RoPE rotates pairs)")
        }
        // YaRN is the one rope type beside default that DeepSeek-V3 runs; the shared checks refuse the others.
        var shared = fields
        if let yarn {
            shared.ropeType = "default"
            guard yarn.factor.isFinite, yarn.factor > 0, yarn.originalMaxPositions > 0 else {
                throw fail(
                    "rope_scaling yarn has factor \(yarn.factor) and original_max_position_embeddings "
                        + "\(yarn.originalMaxPositions), but both must be positive")
            }
        }
        try shared.validate(file: file)
        // transformers expands every head's keys and values from the latent and then repeats them
        // num_attention_heads / num_key_value_heads times: only equal counts run.
        guard fields.keyValueHeadCount == fields.attentionHeadCount else {
            throw fail(
                "num_key_value_heads is \(fields.keyValueHeadCount), but multi-head latent attention needs it equal to "
                    + "num_attention_heads (\(fields.attentionHeadCount))")
        }
        if let queryLowRank, queryLowRank < 1 {
            throw fail("q_lora_rank is \(queryLowRank), but must be at least 1 (or null for a plain q_proj)")
        }
        let positive = [
            ("kv_lora_rank", keyValueLowRank), ("qk_nope_head_dim", nopeHeadDimension),
            ("qk_rope_head_dim", ropeHeadDimension),
        ]
        for (field, value) in positive where value < 1 { throw fail("\(field) is \(value), but must be at least 1") }
        guard let valueHeadDimension, valueHeadDimension >= 1 else {
            throw fail("v_head_dim is \(valueHeadDimension.map(String.init) ?? "null"), but must be at least 1")
        }
    }
}

extension DeepseekV3Configuration: Decodable {
    /// DeepseekV3Config's MoE defaults.
    static let moeDefaults = GroupedSigmoidMoEFields(
        expertCount: 256, expertsPerToken: 8, expertIntermediateSize: 2048, intermediateSize: 18432,
        sharedExpertCount: 1, firstDenseLayerCount: 3, expertGroupCount: 8, keptExpertGroupCount: 4,
        routedScalingFactor: 2.5, normalizeTopKProbabilities: true)

    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `DeepseekV3Config`'s defaults.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        moe = try GroupedSigmoidMoEFields(from: decoder, defaults: Self.moeDefaults)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        queryLowRank =
            try container.contains(.queryLowRank)
            ? container.decodeIfPresent(Int.self, forKey: .queryLowRank) : 1536
        keyValueLowRank = try container.decodeIfPresent(Int.self, forKey: .keyValueLowRank) ?? 512
        nopeHeadDimension = try container.decodeIfPresent(Int.self, forKey: .nopeHeadDimension) ?? 128
        ropeHeadDimension = try container.decodeIfPresent(Int.self, forKey: .ropeHeadDimension) ?? 64
        valueHeadDimension =
            try container.contains(.valueHeadDimension)
            ? container.decodeIfPresent(Int.self, forKey: .valueHeadDimension) : 128
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        ropeInterleave =
            try container.contains(.ropeInterleave)
            ? container.decodeIfPresent(Bool.self, forKey: .ropeInterleave) ?? false : true
        scoringFunction = try container.decodeIfPresent(String.self, forKey: .scoringFunction)
        topKMethod = try container.decodeIfPresent(String.self, forKey: .topKMethod)
        multiTokenPredictionLayerCount =
            try container.decodeIfPresent(Int.self, forKey: .multiTokenPredictionLayerCount) ?? 1
        // DeepseekV3Config's defaults where they differ from TransformerFields'.
        fields.headDimension = ropeHeadDimension
        if try container.decodeIfPresent(Int.self, forKey: .keyValueHeadCount) == nil { fields.keyValueHeadCount = 128 }
        if !container.contains(.bosTokenID) { fields.bosTokenID = 0 }
        if !container.contains(.eosTokenID) { fields.eosTokenIDs = [1] }
        let rope = try YaRNParameters(from: container, objects: [.ropeParameters, .ropeScaling])
        if try container.decodeIfPresent(Double.self, forKey: .ropeTheta) == nil && !rope.namesTheta {
            fields.ropeTheta = 10_000
        }
        softmaxScaleFactor = 1
        yarn = nil
        if fields.ropeType == "yarn" {
            yarn = rope.yarn(maxPositionEmbeddings: fields.maxPositionEmbeddings)
            // The attention softmax scale grows by mscale(factor, mscale_all_dim)² (DeepseekV3Attention).
            if let mscaleAllDimensions = rope.mscaleAllDimensions, mscaleAllDimensions != 0 {
                let scale = rope.scale(maxPositionEmbeddings: fields.maxPositionEmbeddings)
                let m = YaRNParameters.mscale(scale, mscaleAllDimensions)
                softmaxScaleFactor = m * m
            }
        }
    }
}

// MARK: - Checkpoint tensors and assembly

extension DeepseekV3Configuration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { moe.expertCount }

    /// Every layer caches one latent row of C + R values per token and no value row.
    public var shape: ModelShape {
        var shape = fields.modelShape(
            expertCounts: moe.expertCounts(layerCount: fields.layerCount), expertsPerToken: moe.expertsPerToken,
            slidingWindows: Array(repeating: nil, count: fields.layerCount))
        shape.keyValueWidths = Array(repeating: latentShape.cacheRowWidth, count: fields.layerCount)
        shape.valueWidths = Array(repeating: 0, count: fields.layerCount)
        return shape
    }

    public var expertSpec: ExpertSpec { moe.expertSpec(activation: fields.hiddenActivation) }

    private static func attention(_ layer: Int, _ name: String) -> String { StandardLayout.attention(layer, name) }

    /// The norms and attention tensors of `layer`, by their checkpoint names.
    func attentionShapes(layer: Int) -> [(name: String, shape: [Int])] {
        let hidden = fields.hiddenSize, heads = fields.attentionHeadCount, latent = latentShape
        let queryWidth = heads * latent.queryKeyDimension
        var shapes: [(name: String, shape: [Int])] = [
            (StandardLayout.inputNorm(layer), [hidden]), (StandardLayout.postAttentionNorm(layer), [hidden]),
        ]
        if let queryLowRank {
            shapes += [
                (Self.attention(layer, "q_a_proj.weight"), [queryLowRank, hidden]),
                (Self.attention(layer, "q_a_layernorm.weight"), [queryLowRank]),
                (Self.attention(layer, "q_b_proj.weight"), [queryWidth, queryLowRank]),
            ]
            if attentionBias { shapes.append((Self.attention(layer, "q_a_proj.bias"), [queryLowRank])) }
        } else {
            shapes.append((Self.attention(layer, "q_proj.weight"), [queryWidth, hidden]))
        }
        shapes += [
            (Self.attention(layer, "kv_a_proj_with_mqa.weight"), [latent.cacheRowWidth, hidden]),
            (Self.attention(layer, "kv_a_layernorm.weight"), [latent.latentDimension]),
            (
                Self.attention(layer, "kv_b_proj.weight"),
                [heads * (latent.nopeDimension + latent.valueDimension), latent.latentDimension]
            ),
            (Self.attention(layer, "o_proj.weight"), [hidden, heads * latent.valueDimension]),
        ]
        if attentionBias {
            shapes += [
                (Self.attention(layer, "kv_a_proj_with_mqa.bias"), [latent.cacheRowWidth]),
                (Self.attention(layer, "o_proj.bias"), [hidden]),
            ]
        }
        return shapes
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += attentionShapes(layer: layer)
            layers += moe.tensorShapes(fields, layer: layer)
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    /// The projection whose output is cached (the latent): its dtype picks the cache dtype.
    public var keyValueProjectionNames: [String] {
        (0..<fields.layerCount).map { Self.attention($0, "kv_a_proj_with_mqa.weight") }
    }

    public func routerWeightName(layer: Int) -> String { GroupedSigmoidMoEFields.routerWeightName(layer: layer) }

    public var embeddingName: String { StandardLayout.embedding }

    /// The softmax scale: qk_head_dim^-0.5 (× mscale² under YaRN), as transformers computes it in f64.
    var scale: Float {
        softmaxScaleFactor == 1
            ? 1 / Float(queryKeyHeadDimension).squareRoot()
            : Float(pow(Double(queryKeyHeadDimension), -0.5) * softmaxScaleFactor)
    }

    /// The latent attention of `layer`.
    func loadAttention(
        _ checkpoint: Checkpoint, layer: Int, arithmetic: BFloat16Arithmetic
    ) throws(ModelError) -> LatentAttention {
        func weight(_ name: String) throws(ModelError) -> WeightTensor {
            try checkpoint.weight(named: Self.attention(layer, name))
        }
        func bias(_ name: String) throws(ModelError) -> FloatTensor? {
            attentionBias ? try checkpoint.tensor(named: Self.attention(layer, name)) : nil
        }
        let query: LatentQuery
        if queryLowRank != nil {
            query = .lowRank(
                down: try weight("q_a_proj.weight"), downBias: try bias("q_a_proj.bias"),
                norm: try checkpoint.tensor(named: Self.attention(layer, "q_a_layernorm.weight")),
                up: try weight("q_b_proj.weight"))
        } else {
            query = .direct(try weight("q_proj.weight"))
        }
        return LatentAttention(
            query: query, latentWeight: try weight("kv_a_proj_with_mqa.weight"),
            latentBias: try bias("kv_a_proj_with_mqa.bias"),
            latentNorm: try checkpoint.tensor(named: Self.attention(layer, "kv_a_layernorm.weight")),
            expandWeight: try weight("kv_b_proj.weight"), outputWeight: try weight("o_proj.weight"),
            outputBias: try bias("o_proj.bias"), shape: latentShape,
            rotary: yarn.map { RotaryEmbedding(headDimension: ropeHeadDimension, theta: fields.ropeTheta, yarn: $0) }
                ?? RotaryEmbedding(headDimension: ropeHeadDimension, theta: fields.ropeTheta),
            interleavedPairs: ropeInterleave, scale: scale, normEpsilon: 1e-6, hiddenSize: fields.hiddenSize,
            arithmetic: arithmetic
        ).absorbed()
    }

    /// Latent attention, then a dense MLP (the first `first_k_dense_replace` layers) or the routed
    /// and shared experts.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            (.latent(try loadAttention(checkpoint, layer: layer, arithmetic: arithmetic)),
             try moe.loadFeedForward(checkpoint, layer: layer, arithmetic: arithmetic))
        }
    }
}

extension Architecture {
    /// DeepSeek-V3 / V3.1 / R1 (deepseek-ai/DeepSeek-V3 and its successors of the same shape).
    public static let deepseekV3 = Architecture(
        modelTypes: ["deepseek_v3"], classNames: ["DeepseekV3ForCausalLM"],
        summary: "multi-head latent attention (q_lora_rank or q_proj, kv_lora_rank latent cached, "
            + "rope_interleave); sigmoid router with e_score_correction_bias for the choice (n_group / topk_group, "
            + "norm_topk_prob, routed_scaling_factor); n_shared_experts ungated on the coordinator; "
            + "first_k_dense_replace dense layers; attention_bias; default or YaRN RoPE",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o)
            fields["rope_parameters"] = .object([
                "rope_theta": .float(o.ropeTheta), "rope_type": .string("default"),
            ])
            fields.merge(GroupedSigmoidMoEFields.randomConfiguration(o)) { _, new in new }
            fields["q_lora_rank"] = o.queryLowRank.map(JSONValue.int) ?? .null
            fields["kv_lora_rank"] = .int(o.keyValueLowRank)
            fields["qk_nope_head_dim"] = .int(o.nopeHeadDimension)
            fields["qk_rope_head_dim"] = .int(o.ropeHeadDimension)
            fields["v_head_dim"] = .int(o.valueHeadDimension)
            fields["rope_interleave"] = .bool(true)
            fields["attention_bias"] = .bool(o.queryKeyValueBias)
            // As deepseek-ai/DeepSeek-V3's config.json has them: transformers ignores both, but llama.cpp's
            // converter reads scoring_func and, without it, routes a deepseek2 GGUF with softmax.
            fields["scoring_func"] = .string("sigmoid")
            fields["topk_method"] = .string("noaux_tc")
            // No MTP layer is written, so none is declared.
            fields["num_nextn_predict_layers"] = .int(0)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(DeepseekV3Configuration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

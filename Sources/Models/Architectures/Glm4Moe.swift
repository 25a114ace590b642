// GLM-4.5 / GLM-4.6 (Zhipu AI): DeepSeek-V3's sigmoid router with a per-expert correction bias
// (noaux_tc), shared experts beside the routed ones, the first `first_k_dense_replace` layers dense,
// grouped-query attention with q/k/v biases, an optional per-head q/k RMS norm, and RoPE on only the
// first half (`partial_rotary_factor`) of each head.
// Port of transformers/models/glm4_moe/modeling_glm4_moe.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = routed experts per MoE layer, k = experts per token, D = head dimension,
// R = rotary dimension (the rotated prefix of each head).
import Foundation
public import Tensors

// MARK: - Configuration

/// The GLM-4.5 hyper-parameters, decoded from a Hugging Face `config.json`.
public struct Glm4MoeConfiguration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens.
    public var fields: TransformerFields
    /// The MoE feed-forward blocks and the dense first layers (DeepSeek-V3's).
    public var moe: GroupedSigmoidMoEFields
    /// A per-head RMS norm of queries and keys before RoPE (`use_qk_norm`).
    public var queryKeyNorm: Bool
    /// Biases on the q, k and v projections (`attention_bias`; o_proj never has one).
    public var attentionBias: Bool
    /// The rotated fraction of each head (`partial_rotary_factor`, 0.5 when absent, as transformers).
    public var partialRotaryFactor: Double
    /// Multi-token-prediction layers after the decoder (`num_nextn_predict_layers`). Their tensors
    /// (`model.layers.L…`) are not loaded: transformers generates without them unless asked to.
    public var multiTokenPredictionLayerCount: Int

    enum CodingKeys: String, CodingKey {
        case queryKeyNorm = "use_qk_norm"
        case attentionBias = "attention_bias"
        case partialRotaryFactor = "partial_rotary_factor"
        case multiTokenPredictionLayerCount = "num_nextn_predict_layers"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case ropeTheta = "rope_theta"
        case rmsNormEpsilon = "rms_norm_eps"
        case maxPositionEmbeddings = "max_position_embeddings"
    }

    /// The rotated prefix of each head: int(D × partial_rotary_factor), as transformers truncates it.
    public var rotaryDimension: Int { Int(Double(fields.headDimension) * partialRotaryFactor) }


    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        try moe.validate(layerCount: fields.layerCount, file: file)
        guard partialRotaryFactor > 0, partialRotaryFactor <= 1, rotaryDimension >= 2, rotaryDimension % 2 == 0 else {
            throw fail(
                "partial_rotary_factor is \(partialRotaryFactor), but head_dim (\(fields.headDimension)) × it must "
                    + "truncate to an even number of rotated dimensions of at least 2 (it gives \(rotaryDimension))")
        }
        guard multiTokenPredictionLayerCount >= 0 else {
            throw fail("num_nextn_predict_layers is \(multiTokenPredictionLayerCount), but must be at least 0")
        }
    }
}

extension Glm4MoeConfiguration: Decodable {
    /// Glm4MoeConfig's MoE defaults.
    static let moeDefaults = GroupedSigmoidMoEFields(
        expertCount: 128, expertsPerToken: 8, expertIntermediateSize: 1408, intermediateSize: 10944,
        sharedExpertCount: 1, firstDenseLayerCount: 1, expertGroupCount: 1, keptExpertGroupCount: 1,
        routedScalingFactor: 1, normalizeTopKProbabilities: true)

    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `Glm4MoeConfig`'s defaults.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        moe = try GroupedSigmoidMoEFields(from: decoder, defaults: Self.moeDefaults)
        queryKeyNorm = try container.decodeIfPresent(Bool.self, forKey: .queryKeyNorm) ?? false
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        multiTokenPredictionLayerCount =
            try container.decodeIfPresent(Int.self, forKey: .multiTokenPredictionLayerCount) ?? 1
        // transformers moves a top-level partial_rotary_factor (the Hub's spelling) into rope_parameters
        // unless rope_parameters already has one; without either, Glm4MoeConfig sets 0.5.
        let rope = try PartialRotaryParameters(
            from: container, topLevel: try container.decodeIfPresent(Double.self, forKey: .partialRotaryFactor),
            ropeTheta: .ropeTheta, objects: [.ropeScaling, .ropeParameters])
        partialRotaryFactor = rope.factor ?? 0.5
        // Glm4MoeConfig's defaults where they differ from TransformerFields'.
        if !rope.namesTheta { fields.ropeTheta = 10_000 }
        if !container.contains(.rmsNormEpsilon) { fields.rmsNormEpsilon = 1e-5 }
        if !container.contains(.maxPositionEmbeddings) { fields.maxPositionEmbeddings = 131_072 }
    }
}

// MARK: - Checkpoint tensors and assembly

extension Glm4MoeConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { moe.expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: moe.expertCounts(layerCount: fields.layerCount), expertsPerToken: moe.expertsPerToken,
            slidingWindows: Array(repeating: nil, count: fields.layerCount))
    }

    public var expertSpec: ExpertSpec { moe.expertSpec(activation: fields.hiddenActivation) }

    private var queryKeyNormKind: QueryKeyNormKind { queryKeyNorm ? .perHead : .none }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(
                fields, layer: layer, biases: attentionBias, queryKeyNorm: queryKeyNormKind)
            layers += moe.tensorShapes(fields, layer: layer)
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount) }

    public func routerWeightName(layer: Int) -> String { GroupedSigmoidMoEFields.routerWeightName(layer: layer) }

    public var embeddingName: String { StandardLayout.embedding }

    /// Attention with optional q/k/v biases and per-head q/k norm, RoPE on the first R dimensions of
    /// each head; the first `first_k_dense_replace` layers run a dense MLP on the coordinator; the
    /// others route (``routingPolicy(correctionBias:)``) and run their shared experts — one ungated
    /// MLP — on the coordinator while the workers compute the routed experts; transformers adds the
    /// shared output to the routed experts' sum, then the sum to the residual stream.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: attentionBias, queryKeyNorm: queryKeyNormKind,
                window: nil, rotaryDimension: rotaryDimension, arithmetic: arithmetic)
            return (.standard(attention), try moe.loadFeedForward(checkpoint, layer: layer, arithmetic: arithmetic))
        }
    }
}

extension Architecture {
    /// GLM-4.5 / GLM-4.6 (zai-org/GLM-4.5, GLM-4.5-Air, GLM-4.6).
    public static let glm4Moe = Architecture(
        modelTypes: ["glm4_moe"], classNames: ["Glm4MoeForCausalLM"],
        summary: "sigmoid router with e_score_correction_bias for the choice (n_group / topk_group, norm_topk_prob, "
            + "routed_scaling_factor); n_shared_experts ungated on the coordinator; "
            + "first_k_dense_replace dense layers; "
            + "partial_rotary_factor RoPE; attention_bias on q/k/v; use_qk_norm",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o, rmsNormEpsilon: 1e-5)
            fields["rope_parameters"] = .object([
                "rope_theta": .float(o.ropeTheta), "rope_type": .string("default"),
                "partial_rotary_factor": .float(o.partialRotaryFactor),
            ])
            fields.merge(GroupedSigmoidMoEFields.randomConfiguration(o)) { _, new in new }
            fields["use_qk_norm"] = .bool(o.queryKeyNorm)
            fields["attention_bias"] = .bool(o.queryKeyValueBias)
            // No MTP layer is written, so none is declared.
            fields["num_nextn_predict_layers"] = .int(0)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(Glm4MoeConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

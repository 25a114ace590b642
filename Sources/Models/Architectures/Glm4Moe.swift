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
    /// Routed experts per MoE layer (E; `n_routed_experts`, also read as `num_local_experts`).
    public var expertCount: Int
    /// Experts chosen per token (k; `num_experts_per_tok`).
    public var expertsPerToken: Int
    /// Width of each routed expert's hidden layer (`moe_intermediate_size`).
    public var expertIntermediateSize: Int
    /// Width of a dense layer's MLP (`intermediate_size`).
    public var intermediateSize: Int
    /// Shared experts, fused into one MLP of `n_shared_experts × moe_intermediate_size` (0: none).
    public var sharedExpertCount: Int
    /// Layers 0 ..< this are dense MLP layers (`first_k_dense_replace`); the rest are MoE layers.
    public var firstDenseLayerCount: Int
    /// The experts form this many groups of consecutive ids (`n_group`).
    public var expertGroupCount: Int
    /// Only the experts of this many best groups may be chosen (`topk_group`).
    public var keptExpertGroupCount: Int
    /// The routing weights' last factor (`routed_scaling_factor`).
    public var routedScalingFactor: Double
    /// Renormalise the k chosen scores to sum to 1 before the scaling (`norm_topk_prob`).
    public var normalizeTopKProbabilities: Bool
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
        case expertCount = "n_routed_experts"
        case localExpertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case expertIntermediateSize = "moe_intermediate_size"
        case intermediateSize = "intermediate_size"
        case sharedExpertCount = "n_shared_experts"
        case firstDenseLayerCount = "first_k_dense_replace"
        case expertGroupCount = "n_group"
        case keptExpertGroupCount = "topk_group"
        case routedScalingFactor = "routed_scaling_factor"
        case normalizeTopKProbabilities = "norm_topk_prob"
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

    /// Whether layer `layer` is a MoE layer (transformers: `layer_idx >= first_k_dense_replace`).
    public func isMoELayer(_ layer: Int) -> Bool { layer >= firstDenseLayerCount }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        guard expertCount >= 1 else { throw fail("n_routed_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but must be between 1 and n_routed_experts "
                    + "(\(expertCount))")
        }
        guard expertIntermediateSize >= 1 else {
            throw fail("moe_intermediate_size is \(expertIntermediateSize), but must be at least 1")
        }
        guard sharedExpertCount >= 0 else {
            throw fail("n_shared_experts is \(sharedExpertCount), but must be at least 0")
        }
        guard (0...fields.layerCount).contains(firstDenseLayerCount) else {
            throw fail(
                "first_k_dense_replace is \(firstDenseLayerCount), but must be between 0 and num_hidden_layers "
                    + "(\(fields.layerCount))")
        }
        if firstDenseLayerCount > 0, intermediateSize < 1 {
            throw fail("intermediate_size is \(intermediateSize), but the dense layers need at least 1")
        }
        guard expertGroupCount >= 1, expertCount % expertGroupCount == 0 else {
            throw fail("n_group is \(expertGroupCount), but must divide n_routed_experts (\(expertCount))")
        }
        // transformers scores a group by the sum of its two best experts (topk(2) per group).
        guard expertCount / expertGroupCount >= 2 else {
            throw fail(
                "n_group is \(expertGroupCount), but each group of n_routed_experts (\(expertCount)) needs at least "
                    + "2 experts (a group's score is the sum of its best two)")
        }
        guard (1...expertGroupCount).contains(keptExpertGroupCount) else {
            throw fail("topk_group is \(keptExpertGroupCount), but must be between 1 and n_group (\(expertGroupCount))")
        }
        let choosable = keptExpertGroupCount * (expertCount / expertGroupCount)
        guard expertsPerToken <= choosable else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but topk_group (\(keptExpertGroupCount)) groups of "
                    + "\(expertCount / expertGroupCount) experts offer only \(choosable)")
        }
        guard routedScalingFactor.isFinite, routedScalingFactor > 0 else {
            throw fail("routed_scaling_factor is \(routedScalingFactor), but must be a positive number")
        }
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
    private enum RopeKeys: String, CodingKey {
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeTheta = "rope_theta"
    }

    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `Glm4MoeConfig`'s defaults.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        expertCount =
            try container.decodeIfPresent(Int.self, forKey: .expertCount)
            ?? container.decodeIfPresent(Int.self, forKey: .localExpertCount) ?? 128
        expertsPerToken = try container.decodeIfPresent(Int.self, forKey: .expertsPerToken) ?? 8
        expertIntermediateSize = try container.decodeIfPresent(Int.self, forKey: .expertIntermediateSize) ?? 1408
        intermediateSize = try container.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 10944
        sharedExpertCount = try container.decodeIfPresent(Int.self, forKey: .sharedExpertCount) ?? 1
        firstDenseLayerCount = try container.decodeIfPresent(Int.self, forKey: .firstDenseLayerCount) ?? 1
        expertGroupCount = try container.decodeIfPresent(Int.self, forKey: .expertGroupCount) ?? 1
        keptExpertGroupCount = try container.decodeIfPresent(Int.self, forKey: .keptExpertGroupCount) ?? 1
        routedScalingFactor = try container.decodeIfPresent(Double.self, forKey: .routedScalingFactor) ?? 1
        normalizeTopKProbabilities =
            try container.decodeIfPresent(Bool.self, forKey: .normalizeTopKProbabilities) ?? true
        queryKeyNorm = try container.decodeIfPresent(Bool.self, forKey: .queryKeyNorm) ?? false
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        multiTokenPredictionLayerCount =
            try container.decodeIfPresent(Int.self, forKey: .multiTokenPredictionLayerCount) ?? 1
        // transformers moves a top-level partial_rotary_factor (the Hub's spelling) into rope_parameters
        // unless rope_parameters already has one; without either, Glm4MoeConfig sets 0.5.
        var factor = try container.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        var hasTheta = try container.decodeIfPresent(Double.self, forKey: .ropeTheta) != nil
        for key in [CodingKeys.ropeScaling, .ropeParameters]
        where try container.contains(key) && !container.decodeNil(forKey: key) {
            let rope = try container.nestedContainer(keyedBy: RopeKeys.self, forKey: key)
            factor = try rope.decodeIfPresent(Double.self, forKey: .partialRotaryFactor) ?? factor
            hasTheta = try hasTheta || rope.decodeIfPresent(Double.self, forKey: .ropeTheta) != nil
        }
        partialRotaryFactor = factor ?? 0.5
        // Glm4MoeConfig's defaults where they differ from TransformerFields'.
        if !hasTheta { fields.ropeTheta = 10_000 }
        if try !container.contains(.rmsNormEpsilon) { fields.rmsNormEpsilon = 1e-5 }
        if try !container.contains(.maxPositionEmbeddings) { fields.maxPositionEmbeddings = 131_072 }
    }
}

// MARK: - Checkpoint tensors and assembly

extension Glm4MoeConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: (0..<fields.layerCount).map { isMoELayer($0) ? expertCount : 0 },
            expertsPerToken: expertsPerToken, slidingWindows: Array(repeating: nil, count: fields.layerCount))
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: expertIntermediateSize, activation: fields.hiddenActivation) { layer, expert in
            StandardLayout.expert(layer, expert)
        }
    }

    /// `mlp.shared_experts.{gate,up,down}_proj.weight` of a MoE layer (plural: the n_shared_experts are one MLP).
    static func sharedExperts(_ layer: Int) -> ExpertSpec.TensorNames {
        StandardLayout.swiGLU(prefix: StandardLayout.mlp(layer, "shared_experts"))
    }

    /// `mlp.gate.e_score_correction_bias` of a MoE layer, [E], f32 in the released checkpoints.
    static func correctionBias(_ layer: Int) -> String { StandardLayout.mlp(layer, "gate.e_score_correction_bias") }

    private var queryKeyNormKind: QueryKeyNormKind { queryKeyNorm ? .perHead : .none }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let hidden = fields.hiddenSize
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(
                fields, layer: layer, biases: attentionBias, queryKeyNorm: queryKeyNormKind)
            if isMoELayer(layer) {
                layers += StandardLayout.routedExpertShapes(
                    fields, layer: layer, expertCount: expertCount, intermediate: expertIntermediateSize)
                layers.append((Self.correctionBias(layer), [expertCount]))
                if sharedExpertCount > 0 {
                    layers += StandardLayout.swiGLUShapes(
                        Self.sharedExperts(layer), hidden: hidden, intermediate: sharedExpertCount * expertIntermediateSize)
                }
            } else {
                layers += StandardLayout.swiGLUShapes(
                    StandardLayout.denseMLP(layer), hidden: hidden, intermediate: intermediateSize)
            }
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount) }

    public func routerWeightName(layer: Int) -> String { StandardLayout.mlp(layer, "gate.weight") }

    public var embeddingName: String { StandardLayout.embedding }

    /// The routing policy of a MoE layer whose correction bias is `bias` [E]: DeepSeek-V3's noaux_tc,
    /// as `Glm4MoeTopkRouter` computes it in f32. Each expert's score is sigmoid(logit); the bias is
    /// added to the scores only to *choose* (groups scored by their best two biased scores, the
    /// `topk_group` best kept, top-k among their experts); the weights are the unbiased scores of the
    /// chosen experts, renormalised (+1e-20) when `norm_topk_prob`, then × `routed_scaling_factor`.
    func routingPolicy(correctionBias bias: [Float]) -> RoutingPolicy {
        RoutingPolicy(
            renormalize: normalizeTopKProbabilities, scoring: .sigmoid,
            // Keeping every group masks nothing: the plain top-k of the biased scores.
            groupLimit: keptExpertGroupCount < expertGroupCount
                ? .init(groupCount: expertGroupCount, keptGroups: keptExpertGroupCount, score: .sumOfBestTwo) : nil,
            choiceBias: bias, renormalizeEpsilon: 1e-20, scale: Float(routedScalingFactor))
    }

    /// Attention with optional q/k/v biases and per-head q/k norm, RoPE on the first R dimensions of
    /// each head; the first `first_k_dense_replace` layers run a dense MLP on the coordinator; the
    /// others route (``routingPolicy(correctionBias:)``) and run their shared experts — one ungated
    /// MLP — on the coordinator while the workers compute the routed experts; transformers adds the
    /// shared output to the routed experts' sum, then the sum to the residual stream.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        var layers: [DecoderLayer] = []
        for layer in 0..<fields.layerCount {
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: attentionBias, queryKeyNorm: queryKeyNormKind,
                window: nil, rotaryDimension: rotaryDimension, arithmetic: arithmetic)
            let feedForward: FeedForward
            if isMoELayer(layer) {
                let router = Router(
                    weight: try checkpoint.weight(named: routerWeightName(layer: layer)), expertCount: expertCount,
                    expertsPerToken: expertsPerToken,
                    policy: routingPolicy(correctionBias: try checkpoint.floats(named: Self.correctionBias(layer))))
                let shared =
                    sharedExpertCount > 0
                    ? SharedExpert(
                        mlp: try StandardLayout.loadMLP(checkpoint, Self.sharedExperts(layer), arithmetic: arithmetic),
                        gate: nil) : nil
                feedForward = .experts(router, shared: shared)
            } else {
                feedForward = .dense(
                    try StandardLayout.loadMLP(checkpoint, StandardLayout.denseMLP(layer), arithmetic: arithmetic))
            }
            layers.append(
                try StandardLayout.decoderLayer(
                    checkpoint, layer: layer, fields: fields, attention: .standard(attention), feedForward: feedForward))
        }
        return try StandardLayout.parts(checkpoint, fields: fields, layers: layers)
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
            fields["n_routed_experts"] = .int(o.expertCount)
            fields["num_experts_per_tok"] = .int(o.expertsPerToken)
            fields["moe_intermediate_size"] = .int(o.expertIntermediateSize)
            fields["intermediate_size"] = .int(o.intermediateSize)
            fields["n_shared_experts"] = .int(o.sharedExpertCount)
            fields["first_k_dense_replace"] = .int(o.denseLayers.count)
            fields["n_group"] = .int(o.expertGroupCount)
            fields["topk_group"] = .int(o.keptExpertGroupCount)
            fields["routed_scaling_factor"] = .float(o.routedScalingFactor)
            fields["norm_topk_prob"] = .bool(o.normalizeTopKProbabilities)
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

// The config.json fields with which the Qwen MoE families (Qwen2-MoE, Qwen3-MoE) say which layers are
// MoE layers and what their routed experts are, decoded and validated once for both.
import Tensors

/// Which layers route to experts, and the experts' shape, of a Qwen-style MoE config.json.
public struct SparseLayerFields: Decodable, Sendable, Equatable {
    /// Experts per MoE layer (E; `num_experts`, also read as `num_local_experts`, which
    /// transformers 5.23 writes for Qwen3-MoE).
    public var expertCount: Int
    /// Experts chosen per token (k).
    public var expertsPerToken: Int
    /// Width of each routed expert's hidden layer (`moe_intermediate_size`).
    public var expertIntermediateSize: Int
    /// Width of a dense layer's MLP (`intermediate_size`).
    public var intermediateSize: Int
    /// Every `decoderSparseStep`-th layer is a MoE layer (layer l when (l + 1) % step == 0).
    public var decoderSparseStep: Int
    /// Layers that are dense whatever the step says (`mlp_only_layers`).
    public var mlpOnlyLayers: [Int]
    /// Renormalise the top-k probabilities to sum to 1 (`norm_topk_prob`).
    public var normalizeTopKProbabilities: Bool

    enum CodingKeys: String, CodingKey {
        case expertCount = "num_experts"
        case localExpertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case expertIntermediateSize = "moe_intermediate_size"
        case intermediateSize = "intermediate_size"
        case decoderSparseStep = "decoder_sparse_step"
        case mlpOnlyLayers = "mlp_only_layers"
        case normalizeTopKProbabilities = "norm_topk_prob"
    }

    /// Decodes config.json; range checks are left to ``validate(_:file:)``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        expertCount =
            try container.decodeIfPresent(Int.self, forKey: .expertCount)
            ?? container.decode(Int.self, forKey: .localExpertCount)
        expertsPerToken = try container.decode(Int.self, forKey: .expertsPerToken)
        expertIntermediateSize = try container.decode(Int.self, forKey: .expertIntermediateSize)
        intermediateSize = try container.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 0
        decoderSparseStep = try container.decodeIfPresent(Int.self, forKey: .decoderSparseStep) ?? 1
        mlpOnlyLayers = try container.decodeIfPresent([Int].self, forKey: .mlpOnlyLayers) ?? []
        normalizeTopKProbabilities = try container.decodeIfPresent(Bool.self, forKey: .normalizeTopKProbabilities) ?? false
    }

    /// Whether layer `layer` is a MoE layer: not listed in `mlp_only_layers`, experts exist, and
    /// (layer + 1) is a multiple of `decoder_sparse_step` (transformers' rule for both families).
    public func isMoELayer(_ layer: Int) -> Bool {
        !mlpOnlyLayers.contains(layer) && expertCount > 0 && (layer + 1) % decoderSparseStep == 0
    }

    /// Experts per layer of a model with `layerCount` layers: 0 for a dense layer.
    func expertCounts(layerCount: Int) -> [Int] { (0..<layerCount).map { isMoELayer($0) ? expertCount : 0 } }

    /// Checks every field's range and the relations between fields (and `fields`, whose layers they name).
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    func validate(_ fields: TransformerFields, file: String) throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validateLayerList(mlpOnlyLayers, field: "mlp_only_layers", file: file)
        guard expertCount >= 1 else { throw fail("num_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail("num_experts_per_tok is \(expertsPerToken), but must be between 1 and num_experts (\(expertCount))")
        }
        guard expertIntermediateSize >= 1 else {
            throw fail("moe_intermediate_size is \(expertIntermediateSize), but must be at least 1")
        }
        guard decoderSparseStep >= 1 else {
            throw fail("decoder_sparse_step is \(decoderSparseStep), but must be at least 1")
        }
        if (0..<fields.layerCount).contains(where: { !isMoELayer($0) }), intermediateSize < 1 {
            throw fail("intermediate_size is \(intermediateSize), but the dense layers need at least 1")
        }
    }

    /// Layer `layer`'s feed-forward block in the shared layout: on a MoE layer, its router (softmax,
    /// top-k, renormalised when `norm_topk_prob`) with `shared()` beside the routed experts; on a
    /// dense layer, its MLP of `intermediate_size`.
    func feedForward(
        _ checkpoint: Checkpoint, layer: Int, arithmetic: BFloat16Arithmetic,
        shared: () throws(ModelError) -> SharedExpert? = { nil }
    ) throws(ModelError) -> FeedForward {
        guard isMoELayer(layer) else {
            return .dense(try StandardLayout.loadMLP(checkpoint, StandardLayout.denseMLP(layer), arithmetic: arithmetic))
        }
        let router = try StandardLayout.loadRouter(
            checkpoint, layer: layer, expertCount: expertCount, expertsPerToken: expertsPerToken,
            renormalize: normalizeTopKProbabilities)
        return .experts(router, shared: try shared())
    }
}

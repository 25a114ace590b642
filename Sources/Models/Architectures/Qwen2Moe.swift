// Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): routed SwiGLU experts plus a shared expert every token
// passes through, scaled by a sigmoid gate; q/k/v biases; sliding window on some layers.
// Port of transformers/models/qwen2_moe/modeling_qwen2_moe.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = experts per MoE layer, k = experts per token.
import Foundation
public import Tensors

// MARK: - Configuration

/// The Qwen2-MoE hyper-parameters, decoded from a Hugging Face `config.json`.
public struct Qwen2MoeConfiguration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens.
    public var fields: TransformerFields
    /// Which layers are MoE layers, and their routed experts.
    public var sparse: SparseLayerFields
    /// Width of the shared expert's hidden layer (0: no shared expert).
    public var sharedExpertIntermediateSize: Int
    /// q/k/v biases (`qkv_bias`, true unless config.json says otherwise).
    public var queryKeyValueBias: Bool
    /// Per layer, its attention window (nil: full attention).
    public var slidingWindows: [Int?]

    enum CodingKeys: String, CodingKey {
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case queryKeyValueBias = "qkv_bias"
        case useSlidingWindow = "use_sliding_window"
        case slidingWindow = "sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
    }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        try sparse.validate(fields, file: file)
        guard sharedExpertIntermediateSize >= 0 else {
            throw fail("shared_expert_intermediate_size is \(sharedExpertIntermediateSize), but must be at least 0")
        }
        guard slidingWindows.count == fields.layerCount else {
            throw fail("layer_types has \(slidingWindows.count) entries, but num_hidden_layers is \(fields.layerCount)")
        }
        for window in slidingWindows {
            if let window, window < 1 {
                throw fail("sliding_window is \(window), but must be at least 1 on a sliding_attention layer")
            }
        }
    }
}

extension Qwen2MoeConfiguration: Decodable {
    /// Decodes config.json; range checks are left to ``validate(file:)``.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        sparse = try SparseLayerFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sharedExpertIntermediateSize = try container.decodeIfPresent(Int.self, forKey: .sharedExpertIntermediateSize) ?? 0
        queryKeyValueBias = try container.decodeIfPresent(Bool.self, forKey: .queryKeyValueBias) ?? true
        // transformers: sliding_window is sliding_window if use_sliding_window else 0; without an explicit
        // layer_types, layer i slides when i is even, i < max_window_layers and use_sliding_window.
        let sliding = try container.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
        let window = sliding ? (try container.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 4096) : 0
        let maxWindowLayers = try container.decodeIfPresent(Int.self, forKey: .maxWindowLayers) ?? 28
        let layerCount = fields.layerCount
        let types =
            try container.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? (0..<max(0, min(layerCount, 1 << 20))).map {
                ($0 + 1) % 2 == 1 && $0 < maxWindowLayers && sliding ? "sliding_attention" : "full_attention"
            }
        slidingWindows = try types.enumerated().map { index, type in
            switch type {
            case "full_attention": return nil
            case "sliding_attention": return window
            default:
                throw ModelError.invalidConfiguration(
                    file: "config.json",
                    message: "layer_types[\(index)] is \(type), but must be full_attention or sliding_attention")
            }
        }
    }
}

// MARK: - Checkpoint tensors and assembly

extension Qwen2MoeConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { sparse.expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: sparse.expertCounts(layerCount: fields.layerCount), expertsPerToken: sparse.expertsPerToken,
            slidingWindows: slidingWindows)
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: sparse.expertIntermediateSize, activation: fields.hiddenActivation) { layer, expert in
            StandardLayout.expert(layer, expert)
        }
    }

    /// `mlp.shared_expert.{gate,up,down}_proj.weight` of a MoE layer.
    static func sharedExpert(_ layer: Int) -> ExpertSpec.TensorNames {
        StandardLayout.swiGLU(prefix: StandardLayout.mlp(layer, "shared_expert"))
    }

    /// `mlp.shared_expert_gate.weight` of a MoE layer, [1, H].
    static func sharedExpertGate(_ layer: Int) -> String { StandardLayout.mlp(layer, "shared_expert_gate.weight") }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let hidden = fields.hiddenSize
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(fields, layer: layer, biases: queryKeyValueBias, queryKeyNorm: .none)
            if sparse.isMoELayer(layer) {
                layers += StandardLayout.routedExpertShapes(
                    fields, layer: layer, expertCount: sparse.expertCount, intermediate: sparse.expertIntermediateSize)
                if sharedExpertIntermediateSize > 0 {
                    layers += StandardLayout.swiGLUShapes(
                        Self.sharedExpert(layer), hidden: hidden, intermediate: sharedExpertIntermediateSize)
                    layers.append((Self.sharedExpertGate(layer), [1, hidden]))
                }
            } else {
                layers += StandardLayout.swiGLUShapes(
                    StandardLayout.denseMLP(layer), hidden: hidden, intermediate: sparse.intermediateSize)
            }
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount) }

    public func routerWeightName(layer: Int) -> String { StandardLayout.mlp(layer, "gate.weight") }

    public var embeddingName: String { StandardLayout.embedding }

    /// Attention with q/k/v biases; MoE layers route with softmax → top-k (renormalised only when
    /// `norm_topk_prob`), and their shared expert — sigmoid(x · shared_expert_gate) · MLP(x) — runs on
    /// the coordinator while the workers compute the routed experts; transformers adds it to the
    /// routed experts' sum (routed + shared), then the sum to the residual stream.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: queryKeyValueBias, queryKeyNorm: .none,
                window: slidingWindows[layer], arithmetic: arithmetic)
            // The shared expert (Qwen2-MoE's addition) beside a MoE layer's routed experts.
            let feedForward = try sparse.feedForward(checkpoint, layer: layer, arithmetic: arithmetic) {
                () throws(ModelError) -> SharedExpert? in
                guard sharedExpertIntermediateSize > 0 else { return nil }
                return SharedExpert(
                    mlp: try StandardLayout.loadMLP(checkpoint, Self.sharedExpert(layer), arithmetic: arithmetic),
                    gate: try checkpoint.weight(named: Self.sharedExpertGate(layer)))
            }
            return (.standard(attention), feedForward)
        }
    }
}

extension Architecture {
    /// Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B).
    public static let qwen2Moe = Architecture(
        modelTypes: ["qwen2_moe"], classNames: ["Qwen2MoeForCausalLM"],
        summary: "q/k/v biases; softmax router, top-k renormalised if norm_topk_prob; a shared expert with a "
            + "sigmoid gate on the coordinator; sliding window per layer_types / max_window_layers",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o)
            fields.merge(RandomCheckpointWriter.sparseLayerFields(o)) { _, sparse in sparse }
            fields["shared_expert_intermediate_size"] = .int(o.sharedExpertIntermediateSize)
            fields["qkv_bias"] = .bool(o.queryKeyValueBias)
            fields["max_window_layers"] = .int(o.layerCount)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(Qwen2MoeConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

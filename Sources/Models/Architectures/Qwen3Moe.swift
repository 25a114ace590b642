// Qwen3-MoE: many small SwiGLU experts (128, top-8 in the released models), an RMS norm of each
// query and key head before RoPE, no attention biases, optional dense layers.
// Port of transformers/models/qwen3_moe/modeling_qwen3_moe.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = experts per MoE layer, k = experts per token, D = head dimension.
import Foundation
public import Tensors

// MARK: - Configuration

/// The Qwen3-MoE hyper-parameters, decoded from a Hugging Face `config.json`.
public struct Qwen3MoeConfiguration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens.
    public var fields: TransformerFields
    /// Which layers are MoE layers, and their routed experts.
    public var sparse: SparseLayerFields
    /// The attention window of every layer when `use_sliding_window` is true, else nil.
    public var slidingWindow: Int?
    /// Biases on q/k/v/o (`attention_bias`); not supported (no released checkpoint has them).
    public var attentionBias: Bool

    enum CodingKeys: String, CodingKey {
        case useSlidingWindow = "use_sliding_window"
        case slidingWindow = "sliding_window"
        case attentionBias = "attention_bias"
    }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        try sparse.validate(fields, file: file)
        guard !attentionBias else { throw fail("attention_bias is true, but Qwen3-MoE attention biases are not supported") }
        if let slidingWindow, slidingWindow < 1 {
            throw fail("sliding_window is \(slidingWindow), but must be at least 1 when use_sliding_window is true")
        }
    }
}

extension Qwen3MoeConfiguration: Decodable {
    /// Decodes config.json; range checks are left to ``validate(file:)``.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        sparse = try SparseLayerFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // transformers: sliding_window = sliding_window if use_sliding_window else None, for every layer.
        let sliding = try container.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
        slidingWindow = sliding ? try container.decodeIfPresent(Int.self, forKey: .slidingWindow) : nil
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
    }
}

// MARK: - Checkpoint tensors and assembly

extension Qwen3MoeConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { sparse.expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: sparse.expertCounts(layerCount: fields.layerCount), expertsPerToken: sparse.expertsPerToken,
            slidingWindows: Array(repeating: slidingWindow, count: fields.layerCount))
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: sparse.expertIntermediateSize, activation: fields.hiddenActivation) { layer, expert in
            StandardLayout.expert(layer, expert)
        }
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let hidden = fields.hiddenSize
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(fields, layer: layer, biases: false, queryKeyNorm: .perHead)
            if sparse.isMoELayer(layer) {
                layers += StandardLayout.routedExpertShapes(
                    fields, layer: layer, expertCount: sparse.expertCount, intermediate: sparse.expertIntermediateSize)
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

    /// Attention with a per-head RMS norm of queries and keys before RoPE (over D, one weight shared
    /// by every head); MoE layers route with softmax → top-k → renormalise when `norm_topk_prob`;
    /// dense layers run a SwiGLU MLP of `intermediate_size` on the coordinator.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: false, queryKeyNorm: .perHead, window: slidingWindow,
                arithmetic: arithmetic)
            return (.standard(attention), try sparse.feedForward(checkpoint, layer: layer, arithmetic: arithmetic))
        }
    }
}

extension Architecture {
    /// Qwen3-MoE (Alibaba's Qwen3 sparse models, e.g. Qwen3-30B-A3B).
    public static let qwen3Moe = Architecture(
        modelTypes: ["qwen3_moe"], classNames: ["Qwen3MoeForCausalLM"],
        summary: "per-head q/k RMS norm; softmax router, top-k renormalised if norm_topk_prob; "
            + "dense layers by mlp_only_layers / decoder_sparse_step; experts mlp.experts.E.{gate,up,down}_proj",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o)
            fields.merge(RandomCheckpointWriter.sparseLayerFields(o)) { _, sparse in sparse }
            fields["attention_bias"] = .bool(false)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(Qwen3MoeConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

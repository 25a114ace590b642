// OLMoE (AI2's open MoE, e.g. OLMoE-1B-7B): 64 SwiGLU experts, top-8, no renormalisation of the
// top-k weights by default, an RMS norm over the whole query and key projections, optional clip_qkv.
// Port of transformers/models/olmoe/modeling_olmoe.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = experts per layer, k = experts per token, D = head dimension.
import Foundation
public import Tensors

// MARK: - Configuration

/// The OLMoE hyper-parameters, decoded from a Hugging Face `config.json`.
public struct OlmoeConfiguration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens.
    public var fields: TransformerFields
    /// Experts per layer (E; `num_experts`).
    public var expertCount: Int
    /// Experts chosen per token (k).
    public var expertsPerToken: Int
    /// Width of each expert's hidden layer (`intermediate_size`).
    public var intermediateSize: Int
    /// Renormalise the top-k probabilities to sum to 1 (false in the released models).
    public var normalizeTopKProbabilities: Bool
    /// When set, q, k and v are clamped to ±clip after the q/k norms.
    public var clipQueryKeyValue: Double?
    /// Biases on q/k/v/o (`attention_bias`); not supported (no released checkpoint has them).
    public var attentionBias: Bool

    enum CodingKeys: String, CodingKey {
        case expertCount = "num_experts"
        case expertsPerToken = "num_experts_per_tok"
        case intermediateSize = "intermediate_size"
        case normalizeTopKProbabilities = "norm_topk_prob"
        case clipQueryKeyValue = "clip_qkv"
        case attentionBias = "attention_bias"
    }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        guard expertCount >= 1 else { throw fail("num_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail("num_experts_per_tok is \(expertsPerToken), but must be between 1 and num_experts (\(expertCount))")
        }
        guard intermediateSize >= 1 else { throw fail("intermediate_size is \(intermediateSize), but must be at least 1") }
        // transformers sizes the k norm as (hidden_size / heads) × kv heads: the head dimension must be hidden / heads.
        guard fields.headDimension * fields.attentionHeadCount == fields.hiddenSize else {
            throw fail(
                "head_dim is \(fields.headDimension), but OLMoE needs hidden_size / num_attention_heads "
                    + "(\(fields.hiddenSize / max(1, fields.attentionHeadCount)))")
        }
        if let clipQueryKeyValue, !(clipQueryKeyValue.isFinite && clipQueryKeyValue > 0) {
            throw fail("clip_qkv is \(clipQueryKeyValue), but must be null or a positive number")
        }
        guard !attentionBias else { throw fail("attention_bias is true, but OLMoE attention biases are not supported") }
    }
}

extension OlmoeConfiguration: Decodable {
    /// Decodes config.json; range checks are left to ``validate(file:)``.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        // OLMoE's RMS norms default to ε = 1e-5 (the shared fields default to Qwen's 1e-6).
        let raw = try decoder.container(keyedBy: TransformerFields.CodingKeys.self)
        if try raw.decodeIfPresent(Double.self, forKey: .rmsNormEpsilon) == nil { fields.rmsNormEpsilon = 1e-5 }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        expertCount = try container.decode(Int.self, forKey: .expertCount)
        expertsPerToken = try container.decode(Int.self, forKey: .expertsPerToken)
        intermediateSize = try container.decode(Int.self, forKey: .intermediateSize)
        normalizeTopKProbabilities = try container.decodeIfPresent(Bool.self, forKey: .normalizeTopKProbabilities) ?? false
        clipQueryKeyValue = try container.decodeIfPresent(Double.self, forKey: .clipQueryKeyValue)
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
    }
}

// MARK: - Checkpoint tensors and assembly

extension OlmoeConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { expertCount }

    public var shape: ModelShape {
        // OLMoE has no sliding window: transformers builds a plain causal mask.
        fields.modelShape(
            expertCounts: Array(repeating: expertCount, count: fields.layerCount), expertsPerToken: expertsPerToken,
            slidingWindows: Array(repeating: nil, count: fields.layerCount))
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: intermediateSize, activation: fields.hiddenActivation) { layer, expert in
            StandardLayout.expert(layer, expert)
        }
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(fields, layer: layer, biases: false, queryKeyNorm: .whole)
            layers += StandardLayout.routedExpertShapes(
                fields, layer: layer, expertCount: expertCount, intermediate: intermediateSize)
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount) }

    public func routerWeightName(layer: Int) -> String { StandardLayout.mlp(layer, "gate.weight") }

    public var embeddingName: String { StandardLayout.embedding }

    /// Attention whose q_norm/k_norm normalise the whole projection row (not each head, unlike
    /// Qwen3-MoE), then clip_qkv, then RoPE; every layer is MoE, routed with softmax → top-k and
    /// renormalised only when `norm_topk_prob`.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: false, queryKeyNorm: .whole,
                clip: clipQueryKeyValue.map(Float.init), window: nil, arithmetic: arithmetic)
            let router = try StandardLayout.loadRouter(
                checkpoint, layer: layer, expertCount: expertCount, expertsPerToken: expertsPerToken,
                renormalize: normalizeTopKProbabilities)
            return (.standard(attention), .experts(router, shared: nil))
        }
    }
}

extension Architecture {
    /// OLMoE (AI2, e.g. OLMoE-1B-7B-0924).
    public static let olmoe = Architecture(
        modelTypes: ["olmoe"], classNames: ["OlmoeForCausalLM"],
        summary: "q/k RMS norm over the whole projection, optional clip_qkv; softmax router, top-k not "
            + "renormalised unless norm_topk_prob; every layer MoE",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o, rmsNormEpsilon: 1e-5)
            fields["num_experts"] = .int(o.expertCount)
            fields["num_experts_per_tok"] = .int(o.expertsPerToken)
            fields["intermediate_size"] = .int(o.intermediateSize)
            fields["norm_topk_prob"] = .bool(o.normalizeTopKProbabilities)
            fields["clip_qkv"] = .null
            fields["attention_bias"] = .bool(false)
            fields["router_aux_loss_coef"] = .float(0.01)
            fields["output_router_logits"] = .bool(false)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(OlmoeConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

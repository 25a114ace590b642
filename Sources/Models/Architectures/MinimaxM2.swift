// MiniMax-M2 (MiniMaxAI): every layer MoE with a sigmoid router whose `e_score_correction_bias` is
// added only to choose the top-k (DeepSeek-V3's trick, without groups or a scaling factor), the
// chosen unbiased scores renormalised; SwiGLU experts stored as Mixtral's w1/w3/w2; grouped-query
// attention with an RMS norm over the whole q and k projections (not per head) and RoPE on the first
// `rotary_dim` dimensions of each head.
// Port of transformers/models/minimax_m2/modeling_minimax_m2.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = experts per layer, k = experts per token, D = head dimension,
// R = rotary dimension (the rotated prefix of each head).
import Foundation
public import Tensors

// MARK: - Configuration

/// The MiniMax-M2 hyper-parameters, decoded from a Hugging Face `config.json`.
public struct MinimaxM2Configuration: Sendable, Equatable {
    /// Widths, heads, RoPE, norms and special tokens.
    public var fields: TransformerFields
    /// Experts per layer (E; `num_local_experts`).
    public var expertCount: Int
    /// Experts chosen per token (k; `num_experts_per_tok`).
    public var expertsPerToken: Int
    /// Width of each expert's hidden layer (`intermediate_size`).
    public var intermediateSize: Int
    /// The rotated fraction of each head: `partial_rotary_factor` (in rope_parameters or at the top
    /// level), else the Hub's `rotary_dim` ÷ head_dim, else 1.
    public var partialRotaryFactor: Double
    /// The Hub config's switches transformers does not read, honoured when they say what it computes:
    /// `use_qk_norm` (true), `qk_norm_type` (per_layer: over the whole projection), `scoring_func`
    /// (sigmoid), `use_routing_bias` (true), `shared_intermediate_size` (0).
    public var queryKeyNorm: Bool?
    public var queryKeyNormType: String?
    public var scoringFunction: String?
    public var routingBias: Bool?
    public var sharedIntermediateSize: Int?

    enum CodingKeys: String, CodingKey {
        case expertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case intermediateSize = "intermediate_size"
        case partialRotaryFactor = "partial_rotary_factor"
        case rotaryDimension = "rotary_dim"
        case queryKeyNorm = "use_qk_norm"
        case queryKeyNormType = "qk_norm_type"
        case scoringFunction = "scoring_func"
        case routingBias = "use_routing_bias"
        case sharedIntermediateSize = "shared_intermediate_size"
        case headDimension = "head_dim"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case ropeTheta = "rope_theta"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case maxPositionEmbeddings = "max_position_embeddings"
    }

    /// R: int(D × partial_rotary_factor), as transformers truncates it.
    public var rotaryDimension: Int { Int(Double(fields.headDimension) * partialRotaryFactor) }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try fields.validate(file: file)
        guard expertCount >= 1 else { throw fail("num_local_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but must be between 1 and num_local_experts "
                    + "(\(expertCount))")
        }
        guard intermediateSize >= 1 else {
            throw fail("intermediate_size is \(intermediateSize), but must be at least 1")
        }
        guard partialRotaryFactor > 0, partialRotaryFactor <= 1, rotaryDimension >= 2, rotaryDimension % 2 == 0 else {
            throw fail(
                "partial_rotary_factor (or rotary_dim ÷ head_dim) is \(partialRotaryFactor), but head_dim "
                    + "(\(fields.headDimension)) × it must truncate to an even number of rotated dimensions of at "
                    + "least 2 (it gives \(rotaryDimension))")
        }
        if queryKeyNorm == false { throw fail("use_qk_norm is false, but MiniMax-M2 always normalises q and k") }
        if let queryKeyNormType, queryKeyNormType != "per_layer" {
            throw fail("qk_norm_type is \(queryKeyNormType), but only per_layer (over the whole projection) runs")
        }
        if let scoringFunction, scoringFunction != "sigmoid" {
            throw fail("scoring_func is \(scoringFunction), but MiniMax-M2 routes with sigmoid only")
        }
        if routingBias == false {
            throw fail("use_routing_bias is false, but MiniMax-M2 always chooses with e_score_correction_bias")
        }
        if let sharedIntermediateSize, sharedIntermediateSize != 0 {
            throw fail("shared_intermediate_size is \(sharedIntermediateSize), but MiniMax-M2 has no shared expert (0)")
        }
    }
}

extension MinimaxM2Configuration: Decodable {
    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `MiniMaxM2Config`'s defaults.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        expertCount = try container.decodeIfPresent(Int.self, forKey: .expertCount) ?? 256
        expertsPerToken = try container.decodeIfPresent(Int.self, forKey: .expertsPerToken) ?? 8
        intermediateSize = try container.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 1536
        queryKeyNorm = try container.decodeIfPresent(Bool.self, forKey: .queryKeyNorm)
        queryKeyNormType = try container.decodeIfPresent(String.self, forKey: .queryKeyNormType)
        scoringFunction = try container.decodeIfPresent(String.self, forKey: .scoringFunction)
        routingBias = try container.decodeIfPresent(Bool.self, forKey: .routingBias)
        sharedIntermediateSize = try container.decodeIfPresent(Int.self, forKey: .sharedIntermediateSize)
        // MiniMaxM2Config's defaults where they differ from TransformerFields'.
        if try container.decodeIfPresent(Int.self, forKey: .headDimension) == nil { fields.headDimension = 128 }
        if !container.contains(.bosTokenID) { fields.bosTokenID = 200_034 }
        if !container.contains(.eosTokenID) { fields.eosTokenIDs = [200_020] }
        if !container.contains(.maxPositionEmbeddings) { fields.maxPositionEmbeddings = 196_608 }
        // convert_rope_params_to_dict: a partial_rotary_factor given wins over rotary_dim ÷ head_dim;
        // rope_parameters' own wins over both.
        var factor = try container.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        if factor == nil, let rotary = try container.decodeIfPresent(Int.self, forKey: .rotaryDimension) {
            factor = Double(rotary) / Double(fields.headDimension)
        }
        let rope = try PartialRotaryParameters(
            from: container, topLevel: factor, ropeTheta: .ropeTheta, objects: [.ropeScaling, .ropeParameters])
        partialRotaryFactor = rope.factor ?? 1
        if !rope.namesTheta { fields.ropeTheta = 5_000_000 }
    }
}

// MARK: - Checkpoint tensors and assembly

extension MinimaxM2Configuration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: Array(repeating: expertCount, count: fields.layerCount), expertsPerToken: expertsPerToken,
            slidingWindows: Array(repeating: nil, count: fields.layerCount))
    }

    /// `block_sparse_moe.experts.{e}.w1` (gate), `w3` (up), `w2` (down), as Mixtral stores them.
    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: intermediateSize, activation: fields.hiddenActivation) { layer, expert in
            ExpertSpec.TensorNames(
                gate: MixtralTensorNames.expertGate(layer, expert), up: MixtralTensorNames.expertUp(layer, expert),
                down: MixtralTensorNames.expertDown(layer, expert))
        }
    }

    /// `block_sparse_moe.e_score_correction_bias` of a layer, [E], f32.
    static func correctionBias(_ layer: Int) -> String {
        "\(StandardLayout.layer(layer)).block_sparse_moe.e_score_correction_bias"
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(fields, layer: layer, biases: false, queryKeyNorm: .whole)
            layers.append((MixtralTensorNames.router(layer), [expertCount, fields.hiddenSize]))
            layers.append((Self.correctionBias(layer), [expertCount]))
            for expert in 0..<expertCount {
                layers += StandardLayout.swiGLUShapes(
                    expertSpec.tensorNames(layer: layer, expert: expert), hidden: fields.hiddenSize,
                    intermediate: intermediateSize)
            }
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] {
        StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount)
    }

    public func routerWeightName(layer: Int) -> String { MixtralTensorNames.router(layer) }

    public var embeddingName: String { StandardLayout.embedding }

    /// The routing policy of a layer whose correction bias is `bias` [E] (`MiniMaxM2TopKRouter` in f32):
    /// sigmoid scores; the top-k of scores + bias are chosen; their unbiased scores, divided by their
    /// sum (no ε, no scaling factor), are the routing weights.
    static func routingPolicy(correctionBias bias: [Float]) -> RoutingPolicy {
        RoutingPolicy(renormalize: true, scoring: .sigmoid, choiceBias: bias)
    }

    /// Attention whose q_norm/k_norm normalise the whole projection row, then RoPE on the first R
    /// dimensions of each head; every layer routes its tokens to experts on the workers.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            let attention = try StandardLayout.loadAttention(
                checkpoint, layer: layer, fields: fields, biases: false, queryKeyNorm: .whole, window: nil,
                rotaryDimension: rotaryDimension, arithmetic: arithmetic)
            let router = Router(
                weight: try checkpoint.weight(named: MixtralTensorNames.router(layer)), expertCount: expertCount,
                expertsPerToken: expertsPerToken,
                policy: Self.routingPolicy(correctionBias: try checkpoint.floats(named: Self.correctionBias(layer))))
            return (.standard(attention), .experts(router, shared: nil))
        }
    }
}

extension Architecture {
    /// MiniMax-M2 (MiniMaxAI/MiniMax-M2 and its successors of the same shape).
    public static let minimaxM2 = Architecture(
        modelTypes: ["minimax_m2"], classNames: ["MiniMaxM2ForCausalLM"],
        summary: "sigmoid router with e_score_correction_bias for the choice, top-k renormalised; experts w1/w2/w3; "
            + "q/k RMS norm over the whole projection; RoPE on rotary_dim (partial_rotary_factor) of each head; "
            + "every layer MoE",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o)
            // MiniMaxM2Config's head_dim defaults to 128, not hidden ÷ heads: always write it.
            fields["head_dim"] = .int(o.headDimension ?? o.hiddenSize / max(1, o.attentionHeadCount))
            fields["rope_parameters"] = .object([
                "rope_theta": .float(o.ropeTheta), "rope_type": .string("default"),
                "partial_rotary_factor": .float(o.partialRotaryFactor),
            ])
            fields["num_local_experts"] = .int(o.expertCount)
            fields["num_experts_per_tok"] = .int(o.expertsPerToken)
            fields["intermediate_size"] = .int(o.intermediateSize)
            fields["router_jitter_noise"] = .float(0)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(MinimaxM2Configuration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

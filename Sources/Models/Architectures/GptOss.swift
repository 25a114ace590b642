// gpt-oss (OpenAI's open-weight MoE, gpt-oss-20b and -120b): attention with biases on q/k/v/o and a
// learned sink logit per head, layers alternating sliding-window and full attention (`layer_types`),
// YaRN RoPE; a router with a bias that takes the top-k logits and softmaxes only those; experts
// stacked per layer as transformers stores them (ExpertSpec.Stacked) with biases and a clamped SwiGLU.
// Port of transformers/models/gpt_oss/modeling_gpt_oss.py (transformers 5.23), f32 compute.
//
// Legend: H = hidden size, E = experts per layer, k = experts per token, I = expert intermediate size,
// D = head dimension.
import Foundation
import Kernels
public import Tensors

// MARK: - Configuration

/// The gpt-oss hyper-parameters, decoded from a Hugging Face `config.json`.
public struct GptOssConfiguration: Sendable, Equatable {
    /// Widths, heads, RoPE θ, norms and special tokens.
    public var fields: TransformerFields
    /// Experts per layer (E; `num_local_experts`).
    public var expertCount: Int
    /// Experts chosen per token (k).
    public var expertsPerToken: Int
    /// Width of each expert's hidden layer (I; `intermediate_size`).
    public var intermediateSize: Int
    /// The clamped SwiGLU's sigmoid gain (`swiglu_alpha`).
    public var swiGLUAlpha: Double
    /// The clamped SwiGLU's limit (`swiglu_limit`).
    public var swiGLULimit: Double
    /// The window of the sliding-attention layers (`sliding_window`).
    public var slidingWindow: Int?
    /// Per layer, `sliding_attention` or `full_attention` (`layer_types`; default: sliding on even layers).
    public var layerTypes: [String]
    /// Biases on q/k/v/o (`attention_bias`, true in the released models).
    public var attentionBias: Bool
    /// YaRN's parameters when `rope_type` is yarn (as the released models have), else nil.
    var yarn: RotaryEmbedding.YaRN?
    /// `quantization_config.quant_method`: mxfp4 (the released checkpoints: the experts' gate_up_proj
    /// and down_proj as `_blocks` and `_scales`), or nil for unquantized experts.
    public var quantizationMethod: String?

    /// Whether the experts are stored as MXFP4.
    public var isMXFP4: Bool { quantizationMethod == "mxfp4" }

    enum CodingKeys: String, CodingKey {
        case expertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case intermediateSize = "intermediate_size"
        case swiGLUAlpha = "swiglu_alpha"
        case swiGLULimit = "swiglu_limit"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case attentionBias = "attention_bias"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case ropeTheta = "rope_theta"
        case quantizationConfiguration = "quantization_config"
    }

    private enum QuantizationKeys: String, CodingKey {
        case quantizationMethod = "quant_method"
    }

    /// The attention window of `layer`: `sliding_window` for a sliding-attention layer, else nil.
    func window(layer: Int) -> Int? { layerTypes[layer] == "sliding_attention" ? slidingWindow : nil }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        // YaRN is the rope type the released models use; the shared checks refuse the others.
        var shared = fields
        if let yarn {
            shared.ropeType = "default"
            guard yarn.factor.isFinite, yarn.factor > 0, yarn.originalMaxPositions > 0 else {
                throw fail(
                    "rope_parameters yarn has factor \(yarn.factor) and original_max_position_embeddings "
                        + "\(yarn.originalMaxPositions), but both must be positive")
            }
        }
        try shared.validate(file: file)
        guard expertCount >= 1 else { throw fail("num_local_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but must be between 1 and num_local_experts (\(expertCount))")
        }
        guard intermediateSize >= 1 else { throw fail("intermediate_size is \(intermediateSize), but must be at least 1") }
        guard swiGLUAlpha.isFinite, swiGLULimit.isFinite, swiGLULimit > 0 else {
            throw fail(
                "swiglu_alpha is \(swiGLUAlpha) and swiglu_limit \(swiGLULimit), but both must be finite and the limit positive")
        }
        guard layerTypes.count == fields.layerCount else {
            throw fail("layer_types has \(layerTypes.count) entries, but num_hidden_layers is \(fields.layerCount)")
        }
        for (layer, type) in layerTypes.enumerated() where type != "sliding_attention" && type != "full_attention" {
            throw fail("layer_types[\(layer)] is \(type), but must be sliding_attention or full_attention")
        }
        if let quantizationMethod {
            guard quantizationMethod == "mxfp4" else {
                throw fail("quantization_config.quant_method is \(quantizationMethod), but only mxfp4 is supported")
            }
            guard fields.hiddenSize % 32 == 0, intermediateSize % 32 == 0 else {
                throw fail(
                    "hidden_size is \(fields.hiddenSize) and intermediate_size \(intermediateSize), but MXFP4 experts "
                        + "need both to be multiples of 32 (its block size)")
            }
        }
        if layerTypes.contains("sliding_attention") {
            guard let slidingWindow, slidingWindow >= 1 else {
                throw fail(
                    "sliding_window is \(slidingWindow.map(String.init) ?? "null"), but must be at least 1 when "
                        + "layer_types has sliding_attention layers")
            }
        }
    }
}

extension GptOssConfiguration: Decodable {
    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `GptOssConfig`'s defaults.
    public init(from decoder: any Decoder) throws {
        fields = try TransformerFields(from: decoder)
        let raw = try decoder.container(keyedBy: TransformerFields.CodingKeys.self)
        if try raw.decodeIfPresent(Double.self, forKey: .rmsNormEpsilon) == nil { fields.rmsNormEpsilon = 1e-5 }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        expertCount = try container.decodeIfPresent(Int.self, forKey: .expertCount) ?? 128
        expertsPerToken = try container.decodeIfPresent(Int.self, forKey: .expertsPerToken) ?? 4
        intermediateSize = try container.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 2880
        swiGLUAlpha = try container.decodeIfPresent(Double.self, forKey: .swiGLUAlpha) ?? 1.702
        swiGLULimit = try container.decodeIfPresent(Double.self, forKey: .swiGLULimit) ?? 7.0
        slidingWindow =
            try container.contains(.slidingWindow)
            ? container.decodeIfPresent(Int.self, forKey: .slidingWindow) : 128
        // GptOssConfig: sliding attention on even layers (0, 2, …), full attention on odd ones.
        layerTypes =
            try container.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? (0..<fields.layerCount).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
        attentionBias = try container.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? true
        quantizationMethod = nil
        if try container.contains(.quantizationConfiguration) && !container.decodeNil(forKey: .quantizationConfiguration) {
            let quantization = try container.nestedContainer(
                keyedBy: QuantizationKeys.self, forKey: .quantizationConfiguration)
            quantizationMethod = try quantization.decode(String.self, forKey: .quantizationMethod)
        }
        var rope = try YaRNParameters(from: container, objects: [.ropeParameters, .ropeScaling])
        if try container.decodeIfPresent(Double.self, forKey: .ropeTheta) == nil && !rope.namesTheta {
            fields.ropeTheta = 150_000
        }
        // GptOssConfig's rope_parameters when config.json has none: YaRN, factor 32 over 4096 positions.
        if !rope.present {
            fields.ropeType = "yarn"
            (rope.factor, rope.originalMaxPositions, rope.betaFast, rope.betaSlow, rope.truncate) = (32, 4096, 32, 1, false)
        }
        yarn = fields.ropeType == "yarn" ? rope.yarn(maxPositionEmbeddings: fields.maxPositionEmbeddings) : nil
    }
}

// MARK: - Checkpoint tensors and assembly

extension GptOssConfiguration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { expertCount }

    public var shape: ModelShape {
        fields.modelShape(
            expertCounts: Array(repeating: expertCount, count: fields.layerCount), expertsPerToken: expertsPerToken,
            slidingWindows: (0..<fields.layerCount).map { window(layer: $0) })
    }

    /// The stacked expert tensors of a layer (`mlp.experts.*`).
    static func experts(_ layer: Int) -> ExpertSpec.Stacked.LayerNames {
        ExpertSpec.Stacked.LayerNames(
            gateUp: StandardLayout.mlp(layer, "experts.gate_up_proj"),
            gateUpBias: StandardLayout.mlp(layer, "experts.gate_up_proj_bias"),
            down: StandardLayout.mlp(layer, "experts.down_proj"),
            downBias: StandardLayout.mlp(layer, "experts.down_proj_bias"))
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(
            intermediateSize: intermediateSize, activation: fields.hiddenActivation,
            stacked: ExpertSpec.Stacked(alpha: Float(swiGLUAlpha), limit: Float(swiGLULimit), mxfp4: isMXFP4) {
                Self.experts($0)
            })
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        let (hidden, experts, intermediate) = (fields.hiddenSize, expertCount, intermediateSize)
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += StandardLayout.attentionShapes(fields, layer: layer, biases: attentionBias, queryKeyNorm: .none)
            if attentionBias { layers.append((StandardLayout.attention(layer, "o_proj.bias"), [hidden])) }
            layers.append((StandardLayout.attention(layer, "sinks"), [fields.attentionHeadCount]))
            let names = Self.experts(layer)
            layers += [
                (routerWeightName(layer: layer), [experts, hidden]),
                (StandardLayout.mlp(layer, "router.bias"), [experts]),
                (names.gateUpBias, [experts, 2 * intermediate]), (names.downBias, [experts, hidden]),
            ]
            if isMXFP4 {
                // The nn.Linear layout [E, out, in / 32 blocks, 16 bytes], one scale byte a block.
                layers += [
                    (names.gateUp + "_blocks", [experts, 2 * intermediate, hidden / 32, 16]),
                    (names.gateUp + "_scales", [experts, 2 * intermediate, hidden / 32]),
                    (names.down + "_blocks", [experts, hidden, intermediate / 32, 16]),
                    (names.down + "_scales", [experts, hidden, intermediate / 32]),
                ]
            } else {
                layers += [
                    (names.gateUp, [experts, hidden, 2 * intermediate]), (names.down, [experts, intermediate, hidden]),
                ]
            }
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { StandardLayout.keyValueProjectionNames(layerCount: fields.layerCount) }

    public func routerWeightName(layer: Int) -> String { StandardLayout.mlp(layer, "router.weight") }

    /// The MXFP4 experts' blocks and scales.
    public func storesBytes(_ name: String) -> Bool {
        isMXFP4 && name.hasPrefix("model.layers.") && (name.hasSuffix("_proj_blocks") || name.hasSuffix("_proj_scales"))
    }

    public var embeddingName: String { StandardLayout.embedding }

    /// Attention with q/k/v/o biases and a sink logit per head (joining each softmax, then dropped),
    /// YaRN RoPE, the layer type's window; the router adds its bias to the logits, takes the top-k
    /// and softmaxes those k (no renormalisation needed: they sum to 1).
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        let rotary =
            yarn.map { RotaryEmbedding(headDimension: fields.headDimension, theta: fields.ropeTheta, yarn: $0) }
            ?? RotaryEmbedding(headDimension: fields.headDimension, theta: fields.ropeTheta)
        return try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            func tensor(_ name: String) throws(ModelError) -> FloatTensor {
                try checkpoint.tensor(named: StandardLayout.attention(layer, name))
            }
            var options = AttentionOptions(normEpsilon: Float(fields.rmsNormEpsilon))
            if attentionBias {
                options.queryBias = try tensor("q_proj.bias")
                options.keyBias = try tensor("k_proj.bias")
                options.valueBias = try tensor("v_proj.bias")
                options.outputBias = try tensor("o_proj.bias")
            }
            var shape = fields.attentionShape(window: window(layer: layer))
            shape.sinks = try tensor("sinks").values
            let attention = Attention(
                queryWeight: try checkpoint.weight(named: StandardLayout.attention(layer, "q_proj.weight")),
                keyWeight: try checkpoint.weight(named: StandardLayout.attention(layer, "k_proj.weight")),
                valueWeight: try checkpoint.weight(named: StandardLayout.attention(layer, "v_proj.weight")),
                outputWeight: try checkpoint.weight(named: StandardLayout.attention(layer, "o_proj.weight")),
                shape: shape, rotary: rotary, options: options, hiddenSize: fields.hiddenSize, arithmetic: arithmetic)
            let router = Router(
                weight: try checkpoint.weight(named: routerWeightName(layer: layer)), expertCount: expertCount,
                expertsPerToken: expertsPerToken,
                policy: RoutingPolicy(renormalize: false, scoring: .softmaxOfTopK),
                logitBias: try checkpoint.tensor(named: StandardLayout.mlp(layer, "router.bias")))
            return (.standard(attention), .experts(router, shared: nil))
        }
    }
}

extension Architecture {
    /// gpt-oss (OpenAI's gpt-oss-20b and gpt-oss-120b).
    public static let gptOss = Architecture(
        modelTypes: ["gpt_oss"], classNames: ["GptOssForCausalLM"],
        summary: "q/k/v/o biases and attention sinks; layer_types sliding/full; YaRN RoPE; router with a bias, "
            + "softmax over the top-k logits; experts stacked mlp.experts.{gate_up_proj,down_proj}[_bias] "
            + "(gate/up interleaved), clamped SwiGLU (swiglu_alpha, swiglu_limit)",
        randomConfiguration: { o in
            var fields = RandomCheckpointWriter.transformerFields(o, rmsNormEpsilon: 1e-5)
            fields["rope_parameters"] = .object([
                "rope_type": .string("yarn"), "rope_theta": .float(o.ropeTheta), "factor": .float(32),
                "beta_fast": .float(32), "beta_slow": .float(1), "truncate": .bool(false),
                "original_max_position_embeddings": .int(4096),
            ])
            fields["num_local_experts"] = .int(o.expertCount)
            fields["num_experts_per_tok"] = .int(o.expertsPerToken)
            fields["intermediate_size"] = .int(o.intermediateSize)
            fields["swiglu_alpha"] = .float(1.702)
            fields["swiglu_limit"] = .float(7.0)
            fields["sliding_window"] = .int(o.slidingWindow ?? 128)
            fields["layer_types"] = .array(
                (0..<o.layerCount).map { .string($0 % 2 == 0 ? "sliding_attention" : "full_attention") })
            fields["attention_bias"] = .bool(true)
            fields["router_aux_loss_coef"] = .float(0.001)
            fields["output_router_logits"] = .bool(false)
            if o.mxfp4 {
                fields["quantization_config"] = .object([
                    "quant_method": .string("mxfp4"),
                    "modules_to_not_convert": .array(
                        ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]
                            .map(JSONValue.string)),
                ])
            }
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(GptOssConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

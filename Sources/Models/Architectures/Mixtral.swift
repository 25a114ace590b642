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

// MARK: - Assembly

extension MixtralConfiguration: ArchitectureConfiguration {
    public var expertCountPerLayer: Int { expertCount }

    public var shape: ModelShape {
        ModelShape(
            hiddenSize: hiddenSize, vocabularySize: vocabularySize,
            expertCounts: Array(repeating: expertCount, count: layerCount), expertsPerToken: expertsPerToken,
            keyValueWidths: Array(repeating: keyValueHeadCount * headDimension, count: layerCount),
            slidingWindows: Array(repeating: slidingWindow, count: layerCount),
            maxPositionEmbeddings: maxPositionEmbeddings, bosTokenID: bosTokenID, eosTokenIDs: eosTokenIDs)
    }

    public var expertSpec: ExpertSpec {
        ExpertSpec(intermediateSize: intermediateSize, activation: hiddenActivation) { layer, expert in
            ExpertSpec.TensorNames(
                gate: MixtralTensorNames.expertGate(layer, expert), up: MixtralTensorNames.expertUp(layer, expert),
                down: MixtralTensorNames.expertDown(layer, expert))
        }
    }

    public func tensorShapes() -> [(name: String, shape: [Int])] { MixtralTensorNames.expectedShapes(self) }

    public var keyValueProjectionNames: [String] {
        (0..<layerCount).flatMap { [MixtralTensorNames.key($0), MixtralTensorNames.value($0)] }
    }

    public func routerWeightName(layer: Int) -> String { MixtralTensorNames.router(layer) }

    public var embeddingName: String { MixtralTensorNames.embedding }

    /// Every layer is a MoE layer: attention without biases or q/k norms, a router that always
    /// renormalises its top-k probabilities, SwiGLU experts.
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        typealias Names = MixtralTensorNames
        let embedding = try checkpoint.weight(named: Names.embedding)
        var layers: [DecoderLayer] = []
        for layer in 0..<layerCount {
            let attention = Attention(
                queryWeight: try checkpoint.weight(named: Names.query(layer)),
                keyWeight: try checkpoint.weight(named: Names.key(layer)),
                valueWeight: try checkpoint.weight(named: Names.value(layer)),
                outputWeight: try checkpoint.weight(named: Names.output(layer)),
                shape: AttentionShape(
                    headCount: attentionHeadCount, keyValueHeadCount: keyValueHeadCount, headDimension: headDimension,
                    slidingWindow: slidingWindow),
                rotary: RotaryEmbedding(headDimension: headDimension, theta: ropeTheta), options: AttentionOptions(),
                hiddenSize: hiddenSize, arithmetic: arithmetic)
            // Mixtral renormalises the k chosen probabilities to sum to 1 (there is no flag for it).
            let router = Router(
                weight: try checkpoint.weight(named: Names.router(layer)), expertCount: expertCount,
                expertsPerToken: expertsPerToken, policy: RoutingPolicy(renormalize: true))
            layers.append(
                DecoderLayer(
                    index: layer, inputNorm: try checkpoint.tensor(named: Names.inputNorm(layer)),
                    attention: .standard(attention),
                    postAttentionNorm: try checkpoint.tensor(named: Names.postAttentionNorm(layer)),
                    feedForward: .experts(router, shared: nil), epsilon: Float(rmsNormEpsilon)))
        }
        return DecoderStackParts(
            embedding: embedding, layers: layers, finalNorm: try checkpoint.tensor(named: Names.finalNorm),
            finalNormEpsilon: Float(rmsNormEpsilon),
            lmHead: tieWordEmbeddings ? embedding : try checkpoint.weight(named: Names.lmHead))
    }
}

extension Architecture {
    /// Mixtral (Mistral AI's sparse MoE).
    public static let mixtral = Architecture(
        modelTypes: ["mixtral"], classNames: ["MixtralForCausalLM"],
        summary: "every layer MoE; softmax router, top-k renormalised; SwiGLU experts w1/w2/w3",
        randomConfiguration: { o in
            MixtralCheckpointWriter.configFields(
                MixtralConfiguration(
                    hiddenSize: o.hiddenSize, intermediateSize: o.intermediateSize, layerCount: o.layerCount,
                    attentionHeadCount: o.attentionHeadCount, keyValueHeadCount: o.keyValueHeadCount,
                    headDimension: o.headDimension, expertCount: o.expertCount, expertsPerToken: o.expertsPerToken,
                    vocabularySize: o.vocabularySize, ropeTheta: o.ropeTheta, slidingWindow: o.slidingWindow,
                    maxPositionEmbeddings: o.maxPositionEmbeddings, tieWordEmbeddings: o.tieWordEmbeddings,
                    bosTokenID: o.bosTokenID, eosTokenIDs: o.eosTokenIDs),
                dtype: o.dtype, initializerRange: o.initializerRange)
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(MixtralConfiguration.self, from: data)
        try configuration.validate()
        return configuration
    }
}

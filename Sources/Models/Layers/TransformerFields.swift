// The config.json fields every decoder-only transformer of the Qwen/OLMoE families shares (widths,
// heads, RoPE, norms, special tokens), decoded and validated once; an architecture's configuration
// holds them beside its own fields. Reads both the transformers-5 layout (`rope_parameters`) and
// the older one (top-level `rope_theta`, `rope_scaling`).
import Foundation

/// The common hyper-parameters of a decoder-only transformer, from config.json.
public struct TransformerFields: Codable, Sendable, Equatable {
    /// Width of the residual stream (H).
    public var hiddenSize: Int
    /// Decoder layers.
    public var layerCount: Int
    /// Query heads.
    public var attentionHeadCount: Int
    /// Key/value heads (grouped-query attention); divides `attentionHeadCount`.
    public var keyValueHeadCount: Int
    /// Dimensions per attention head (D): `head_dim`, or `hiddenSize / attentionHeadCount`.
    public var headDimension: Int
    /// Vocabulary size (V).
    public var vocabularySize: Int
    /// ε of every RMS norm.
    public var rmsNormEpsilon: Double
    /// RoPE base θ.
    public var ropeTheta: Double
    /// The RoPE variant (`rope_type`); only `default` is supported.
    public var ropeType: String
    /// The longest sequence the model was trained for.
    public var maxPositionEmbeddings: Int
    /// Whether the LM head reuses the token embedding matrix.
    public var tieWordEmbeddings: Bool
    /// The beginning-of-sequence token, if any.
    public var bosTokenID: Int?
    /// The end-of-sequence tokens (empty when none).
    public var eosTokenIDs: [Int]
    /// The MLP and expert activation (`hidden_act`); only `silu` is supported.
    public var hiddenActivation: String

    /// Creates the fields; `headDimension` defaults to `hiddenSize / attentionHeadCount`.
    public init(
        hiddenSize: Int, layerCount: Int, attentionHeadCount: Int, keyValueHeadCount: Int, headDimension: Int? = nil,
        vocabularySize: Int, rmsNormEpsilon: Double = 1e-6, ropeTheta: Double = 1e6,
        maxPositionEmbeddings: Int = 4096, tieWordEmbeddings: Bool = false, bosTokenID: Int? = nil,
        eosTokenIDs: [Int] = [], hiddenActivation: String = "silu", ropeType: String = "default"
    ) {
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.attentionHeadCount = attentionHeadCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDimension = headDimension ?? (attentionHeadCount > 0 ? hiddenSize / attentionHeadCount : 0)
        self.vocabularySize = vocabularySize
        self.rmsNormEpsilon = rmsNormEpsilon
        self.ropeTheta = ropeTheta
        self.ropeType = ropeType
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
        self.hiddenActivation = hiddenActivation
    }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case layerCount = "num_hidden_layers"
        case attentionHeadCount = "num_attention_heads"
        case keyValueHeadCount = "num_key_value_heads"
        case headDimension = "head_dim"
        case vocabularySize = "vocab_size"
        case rmsNormEpsilon = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case hiddenActivation = "hidden_act"
    }

    enum RopeParameterKeys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case ropeType = "rope_type"
        case type
    }

    /// Decodes config.json (either layout); range checks are left to ``validate(file:)``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try container.decode(Int.self, forKey: .hiddenSize)
        layerCount = try container.decode(Int.self, forKey: .layerCount)
        attentionHeadCount = try container.decode(Int.self, forKey: .attentionHeadCount)
        // HF defaults num_key_value_heads to num_attention_heads when absent (or null).
        keyValueHeadCount = try container.decodeIfPresent(Int.self, forKey: .keyValueHeadCount) ?? attentionHeadCount
        headDimension =
            try container.decodeIfPresent(Int.self, forKey: .headDimension)
            ?? (attentionHeadCount > 0 ? hiddenSize / attentionHeadCount : 0)
        vocabularySize = try container.decode(Int.self, forKey: .vocabularySize)
        rmsNormEpsilon = try container.decodeIfPresent(Double.self, forKey: .rmsNormEpsilon) ?? 1e-6
        var theta = try container.decodeIfPresent(Double.self, forKey: .ropeTheta)
        var type: String?
        for key in [CodingKeys.ropeParameters, .ropeScaling]
        where try container.contains(key) && !container.decodeNil(forKey: key) {
            let rope = try container.nestedContainer(keyedBy: RopeParameterKeys.self, forKey: key)
            theta = try rope.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? theta
            type = try rope.decodeIfPresent(String.self, forKey: .ropeType) ?? rope.decodeIfPresent(String.self, forKey: .type) ?? type
        }
        ropeTheta = theta ?? 1e6
        ropeType = type ?? "default"
        maxPositionEmbeddings = try container.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 4096
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
        try container.encode(layerCount, forKey: .layerCount)
        try container.encode(attentionHeadCount, forKey: .attentionHeadCount)
        try container.encode(keyValueHeadCount, forKey: .keyValueHeadCount)
        try container.encode(headDimension, forKey: .headDimension)
        try container.encode(vocabularySize, forKey: .vocabularySize)
        try container.encode(rmsNormEpsilon, forKey: .rmsNormEpsilon)
        var rope = container.nestedContainer(keyedBy: RopeParameterKeys.self, forKey: .ropeParameters)
        try rope.encode(ropeTheta, forKey: .ropeTheta)
        try rope.encode(ropeType, forKey: .ropeType)
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
            ("hidden_size", hiddenSize), ("num_hidden_layers", layerCount), ("num_attention_heads", attentionHeadCount),
            ("num_key_value_heads", keyValueHeadCount), ("vocab_size", vocabularySize),
            ("max_position_embeddings", maxPositionEmbeddings),
        ]
        for (field, value) in positive where value < 1 {
            throw fail("\(field) is \(value), but must be at least 1")
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

    /// Checks a per-layer list of layer numbers (`mlp_only_layers`): each within the model.
    func validateLayerList(_ layers: [Int], field: String, file: String = "config.json") throws(ModelError) {
        for layer in layers where layer < 0 || layer >= layerCount {
            throw .invalidConfiguration(
                file: file, message: "\(field) lists layer \(layer), but layers are 0 ... \(layerCount - 1)")
        }
    }

    /// The width of a key or value row: key/value heads × head dimension.
    var keyValueWidth: Int { keyValueHeadCount * headDimension }
    /// The width of a query row: heads × head dimension.
    var queryWidth: Int { attentionHeadCount * headDimension }

    /// The architecture-neutral shape of a model with these fields (every layer's keys and values
    /// `keyValueWidth` wide).
    /// - Parameters:
    ///   - expertCounts: per layer, its routed experts (0: a dense layer)
    ///   - slidingWindows: per layer, its attention window (nil: full attention)
    func modelShape(expertCounts: [Int], expertsPerToken: Int, slidingWindows: [Int?]) -> ModelShape {
        ModelShape(
            hiddenSize: hiddenSize, vocabularySize: vocabularySize, expertCounts: expertCounts,
            expertsPerToken: expertsPerToken, keyValueWidths: Array(repeating: keyValueWidth, count: layerCount),
            slidingWindows: slidingWindows, maxPositionEmbeddings: maxPositionEmbeddings, bosTokenID: bosTokenID,
            eosTokenIDs: eosTokenIDs)
    }

    /// The attention shape of a layer with `window` (nil: full causal attention).
    func attentionShape(window: Int?) -> AttentionShape {
        AttentionShape(
            headCount: attentionHeadCount, keyValueHeadCount: keyValueHeadCount, headDimension: headDimension,
            slidingWindow: window)
    }
}

import Kernels

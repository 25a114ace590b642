// Vocabulary: the model shape is what every tier outside Models knows of a model: its widths, which
// decoder layers are MoE layers (experts, routed) and which are dense (an MLP on the coordinator), the
// KV-cache row of each layer, and the special tokens. It is derived from config.json by the
// architecture; Coordinator, ExpertWorker, placement, load accounting and the wire see nothing else.
public import Tensors

/// The architecture-neutral shape of a model.
public struct ModelShape: Sendable, Equatable {
    /// Width of the residual stream (H): the rows dispatched to experts and combined back.
    public var hiddenSize: Int
    /// Vocabulary size (V).
    public var vocabularySize: Int
    /// Experts per decoder layer, in layer order: 0 for a dense layer, the expert count for a MoE layer.
    public var expertCounts: [Int]
    /// Experts chosen per token in every MoE layer (k).
    public var expertsPerToken: Int
    /// Values per token cached for keys per layer: key/value heads × head dimension, or a multi-head
    /// latent attention layer's compressed row (kv_lora_rank + qk_rope_head_dim).
    public var keyValueWidths: [Int]
    /// Values per token cached for values per layer: `keyValueWidths`, or 0 for a multi-head latent
    /// attention layer (its values are expanded from the cached latent).
    public var valueWidths: [Int]
    /// Per layer, the attention window in tokens (nil: full causal attention).
    public var slidingWindows: [Int?]
    /// The longest sequence the model was trained for: the context a request may use.
    public var maxPositionEmbeddings: Int
    /// The beginning-of-sequence token, if any.
    public var bosTokenID: Int?
    /// The end-of-sequence tokens of config.json (empty when none).
    public var eosTokenIDs: [Int]

    /// Creates a shape; the per-layer arrays must have one entry per layer (`valueWidths` nil: the
    /// values are as wide as the keys).
    public init(
        hiddenSize: Int, vocabularySize: Int, expertCounts: [Int], expertsPerToken: Int, keyValueWidths: [Int],
        valueWidths: [Int]? = nil, slidingWindows: [Int?], maxPositionEmbeddings: Int, bosTokenID: Int?,
        eosTokenIDs: [Int]
    ) {
        precondition(
            keyValueWidths.count == expertCounts.count && slidingWindows.count == expertCounts.count
                && (valueWidths?.count ?? expertCounts.count) == expertCounts.count,
            "ModelShape: per-layer arrays of different lengths")
        self.valueWidths = valueWidths ?? keyValueWidths
        self.hiddenSize = hiddenSize
        self.vocabularySize = vocabularySize
        self.expertCounts = expertCounts
        self.expertsPerToken = expertsPerToken
        self.keyValueWidths = keyValueWidths
        self.slidingWindows = slidingWindows
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    /// Decoder layers, MoE and dense.
    public var layerCount: Int { expertCounts.count }

    /// The most experts any layer has (every MoE layer has this many in the architectures supported).
    public var expertCount: Int { expertCounts.max() ?? 0 }

    /// The MoE layers, ascending (their real layer numbers).
    public var moeLayers: [LayerIndex] { expertCounts.indices.filter { expertCounts[$0] > 0 }.map { LayerIndex($0) } }

    /// True when `layer` is a MoE layer of this model.
    public func isMoELayer(_ layer: LayerIndex) -> Bool {
        expertCounts.indices.contains(layer.rawValue) && expertCounts[layer.rawValue] > 0
    }

    /// Every (layer, expert) of the model, layer-major, ascending.
    public var allExperts: [LayerExpert] {
        expertCounts.enumerated().flatMap { layer, count in
            (0..<count).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
        }
    }

    /// True when `layerExpert` exists in this model (a MoE layer and an expert id below its count).
    public func contains(_ layerExpert: LayerExpert) -> Bool {
        isMoELayer(layerExpert.layer) && layerExpert.expert.rawValue >= 0
            && layerExpert.expert.rawValue < expertCounts[layerExpert.layer.rawValue]
    }
}

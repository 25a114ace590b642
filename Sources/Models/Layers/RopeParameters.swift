// Rope entries that config.json may give at the top level, in `rope_parameters`, in `rope_scaling`
// or in several of them, read once for the architectures that share them: YaRN's parameters
// (DeepSeek-V3, gpt-oss) with the defaults transformers' _compute_yarn_parameters fills in, and
// `partial_rotary_factor` (GLM-4.5, MiniMax-M2). Each architecture applies its own defaults
// (rope_theta, the factor when none is given).
import Foundation
import Kernels

/// The YaRN entries of config.json's `rope_parameters` / `rope_scaling` objects, as given (nil
/// when absent).
struct YaRNParameters {
    /// Whether either object is present and not null.
    var present = false
    /// Whether either object names `rope_theta`.
    var namesTheta = false
    var factor: Double?
    var originalMaxPositions: Double?
    var betaFast: Double?
    var betaSlow: Double?
    var mscale: Double?
    var mscaleAllDimensions: Double?
    var attentionFactor: Double?
    var truncate: Bool?

    private enum Keys: String, CodingKey {
        case ropeTheta = "rope_theta"
        case factor
        case originalMaxPositions = "original_max_position_embeddings"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
        case mscale
        case mscaleAllDimensions = "mscale_all_dim"
        case attentionFactor = "attention_factor"
        case truncate
    }

    init() {}

    /// Reads the rope objects under `keys`, in order: a later object's value wins (the order
    /// `TransformerFields` reads them in).
    init<Key: CodingKey>(from container: KeyedDecodingContainer<Key>, objects keys: [Key]) throws {
        for key in keys where try container.contains(key) && !container.decodeNil(forKey: key) {
            present = true
            let rope = try container.nestedContainer(keyedBy: Keys.self, forKey: key)
            namesTheta = try namesTheta || rope.decodeIfPresent(Double.self, forKey: .ropeTheta) != nil
            factor = try rope.decodeIfPresent(Double.self, forKey: .factor) ?? factor
            originalMaxPositions = try rope.decodeIfPresent(Double.self, forKey: .originalMaxPositions) ?? originalMaxPositions
            betaFast = try rope.decodeIfPresent(Double.self, forKey: .betaFast) ?? betaFast
            betaSlow = try rope.decodeIfPresent(Double.self, forKey: .betaSlow) ?? betaSlow
            mscale = try rope.decodeIfPresent(Double.self, forKey: .mscale) ?? mscale
            mscaleAllDimensions = try rope.decodeIfPresent(Double.self, forKey: .mscaleAllDimensions) ?? mscaleAllDimensions
            attentionFactor = try rope.decodeIfPresent(Double.self, forKey: .attentionFactor) ?? attentionFactor
            truncate = try rope.decodeIfPresent(Bool.self, forKey: .truncate) ?? truncate
        }
    }

    /// transformers' yarn_get_mscale: 1 for scale ≤ 1, else 0.1 · mscale · ln(scale) + 1.
    static func mscale(_ scale: Double, _ mscale: Double = 1) -> Double {
        scale <= 1 ? 1 : 0.1 * mscale * log(scale) + 1
    }

    /// The context extension factor: `factor`, else max_position_embeddings ÷ the original positions.
    func scale(maxPositionEmbeddings: Int) -> Double {
        factor ?? Double(maxPositionEmbeddings) / (originalMaxPositions ?? 0)
    }

    /// _compute_yarn_parameters: factor defaults to max_position_embeddings ÷ original; the
    /// attention factor to mscale(factor, mscale) ÷ mscale(factor, mscale_all_dim) when both are set
    /// and not 0, else mscale(factor); beta_fast / beta_slow to 32 / 1 when absent or 0; truncate to true.
    func yarn(maxPositionEmbeddings: Int) -> RotaryEmbedding.YaRN {
        let scale = scale(maxPositionEmbeddings: maxPositionEmbeddings)
        let inferred =
            if let mscale, let mscaleAllDimensions, mscale != 0, mscaleAllDimensions != 0 {
                Self.mscale(scale, mscale) / Self.mscale(scale, mscaleAllDimensions)
            } else {
                Self.mscale(scale)
            }
        return RotaryEmbedding.YaRN(
            factor: scale, originalMaxPositions: originalMaxPositions ?? 0,
            betaFast: betaFast.flatMap { $0 == 0 ? nil : $0 } ?? 32,
            betaSlow: betaSlow.flatMap { $0 == 0 ? nil : $0 } ?? 1,
            attentionFactor: attentionFactor ?? inferred, truncate: truncate ?? true)
    }
}

/// `partial_rotary_factor` as transformers' convert_rope_params_to_dict reads it: the top level's
/// (the Hub's spelling, or what the caller derives) unless a rope object has its own, and whether
/// `rope_theta` is named anywhere.
struct PartialRotaryParameters {
    /// The factor given, nil when none is.
    var factor: Double?
    /// Whether `rope_theta` is at the top level or in a rope object.
    var namesTheta: Bool

    private enum Keys: String, CodingKey {
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeTheta = "rope_theta"
    }

    /// Reads the rope objects under `objects` in order (a later object's factor wins) over
    /// `topLevel`, the factor the caller read outside them.
    init<Key: CodingKey>(
        from container: KeyedDecodingContainer<Key>, topLevel: Double?, ropeTheta: Key, objects: [Key]
    ) throws {
        factor = topLevel
        namesTheta = try container.decodeIfPresent(Double.self, forKey: ropeTheta) != nil
        for key in objects where try container.contains(key) && !container.decodeNil(forKey: key) {
            let rope = try container.nestedContainer(keyedBy: Keys.self, forKey: key)
            factor = try rope.decodeIfPresent(Double.self, forKey: .partialRotaryFactor) ?? factor
            namesTheta = try namesTheta || rope.decodeIfPresent(Double.self, forKey: .ropeTheta) != nil
        }
    }
}

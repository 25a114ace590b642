// Writes random-weight Mixtral checkpoints that Hugging Face transformers loads: for tests,
// benchmarks and `switchyard make-model`. Deterministic for a seed: the weights come from our own
// PRNG (SplitMix64 → Box–Muller normals), not from the platform's.
public import Foundation
public import Tensors

/// The shape, dtype and seed of a random Mixtral checkpoint.
public struct MixtralCheckpointOptions: Sendable, Equatable {
    /// Width of the residual stream (`hidden_size`).
    public var hiddenSize: Int = 64
    /// Width of each expert's hidden layer (`intermediate_size`).
    public var intermediateSize: Int = 128
    /// Decoder layers (`num_hidden_layers`).
    public var layerCount: Int = 2
    /// Query heads (`num_attention_heads`).
    public var attentionHeadCount: Int = 4
    /// Key/value heads (`num_key_value_heads`); divides `attentionHeadCount`.
    public var keyValueHeadCount: Int = 2
    /// Experts per MoE layer (`num_local_experts`).
    public var expertCount: Int = 8
    /// Experts chosen per token (`num_experts_per_tok`).
    public var expertsPerToken: Int = 2
    /// Vocabulary size (`vocab_size`).
    public var vocabularySize: Int = 256
    /// Attention window in tokens (`sliding_window`), or nil for full causal attention.
    public var slidingWindow: Int? = nil
    /// `max_position_embeddings` (informational).
    public var maxPositionEmbeddings: Int = 4096
    /// RoPE base θ (`rope_parameters.rope_theta`).
    public var ropeTheta: Double = 1e6
    /// Whether the LM head reuses the embeddings (no `lm_head.weight` is written).
    public var tieWordEmbeddings: Bool = false
    /// The stored dtype of every tensor (f32, bf16 or f16).
    public var dtype: DType = .f32
    /// The PRNG seed; equal seeds give byte-identical files.
    public var seed: UInt64 = 0
    /// The standard deviation of weight matrices (HF's `initializer_range`).
    public var initializerRange: Double = 0.02
    /// Experts every router prefers (0: none, the weights are unbiased). Layer `l` prefers experts
    /// `l·n … l·n + n − 1` (mod the expert count), a contiguous block, so an even placement puts
    /// them on as few workers as possible: a skewed workload for load-balancing tests.
    public var hotExpertCount: Int = 0
    /// Roughly what the preferred experts gain in router logit.
    public var hotExpertBias: Double = 0

    /// Options with the defaults above (a model of a few hundred KB).
    public init() {}

    /// The configuration these options describe.
    public var configuration: MixtralConfiguration {
        MixtralConfiguration(
            hiddenSize: hiddenSize, intermediateSize: intermediateSize, layerCount: layerCount,
            attentionHeadCount: attentionHeadCount, keyValueHeadCount: keyValueHeadCount, expertCount: expertCount,
            expertsPerToken: expertsPerToken, vocabularySize: vocabularySize, ropeTheta: ropeTheta,
            slidingWindow: slidingWindow, maxPositionEmbeddings: maxPositionEmbeddings,
            tieWordEmbeddings: tieWordEmbeddings, bosTokenID: vocabularySize > 1 ? 1 : nil,
            eosTokenIDs: vocabularySize > 2 ? [2] : [])
    }
}

/// Writes a random-weight Mixtral checkpoint: config.json (transformers-5 layout plus
/// `architectures` and `model_type`) and model.safetensors (the legacy hub tensor names).
public enum MixtralCheckpointWriter {
    /// Writes the checkpoint into `directory` (created if needed; existing files are replaced).
    /// - Throws: `ModelError.invalidConfiguration` for options that do not make a valid model; file errors.
    public static func write(_ options: MixtralCheckpointOptions, to directory: URL) throws {
        let configuration = options.configuration
        try configuration.validate(file: "MixtralCheckpointOptions")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try configJSON(configuration, dtype: options.dtype, initializerRange: options.initializerRange).write(
            to: directory.appendingPathComponent("config.json"))

        var generator = NormalGenerator(seed: options.seed)
        var tensors: [SafetensorsWriter.Tensor] = []
        for (name, shape) in MixtralTensorNames.expectedShapes(configuration) {
            let count = shape.reduce(1, *)
            // Norm weights start at 1, as HF initialises RMSNorm; everything else ~ N(0, initializer_range).
            let values: [Float] =
                shape.count == 1
                ? [Float](repeating: 1, count: count)
                : (0..<count).map { _ in generator.nextNormal() * Float(options.initializerRange) }
            let biased = options.hotExpertCount > 0 ? withHotExperts(values, name: name, shape: shape, options) : values
            tensors.append(SafetensorsWriter.Tensor(name: name, shape: shape, values: biased, storedAs: options.dtype))
        }
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent(Checkpoint.singleFileName))
    }

    /// The experts layer `layer` prefers under `options`.
    public static func hotExperts(layer: Int, _ options: MixtralCheckpointOptions) -> [Int] {
        (0..<min(options.hotExpertCount, options.expertCount)).map { (layer * options.hotExpertCount + $0) % options.expertCount }
    }

    /// A router has no bias term, so the bias rides on a constant feature: column 0 of every token
    /// embedding is set to 1 (≫ the other entries, ~initializer_range), which keeps hidden dimension 0
    /// near √hidden after each RMSNorm; router column 0 is then bias/√hidden for the preferred
    /// experts and 0 for the others.
    private static func withHotExperts(
        _ values: [Float], name: String, shape: [Int], _ options: MixtralCheckpointOptions
    ) -> [Float] {
        var values = values
        let hidden = options.hiddenSize
        if name == MixtralTensorNames.embedding {
            for token in 0..<shape[0] { values[token * hidden] = 1 }
        }
        for layer in 0..<options.layerCount where name == MixtralTensorNames.router(layer) {
            let hot = Set(hotExperts(layer: layer, options))
            for expert in 0..<options.expertCount {
                values[expert * hidden] = hot.contains(expert) ? Float(options.hotExpertBias / Double(hidden).squareRoot()) : 0
            }
        }
        return values
    }

    /// config.json with sorted keys: the configuration plus the fields transformers expects.
    ///
    /// Rendered by hand rather than with `JSONEncoder`, which prints `0.0` as `0` and `1e6` as
    /// `1000000`: transformers 5 validates config fields strictly and rejects an int where a float
    /// is declared (`router_jitter_noise expected float, got int`).
    static func configJSON(
        _ configuration: MixtralConfiguration, dtype: DType, initializerRange: Double
    ) throws -> Data {
        let fields = configFields(configuration, dtype: dtype, initializerRange: initializerRange)
        return Data((JSONValue.object(fields).rendered(indent: "") + "\n").utf8)
    }

    /// The fields of config.json (see ``configJSON(_:dtype:initializerRange:)``).
    static func configFields(
        _ configuration: MixtralConfiguration, dtype: DType, initializerRange: Double
    ) -> [String: JSONValue] {
        typealias Key = MixtralConfiguration.CodingKeys
        typealias RopeKey = MixtralConfiguration.RopeParameterKeys
        let c = configuration
        var fields: [String: JSONValue] = [
            Key.hiddenSize.stringValue: .int(c.hiddenSize),
            Key.intermediateSize.stringValue: .int(c.intermediateSize),
            Key.layerCount.stringValue: .int(c.layerCount),
            Key.attentionHeadCount.stringValue: .int(c.attentionHeadCount),
            Key.keyValueHeadCount.stringValue: .int(c.keyValueHeadCount),
            Key.headDimension.stringValue: .int(c.headDimension),
            Key.expertCount.stringValue: .int(c.expertCount),
            Key.expertsPerToken.stringValue: .int(c.expertsPerToken),
            Key.vocabularySize.stringValue: .int(c.vocabularySize),
            Key.rmsNormEpsilon.stringValue: .float(c.rmsNormEpsilon),
            Key.ropeParameters.stringValue: .object([
                RopeKey.ropeTheta.stringValue: .float(c.ropeTheta), RopeKey.ropeType.stringValue: .string(c.ropeType),
            ]),
            Key.slidingWindow.stringValue: c.slidingWindow.map(JSONValue.int) ?? .null,
            Key.maxPositionEmbeddings.stringValue: .int(c.maxPositionEmbeddings),
            Key.tieWordEmbeddings.stringValue: .bool(c.tieWordEmbeddings),
            Key.bosTokenID.stringValue: c.bosTokenID.map(JSONValue.int) ?? .null,
            Key.hiddenActivation.stringValue: .string(c.hiddenActivation),
            "architectures": .array([.string("MixtralForCausalLM")]),
            "model_type": .string("mixtral"),
            "dtype": .string(dtype.huggingFaceName),
            "attention_dropout": .float(0),
            "initializer_range": .float(initializerRange),
            "router_jitter_noise": .float(0),
            "router_aux_loss_coef": .float(0.001),
            "output_router_logits": .bool(false),
            "use_cache": .bool(true),
        ]
        switch c.eosTokenIDs.count {
        case 0: fields[Key.eosTokenID.stringValue] = .null
        case 1: fields[Key.eosTokenID.stringValue] = .int(c.eosTokenIDs[0])
        default: fields[Key.eosTokenID.stringValue] = .array(c.eosTokenIDs.map(JSONValue.int))
        }
        return fields
    }
}

/// A JSON value that keeps the int/float distinction Python's json module sees.
enum JSONValue {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    /// Pretty-printed JSON with sorted keys (two-space indent, as transformers writes).
    func rendered(indent: String) -> String {
        switch self {
        case .int(let value): return String(value)
        // Swift's shortest round-trip form always has a "." or an exponent ("0.0", "1e-05", "1000000.0").
        case .float(let value): return value.description
        case .bool(let value): return value ? "true" : "false"
        case .string(let value):
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(
                of: "\"", with: "\\\"")
            return "\"\(escaped)\""
        case .null: return "null"
        case .array(let values):
            return "[" + values.map { $0.rendered(indent: indent) }.joined(separator: ", ") + "]"
        case .object(let fields):
            let inner = indent + "  "
            let lines = fields.keys.sorted().map { "\(inner)\"\($0)\": \(fields[$0]!.rendered(indent: inner))" }
            return "{\n" + lines.joined(separator: ",\n") + "\n\(indent)}"
        }
    }
}

/// Normal samples for random weights, from `SplitMix64` (Box–Muller).
struct NormalGenerator {
    private var source: SplitMix64
    private var spareNormal: Float?

    init(seed: UInt64) { source = SplitMix64(seed: seed) }

    /// Uniform in (0, 1): 53 random bits, never 0 (so the logarithm below is finite).
    mutating func nextUniform() -> Double {
        (Double(source.next() >> 11) + 0.5) / 9_007_199_254_740_992
    }

    /// A standard normal sample (the second value of each pair is kept for the next call).
    mutating func nextNormal() -> Float {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        let radius = (-2 * Foundation.log(nextUniform())).squareRoot()
        let angle = 2 * Double.pi * nextUniform()
        spareNormal = Float(radius * Foundation.sin(angle))
        return Float(radius * Foundation.cos(angle))
    }
}

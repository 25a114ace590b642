// Writes random-weight Mixtral checkpoints that Hugging Face transformers loads: for tests,
// benchmarks and `switchyard make-model`. Deterministic for a seed: the weights come from our own
// PRNG (SplitMix64 → Box–Muller normals), not from the platform's.
public import Foundation
public import Tensors

/// The shape, dtype and seed of a random Mixtral checkpoint.
public struct MixtralCheckpointOptions: Sendable, Equatable {
    public var hiddenSize: Int = 64
    public var intermediateSize: Int = 128
    public var layerCount: Int = 2
    public var attentionHeadCount: Int = 4
    public var keyValueHeadCount: Int = 2
    public var expertCount: Int = 8
    public var expertsPerToken: Int = 2
    public var vocabularySize: Int = 256
    public var slidingWindow: Int? = nil
    public var maxPositionEmbeddings: Int = 4096
    public var ropeTheta: Double = 1e6
    public var tieWordEmbeddings: Bool = false
    /// The stored dtype of every tensor (f32, bf16 or f16).
    public var dtype: DType = .f32
    /// The PRNG seed; equal seeds give byte-identical files.
    public var seed: UInt64 = 0
    /// The standard deviation of weight matrices (HF's `initializer_range`).
    public var initializerRange: Float = 0.02

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
        try configJSON(configuration, dtype: options.dtype).write(to: directory.appendingPathComponent("config.json"))

        var generator = SplitMix64(seed: options.seed)
        var tensors: [SafetensorsWriter.Tensor] = []
        for (name, shape) in MixtralTensorNames.expectedShapes(configuration) {
            let count = shape.reduce(1, *)
            // Norm weights start at 1, as HF initialises RMSNorm; everything else ~ N(0, initializer_range).
            let values: [Float] =
                shape.count == 1
                ? [Float](repeating: 1, count: count)
                : (0..<count).map { _ in generator.nextNormal() * options.initializerRange }
            tensors.append(SafetensorsWriter.Tensor(name: name, shape: shape, values: values, storedAs: options.dtype))
        }
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent(Checkpoint.singleFileName))
    }

    /// config.json with sorted keys: the configuration plus the fields transformers expects.
    static func configJSON(_ configuration: MixtralConfiguration, dtype: DType) throws -> Data {
        struct File: Encodable {
            let configuration: MixtralConfiguration
            let dtype: DType
            enum Keys: String, CodingKey {
                case architectures, modelType = "model_type", dtype
                case attentionDropout = "attention_dropout", initializerRange = "initializer_range"
                case routerJitterNoise = "router_jitter_noise", outputRouterLogits = "output_router_logits"
                case routerAuxLossCoefficient = "router_aux_loss_coef", useCache = "use_cache"
            }
            func encode(to encoder: any Encoder) throws {
                try configuration.encode(to: encoder)
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(["MixtralForCausalLM"], forKey: .architectures)
                try container.encode("mixtral", forKey: .modelType)
                try container.encode(dtype.huggingFaceName, forKey: .dtype)
                try container.encode(0.0, forKey: .attentionDropout)
                try container.encode(0.02, forKey: .initializerRange)
                try container.encode(0.0, forKey: .routerJitterNoise)
                try container.encode(false, forKey: .outputRouterLogits)
                try container.encode(0.001, forKey: .routerAuxLossCoefficient)
                try container.encode(true, forKey: .useCache)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(File(configuration: configuration, dtype: dtype))
    }
}

/// SplitMix64: a small, fast, well-distributed 64-bit PRNG (Steele, Lea & Flood 2014).
struct SplitMix64 {
    private var state: UInt64
    private var spareNormal: Float?

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1): 53 random bits, never 0 (so the logarithm below is finite).
    mutating func nextUniform() -> Double {
        (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992
    }

    /// A standard normal sample (Box–Muller; the second value of each pair is kept for the next call).
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

// Vocabulary: an architecture is a model family (Mixtral, Qwen3-MoE, ...): how its config.json is
// decoded and validated, the names and shapes of its checkpoint tensors, what its experts are, and
// how its decoder layers are assembled from the shared layers (Layers/). Each lives in one file under
// Architectures/; the registry below is the one list of them.
public import Foundation
public import Tensors

/// A validated configuration of one architecture: everything the runtime asks of a model family.
public protocol ArchitectureConfiguration: Sendable {
    /// Decoder layers (checked against the checkpoint's tensor count before ``shape`` is built).
    var layerCount: Int { get }
    /// The most experts a layer has (likewise).
    var expertCountPerLayer: Int { get }
    /// The architecture-neutral shape.
    var shape: ModelShape { get }
    /// What an expert of a MoE layer is: its tensors and their widths.
    var expertSpec: ExpertSpec { get }
    /// Every tensor a checkpoint must hold, with its shape, in model order.
    func tensorShapes() -> [(name: String, shape: [Int])]
    /// The router weight of MoE layer `layer`, [E, H] (the random-checkpoint writer biases it).
    func routerWeightName(layer: Int) -> String
    /// The token embedding matrix, [V, H].
    var embeddingName: String { get }
    /// The key and value projection weights (their stored dtype picks the default KV-cache dtype).
    var keyValueProjectionNames: [String] { get }
    /// Whether tensor `name` is stored as raw bytes (safetensors `U8`: MXFP4 blocks and scales), not
    /// as numbers; only such tensors may be U8.
    func storesBytes(_ name: String) -> Bool
    /// The dense part of the model (what the coordinator runs), its tensors taken from `checkpoint`.
    /// - Throws: `ModelError` when a tensor cannot be read.
    func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError) -> DecoderStackParts
}

/// One supported model family: the names config.json uses for it and its configuration decoder.
public struct Architecture: Sendable, CustomStringConvertible {
    /// The config.json `model_type` values it answers to (the first is its name).
    public let modelTypes: [String]
    /// The config.json `architectures` class names it answers to.
    public let classNames: [String]
    /// What a checkpoint of this family needs beyond config.json and safetensors (for the README and `--help`).
    public let summary: String
    /// Decodes and validates config.json.
    let decode: @Sendable (Data) throws(ModelError) -> any ArchitectureConfiguration
    /// The config.json of a random model with `options` (for `make-model`), as transformers writes it.
    let randomConfiguration: @Sendable (RandomModelOptions) -> [String: JSONValue]

    init(
        modelTypes: [String], classNames: [String], summary: String,
        randomConfiguration: @escaping @Sendable (RandomModelOptions) -> [String: JSONValue],
        decode: @escaping @Sendable (Data) throws(ModelError) -> any ArchitectureConfiguration
    ) {
        self.modelTypes = modelTypes
        self.classNames = classNames
        self.summary = summary
        self.randomConfiguration = randomConfiguration
        self.decode = decode
    }

    /// The `model_type` that names it, e.g. `qwen3_moe`.
    public var name: String { modelTypes[0] }

    /// The model type and class names, e.g. `mixtral (MixtralForCausalLM)`.
    public var description: String { "\(modelTypes[0]) (\(classNames.joined(separator: ", ")))" }

    /// Decodes and validates the configuration in `data` (config.json).
    /// - Throws: `ModelError.invalidConfiguration` naming the field and the valid values.
    public func configuration(from data: Data) throws(ModelError) -> any ArchitectureConfiguration {
        try decode(data)
    }

    /// Every architecture the runtime runs: adding one adds its file under Architectures/ and a line here.
    public static let supported: [Architecture] = [
        .mixtral, .qwen3Moe, .qwen2Moe, .olmoe, .glm4Moe, .deepseekV3, .deepseekV2, .minimaxM2, .gptOss,
    ]

    /// Every supported name, for error messages.
    public static var supportedNames: [String] { supported.map(\.description) }

    /// The architecture named by a config.json: `model_type` decides when present, otherwise the
    /// first known entry of `architectures`.
    /// - Throws: `ModelError.unsupportedArchitecture` listing the supported ones, or
    ///   `ModelError.invalidConfiguration` when neither field is present.
    public static func resolve(modelType: String?, architectures: [String]?, file: String = "config.json")
        throws(ModelError) -> Architecture
    {
        if let modelType {
            guard let match = supported.first(where: { $0.modelTypes.contains(modelType) }) else {
                throw .unsupportedArchitecture(file: file, found: "model_type \(modelType)", supported: supportedNames)
            }
            return match
        }
        if let architectures, !architectures.isEmpty {
            for name in architectures {
                if let match = supported.first(where: { $0.classNames.contains(name) }) { return match }
            }
            throw .unsupportedArchitecture(
                file: file, found: "architectures \(architectures)", supported: supportedNames)
        }
        throw .invalidConfiguration(file: file, message: "has neither model_type nor architectures")
    }

    /// Decodes `T` from config.json, turning a decoding error into one line naming the field.
    static func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data, file: String = "config.json") throws(ModelError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw .invalidConfiguration(file: file, message: describeDecodingError(error))
        }
    }
}

extension ArchitectureConfiguration {
    /// No tensor is raw bytes unless an architecture says so.
    public func storesBytes(_ name: String) -> Bool { false }
}

extension Architecture: Equatable {
    public static func == (lhs: Architecture, rhs: Architecture) -> Bool { lhs.modelTypes == rhs.modelTypes }
}

/// One line for a JSON decoding error, naming the field path.
func describeDecodingError(_ error: any Error) -> String {
    func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
        let keys = context.codingPath + (key.map { [$0] } ?? [])
        return keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "field \(path(context, key)) is missing"
    case DecodingError.typeMismatch(let type, let context):
        return context.codingPath.isEmpty ? "is not a JSON object" : "field \(path(context)) is not a valid \(type)"
    case DecodingError.valueNotFound(let type, let context):
        return "field \(path(context)) is null, expected \(type)"
    case DecodingError.dataCorrupted(let context):
        return context.codingPath.isEmpty ? "is not valid JSON" : "field \(path(context)) is invalid"
    case let error as ModelError:
        return error.description
    default:
        return "cannot be decoded: \(error)"
    }
}

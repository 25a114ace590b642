// The architecture registry: which config.json `model_type` / `architectures` names this runtime
// can run, and the one architecture each maps to. Adding an architecture adds a case here and
// one file beside Mixtral.swift.

/// An architecture the runtime implements.
public enum ModelArchitecture: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Mixtral (Mistral AI's sparse MoE), `Mixtral.swift`.
    case mixtral

    /// The config.json `model_type` values handled by this architecture.
    public var modelTypes: [String] {
        switch self {
        case .mixtral: ["mixtral"]
        }
    }

    /// The config.json `architectures` class names handled by this architecture.
    public var classNames: [String] {
        switch self {
        case .mixtral: ["MixtralForCausalLM"]
        }
    }

    /// The model type and class names, e.g. `mixtral (MixtralForCausalLM)`.
    public var description: String { "\(modelTypes[0]) (\(classNames.joined(separator: ", ")))" }

    /// Every supported name, for error messages.
    public static var supportedNames: [String] { allCases.map(\.description) }

    /// The architecture named by a config.json: `model_type` decides when present, otherwise the
    /// first known entry of `architectures`.
    /// - Throws: `ModelError.unsupportedArchitecture` listing the supported ones, or
    ///   `ModelError.invalidConfiguration` when neither field is present.
    public static func resolve(modelType: String?, architectures: [String]?, file: String = "config.json")
        throws(ModelError) -> ModelArchitecture
    {
        if let modelType {
            guard let match = allCases.first(where: { $0.modelTypes.contains(modelType) }) else {
                throw .unsupportedArchitecture(file: file, found: "model_type \(modelType)", supported: supportedNames)
            }
            return match
        }
        if let architectures, !architectures.isEmpty {
            for name in architectures {
                if let match = allCases.first(where: { $0.classNames.contains(name) }) { return match }
            }
            throw .unsupportedArchitecture(
                file: file, found: "architectures \(architectures)", supported: supportedNames)
        }
        throw .invalidConfiguration(file: file, message: "has neither model_type nor architectures")
    }
}

// Vocabulary: a checkpoint is a model directory (config.json + safetensors files); a tensor is
// named as Hugging Face names it. Errors name the file, the field or tensor, and what was expected.
public import Tensors

/// An error loading or running a model; its description is one line naming the file, field or
/// tensor involved and what would have been valid.
public enum ModelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A file could not be opened or read.
    case unreadableFile(file: String, reason: String)
    /// config.json (or an index file) is not valid JSON of the expected shape, or a field is out of range.
    case invalidConfiguration(file: String, message: String)
    /// config.json names an architecture that no registered architecture handles.
    case unsupportedArchitecture(file: String, found: String, supported: [String])
    /// A safetensors file is malformed (header, offsets, dtype or byte counts).
    case invalidSafetensors(file: String, message: String)
    /// An expected tensor is in no safetensors file of the checkpoint.
    case missingTensor(name: String, searched: [String])
    /// A tensor has another shape than the configuration implies.
    case tensorShapeMismatch(file: String, name: String, shape: [Int], expected: [Int])
    /// A tensor is stored in a dtype the runtime does not compute with.
    case unsupportedTensorDType(file: String, name: String, dtype: String)
    /// A forward or expert call got inputs that do not fit the model (token ids, sizes, cache).
    case invalidInput(String)
    /// An expert was requested from a store that does not hold it.
    case expertNotHeld(LayerExpert)

    /// One line: the file, field or tensor, what is wrong, and what would be valid.
    public var description: String {
        switch self {
        case .unreadableFile(let file, let reason):
            "\(file): cannot be read: \(reason)"
        case .invalidConfiguration(let file, let message):
            "\(file): \(message)"
        case .unsupportedArchitecture(let file, let found, let supported):
            "\(file): architecture \(found) is not supported; supported: \(supported.joined(separator: ", "))"
        case .invalidSafetensors(let file, let message):
            "\(file): \(message)"
        case .missingTensor(let name, let searched):
            "tensor \(name) is missing; searched \(searched.joined(separator: ", "))"
        case .tensorShapeMismatch(let file, let name, let shape, let expected):
            "\(file): tensor \(name) has shape \(shape), expected \(expected)"
        case .unsupportedTensorDType(let file, let name, let dtype):
            "\(file): tensor \(name) has dtype \(dtype), expected one of F32, BF16, F16"
        case .invalidInput(let message):
            message
        case .expertNotHeld(let layerExpert):
            "\(layerExpert) is not held by this expert store"
        }
    }
}

// Vocabulary: a dtype is the element type of a stored tensor (f32, bf16, f16). Compute is f32:
// bf16 weight matrices stay bf16 in memory and are widened exactly by the kernels; f16 (and bf16
// vectors such as norm weights) are converted to f32 on load.

/// The element type of a stored tensor.
public enum DType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 binary32.
    case f32
    /// bfloat16: the upper 16 bits of a binary32.
    case bf16
    /// IEEE 754 binary16.
    case f16

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .f32: 4
        case .bf16, .f16: 2
        }
    }

    /// The dtype named by a safetensors header (`"F32"`, `"BF16"`, `"F16"`), or nil for any other name.
    public init?(safetensorsName: String) {
        switch safetensorsName {
        case "F32": self = .f32
        case "BF16": self = .bf16
        case "F16": self = .f16
        default: return nil
        }
    }

    /// The name a safetensors header uses for this dtype.
    public var safetensorsName: String {
        switch self {
        case .f32: "F32"
        case .bf16: "BF16"
        case .f16: "F16"
        }
    }

    /// The name Hugging Face uses in config.json (`"float32"`, `"bfloat16"`, `"float16"`).
    public var huggingFaceName: String {
        switch self {
        case .f32: "float32"
        case .bf16: "bfloat16"
        case .f16: "float16"
        }
    }

    /// The short name (`f32`, `bf16`, `f16`).
    public var description: String { rawValue }
}

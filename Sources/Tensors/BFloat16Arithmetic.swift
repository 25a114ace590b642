// Vocabulary: the arithmetic of a matrix product whose weight is stored in bf16. Weights are always
// used as stored; what differs is what happens to the f32 activations they multiply.

/// How products with bf16-stored weights treat their f32 activations.
public enum BFloat16Arithmetic: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Activations rounded to bf16 (nearest even) and products accumulated in pairs in f32, the
    /// arithmetic of the `vdpbf16ps` instruction and close to transformers' bf16 compute. About twice
    /// the multiply throughput of ``exact``; results are within a stated tolerance of f32.
    case fast
    /// Weights widened exactly and all arithmetic in f32: bitwise the result of the same weights
    /// stored as f32 (what transformers computes after loading the checkpoint with `dtype=float32`).
    case exact

    public var description: String { rawValue }
}

/// How expert weights are stored in memory after loading.
public enum WeightQuantization: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// As in the checkpoint (f32 or bf16, memory-mapped where possible).
    case none
    /// int8 in blocks of 32 with one f32 scale per block (1.125 bytes per weight), quantized at load
    /// time; the activations are quantized the same way per row and block for the product.
    case q8

    public var description: String { rawValue }
}

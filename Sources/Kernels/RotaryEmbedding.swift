// Rotary position embedding ("default" rope type), as Hugging Face computes it in f32:
// inv_freq[i] = 1 / theta^(2i / R) for i in 0 ..< R/2, angle = position · inv_freq[i], and dimension
// i is rotated with dimension i + R/2 ("rotate_half" pairing, not interleaved pairs). R, the rotary
// dimension, is the head dimension D, or its first int(D · partial_rotary_factor) dimensions (GLM-4.5:
// the rest of each head passes through unrotated, as transformers' apply_rotary_pos_emb splits it).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The rotary embedding of one head dimension and base.
public struct RotaryEmbedding: Sendable, Equatable {
    /// Dimensions per head (even).
    public let headDimension: Int
    /// The first dimensions of each head that rotate (R, even, at most `headDimension`).
    public let rotaryDimension: Int
    /// The inverse frequencies, [rotaryDimension / 2], f32.
    public let inverseFrequencies: [Float]

    /// Computes the inverse frequencies exactly as `compute_default_rope_parameters` does:
    /// the exponent `2i / R` and the power are f32 operations, `theta` rounded to f32.
    /// - Parameter rotaryDimension: R, the rotated prefix of each head; nil: the whole head.
    public init(headDimension: Int, theta: Double, rotaryDimension: Int? = nil) {
        let rotary = rotaryDimension ?? headDimension
        precondition(headDimension > 0 && headDimension % 2 == 0, "rope: head dimension must be even")
        precondition(
            rotary > 0 && rotary % 2 == 0 && rotary <= headDimension,
            "rope: rotary dimension must be even and fit the head")
        self.headDimension = headDimension
        self.rotaryDimension = rotary
        let base = Float(theta)
        inverseFrequencies = (0..<(rotary / 2)).map { index in
            let exponent = Float(2 * index) / Float(rotary)
            return 1 / powf(base, exponent)
        }
    }

    /// Rotates `headCount` heads of each row in place; row r is at position `firstPosition + r`.
    /// - Parameter values: [rowCount, headCount, headDimension], f32 (queries or keys).
    public func apply(
        to values: UnsafeMutablePointer<Float>, rowCount: Int, headCount: Int, firstPosition: Int
    ) {
        let half = rotaryDimension / 2
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        for row in 0..<rowCount {
            let position = Float(firstPosition + row)
            for index in 0..<half {
                // HF: freqs = inv_freq @ position (an f32 product), then cos/sin in f32.
                let angle = inverseFrequencies[index] * position
                cosines[index] = cosf(angle)
                sines[index] = sinf(angle)
            }
            for head in 0..<headCount {
                let x = values + (row * headCount + head) * headDimension
                for index in 0..<half {
                    let first = x[index]
                    let second = x[index + half]
                    // q·cos + rotate_half(q)·sin, with rotate_half(q) = [-q2, q1].
                    x[index] = first * cosines[index] + (-second) * sines[index]
                    x[index + half] = second * cosines[index] + first * sines[index]
                }
            }
        }
    }

    /// Array form of ``apply(to:rowCount:headCount:firstPosition:)``.
    /// - Parameter values: [rows, headCount, headDimension], f32.
    /// - Returns: the rotated values, same shape.
    public func applied(to values: [Float], headCount: Int, firstPosition: Int) -> [Float] {
        let rowWidth = headCount * headDimension
        precondition(rowWidth > 0 && values.count % rowWidth == 0, "rope: values are not [rows, heads, head dim]")
        var output = values
        output.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            apply(to: base, rowCount: values.count / rowWidth, headCount: headCount, firstPosition: firstPosition)
        }
        return output
    }
}

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
    /// The factor of every cos and sin (YaRN's attention factor; 1 otherwise).
    public let attentionScaling: Float

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
        attentionScaling = 1
    }

    /// YaRN's parameters (`rope_type` yarn), with transformers' defaults applied by the caller.
    public struct YaRN: Sendable, Equatable {
        /// The context extension factor (`factor`).
        public var factor: Double
        /// `original_max_position_embeddings`.
        public var originalMaxPositions: Double
        /// `beta_fast`, `beta_slow`: the rotation counts bounding the ramp between the two frequencies.
        public var betaFast: Double
        public var betaSlow: Double
        /// The factor of cos and sin (`attention_factor`, or what transformers infers from mscale).
        public var attentionFactor: Double
        /// Round the ramp bounds outward to whole dimensions (`truncate`, default true).
        public var truncate: Bool

        public init(
            factor: Double, originalMaxPositions: Double, betaFast: Double, betaSlow: Double,
            attentionFactor: Double, truncate: Bool
        ) {
            self.factor = factor
            self.originalMaxPositions = originalMaxPositions
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.attentionFactor = attentionFactor
            self.truncate = truncate
        }
    }

    /// YaRN RoPE over the whole head, as `_compute_yarn_parameters` (transformers 5.23) computes it:
    /// each inverse frequency blends the plain one (extrapolation) and the plain one ÷ factor
    /// (interpolation) by a linear ramp over the dimensions between the correction bounds of
    /// beta_fast and beta_slow rotations; the ramp and the blend in f32, the bounds in f64.
    public init(headDimension: Int, theta: Double, yarn: YaRN) {
        precondition(headDimension > 0 && headDimension % 2 == 0, "rope: head dimension must be even")
        self.headDimension = headDimension
        rotaryDimension = headDimension
        let dimension = Double(headDimension)
        func correctionDimension(_ rotations: Double) -> Double {
            dimension * log(yarn.originalMaxPositions / (rotations * 2 * Double.pi)) / (2 * log(theta))
        }
        var low = correctionDimension(yarn.betaFast)
        var high = correctionDimension(yarn.betaSlow)
        if yarn.truncate {
            low = low.rounded(.down)
            high = high.rounded(.up)
        }
        low = max(low, 0)
        high = min(high, dimension - 1)
        if low == high { high += 0.001 }
        let base = Float(theta), factor = Float(yarn.factor)
        let lowFloat = Float(low), span = Float(high - low)
        inverseFrequencies = (0..<(headDimension / 2)).map { index in
            let positionFrequency = powf(base, Float(2 * index) / Float(headDimension))
            let extrapolation = 1 / positionFrequency
            let interpolation = 1 / (factor * positionFrequency)
            let ramp = min(max((Float(index) - lowFloat) / span, 0), 1)
            let extrapolationFactor = 1 - ramp
            return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
        }
        attentionScaling = Float(yarn.attentionFactor)
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
                cosines[index] = cosf(angle) * attentionScaling
                sines[index] = sinf(angle) * attentionScaling
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

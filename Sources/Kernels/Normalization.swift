// RMS normalisation, computed in f32 like Hugging Face's `MixtralRMSNorm`:
// y = x · rsqrt(mean(x²) + ε) · weight.

/// Normalises each row of `input` by its root mean square and scales it by `weight`.
/// - Parameters:
///   - input: [rowCount, width], f32.
///   - weight: [width], f32.
///   - output: [rowCount, width], f32; may alias `input`.
public func rmsNorm(
    _ input: UnsafePointer<Float>, rowCount: Int, width: Int,
    weight: UnsafePointer<Float>, epsilon: Float, into output: UnsafeMutablePointer<Float>
) {
    precondition(width > 0, "rmsNorm: width must be positive")
    for row in 0..<rowCount {
        let x = input + row * width
        let y = output + row * width
        var sumOfSquares: Float = 0
        for index in 0..<width { sumOfSquares += x[index] * x[index] }
        let inverseRMS = 1 / (sumOfSquares / Float(width) + epsilon).squareRoot()
        // HF multiplies by the inverse RMS first, then by the weight; keep that order.
        for index in 0..<width { y[index] = weight[index] * (x[index] * inverseRMS) }
    }
}

/// Array form of ``rmsNorm(_:rowCount:width:weight:epsilon:into:)``.
/// - Parameters:
///   - input: [rows, weight.count], f32.
///   - weight: [width], f32.
/// - Returns: [rows, width], f32.
public func rmsNorm(_ input: [Float], weight: [Float], epsilon: Float) -> [Float] {
    let width = weight.count
    precondition(width > 0 && input.count % width == 0, "rmsNorm: input is not [rows, \(width)]")
    var output = [Float](repeating: 0, count: input.count)
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            output.withUnsafeMutableBufferPointer { y in
                guard let xBase = x.baseAddress, let yBase = y.baseAddress, let wBase = w.baseAddress else { return }
                rmsNorm(
                    xBase, rowCount: input.count / width, width: width, weight: wBase, epsilon: epsilon, into: yBase)
            }
        }
    }
    return output
}

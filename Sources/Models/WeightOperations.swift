// The kernels applied to checkpoint weights (`FloatTensor`, owned or memory-mapped), for the
// architecture files: shapes come from the weight, so call sites state only the activations.
import Kernels
import Tensors

/// `input · weightᵀ` for an `nn.Linear` weight.
/// - Parameters:
///   - input: [rowCount, weight.shape[1]], f32.
///   - weight: [outputCount, inputCount], f32.
/// - Returns: [rowCount, weight.shape[0]], f32.
func linear(_ input: [Float], rowCount: Int, weight: FloatTensor) -> [Float] {
    precondition(weight.shape.count == 2, "linear: weight must be a matrix, got shape \(weight.shape)")
    let outputCount = weight.shape[0]
    let inputCount = weight.shape[1]
    precondition(input.count == rowCount * inputCount, "linear: input is not [\(rowCount), \(inputCount)]")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    guard rowCount > 0, outputCount > 0 else { return output }
    input.withUnsafeBufferPointer { x in
        weight.withUnsafePointer { w in
            output.withUnsafeMutableBufferPointer { y in
                linear(
                    x.baseAddress!, rowCount: rowCount, inputCount: inputCount, weight: w, outputCount: outputCount,
                    into: y.baseAddress!)
            }
        }
    }
    return output
}

/// RMS norm of each row of `input` scaled by `weight`.
/// - Parameters:
///   - input: [rows, weight.count], f32.
///   - weight: [width], f32.
/// - Returns: [rows, width], f32.
func rmsNorm(_ input: [Float], weight: FloatTensor, epsilon: Float) -> [Float] {
    let width = weight.count
    precondition(width > 0 && input.count % width == 0, "rmsNorm: input is not [rows, \(width)]")
    var output = [Float](repeating: 0, count: input.count)
    guard !input.isEmpty else { return output }
    input.withUnsafeBufferPointer { x in
        weight.withUnsafePointer { w in
            output.withUnsafeMutableBufferPointer { y in
                rmsNorm(
                    x.baseAddress!, rowCount: input.count / width, width: width, weight: w, epsilon: epsilon,
                    into: y.baseAddress!)
            }
        }
    }
    return output
}

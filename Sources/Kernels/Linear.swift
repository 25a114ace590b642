// Vocabulary: a linear layer multiplies row-major activations [rows, inputCount] by a weight
// stored as Hugging Face `nn.Linear` stores it, [outputCount, inputCount] row-major, i.e. y = x·Wᵀ.
// This file is the only place that calls BLAS for dense products.
internal import CBLAS

/// Computes `output = input · weightᵀ` (or `output += …` when `accumulate`) with `cblas_sgemm`.
/// - Parameters:
///   - input: [rowCount, inputCount], f32, row-major.
///   - weight: [outputCount, inputCount], f32, row-major (an `nn.Linear` weight).
///   - output: [rowCount, outputCount], f32, row-major.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int,
    weight: UnsafePointer<Float>, outputCount: Int,
    into output: UnsafeMutablePointer<Float>, accumulate: Bool = false
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linear: negative dimension")
    guard rowCount > 0, outputCount > 0 else { return }
    guard inputCount > 0 else {
        if !accumulate { output.update(repeating: 0, count: rowCount * outputCount) }
        return
    }
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans,
        blasInt(rowCount), blasInt(outputCount), blasInt(inputCount),
        1, input, blasInt(inputCount),
        weight, blasInt(inputCount),
        accumulate ? 1 : 0, output, blasInt(outputCount))
}

/// Computes `input · weightᵀ` into a new array.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount], f32.
/// - Returns: [rowCount, outputCount], f32.
public func linear(_ input: [Float], rowCount: Int, weight: [Float], outputCount: Int) -> [Float] {
    precondition(rowCount > 0 || input.isEmpty, "linear: rows without input")
    let inputCount = rowCount == 0 ? 0 : input.count / rowCount
    precondition(input.count == rowCount * inputCount, "linear: input is not [rowCount, inputCount]")
    precondition(weight.count == outputCount * inputCount, "linear: weight is not [outputCount, inputCount]")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            output.withUnsafeMutableBufferPointer { y in
                guard let xBase = x.baseAddress, let wBase = w.baseAddress, let yBase = y.baseAddress else { return }
                linear(
                    xBase, rowCount: rowCount, inputCount: inputCount, weight: wBase, outputCount: outputCount,
                    into: yBase)
            }
        }
    }
    return output
}

/// General strided product `C = alpha · A · Bᵀ (+ beta · C)` for sub-matrices (used by attention).
/// - Parameters:
///   - a: [m, k] with row stride `aStride`.
///   - b: [n, k] with row stride `bStride`.
///   - c: [m, n] with row stride `cStride`.
func gemmTransposedB(
    m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, aStride: Int,
    b: UnsafePointer<Float>, bStride: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, cStride: Int
) {
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, blasInt(m), blasInt(n), blasInt(k),
        alpha, a, blasInt(aStride), b, blasInt(bStride), beta, c, blasInt(cStride))
}

/// General strided product `C = A · B` for sub-matrices (used by attention).
/// - Parameters:
///   - a: [m, k] with row stride `aStride`.
///   - b: [k, n] with row stride `bStride`.
///   - c: [m, n] with row stride `cStride`, overwritten.
func gemm(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, aStride: Int,
    b: UnsafePointer<Float>, bStride: Int,
    c: UnsafeMutablePointer<Float>, cStride: Int
) {
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, blasInt(m), blasInt(n), blasInt(k),
        1, a, blasInt(aStride), b, blasInt(bStride), 0, c, blasInt(cStride))
}

@inline(__always)
private func blasInt(_ value: Int) -> blasint {
    precondition(value <= Int(blasint.max), "BLAS dimension \(value) exceeds \(blasint.max)")
    return blasint(value)
}

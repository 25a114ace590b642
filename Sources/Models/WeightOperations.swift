// The kernels applied to checkpoint weights (`WeightTensor` f32 or bf16, `FloatTensor`; owned or
// memory-mapped), for the architecture files: shapes come from the weight, so call sites state only
// the activations.
import Kernels
import Tensors

/// `output = input · weightᵀ` for an `nn.Linear` weight stored as f32, bf16 or FP8, or held as q8. With
/// ``BFloat16Arithmetic/exact`` the bits are the same either way for the same values (the bf16 kernel
/// widens exactly and reduces in the f32 kernel's order); `arithmetic` has no effect on f32 weights.
/// An FP8 weight gives the f32 kernel's bits on its dequantized values (`arithmetic` does not apply);
/// a q8 weight the q8 kernel's, its input quantized per row and block of 32 (nor does it apply).
/// - Parameters:
///   - input: [rowCount, weight.shape[1]], f32.
///   - weight: [outputCount, inputCount], f32, bf16, FP8 or q8.
///   - output: [rowCount, weight.shape[0]], f32, overwritten.
func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, weight: WeightTensor, into output: UnsafeMutablePointer<Float>,
    arithmetic: BFloat16Arithmetic = .exact
) {
    precondition(weight.shape.count == 2, "linear: weight must be a matrix, got shape \(weight.shape)")
    let outputCount = weight.shape[0]
    let inputCount = weight.shape[1]
    guard rowCount > 0, outputCount > 0 else { return }
    weight.withElements { elements in
        switch elements {
        case .f32(let w):
            linear(
                input, rowCount: rowCount, inputCount: inputCount, weight: w, outputCount: outputCount, into: output)
        case .bf16(let w):
            linear(
                input, rowCount: rowCount, inputCount: inputCount, bfloat16Weight: w, outputCount: outputCount,
                into: output, arithmetic: arithmetic)
        case .fp8(let w, let scales, let block):
            linear(
                input, rowCount: rowCount, inputCount: inputCount, fp8Weight: w, scales: scales, block: block,
                outputCount: outputCount, into: output)
        case .q8(let values, let scales, _):
            linear(
                input, rowCount: rowCount, inputCount: inputCount, q8Values: values, q8Scales: scales,
                outputCount: outputCount, into: output)
        case .amxPacked(let w):
            precondition(arithmetic == .fast, "linear: a weight packed for the amx path takes fast arithmetic only")
            linear(
                input, rowCount: rowCount, inputCount: inputCount,
                amxPackedProducts: [
                    GroupedBFloat16Product(firstRow: 0, rowCount: rowCount, weight: w, outputCount: outputCount, output: output)
                ])
        }
    }
}

/// `outputs[i] = input · weightᵀ` for several weights sharing one input (q, k and v; an expert's
/// gate and up). When every weight is bf16, or every one q8, they run as one job (the input is rounded
/// or quantized once and the threads meet once); otherwise one by one. Either way each output is
/// bitwise that of ``linear(_:rowCount:weight:into:arithmetic:)``.
/// - Parameters:
///   - weights: at least one matrix [outputCount_i, inputCount], with one inputCount.
///   - outputs: [rowCount, outputCount_i] each, f32, overwritten.
func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, weights: [WeightTensor], into outputs: [UnsafeMutablePointer<Float>],
    arithmetic: BFloat16Arithmetic
) {
    precondition(weights.count == outputs.count && !weights.isEmpty)
    let inputCount = weights[0].shape.count == 2 ? weights[0].shape[1] : -1
    if weights.allSatisfy({ $0.shape.count == 2 && $0.shape[1] == inputCount }) {
        let fused =
            withBFloat16Elements(of: weights) { pointers -> Bool in
                let products = zip(weights, zip(pointers, outputs)).map { weight, target in
                    GroupedBFloat16Product(
                        firstRow: 0, rowCount: rowCount, weight: target.0, outputCount: weight.shape[0], output: target.1)
                }
                linear(input, rowCount: rowCount, inputCount: inputCount, groupedProducts: products, arithmetic: arithmetic)
                return true
            }
            ?? withAMXPackedElements(of: weights) { pointers -> Bool in
                precondition(arithmetic == .fast, "linear: weights packed for the amx path take fast arithmetic only")
                let products = zip(weights, zip(pointers, outputs)).map { weight, target in
                    GroupedBFloat16Product(
                        firstRow: 0, rowCount: rowCount, weight: target.0, outputCount: weight.shape[0], output: target.1)
                }
                linear(input, rowCount: rowCount, inputCount: inputCount, amxPackedProducts: products)
                return true
            }
            ?? withQ8Elements(of: weights) { matrices -> Bool in
                let products = zip(weights, zip(matrices, outputs)).map { weight, target in
                    GroupedQ8Product(
                        firstRow: 0, rowCount: rowCount, values: target.0.values, scales: target.0.scales,
                        outputCount: weight.shape[0], output: target.1)
                }
                linear(input, rowCount: rowCount, inputCount: inputCount, groupedQ8Products: products)
                return true
            }
        if fused == true { return }
    }
    for (weight, output) in zip(weights, outputs) {
        linear(input, rowCount: rowCount, weight: weight, into: output, arithmetic: arithmetic)
    }
}

/// Calls `body` with the elements of every weight, all valid during the call.
func withElements<Result>(of weights: [WeightTensor], _ body: ([WeightTensor.Elements]) -> Result) -> Result {
    func collect(_ index: Int, _ collected: [WeightTensor.Elements]) -> Result {
        guard index < weights.count else { return body(collected) }
        return weights[index].withElements { collect(index + 1, collected + [$0]) }
    }
    return collect(0, [])
}

/// Calls `body` with the bf16 elements of every weight (all valid during the call), or returns nil
/// without calling it when a weight is not bf16.
func withBFloat16Elements<Result>(
    of weights: [WeightTensor], _ body: ([UnsafePointer<UInt16>]) -> Result
) -> Result? {
    guard weights.allSatisfy({ $0.dtype == .bf16 && !$0.isAMXPacked }) else { return nil }
    return withElements(of: weights) { elements in
        body(elements.map { element in
            guard case .bf16(let pointer) = element else { preconditionFailure("checked bf16 above") }
            return pointer
        })
    }
}

/// Calls `body` with the packed elements of every weight (all valid during the call), or returns nil
/// without calling it when a weight is not packed for the amx path.
func withAMXPackedElements<Result>(
    of weights: [WeightTensor], _ body: ([UnsafePointer<UInt16>]) -> Result
) -> Result? {
    guard weights.allSatisfy(\.isAMXPacked) else { return nil }
    return withElements(of: weights) { elements in
        body(elements.map { element in
            guard case .amxPacked(let pointer) = element else { preconditionFailure("checked packed above") }
            return pointer
        })
    }
}

/// Calls `body` with the q8 values and scales of every weight (all valid during the call), or returns
/// nil without calling it when a weight is not q8.
func withQ8Elements<Result>(
    of weights: [WeightTensor], _ body: ([(values: UnsafePointer<Int8>, scales: UnsafePointer<Float>)]) -> Result
) -> Result? {
    guard weights.allSatisfy(\.isQ8) else { return nil }
    return withElements(of: weights) { elements in
        body(elements.map { element in
            guard case .q8(let values, let scales, _) = element else { preconditionFailure("checked q8 above") }
            return (values, scales)
        })
    }
}

/// Whether the models hold their bf16 matrices packed for the amx path (``packedForAMX(_:arena:)``): with
/// fast arithmetic on ``KernelISA/amx`` (SWITCHYARD_KERNEL=amx), whose products then read them in one stream
/// per 16 rows, with the same bits.
func holdsPackedForAMX(_ arithmetic: BFloat16Arithmetic) -> Bool {
    arithmetic == .fast && KernelISA.active == .amx
}

/// A bf16 matrix's elements packed for the amx path (``packForAMX`` in Kernels), in `arena` (huge pages)
/// when it can take them, else in memory of their own.
func packedForAMX(_ weight: WeightTensor, arena: WeightArena?) -> PackedBFloat16Storage {
    precondition(weight.shape.count == 2 && weight.dtype == .bf16 && !weight.isAMXPacked, "packedForAMX: not a bf16 matrix")
    let (rows, columns) = (weight.shape[0], weight.shape[1])
    let storage = PackedBFloat16Storage(count: amxPackedCount(outputCount: rows, inputCount: columns), arena: arena)
    weight.withElements { elements in
        guard case .bf16(let w) = elements else { preconditionFailure("checked bf16 above") }
        if rows > 0, columns > 0 { packForAMX(w, outputCount: rows, inputCount: columns, into: storage.values.baseAddress!) }
    }
    return storage
}

/// How the models copy weights into their arenas at load: on the product threads together (``copyInParallel``).
let parallelCopier: WeightArena.Copier = { copyInParallel($0, $1, byteCount: $2) }

extension WeightTensor {
    /// This matrix as the amx path with fast arithmetic reads it best: a bf16 matrix packed for it
    /// (its products bitwise the amx path's on the matrix as stored), in `arena`; any other weight as
    /// ``resident(in:copier:)`` holds it, copied as the other paths copy it (``parallelCopier``).
    func packedForAMX(in arena: WeightArena) -> WeightTensor {
        guard shape.count == 2, dtype == .bf16, !isAMXPacked else { return resident(in: arena, copier: parallelCopier) }
        return WeightTensor(shape: shape, amxPacked: Models.packedForAMX(self, arena: arena))
    }

    /// This matrix quantized to q8 for ``WeightQuantization/q8``: int8 in blocks of 32 columns with an
    /// f32 scale each, from its f32 values (bf16 widened exactly), row by row, in `arena` (huge pages)
    /// when given, else in memory of its own. FP8 weights (already a byte a value) and q8 ones are
    /// returned as they are.
    func quantizedQ8(in arena: WeightArena? = nil) -> WeightTensor {
        precondition(shape.count == 2, "quantizedQ8: weight must be a matrix, got shape \(shape)")
        guard !isFP8, !isQ8, shape[0] > 0, shape[1] > 0 else { return self }
        return WeightTensor(shape: shape, q8: q8Storage(in: arena), blocksPerRow: q8BlockCount(inputCount: shape[1]))
    }

    /// This matrix quantized to q8 as ``quantizedQ8(in:)`` defines it, in
    /// `arena` when given: f32 and bf16 rows by the product threads together (``quantizeQ8Weight``), any
    /// other row by row through its f32 values (the same bits either way).
    func q8Storage(in arena: WeightArena?) -> QuantizedStorage {
        let (rows, columns) = (shape[0], shape[1])
        let blocks = q8BlockCount(inputCount: columns)
        let storage = QuantizedStorage(valueCount: rows * blocks * 32, scaleCount: rows * blocks, arena: arena)
        let (values, scales) = (storage.values.baseAddress!, storage.scales.baseAddress!)
        let done = withElements { elements in
            switch elements {
            case .f32(let weight):
                quantizeQ8Weight(weight, bfloat16: false, outputCount: rows, inputCount: columns, values: values, scales: scales)
            case .bf16(let weight):
                quantizeQ8Weight(weight, bfloat16: true, outputCount: rows, inputCount: columns, values: values, scales: scales)
            default: false
            }
        }
        if !done {
            var row = [Float](repeating: 0, count: columns)
            row.withUnsafeMutableBufferPointer { buffer in
                for index in 0..<rows {
                    copyRow(index, into: buffer.baseAddress!)
                    quantizeQ8(
                        buffer.baseAddress!, outputCount: 1, inputCount: columns, values: values + index * blocks * 32,
                        scales: scales + index * blocks)
                }
            }
        }
        return storage
    }
}

/// `input · weightᵀ` for an `nn.Linear` weight stored as f32 or bf16.
/// - Parameters:
///   - input: [rowCount, weight.shape[1]], f32.
///   - weight: [outputCount, inputCount], f32 or bf16.
/// - Returns: [rowCount, weight.shape[0]], f32.
func linear(
    _ input: [Float], rowCount: Int, weight: WeightTensor, arithmetic: BFloat16Arithmetic = .exact
) -> [Float] {
    precondition(weight.shape.count == 2, "linear: weight must be a matrix, got shape \(weight.shape)")
    let outputCount = weight.shape[0]
    let inputCount = weight.shape[1]
    precondition(input.count == rowCount * inputCount, "linear: input is not [\(rowCount), \(inputCount)]")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    guard rowCount > 0, outputCount > 0 else { return output }
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            linear(x.baseAddress!, rowCount: rowCount, weight: weight, into: y.baseAddress!, arithmetic: arithmetic)
        }
    }
    return output
}

/// Adds `bias` [width] to every row of `rows` [T, width] (nn.Linear's bias).
func addBias(_ bias: FloatTensor, to rows: inout [Float]) {
    let width = bias.count
    bias.withUnsafePointer { b in
        rows.withUnsafeMutableBufferPointer { r in
            for row in 0..<(r.count / width) {
                let target = r.baseAddress! + row * width
                for column in 0..<width { target[column] += b[column] }
            }
        }
    }
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

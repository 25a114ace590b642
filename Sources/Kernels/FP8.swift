// Products with FP8 weights as DeepSeek-V3 ships them (float8_e4m3fn bytes, an f32 `weight_scale_inv`
// per block of weights); the arithmetic is in CKernels' sy_fp8.h: every output is bitwise the f32
// product on the dequantized weights, on every path, batch-invariantly.
internal import CKernels
public import Tensors

/// Computes `output = input · weightᵀ` (or `output += …`) with an FP8 weight, batch-invariantly.
///
/// The weight is `e4m3(bytes[o, i]) · scales[o / block.rows, i / block.columns]` (one f32 product), and
/// the result is bitwise ``linear(_:rowCount:inputCount:weight:outputCount:into:accumulate:isa:)`` on
/// those dequantized f32 values, whatever the path, the row count or the thread count. The bytes are
/// read in place: at up to 8 rows each vector path multiplies them as it widens them, above that each
/// product thread widens a few weight rows at a time into a small buffer of its own.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount] e4m3fn bytes.
///   - scales: ``FP8BlockSize/scaleShape(forWeight:)`` of [outputCount, inputCount], f32.
///   - block: `block.columns` a positive multiple of 16, `block.rows` positive.
///   - output: [rowCount, outputCount], f32; must not overlap the others.
///   - isa: the instruction-set path; nil uses ``KernelISA/active``. Must be supported.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, fp8Weight weight: UnsafePointer<UInt8>,
    scales: UnsafePointer<Float>, block: FP8BlockSize, outputCount: Int, into output: UnsafeMutablePointer<Float>,
    accumulate: Bool = false, isa: KernelISA? = nil
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linear: negative dimension")
    precondition(
        block.rows > 0 && block.columns > 0 && block.columns % 16 == 0,
        "linear: FP8 block \(block) needs positive rows and columns a multiple of 16")
    guard rowCount > 0, outputCount > 0 else { return }
    if let isa { precondition(isa.isSupported, "linear: kernel path \(isa) is not supported by this CPU") }
    let status = sy_matmul_nt_fp8_isa(
        isa?.cValue ?? sy_active_isa(), input, rowCount, inputCount, inputCount, weight, outputCount, scales,
        block.rows, block.columns, output, outputCount, accumulate ? 1 : 0)
    precondition(
        status == 0, "linear: out of memory for the widened rows of a \(outputCount) × \(inputCount) FP8 weight")
}

/// Array form of the FP8 ``linear(_:rowCount:inputCount:fp8Weight:scales:block:outputCount:into:accumulate:isa:)``.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount] e4m3fn bytes; scales as ``FP8BlockSize/scaleShape(forWeight:)``.
/// - Returns: [rowCount, outputCount], f32.
public func linear(
    _ input: [Float], rowCount: Int, fp8Weight weight: [UInt8], scales: [Float], block: FP8BlockSize,
    outputCount: Int, isa: KernelISA? = nil
) -> [Float] {
    precondition(rowCount > 0 || input.isEmpty, "linear: rows without input")
    let inputCount = rowCount == 0 ? 0 : input.count / rowCount
    precondition(input.count == rowCount * inputCount, "linear: input is not [rowCount, inputCount]")
    precondition(weight.count == outputCount * inputCount, "linear: weight is not [outputCount, inputCount]")
    precondition(
        scales.count == block.scaleShape(forWeight: [outputCount, inputCount]).reduce(1, *),
        "linear: FP8 scales are not \(block.scaleShape(forWeight: [outputCount, inputCount]))")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    guard rowCount > 0, outputCount > 0, inputCount > 0 else { return output }
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            scales.withUnsafeBufferPointer { s in
                output.withUnsafeMutableBufferPointer { y in
                    linear(
                        x.baseAddress!, rowCount: rowCount, inputCount: inputCount, fp8Weight: w.baseAddress!,
                        scales: s.baseAddress!, block: block, outputCount: outputCount, into: y.baseAddress!, isa: isa)
                }
            }
        }
    }
    return output
}

/// The value of a float8_e4m3fn byte as the kernels widen it (exact; NaN for 0x7F and 0xFF).
public func fp8E4M3Value(_ byte: UInt8) -> Float { sy_fp8_e4m3_value(byte) }

/// `value` rounded to the nearest float8_e4m3fn (ties to the even code), saturated to ±448; NaN stays NaN.
public func fp8E4M3Byte(_ value: Float) -> UInt8 { sy_fp8_e4m3_from_float(value) }

/// Widens one FP8 weight row on an explicit path (tests): `output[i] = e4m3(row[i]) · scales[i / blockColumns]`.
/// - Parameters:
///   - row: [count] e4m3fn bytes; scales: [⌈count / blockColumns⌉], f32; blockColumns a positive multiple of 16.
/// - Returns: [count], f32.
public func dequantizeFP8Row(_ row: [UInt8], scales: [Float], blockColumns: Int, isa: KernelISA) -> [Float] {
    precondition(blockColumns > 0 && blockColumns % 16 == 0, "dequantizeFP8Row: block columns \(blockColumns)")
    precondition(scales.count == (row.count + blockColumns - 1) / blockColumns, "dequantizeFP8Row: scale count")
    precondition(isa.isSupported, "dequantizeFP8Row: kernel path \(isa) is not supported by this CPU")
    var output = [Float](repeating: 0, count: row.count)
    guard !row.isEmpty else { return output }
    row.withUnsafeBufferPointer { w in
        scales.withUnsafeBufferPointer { s in
            output.withUnsafeMutableBufferPointer { y in
                sy_fp8_dequantize_row_isa(
                    isa.cValue, w.baseAddress!, row.count, s.baseAddress!, blockColumns, y.baseAddress!)
            }
        }
    }
    return output
}

/// Quantizes an `nn.Linear` weight [outputCount, inputCount] to FP8 the way DeepSeek-V3's checkpoints
/// are: per block of `block.rows × block.columns` weights (partial at the right and bottom edges),
/// scale = amax / 448 (f32), byte = e4m3(w / scale) rounded to nearest even and saturated to ±448;
/// the scale is stored (`weight_scale_inv`: the dequantized weight is e4m3 · scale). An all-zero block
/// gets scale 1 (its bytes are 0 whatever the scale).
/// - Returns: `bytes` [outputCount, inputCount] and `scales` ``FP8BlockSize/scaleShape(forWeight:)``, f32.
public func quantizeFP8(
    _ weight: [Float], outputCount: Int, inputCount: Int, block: FP8BlockSize
) -> (bytes: [UInt8], scales: [Float]) {
    precondition(weight.count == outputCount * inputCount, "quantizeFP8: weight is not [outputCount, inputCount]")
    let scaleShape = block.scaleShape(forWeight: [outputCount, inputCount])
    var scales = [Float](repeating: 1, count: scaleShape[0] * scaleShape[1])
    var bytes = [UInt8](repeating: 0, count: weight.count)
    for blockRow in 0..<scaleShape[0] {
        let rows = (blockRow * block.rows)..<min((blockRow + 1) * block.rows, outputCount)
        for blockColumn in 0..<scaleShape[1] {
            let columns = (blockColumn * block.columns)..<min((blockColumn + 1) * block.columns, inputCount)
            var largest: Float = 0
            for row in rows { for column in columns { largest = max(largest, abs(weight[row * inputCount + column])) } }
            let scale = largest > 0 ? largest / 448 : 1
            scales[blockRow * scaleShape[1] + blockColumn] = scale
            for row in rows {
                for column in columns {
                    bytes[row * inputCount + column] = sy_fp8_e4m3_from_float(weight[row * inputCount + column] / scale)
                }
            }
        }
    }
    return (bytes, scales)
}

// Elementwise activations and the row softmax, all f32 (the arithmetic is in CKernels).
import CKernels

/// SiLU (swish): x · sigmoid(x), from an f32 exp within about 2 ulp (``swiGLU(gate:up:count:)``
/// gives bitwise `silu(gate) * up`).
@inline(__always)
public func silu(_ x: Float) -> Float {
    sy_silu(x)
}

/// Replaces `gate[i]` by `silu(gate[i]) * up[i]`: the SwiGLU product of an expert FFN, the same
/// bits on every kernel path.
/// - Parameters:
///   - gate: [count], f32, overwritten with the product.
///   - up: [count], f32.
///   - isa: the kernel path, run on the caller alone (tests and benchmarks); nil uses
///     ``KernelISA/active`` and spreads large batches over the product threads.
public func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int, isa: KernelISA? = nil) {
    if let isa {
        sy_swiglu_isa(isa.cValue, gate, up, count)
        return
    }
    // Elementwise, so a split changes no bit: large batches are spread over the product threads.
    let pieces = count >= swiGLUParallelMinimum ? min(4 * threadCount, count / (swiGLUParallelMinimum / 2)) : 1
    if pieces <= 1 {
        sy_swiglu(gate, up, count)
        return
    }
    let piece = (count + pieces - 1) / pieces
    parallelFor(pieces) { p in
        let start = p * piece
        if start < count { sy_swiglu(gate + start, up + start, min(piece, count - start)) }
    }
}

/// gpt-oss's expert activation (CKernels' `sy_clamped_swiglu_isa`): for `rowCount` rows of `width`,
/// `output[r · width + i] = (u + 1) · g · σ(alpha · g)` with `g = min(gate + gateBias[i], limit)` and
/// `u = clamp(up + upBias[i], -limit, limit)` (NaN passes through), the gate and up values of row r
/// at `r · rowStride + i · stride` (stride 2 with `up = gate + 1`: gate_up_proj's interleaved outputs).
/// The same bits on every kernel path. `output` may be `gate` when `stride` is 1.
public func clampedSwiGLU(
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, stride: Int, rowStride: Int, gateBias: UnsafePointer<Float>?,
    upBias: UnsafePointer<Float>?, rowCount: Int, width: Int, alpha: Float, limit: Float,
    into output: UnsafeMutablePointer<Float>, isa: KernelISA? = nil
) {
    precondition(stride >= 1 && rowCount >= 0 && width >= 0, "clampedSwiGLU: bad shape")
    sy_clamped_swiglu_isa(
        (isa ?? KernelISA.active).cValue, gate, up, stride, rowStride, gateBias, upBias, rowCount, width, alpha, limit,
        output)
}

/// Elements from which ``swiGLU(gate:up:count:)`` splits its work over the threads (a batch of
/// decode rows through one expert; one row's 2–14 thousand stay on the caller).
let swiGLUParallelMinimum = 16384

/// log Σ exp(values), the normaliser of a log-softmax: the maximum plus the log of Σ exp(x - max),
/// each term an f32 exp (within about 2 ulp) summed in f64 in a fixed order, so the result is the
/// same on every kernel path. ±infinity or NaN as the maximum is returned as is.
/// - Parameters:
///   - values: at least one f32 value (logits).
///   - isa: the kernel path; nil uses ``KernelISA/active``.
public func logSumExp(_ values: UnsafeBufferPointer<Float>, isa: KernelISA? = nil) -> Double {
    precondition(!values.isEmpty, "logSumExp: no values")
    if let isa { return sy_log_sum_exp_isa(isa.cValue, values.baseAddress!, values.count) }
    return sy_log_sum_exp(values.baseAddress!, values.count)
}

/// The index of the largest value, the lowest index among equal ones; NaNs are passed over, and a
/// NaN first value gives 0 (the index a loop keeping the first strictly larger value gives). Vector
/// passes on AVX-512 and AVX2, the same index on every path.
/// - Parameter isa: the kernel path; nil uses ``KernelISA/active``.
public func argmax(_ values: UnsafeBufferPointer<Float>, isa: KernelISA? = nil) -> Int {
    guard let base = values.baseAddress else { return 0 }
    return Int(sy_argmax_isa((isa ?? KernelISA.active).cValue, base, values.count))
}

/// The first index whose value is above `threshold` (NaN never is), or `values.count` when none is:
/// a vector scan, the same index on every path.
/// - Parameter isa: the kernel path; nil uses ``KernelISA/active``.
public func firstIndex(in values: UnsafeBufferPointer<Float>, above threshold: Float, isa: KernelISA? = nil) -> Int {
    guard let base = values.baseAddress else { return 0 }
    return Int(sy_first_above_isa((isa ?? KernelISA.active).cValue, base, values.count, threshold))
}

/// Softmax of one row in place, subtracting the maximum first so `exp` cannot overflow: each exp an
/// f32 exp within about 2 ulp, summed in 16 lanes in a fixed order, so the result is the same on every
/// kernel path. Entries equal to `-infinity` (masked) get probability 0.
/// - Parameters:
///   - row: [count], f32; at least one entry must be above -infinity.
///   - isa: the kernel path; nil uses ``KernelISA/active``.
public func softmax(_ row: UnsafeMutablePointer<Float>, count: Int, isa: KernelISA? = nil) {
    let status = sy_softmax_isa((isa ?? KernelISA.active).cValue, row, count)
    precondition(status == 0, "softmax: every entry is masked")
}

/// Softmax of each row of a [rows, width] matrix.
/// - Returns: [rows, width], f32, each row summing to 1.
public func softmax(_ values: [Float], width: Int) -> [Float] {
    precondition(width > 0 && values.count % width == 0, "softmax: values are not [rows, \(width)]")
    var output = values
    output.withUnsafeMutableBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return }
        for row in 0..<(values.count / width) { softmax(base + row * width, count: width) }
    }
    return output
}

// Vocabulary: a linear layer multiplies row-major activations [rows, inputCount] by a weight
// stored as Hugging Face `nn.Linear` stores it, [outputCount, inputCount] row-major, i.e. y = x·Wᵀ.
//
// `linear` is batch-invariant: output row r depends only on input row r and the weight, bit for
// bit, whatever `rowCount` is (CKernels fixes the reduction order over the input dimension).
// `linearBLAS` is the OpenBLAS `sgemm` version, kept for comparison; its blocking depends on the
// row count, so a row's result may change with the batch. This file is the only importer of the
// C kernels and of BLAS.
internal import CBLAS
internal import CKernels
public import Tensors

/// An instruction-set path of the batch-invariant kernels. Every path gives bitwise identical
/// results (same reduction shape); they differ only in speed.
public enum KernelISA: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Portable C with `fmaf`.
    case scalar
    /// AVX2 + FMA, 16 lanes as two 8-lane halves.
    case avx2
    /// AVX2 + FMA with AVX-VNNI: q8 products use `vpdpbusd` on ymm registers; the other products run
    /// the AVX2 path.
    case avx2vnni
    /// AVX-512F.
    case avx512
    /// AVX-512F with the bf16 extension: ``BFloat16Arithmetic/fast`` products use `vdpbf16ps`; the
    /// other products run the AVX-512F path.
    case avx512bf16
    /// AArch64 NEON, 16 lanes as four 4-lane vectors; q8 products use `sdot` where the CPU has it.
    /// Checked bitwise against ``scalar`` under qemu only (Scripts/neon-check.sh): no speed measured.
    case neon
    /// AVX-512 bf16 with AMX tiles: ``BFloat16Arithmetic/fast`` products run on `tdpbf16ps`, which
    /// sums the even and the odd products of each block of 32 indices apart before adding them to
    /// the accumulator, so their bits differ from every other path's (within
    /// the same tolerance of f32, and batch-invariant on this path); the other kernels run
    /// ``avx512bf16``. Never the default: only `SWITCHYARD_KERNEL=amx`, set on every host of a
    /// cluster or on none (two hosts on different paths give a sequence different bits). On it the
    /// models hold their bf16 matrices packed for the tiles (``packForAMX(_:outputCount:inputCount:into:)``),
    /// which stream in one run per 16 rows instead of 16; the bits are the same either way.
    case amx

    /// The path the kernels use in this process: `SWITCHYARD_KERNEL` (`scalar`, `avx2`, `avx2vnni`,
    /// `avx512`, `avx512bf16`, `amx`, `neon`) when set and supported, else the best this CPU supports
    /// (never ``amx``); chosen once, on first use.
    public static var active: KernelISA { KernelISA(sy_active_isa()) }

    /// Whether the AVX-512 kernels prefetch their weight streams ahead of the loads (false on AMD CPUs,
    /// where Zen 4 read faster without; true elsewhere), or `SWITCHYARD_STREAM_PREFETCH=1`/`0`. It
    /// changes speed only, never a result.
    public static var streamPrefetch: Bool { sy_stream_prefetch() != 0 }

    /// The paths this CPU supports, scalar first.
    public static var supported: [KernelISA] { allCases.filter(\.isSupported) }

    /// The supported paths that give every kernel the same bits (all but ``amx``), scalar first.
    public static var alike: [KernelISA] { supported.filter { !$0.fastProductsHaveOwnBits } }

    /// Whether ``BFloat16Arithmetic/fast`` products on this path give bits of their own (``amx``), not
    /// those every other path gives: hosts whose paths differ in this give a sequence different tokens,
    /// so a coordinator refuses such a worker.
    public var fastProductsHaveOwnBits: Bool { self == .amx }

    /// Whether this CPU can run the path.
    public var isSupported: Bool { sy_isa_supported(cValue) != 0 }

    public var description: String { rawValue }

    var cValue: sy_isa {
        switch self {
        case .scalar: SY_ISA_SCALAR
        case .avx2: SY_ISA_AVX2
        case .avx2vnni: SY_ISA_AVX2_VNNI
        case .avx512: SY_ISA_AVX512
        case .avx512bf16: SY_ISA_AVX512BF16
        case .neon: SY_ISA_NEON
        case .amx: SY_ISA_AMX
        }
    }

    init(_ value: sy_isa) {
        switch value {
        case SY_ISA_AVX512: self = .avx512
        case SY_ISA_AVX512BF16: self = .avx512bf16
        case SY_ISA_AVX2: self = .avx2
        case SY_ISA_NEON: self = .neon
        case SY_ISA_AVX2_VNNI: self = .avx2vnni
        case SY_ISA_AMX: self = .amx
        default: self = .scalar
        }
    }
}

/// Sets how many threads (the caller included) one batch-invariant product (``linear``, f32 or
/// bf16 weights) is split over; for `--threads N`. Process-wide; 1 until set.
///
/// A product is split over its output columns only, never over the reduction, so every result is
/// bitwise the same for every thread count. Worker threads start on first use and live as long as
/// the process. Small products, and a product issued while another thread's product holds the
/// workers, run on the calling thread alone.
/// - Parameter count: 1 ... ``maximumThreadCount``.
public func setThreadCount(_ count: Int) {
    precondition(
        (1...maximumThreadCount).contains(count), "setThreadCount: \(count) is not in 1 ... \(maximumThreadCount)")
    sy_set_thread_count(Int32(count))
}

/// Lets the product threads sleep now instead of spinning for the next product (about 2 ms), for a
/// caller about to wait with no products of its own: a coordinator waiting for its workers, whose
/// threads would otherwise take cores from workers on the same host. The next product wakes them.
public func restThreads() { sy_rest_threads() }

/// The thread count set by ``setThreadCount(_:)`` (1 until then).
public var threadCount: Int { Int(sy_thread_count()) }

/// The largest count ``setThreadCount(_:)`` accepts.
public let maximumThreadCount = Int(SY_MAX_THREADS)

/// Runs `body(0)` ... `body(count - 1)` on the product threads (the caller's included), each index
/// once and in no set order; returns when all have run. The calls must write disjoint memory.
/// Products inside `body` run on its thread alone, and the whole loop runs on the caller when
/// another thread holds the product threads, so results never depend on the split.
public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    guard count > 0 else { return }
    if count == 1 || threadCount == 1 {
        for index in 0..<count { body(index) }
        return
    }
    withoutActuallyEscaping(body) { body in
        var task = body
        withUnsafeMutablePointer(to: &task) { context in
            sy_parallel_for(count, { context, index in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
            }, context)
        }
    }
}

/// Computes `output = input · weightᵀ` (or `output += …` when `accumulate`), batch-invariantly.
///
/// Every `output[r, o]` is bitwise the same whatever `rowCount` is and wherever the row sits.
/// - Parameters:
///   - input: [rowCount, inputCount], f32, row-major.
///   - weight: [outputCount, inputCount], f32, row-major (an `nn.Linear` weight).
///   - output: [rowCount, outputCount], f32, row-major; must not overlap `input` or `weight`.
///   - isa: the instruction-set path; nil uses ``KernelISA/active``. Must be supported.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int,
    weight: UnsafePointer<Float>, outputCount: Int,
    into output: UnsafeMutablePointer<Float>, accumulate: Bool = false, isa: KernelISA? = nil
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linear: negative dimension")
    guard rowCount > 0, outputCount > 0 else { return }
    if let isa {
        precondition(isa.isSupported, "linear: kernel path \(isa) is not supported by this CPU")
        sy_matmul_nt_isa(
            isa.cValue, input, rowCount, inputCount, inputCount, weight, outputCount, inputCount, output,
            outputCount, accumulate ? 1 : 0)
    } else {
        sy_matmul_nt(
            input, rowCount, inputCount, inputCount, weight, outputCount, inputCount, output, outputCount,
            accumulate ? 1 : 0)
    }
}

/// Computes `output = input · weightᵀ` (or `output += …`) with a bf16 weight, batch-invariantly.
///
/// With ``BFloat16Arithmetic/exact`` each bf16 weight is widened exactly to f32 and the products are
/// reduced as in the f32 ``linear(_:rowCount:inputCount:weight:outputCount:into:accumulate:isa:)``:
/// the result is bitwise that of the f32 kernel on the same weights upcast. With
/// ``BFloat16Arithmetic/fast`` the input is rounded to bf16 and products are accumulated in pairs as
/// `vdpbf16ps` does (every path computes the same bits); each product then carries the input's
/// rounding, at most 2⁻⁸·|x·w|. Either way a row's result does not depend on `rowCount` or its place.
/// - Parameters:
///   - input: [rowCount, inputCount], f32, row-major.
///   - weight: [outputCount, inputCount], bf16 bit patterns, row-major (an `nn.Linear` weight).
///   - output: [rowCount, outputCount], f32, row-major; must not overlap `input` or `weight`.
///   - arithmetic: what happens to the input (see above).
///   - isa: the instruction-set path; nil uses ``KernelISA/active``. Must be supported.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int,
    bfloat16Weight weight: UnsafePointer<UInt16>, outputCount: Int,
    into output: UnsafeMutablePointer<Float>, accumulate: Bool = false, arithmetic: BFloat16Arithmetic = .exact,
    isa: KernelISA? = nil
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linear: negative dimension")
    guard rowCount > 0, outputCount > 0 else { return }
    if let isa { precondition(isa.isSupported, "linear: kernel path \(isa) is not supported by this CPU") }
    let path = isa?.cValue ?? sy_active_isa()
    switch arithmetic {
    case .exact:
        sy_matmul_nt_bf16_isa(
            path, input, rowCount, inputCount, inputCount, weight, outputCount, inputCount, output, outputCount,
            accumulate ? 1 : 0)
    case .fast:
        let status = sy_matmul_nt_bf16_fast_isa(
            path, input, rowCount, inputCount, inputCount, weight, outputCount, inputCount, output, outputCount,
            accumulate ? 1 : 0)
        precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) rounded inputs")
    }
}

/// `value` rounded to bf16 as ``BFloat16Arithmetic/fast`` rounds inputs (nearest even, denormals to
/// a signed zero, NaN kept NaN), as bits.
public func roundedToBFloat16(_ value: Float) -> UInt16 { sy_round_bf16(value) }

/// Computes `input · weightᵀ` into a new array with a bf16 weight, batch-invariantly.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount], bf16 bit patterns.
///   - isa: the instruction-set path; nil uses ``KernelISA/active``.
/// - Returns: [rowCount, outputCount], f32.
public func linear(
    _ input: [Float], rowCount: Int, bfloat16Weight weight: [UInt16], outputCount: Int,
    arithmetic: BFloat16Arithmetic = .exact, isa: KernelISA? = nil
) -> [Float] {
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
                    xBase, rowCount: rowCount, inputCount: inputCount, bfloat16Weight: wBase,
                    outputCount: outputCount, into: yBase, arithmetic: arithmetic, isa: isa)
            }
        }
    }
    return output
}

/// Computes `input · weightᵀ` into a new array, batch-invariantly.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount], f32.
///   - isa: the instruction-set path; nil uses ``KernelISA/active``.
/// - Returns: [rowCount, outputCount], f32.
public func linear(
    _ input: [Float], rowCount: Int, weight: [Float], outputCount: Int, isa: KernelISA? = nil
) -> [Float] {
    withArrays(input, rowCount: rowCount, weight: weight, outputCount: outputCount) { x, inputCount, w, y in
        linear(x, rowCount: rowCount, inputCount: inputCount, weight: w, outputCount: outputCount, into: y, isa: isa)
    }
}

/// Computes `output = input · weightᵀ` (or `output += …`) with OpenBLAS `cblas_sgemm`. Not
/// batch-invariant: for comparisons and benchmarks.
/// - Parameters:
///   - input: [rowCount, inputCount], f32, row-major.
///   - weight: [outputCount, inputCount], f32, row-major.
///   - output: [rowCount, outputCount], f32, row-major.
public func linearBLAS(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int,
    weight: UnsafePointer<Float>, outputCount: Int,
    into output: UnsafeMutablePointer<Float>, accumulate: Bool = false
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linearBLAS: negative dimension")
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

/// Array form of ``linearBLAS(_:rowCount:inputCount:weight:outputCount:into:accumulate:)``.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - weight: [outputCount, inputCount], f32.
/// - Returns: [rowCount, outputCount], f32.
public func linearBLAS(_ input: [Float], rowCount: Int, weight: [Float], outputCount: Int) -> [Float] {
    withArrays(input, rowCount: rowCount, weight: weight, outputCount: outputCount) { x, inputCount, w, y in
        linearBLAS(x, rowCount: rowCount, inputCount: inputCount, weight: w, outputCount: outputCount, into: y)
    }
}

/// Checks the shapes of an array-form product and runs `body` on the buffers.
private func withArrays(
    _ input: [Float], rowCount: Int, weight: [Float], outputCount: Int,
    _ body: (UnsafePointer<Float>, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
) -> [Float] {
    precondition(rowCount > 0 || input.isEmpty, "linear: rows without input")
    let inputCount = rowCount == 0 ? 0 : input.count / rowCount
    precondition(input.count == rowCount * inputCount, "linear: input is not [rowCount, inputCount]")
    precondition(weight.count == outputCount * inputCount, "linear: weight is not [outputCount, inputCount]")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            output.withUnsafeMutableBufferPointer { y in
                guard let xBase = x.baseAddress, let wBase = w.baseAddress, let yBase = y.baseAddress else { return }
                body(xBase, inputCount, wBase, yBase)
            }
        }
    }
    return output
}

/// Attention scores `scores[h, s] = (queries[h] · keys[s]) · scale`: each dot product bitwise that of
/// the batch-invariant product (rounded before the multiply), on every path.
/// - Parameters:
///   - queries: [heads, dimension], rows `dimension` apart.
///   - keys: the keys (f32 or bf16; the values are not read), [count, dimension] with row stride `keyStride`.
///   - scores: [heads, count] with row stride `scoresStride`, overwritten.
func attentionScores(
    queries: UnsafePointer<Float>, heads: Int, dimension: Int, keys: CachedKeyValues, keyStride: Int,
    count: Int, scale: Float, into scores: UnsafeMutablePointer<Float>, scoresStride: Int, isa: KernelISA?
) {
    let path = (isa ?? KernelISA.active).cValue
    switch keys {
    case .f32(let keys, _):
        sy_attention_scores_isa(
            path, queries, heads, dimension, keys, keyStride, count, dimension, scale, scores, scoresStride)
    case .bf16(let keys, _):
        sy_attention_scores_bf16_isa(
            path, queries, heads, dimension, keys, keyStride, count, dimension, scale, scores, scoresStride)
    }
}

/// `output[h, d] = Σ_s weights[h, s] · rows[s, d]` for `heads` query heads sharing the values (one
/// key/value head's group), summed over s in ascending order from 0: each head bitwise its own sum,
/// the value rows read once for several heads on the AVX-512 and AVX2 paths.
/// - Parameters:
///   - weights: [heads, count] with row stride `weightsStride`, f32.
///   - values: the values (f32 or bf16; the keys are not read), [count, width] with row stride `rowStride`.
///   - output: [heads, width] with row stride `outputStride`, f32, overwritten.
///   - accumulate: continue from the current `output` instead of 0 (the same multiply-adds in the
///     same order: a sum split into consecutive ranges of s is bitwise the sum in one call).
func weightedSum(
    heads: Int, weights: UnsafePointer<Float>, weightsStride: Int, count: Int, values: CachedKeyValues,
    rowStride: Int, width: Int, into output: UnsafeMutablePointer<Float>, outputStride: Int,
    accumulate: Bool = false, isa: KernelISA?
) {
    let path = (isa ?? KernelISA.active).cValue
    switch values {
    case .f32(_, let rows):
        sy_weighted_sum_heads_isa(
            path, weights, weightsStride, heads, count, rows, rowStride, width, output, outputStride, accumulate ? 1 : 0)
    case .bf16(_, let rows):
        sy_weighted_sum_heads_bf16_isa(
            path, weights, weightsStride, heads, count, rows, rowStride, width, output, outputStride, accumulate ? 1 : 0)
    }
}

@inline(__always)
private func blasInt(_ value: Int) -> blasint {
    precondition(value <= Int(blasint.max), "BLAS dimension \(value) exceeds \(blasint.max)")
    return blasint(value)
}

/// Blocks of 32 per row of a q8 matrix with `inputCount` columns (rounded up to even).
public func q8BlockCount(inputCount: Int) -> Int { sy_q8_block_count(inputCount) }

/// Quantizes an `nn.Linear` weight [outputCount, inputCount] to q8: per row and block of 32 columns,
/// scale = max|w| / 127 and q = w / scale rounded to nearest even (0 past the last column).
/// - Returns: `values` [outputCount, q8BlockCount × 32] int8 and `scales` [outputCount, q8BlockCount].
public func quantizeQ8(_ weight: [Float], outputCount: Int, inputCount: Int) -> (values: [Int8], scales: [Float]) {
    precondition(weight.count == outputCount * inputCount, "quantizeQ8: weight is not [outputCount, inputCount]")
    let blocks = q8BlockCount(inputCount: inputCount)
    var values = [Int8](repeating: 0, count: outputCount * blocks * 32)
    var scales = [Float](repeating: 0, count: outputCount * blocks)
    weight.withUnsafeBufferPointer { w in
        values.withUnsafeMutableBufferPointer { q in
            scales.withUnsafeMutableBufferPointer { s in
                guard let wBase = w.baseAddress, let qBase = q.baseAddress, let sBase = s.baseAddress else { return }
                sy_q8_quantize(wBase, outputCount, inputCount, inputCount, qBase, sBase)
            }
        }
    }
    return (values, scales)
}

/// ``quantizeQ8(_:outputCount:inputCount:)`` into memory of the caller's.
/// - Parameters:
///   - weight: [outputCount, inputCount], f32.
///   - values: [outputCount, q8BlockCount × 32], written; scales: [outputCount, q8BlockCount], written.
public func quantizeQ8(
    _ weight: UnsafePointer<Float>, outputCount: Int, inputCount: Int, values: UnsafeMutablePointer<Int8>,
    scales: UnsafeMutablePointer<Float>
) {
    precondition(outputCount >= 0 && inputCount >= 0, "quantizeQ8: negative dimension")
    sy_q8_quantize(weight, outputCount, inputCount, inputCount, values, scales)
}

/// Copies `byteCount` bytes from `source` to `target` (not overlapping) on the product threads together,
/// in pieces of 1 MiB: a weight copied at load, the page faults of both sides then taken on every thread.
public func copyInParallel(_ target: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, byteCount: Int) {
    precondition(byteCount >= 0, "copyInParallel: negative byte count")
    sy_parallel_copy(target, source, byteCount)
}

/// ``quantizeQ8(_:outputCount:inputCount:)`` of a weight at load, from f32 or bf16 rows, its rows split
/// over the product threads (the same bits whatever their count), into memory of the caller's.
/// - Parameters:
///   - weight: [outputCount, inputCount] f32 values, or bf16 bit patterns when `bfloat16`.
///   - values: [outputCount, q8BlockCount × 32], written; scales: [outputCount, q8BlockCount], written.
/// - Returns: false when a thread's row buffer could not be allocated (the outputs are then incomplete).
public func quantizeQ8Weight(
    _ weight: UnsafeRawPointer, bfloat16: Bool, outputCount: Int, inputCount: Int, values: UnsafeMutablePointer<Int8>,
    scales: UnsafeMutablePointer<Float>
) -> Bool {
    precondition(outputCount >= 0 && inputCount >= 0, "quantizeQ8Weight: negative dimension")
    return sy_q8_quantize_weight_isa(
        sy_active_isa(), weight, bfloat16 ? 1 : 0, outputCount, inputCount, inputCount, values, scales) == 0
}

/// Computes `output = input · weightᵀ` (or `+=`) with a q8 weight (from ``quantizeQ8(_:outputCount:inputCount:)``).
///
/// Each input row is quantized like the weight (int8 per block of 32 with its own scale); per block the
/// integer sums are exact and are scaled and accumulated in one fixed order, so every path gives the
/// same bits and a row's result does not depend on `rowCount` or its place.
/// - Parameters:
///   - input: [rowCount, inputCount], f32, row-major.
///   - values: [outputCount, q8BlockCount × 32] int8; scales: [outputCount, q8BlockCount] f32.
///   - output: [rowCount, outputCount], f32; must not overlap the others.
///   - isa: the instruction-set path; nil uses ``KernelISA/active``.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, q8Values values: UnsafePointer<Int8>,
    q8Scales scales: UnsafePointer<Float>, outputCount: Int, into output: UnsafeMutablePointer<Float>,
    accumulate: Bool = false, isa: KernelISA? = nil
) {
    precondition(rowCount >= 0 && inputCount >= 0 && outputCount >= 0, "linear: negative dimension")
    guard rowCount > 0, outputCount > 0 else { return }
    if let isa { precondition(isa.isSupported, "linear: kernel path \(isa) is not supported by this CPU") }
    let status = sy_matmul_nt_q8_isa(
        isa?.cValue ?? sy_active_isa(), input, rowCount, inputCount, inputCount, values, scales, outputCount, output,
        outputCount, accumulate ? 1 : 0)
    precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) quantized inputs")
}

/// Array form of the q8 ``linear(_:rowCount:inputCount:q8Values:q8Scales:outputCount:into:accumulate:isa:)``.
/// - Returns: [rowCount, outputCount], f32.
public func linear(
    _ input: [Float], rowCount: Int, q8Values values: [Int8], q8Scales scales: [Float], outputCount: Int,
    isa: KernelISA? = nil
) -> [Float] {
    precondition(rowCount > 0 || input.isEmpty, "linear: rows without input")
    let inputCount = rowCount == 0 ? 0 : input.count / rowCount
    let blocks = q8BlockCount(inputCount: inputCount)
    precondition(values.count == outputCount * blocks * 32 && scales.count == outputCount * blocks, "linear: q8 sizes")
    var output = [Float](repeating: 0, count: rowCount * outputCount)
    input.withUnsafeBufferPointer { x in
        values.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { s in
                output.withUnsafeMutableBufferPointer { y in
                    guard let xBase = x.baseAddress, let qBase = q.baseAddress, let sBase = s.baseAddress,
                        let yBase = y.baseAddress
                    else { return }
                    linear(
                        xBase, rowCount: rowCount, inputCount: inputCount, q8Values: qBase, q8Scales: sBase,
                        outputCount: outputCount, into: yBase, isa: isa)
                }
            }
        }
    }
    return output
}

/// Keeps freed activation buffers in the process's heap instead of returning them to the kernel
/// (glibc serves blocks above 128 KiB with mmap by default, so every step's activations would be
/// mapped, zero-filled page by page and unmapped again). Call once at start; process-wide.
public func keepFreedMemoryInHeap() { sy_keep_freed_memory_in_heap() }

/// One product of ``linear(_:rowCount:inputCount:groupedProducts:arithmetic:isa:)``: rows
/// `firstRow ..< firstRow + rowCount` of the input against a bf16 weight [outputCount, inputCount],
/// the result [rowCount, outputCount] into `output`.
public struct GroupedBFloat16Product {
    public var firstRow: Int
    public var rowCount: Int
    public var weight: UnsafePointer<UInt16>
    public var outputCount: Int
    public var output: UnsafeMutablePointer<Float>

    public init(
        firstRow: Int, rowCount: Int, weight: UnsafePointer<UInt16>, outputCount: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        self.firstRow = firstRow
        self.rowCount = rowCount
        self.weight = weight
        self.outputCount = outputCount
        self.output = output
    }
}

/// Elements of an `outputCount` × `inputCount` bf16 weight packed by
/// ``packForAMX(_:outputCount:inputCount:into:)``.
public func amxPackedCount(outputCount: Int, inputCount: Int) -> Int {
    precondition(outputCount >= 0 && inputCount >= 0, "amxPackedCount: negative dimension")
    return sy_amx_packed_count(outputCount, inputCount)
}

/// `weight` [outputCount, inputCount] (bf16, row-major) packed for
/// ``linear(_:rowCount:inputCount:amxPackedProducts:)``: `tdpbf16ps`'s B layout, one contiguous KiB per
/// 16 rows and 32 inputs (see `sy_amx_pack`). `packed` holds ``amxPackedCount(outputCount:inputCount:)``
/// elements.
public func packForAMX(
    _ weight: UnsafePointer<UInt16>, outputCount: Int, inputCount: Int, into packed: UnsafeMutablePointer<UInt16>
) {
    precondition(outputCount >= 0 && inputCount >= 0, "packForAMX: negative dimension")
    sy_amx_pack(weight, outputCount, inputCount, inputCount, packed)
}

/// Several products on weights packed by ``packForAMX(_:outputCount:inputCount:into:)`` (each product's
/// `weight` a packed matrix), on the ``KernelISA/amx`` path with ``BFloat16Arithmetic/fast``: each output is
/// bitwise what ``linear(_:rowCount:inputCount:groupedProducts:arithmetic:isa:)`` gives on that path for
/// the weights unpacked, and the weights are read in one stream per 16 rows instead of 16.
/// - Precondition: ``KernelISA/amx`` is supported.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, amxPackedProducts products: [GroupedBFloat16Product]
) {
    checkGroupedRows(products.map { ($0.firstRow, $0.rowCount) }, rowCount: rowCount, inputCount: inputCount, isa: .amx)
    guard rowCount > 0 else { return }
    let parts = products.map {
        sy_grouped_product(
            row: $0.firstRow, m: $0.rowCount, w: $0.weight, n: $0.outputCount, w_stride: inputCount, y: $0.output,
            y_stride: $0.outputCount)
    }
    let status = sy_matmul_amx_packed_grouped(input, rowCount, inputCount, inputCount, parts, parts.count, 0)
    precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) rounded inputs")
}

/// The checks of a grouped product: at least one product, each product's rows inside the input's, and
/// a forced kernel path this CPU has.
func checkGroupedRows(_ rows: [(first: Int, count: Int)], rowCount: Int, inputCount: Int, isa: KernelISA?) {
    precondition(!rows.isEmpty, "linear: no products")
    precondition(rowCount >= 0 && inputCount >= 0, "linear: negative dimension")
    for (first, count) in rows {
        precondition(
            first >= 0 && count >= 0 && first + count <= rowCount,
            "linear: rows \(first) ..< \(first + count) outside 0 ..< \(rowCount)")
    }
    if let isa { precondition(isa.isSupported, "linear: kernel path \(isa) is not supported by this CPU") }
}

/// One product of ``linear(_:rowCount:inputCount:groupedQ8Products:isa:)``: rows `firstRow ..< firstRow + rowCount`
/// of the input against a q8 weight (values [outputCount, blocks × 32], scales [outputCount, blocks], as
/// ``quantizeQ8(_:outputCount:inputCount:)`` writes them), the result [rowCount, outputCount] into `output`.
public struct GroupedQ8Product {
    public var firstRow: Int
    public var rowCount: Int
    public var values: UnsafePointer<Int8>
    public var scales: UnsafePointer<Float>
    public var outputCount: Int
    public var output: UnsafeMutablePointer<Float>

    public init(
        firstRow: Int, rowCount: Int, values: UnsafePointer<Int8>, scales: UnsafePointer<Float>, outputCount: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        self.firstRow = firstRow
        self.rowCount = rowCount
        self.values = values
        self.scales = scales
        self.outputCount = outputCount
        self.output = output
    }
}

/// Several products with q8 weights, each on its own rows of one input (every expert of a layer on
/// the tokens routed to it), as one job: the input is quantized once and the threads split all the
/// columns together, so they meet once instead of once per product (many small experts: Qwen3-MoE's
/// 8 of 128 a token). Each output is bitwise what
/// ``linear(_:rowCount:inputCount:q8Values:q8Scales:outputCount:into:accumulate:isa:)`` gives for the
/// product's rows.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - products: at least one, rows inside the input; outputs must not overlap each other or the input.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, groupedQ8Products products: [GroupedQ8Product],
    isa: KernelISA? = nil
) {
    checkGroupedRows(products.map { ($0.firstRow, $0.rowCount) }, rowCount: rowCount, inputCount: inputCount, isa: isa)
    guard rowCount > 0 else { return }
    let parts = products.map {
        sy_grouped_q8_product(
            row: $0.firstRow, m: $0.rowCount, wq: $0.values, wscales: $0.scales, n: $0.outputCount, y: $0.output,
            y_stride: $0.outputCount)
    }
    let status = sy_matmul_nt_q8_grouped_isa(
        isa?.cValue ?? sy_active_isa(), input, rowCount, inputCount, inputCount, parts, parts.count, 0)
    precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) quantized inputs")
}

/// Several products with bf16 weights, each on its own rows of one input (q, k and v on every row;
/// every expert of a layer on the tokens routed to it), as one job: the input is rounded once and the threads split all
/// the columns together, so they meet once instead of once per product. Each output is bitwise what
/// ``linear(_:rowCount:inputCount:bfloat16Weight:outputCount:into:accumulate:arithmetic:isa:)`` gives
/// for the product's rows.
/// - Parameters:
///   - input: [rowCount, inputCount], f32.
///   - products: at least one, rows inside the input; outputs must not overlap each other or the input.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, groupedProducts products: [GroupedBFloat16Product],
    arithmetic: BFloat16Arithmetic = .exact, isa: KernelISA? = nil
) {
    checkGroupedRows(products.map { ($0.firstRow, $0.rowCount) }, rowCount: rowCount, inputCount: inputCount, isa: isa)
    guard rowCount > 0 else { return }
    let parts = products.map {
        sy_grouped_product(
            row: $0.firstRow, m: $0.rowCount, w: $0.weight, n: $0.outputCount, w_stride: inputCount, y: $0.output,
            y_stride: $0.outputCount)
    }
    let status = sy_matmul_nt_bf16_grouped_isa(
        isa?.cValue ?? sy_active_isa(), arithmetic == .fast ? 1 : 0, input, rowCount, inputCount, inputCount, parts,
        parts.count, 0)
    precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) rounded inputs")
}

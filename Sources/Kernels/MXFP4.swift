// Products with MXFP4 weights (e2m1 values in blocks of 32 with an e8m0 scale each, as gpt-oss's
// checkpoints store their experts); the arithmetic and its reduction shape are in CKernels' sy_mxfp4.h.
internal import CKernels
public import Tensors

/// An MXFP4 weight matrix [outputCount, inputCount] as stored: its rows are every `rowStride`-th row
/// of `blocks` ([rows, inputCount / 32, 16] bytes) and `scales` ([rows, inputCount / 32] bytes).
/// The memory is borrowed (a checkpoint's mapping); the owner keeps it alive.
public struct MXFP4Matrix: @unchecked Sendable {
    // @unchecked: the pointers are into read-only memory that `owner` keeps mapped for this value's life.
    public let outputCount: Int
    public let inputCount: Int
    /// The first weight row's blocks and scales.
    let blocks: UnsafePointer<UInt8>
    let scales: UnsafePointer<UInt8>
    /// Rows of the stored matrix from one output to the next (2: one of gpt-oss's interleaved gate/up).
    let rowStride: Int
    let owner: any AnyObject

    /// A matrix whose output o is stored row `o · rowStride` at `blocks` and `scales`.
    /// The caller guarantees `(outputCount - 1) · rowStride + 1` rows of blocks and scales there,
    /// read-only and alive while `owner` is; `inputCount` must be a multiple of 32.
    public init(
        outputCount: Int, inputCount: Int, blocks: UnsafePointer<UInt8>, scales: UnsafePointer<UInt8>, rowStride: Int,
        owner: any AnyObject
    ) {
        precondition(inputCount > 0 && inputCount % 32 == 0, "MXFP4Matrix: inputCount must be a multiple of 32")
        precondition(outputCount > 0 && rowStride > 0, "MXFP4Matrix: empty matrix or stride")
        self.outputCount = outputCount
        self.inputCount = inputCount
        self.blocks = blocks
        self.scales = scales
        self.rowStride = rowStride
        self.owner = owner
    }

    /// `gate` and `up` read as one matrix when they are the even and odd rows of one stored matrix
    /// (gpt-oss's gate_up_proj): output 2o is gate's output o and 2o + 1 up's. One product over it
    /// reads the rows in the order they are stored, where two products over every other row each
    /// stream the whole matrix. Nil when the two are not so stored.
    public static func interleaved(gate: MXFP4Matrix, up: MXFP4Matrix) -> MXFP4Matrix? {
        let blocksPerRow = gate.inputCount / 32
        guard gate.rowStride == 2, up.rowStride == 2, gate.outputCount == up.outputCount,
            gate.inputCount == up.inputCount, up.blocks == gate.blocks + blocksPerRow * 16,
            up.scales == gate.scales + blocksPerRow
        else { return nil }
        return MXFP4Matrix(
            outputCount: 2 * gate.outputCount, inputCount: gate.inputCount, blocks: gate.blocks, scales: gate.scales,
            rowStride: 1, owner: gate.owner)
    }

    /// Bytes of blocks and scales one output row reads (0.53 bytes a weight).
    public var bytesPerRow: Int { inputCount / 32 * 17 }

    /// `output = input · weightᵀ` for `rowCount` rows, batch-invariantly (each output depends only on
    /// its input row and weight row). Output columns are split over the product threads.
    /// - Parameters:
    ///   - input: [rowCount, inputCount], f32.
    ///   - output: [rowCount, outputCount], f32, overwritten.
    ///   - arithmetic: `.exact` multiplies the f32 input (the dequantized weights' product up to the
    ///     order of the sums); `.fast` quantizes the input to int8 in blocks of 32 first, as llama.cpp
    ///     does, with the tolerance of CKernels' `sy_grouped_mxfp4_product`.
    ///   - isa: the kernel path, run on the caller alone; nil uses ``KernelISA/active`` on every thread.
    public func apply(
        _ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>,
        arithmetic: BFloat16Arithmetic = .exact, isa: KernelISA? = nil
    ) {
        guard rowCount > 0 else { return }
        if arithmetic == .fast {
            if let isa {
                precondition(isa.isSupported, "MXFP4Matrix: kernel path \(isa) is not supported by this CPU")
                let status = sy_matmul_nt_mxfp4_q8_isa(
                    isa.cValue, input, rowCount, inputCount, inputCount, blocks, scales, outputCount, rowStride, output,
                    outputCount)
                precondition(status == 0, "MXFP4Matrix: out of memory for \(rowCount) × \(inputCount) quantized inputs")
            } else {
                linear(
                    input, rowCount: rowCount, inputCount: inputCount,
                    groupedMXFP4Products: [GroupedMXFP4Product(firstRow: 0, rowCount: rowCount, matrix: self, output: output)])
            }
            return
        }
        let stridedBlocks = rowStride * (inputCount / 32)
        func columns(_ range: Range<Int>) {
            let first = range.lowerBound
            sy_matmul_nt_mxfp4_isa(
                (isa ?? KernelISA.active).cValue, input, rowCount, inputCount, inputCount,
                blocks + first * stridedBlocks * 16, scales + first * stridedBlocks, range.count, rowStride,
                output + first, outputCount)
        }
        // About 64 KiB of weights a piece: enough to amortise a thread hand-off.
        let pieces = isa == nil ? min(4 * threadCount, max(1, outputCount * bytesPerRow / 65536)) : 1
        guard pieces > 1 else { return columns(0..<outputCount) }
        let width = (outputCount + pieces - 1) / pieces
        parallelFor(pieces) { piece in
            let start = piece * width
            if start < outputCount { columns(start..<min(start + width, outputCount)) }
        }
    }
}

/// One product of ``linear(_:rowCount:inputCount:groupedMXFP4Products:isa:)``: rows
/// `firstRow ..< firstRow + rowCount` of the input against `matrix`, the result
/// [rowCount, matrix.outputCount] into `output`.
public struct GroupedMXFP4Product {
    public var firstRow: Int
    public var rowCount: Int
    public var matrix: MXFP4Matrix
    public var output: UnsafeMutablePointer<Float>

    public init(firstRow: Int, rowCount: Int, matrix: MXFP4Matrix, output: UnsafeMutablePointer<Float>) {
        self.firstRow = firstRow
        self.rowCount = rowCount
        self.matrix = matrix
        self.output = output
    }
}

/// Several fast MXFP4 products (x quantized to int8, see ``MXFP4Matrix/apply(_:rowCount:into:arithmetic:isa:)``),
/// each on its own rows of one input (the gate and up rows of every expert of a layer on the tokens
/// routed to it), as one job: each input row is quantized once and the threads split all the columns
/// together. Each output is bitwise what the product alone gives.
/// - Parameters:
///   - input: [rowCount, inputCount], f32; every matrix's inputCount must be `inputCount`.
///   - products: at least one, rows inside the input; outputs must not overlap each other or the input.
public func linear(
    _ input: UnsafePointer<Float>, rowCount: Int, inputCount: Int, groupedMXFP4Products products: [GroupedMXFP4Product],
    isa: KernelISA? = nil
) {
    checkGroupedRows(products.map { ($0.firstRow, $0.rowCount) }, rowCount: rowCount, inputCount: inputCount, isa: isa)
    guard rowCount > 0 else { return }
    let parts = products.map { product -> sy_grouped_mxfp4_product in
        let matrix = product.matrix
        precondition(matrix.inputCount == inputCount, "linear: an MXFP4 matrix of \(matrix.inputCount) inputs for rows of \(inputCount)")
        return sy_grouped_mxfp4_product(
            row: product.firstRow, m: product.rowCount, blocks: matrix.blocks, scales: matrix.scales,
            n: matrix.outputCount, w_row_stride: matrix.rowStride, y: product.output, y_stride: matrix.outputCount)
    }
    let status = withExtendedLifetime(products) {
        sy_matmul_nt_mxfp4_q8_grouped_isa(
            isa?.cValue ?? sy_active_isa(), input, rowCount, inputCount, inputCount, parts, parts.count)
    }
    precondition(status == 0, "linear: out of memory for \(rowCount) × \(inputCount) quantized inputs")
}

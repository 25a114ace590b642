// Products with MXFP4 weights (e2m1 values in blocks of 32 with an e8m0 scale each, as gpt-oss's
// checkpoints store their experts); the arithmetic and its reduction shape are in CKernels' sy_mxfp4.h.
import CKernels

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

    /// Bytes of blocks and scales one output row reads (0.53 bytes a weight).
    public var bytesPerRow: Int { inputCount / 32 * 17 }

    /// `output = input · weightᵀ` for `rowCount` rows, batch-invariantly (each output depends only on
    /// its input row and weight row). Output columns are split over the product threads.
    /// - Parameters:
    ///   - input: [rowCount, inputCount], f32.
    ///   - output: [rowCount, outputCount], f32, overwritten.
    ///   - isa: the kernel path, run on the caller alone; nil uses ``KernelISA/active`` on every thread.
    public func apply(
        _ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>, isa: KernelISA? = nil
    ) {
        guard rowCount > 0 else { return }
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

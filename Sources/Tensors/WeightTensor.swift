// Vocabulary: a weight tensor is a checkpoint matrix in the element type the kernels read it in:
// f32 (a `FloatTensor`, owned or borrowed from the memory map), bf16 kept exactly as stored
// (borrowed from the memory map or from a ``WeightArena`` copy of it, or owned bit patterns when the
// file cannot be used in place), or
// FP8: float8_e4m3fn bytes with an f32 scale per block of weights (`weight_scale_inv`, as DeepSeek-V3
// ships its linear layers), the bytes borrowed from the memory map; or q8: int8 in blocks of 32 columns
// with an f32 scale per block, quantized at load time (`--quantize q8`) into memory of its own.
// bf16 and FP8 weights are never copied to f32: the kernels widen them on the fly.

/// The block of an FP8 weight that shares one scale: `rows × columns` weights
/// (`quantization_config.weight_block_size`, [128, 128] in DeepSeek-V3's checkpoints).
public struct FP8BlockSize: Sendable, Hashable, CustomStringConvertible {
    /// Weight rows (outputs) per block.
    public var rows: Int
    /// Weight columns (inputs) per block.
    public var columns: Int

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
    }

    /// The scale tensor's shape for a weight of `shape` [rows, columns]: the blocks that cover it, the
    /// last ones partial when a dimension is not a multiple of the block's: [⌈rows / block rows⌉,
    /// ⌈columns / block columns⌉].
    public func scaleShape(forWeight shape: [Int]) -> [Int] {
        precondition(shape.count == 2 && rows > 0 && columns > 0, "scaleShape: a matrix and a positive block")
        return [(shape[0] + rows - 1) / rows, (shape[1] + columns - 1) / columns]
    }

    public var description: String { "[\(rows), \(columns)]" }
}

/// A read-only weight tensor, row-major: f32, bf16, or FP8 with block scales.
///
/// `@unchecked Sendable`: a borrowed bf16 or FP8 tensor points into a read-only (PROT_READ) mapping
/// that its `owner` unmaps only on deinit; the tensor holds the owner, so the memory stays valid and is
/// never written while any copy of the tensor exists. The f32 case is a `FloatTensor` (Sendable).
public struct WeightTensor: @unchecked Sendable {
    private enum Storage {
        case float(FloatTensor)
        case ownedBFloat16([UInt16])
        case borrowedBFloat16(UnsafePointer<UInt16>, owner: any AnyObject)
        case borrowedFP8(UnsafePointer<UInt8>, scales: FloatTensor, block: FP8BlockSize, owner: any AnyObject)
        case q8(QuantizedStorage, blocksPerRow: Int)
        case amxPacked(PackedBFloat16Storage)
    }

    /// The elements as the kernels read them, valid only inside ``WeightTensor/withElements(_:)``.
    public enum Elements {
        /// `count` f32 values.
        case f32(UnsafePointer<Float>)
        /// `count` bf16 bit patterns (little-endian in memory, 2-byte aligned).
        case bf16(UnsafePointer<UInt16>)
        /// `count` float8_e4m3fn bytes [rows, columns] and their f32 scales
        /// (``FP8BlockSize/scaleShape(forWeight:)``): weight [r, c] is
        /// e4m3(bytes[r, c]) · scales[r / block.rows, c / block.columns].
        case fp8(UnsafePointer<UInt8>, scales: UnsafePointer<Float>, block: FP8BlockSize)
        /// int8 values [rows, blocksPerRow × 32] (zero past the last column) and their f32 scales
        /// [rows, blocksPerRow]: weight [r, c] ≈ values[r, c] · scales[r, c / 32]. The product quantizes
        /// its input the same way (see `quantizeQ8` in Kernels).
        case q8(UnsafePointer<Int8>, scales: UnsafePointer<Float>, blocksPerRow: Int)
        /// bf16 bit patterns packed for the amx path (`packForAMX` in Kernels): for each 16 rows and
        /// each 32 columns, 512 of them, 32 a line, line j holding columns 2j and 2j + 1 of the 16 rows
        /// (zero past the last row and column). Only the amx path's products read it.
        case amxPacked(UnsafePointer<UInt16>)
    }

    /// The shape, outermost dimension first.
    public let shape: [Int]
    private let storage: Storage

    /// An f32 weight (owned or borrowed).
    public init(_ tensor: FloatTensor) {
        shape = tensor.shape
        storage = .float(tensor)
    }

    /// An owned bf16 weight; `bits.count` must equal the product of `shape`.
    public init(shape: [Int], bfloat16Bits bits: [UInt16]) {
        precondition(shape.reduce(1, *) == bits.count, "WeightTensor: \(bits.count) values for shape \(shape)")
        self.shape = shape
        storage = .ownedBFloat16(bits)
    }

    /// A bf16 weight borrowing `shape.product` bit patterns at `pointer`, valid while `owner` lives.
    /// The caller guarantees the memory is 2-byte aligned, little-endian, read-only and owned by `owner`.
    public init(shape: [Int], borrowingBFloat16 pointer: UnsafePointer<UInt16>, owner: any AnyObject) {
        self.shape = shape
        storage = .borrowedBFloat16(pointer, owner: owner)
    }

    /// An FP8 weight borrowing `shape.product` float8_e4m3fn bytes at `pointer` (valid while `owner`
    /// lives) with its scales, [⌈rows / block.rows⌉, ⌈columns / block.columns⌉] f32.
    /// The caller guarantees a matrix shape, the scales' shape, and read-only memory owned by `owner`.
    public init(
        shape: [Int], borrowingFP8 pointer: UnsafePointer<UInt8>, scales: FloatTensor, block: FP8BlockSize,
        owner: any AnyObject
    ) {
        precondition(shape.count == 2, "WeightTensor: an FP8 weight is a matrix, got shape \(shape)")
        precondition(
            scales.shape == block.scaleShape(forWeight: shape),
            "WeightTensor: FP8 scales of shape \(scales.shape) for a weight \(shape) in blocks \(block)")
        self.shape = shape
        storage = .borrowedFP8(pointer, scales: scales, block: block, owner: owner)
    }

    /// A q8 weight [rows, columns]: `storage` holds rows × `blocksPerRow` × 32 values and rows ×
    /// `blocksPerRow` scales, `blocksPerRow` = ⌈columns / 32⌉ rounded up to even (as the quantizer in
    /// Kernels writes them).
    public init(shape: [Int], q8 storage: QuantizedStorage, blocksPerRow: Int) {
        precondition(shape.count == 2, "WeightTensor: a q8 weight is a matrix, got shape \(shape)")
        let blocks = (shape[1] + 31) / 32
        precondition(blocksPerRow == blocks + blocks % 2, "WeightTensor: \(blocksPerRow) q8 blocks a row of \(shape[1])")
        precondition(
            storage.values.count == max(1, shape[0] * blocksPerRow * 32) && storage.scales.count == max(1, shape[0] * blocksPerRow),
            "WeightTensor: q8 storage of \(storage.values.count) values and \(storage.scales.count) scales for \(shape)")
        self.shape = shape
        self.storage = .q8(storage, blocksPerRow: blocksPerRow)
    }

    /// A bf16 weight [rows, columns] packed for the amx path (see ``Elements/amxPacked(_:)``): `storage`
    /// holds ⌈rows / 16⌉ × ⌈columns / 32⌉ × 512 elements.
    public init(shape: [Int], amxPacked storage: PackedBFloat16Storage) {
        precondition(shape.count == 2, "WeightTensor: a packed weight is a matrix, got shape \(shape)")
        precondition(
            storage.values.count == max(1, (shape[0] + 15) / 16 * ((shape[1] + 31) / 32) * 512),
            "WeightTensor: \(storage.values.count) packed elements for \(shape)")
        self.shape = shape
        self.storage = .amxPacked(storage)
    }

    /// The element type the kernels compute in: `.f32` or `.bf16`. An FP8 weight is `.f32`: the kernels
    /// compute with its dequantized values exactly as with an f32 weight holding them (see ``isFP8``).
    /// A q8 weight is `.f32` too (its products take f32 inputs; see ``isQ8``).
    public var dtype: DType {
        switch storage {
        case .float, .borrowedFP8, .q8: .f32
        case .ownedBFloat16, .borrowedBFloat16, .amxPacked: .bf16
        }
    }

    /// This weight with its bf16 or FP8 bytes copied from the checkpoint's mapping (or from an array:
    /// bf16 values stored unaligned) into `arena` (see ``WeightArena``): the same values, read from
    /// memory of the process's own, copied by `copier` (a plain copy unless given). Weights held otherwise
    /// (f32, q8), and a weight the arena could not take, are returned as they are.
    public func resident(in arena: WeightArena, copier: WeightArena.Copier? = nil) -> WeightTensor {
        let count = shape.reduce(1, *)
        switch storage {
        case .borrowedBFloat16(let pointer, _):
            guard let copy = arena.copy(pointer, byteCount: count * 2, copier: copier) else { return self }
            return WeightTensor(shape: shape, borrowingBFloat16: copy.assumingMemoryBound(to: UInt16.self), owner: arena)
        case .ownedBFloat16(let bits):
            guard
                let copy = bits.withUnsafeBytes({ bytes in
                    bytes.baseAddress.flatMap { arena.copy($0, byteCount: bytes.count, copier: copier) }
                })
            else { return self }
            return WeightTensor(shape: shape, borrowingBFloat16: copy.assumingMemoryBound(to: UInt16.self), owner: arena)
        case .borrowedFP8(let pointer, let scales, let block, _):
            guard let copy = arena.copy(pointer, byteCount: count, copier: copier) else { return self }
            return WeightTensor(
                shape: shape, borrowingFP8: copy.assumingMemoryBound(to: UInt8.self), scales: scales, block: block,
                owner: arena)
        case .float, .q8, .amxPacked:
            return self
        }
    }

    /// Whether the weight is held as q8 (int8 in blocks of 32 with a scale each, quantized at load).
    public var isQ8: Bool {
        if case .q8 = storage { return true }
        return false
    }

    /// Whether the weight is held packed for the amx path (see ``Elements/amxPacked(_:)``).
    public var isAMXPacked: Bool {
        if case .amxPacked = storage { return true }
        return false
    }

    /// Whether the weight is stored as FP8 (e4m3fn bytes with block scales).
    public var isFP8: Bool {
        if case .borrowedFP8 = storage { return true }
        return false
    }

    /// Bytes the weight occupies as held: 4, 2 or 1 a value, plus an FP8 weight's scales.
    public var storedByteCount: Int {
        switch storage {
        case .float: count * 4
        case .ownedBFloat16, .borrowedBFloat16: count * 2
        case .borrowedFP8(_, let scales, _, _): count + scales.count * 4
        case .q8(let storage, _): storage.values.count + storage.scales.count * 4
        case .amxPacked(let storage): storage.values.count * 2
        }
    }

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Whether the data is borrowed from a memory map rather than owned.
    public var isBorrowed: Bool {
        switch storage {
        case .float(let tensor): tensor.isBorrowed
        case .ownedBFloat16, .q8, .amxPacked: false
        case .borrowedBFloat16, .borrowedFP8: true
        }
    }

    /// Calls `body` with the elements (valid only during the call; never dereference them when
    /// `count` is 0).
    public func withElements<Result>(_ body: (Elements) throws -> Result) rethrows -> Result {
        switch storage {
        case .float(let tensor):
            return try tensor.withUnsafePointer { try body(.f32($0)) }
        case .borrowedBFloat16(let pointer, let owner):
            return try withExtendedLifetime(owner) { try body(.bf16(pointer)) }
        case .ownedBFloat16(let bits):
            return try bits.withUnsafeBufferPointer { buffer in
                try body(.bf16(buffer.baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<UInt16>.alignment)!))
            }
        case .borrowedFP8(let pointer, let scales, let block, let owner):
            return try withExtendedLifetime(owner) {
                try scales.withUnsafePointer { try body(.fp8(pointer, scales: $0, block: block)) }
            }
        case .q8(let storage, let blocksPerRow):
            return try withExtendedLifetime(storage) {
                try body(
                    .q8(
                        UnsafePointer(storage.values.baseAddress!), scales: UnsafePointer(storage.scales.baseAddress!),
                        blocksPerRow: blocksPerRow))
            }
        case .amxPacked(let storage):
            return try withExtendedLifetime(storage) { try body(.amxPacked(UnsafePointer(storage.values.baseAddress!))) }
        }
    }

    /// Writes row `row` of a matrix as f32 (exact for bf16; dequantized for FP8, each value
    /// e4m3 · scale rounded once, as the kernels compute it; for q8, value · scale) to `destination`.
    /// - Parameters:
    ///   - row: in `0 ..< shape[0]`.
    ///   - destination: [shape[1]], f32.
    public func copyRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(shape.count == 2 && (0..<shape[0]).contains(row), "copyRow: row \(row) of shape \(shape)")
        let width = shape[1]
        withElements { elements in
            switch elements {
            case .f32(let values):
                destination.update(from: values + row * width, count: width)
            case .bf16(let bits):
                let source = bits + row * width
                for column in 0..<width { destination[column] = floatFromBFloat16Bits(source[column]) }
            case .fp8(let bytes, let scales, let block):
                let source = bytes + row * width
                let scaleRow = scales + (row / block.rows) * ((width + block.columns - 1) / block.columns)
                for column in 0..<width {
                    destination[column] = floatFromFloat8E4M3(source[column]) * scaleRow[column / block.columns]
                }
            case .q8(let values, let scales, let blocksPerRow):
                let source = values + row * blocksPerRow * 32
                let scaleRow = scales + row * blocksPerRow
                for column in 0..<width { destination[column] = Float(source[column]) * scaleRow[column / 32] }
            case .amxPacked(let bits):
                let group = bits + (row / 16) * ((width + 31) / 32) * 512 + 2 * (row % 16)
                for column in 0..<width {
                    destination[column] = floatFromBFloat16Bits(group[(column / 32) * 512 + (column % 32 / 2) * 32 + column % 2])
                }
            }
        }
    }

    /// The values as f32 (a copy; exact for bf16; dequantized for FP8 and q8 as ``copyRow(_:into:)`` does).
    public var values: [Float] {
        if case .float(let tensor) = storage { return tensor.values }
        if isFP8 || isQ8 || isAMXPacked {
            guard count > 0 else { return [] }
            let (rows, width) = (shape[0], shape[1])
            return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                for row in 0..<rows { copyRow(row, into: buffer.baseAddress! + row * width) }
                initialized = count
            }
        }
        return withElements { elements in
            guard case .bf16(let bits) = elements else { return [] }
            return (0..<count).map { floatFromBFloat16Bits(bits[$0]) }
        }
    }
}

/// The elements of a bf16 matrix packed for the amx path, in a ``WeightArena`` (huge pages) or in memory
/// of their own (zeroed), freed with the last reference (the arena's, with the arena).
///
/// `@unchecked Sendable`: written by the packer before the storage is shared, read-only after.
public final class PackedBFloat16Storage: @unchecked Sendable {
    public let values: UnsafeMutableBufferPointer<UInt16>
    /// The arena holding `values`; nil: allocated here and freed on deinit.
    private let arena: WeightArena?

    /// `count` elements (at least one), in `arena` when it can take them.
    public init(count: Int, arena: WeightArena? = nil) {
        let count = max(1, count)
        if let arena, let memory = arena.allocate(byteCount: count * MemoryLayout<UInt16>.stride) {
            values = UnsafeMutableBufferPointer(start: memory.bindMemory(to: UInt16.self, capacity: count), count: count)
            self.arena = arena
        } else {
            values = .allocate(capacity: count)
            values.initialize(repeating: 0)
            self.arena = nil
        }
    }

    deinit {
        if arena == nil { values.deallocate() }
    }
}

/// A q8 matrix's values and scales, in a ``WeightArena`` (huge pages) or in memory of their own,
/// freed with the last reference (the arena's, with the arena).
///
/// `@unchecked Sendable`: written by the quantizer before the storage is shared, read-only after.
public final class QuantizedStorage: @unchecked Sendable {
    public let values: UnsafeMutableBufferPointer<Int8>
    public let scales: UnsafeMutableBufferPointer<Float>
    /// The arena holding `values` and `scales`; nil: they were allocated here and are freed on deinit.
    private let arena: WeightArena?

    /// `valueCount` values and `scaleCount` scales (at least one each, so that the base addresses
    /// exist), all zero, in `arena` when it can take them, to be written by the quantizer before the
    /// storage is shared (and before the arena is sealed).
    public init(valueCount: Int, scaleCount: Int, arena: WeightArena? = nil) {
        let (valueCount, scaleCount) = (max(1, valueCount), max(1, scaleCount))
        if let arena, let valueMemory = arena.allocate(byteCount: valueCount),
            let scaleMemory = arena.allocate(byteCount: scaleCount * MemoryLayout<Float>.stride)
        {
            // Fresh arena bytes are zero (anonymous memory, never written before).
            values = UnsafeMutableBufferPointer(
                start: valueMemory.bindMemory(to: Int8.self, capacity: valueCount), count: valueCount)
            scales = UnsafeMutableBufferPointer(
                start: scaleMemory.bindMemory(to: Float.self, capacity: scaleCount), count: scaleCount)
            self.arena = arena
        } else {
            values = .allocate(capacity: valueCount)
            scales = .allocate(capacity: scaleCount)
            values.initialize(repeating: 0)
            scales.initialize(repeating: 0)
            self.arena = nil
        }
    }

    /// A copy of `values` and `scales`, in `arena` when it can take them.
    public convenience init(values: [Int8], scales: [Float], arena: WeightArena? = nil) {
        self.init(valueCount: values.count, scaleCount: scales.count, arena: arena)
        _ = self.values.update(fromContentsOf: values)
        _ = self.scales.update(fromContentsOf: scales)
    }

    deinit {
        guard arena == nil else { return }
        values.deallocate()
        scales.deallocate()
    }
}

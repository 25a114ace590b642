// Vocabulary: a weight tensor is a checkpoint matrix in the element type the kernels read it in:
// f32 (a `FloatTensor`, owned or borrowed from the memory map), or bf16 kept exactly as stored
// (borrowed from the memory map, or owned bit patterns when the file cannot be used in place).
// bf16 weights are never copied to f32: the kernels widen them on the fly.

/// A read-only weight tensor, row-major, f32 or bf16.
///
/// `@unchecked Sendable`: a borrowed bf16 tensor points into a read-only (PROT_READ) mapping that
/// its `owner` unmaps only on deinit; the tensor holds the owner, so the memory stays valid and is
/// never written while any copy of the tensor exists. The f32 case is a `FloatTensor` (Sendable).
public struct WeightTensor: @unchecked Sendable {
    private enum Storage {
        case float(FloatTensor)
        case ownedBFloat16([UInt16])
        case borrowedBFloat16(UnsafePointer<UInt16>, owner: any AnyObject)
    }

    /// The elements as the kernels read them, valid only inside ``WeightTensor/withElements(_:)``.
    public enum Elements {
        /// `count` f32 values.
        case f32(UnsafePointer<Float>)
        /// `count` bf16 bit patterns (little-endian in memory, 2-byte aligned).
        case bf16(UnsafePointer<UInt16>)
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

    /// The element type the kernels read: `.f32` or `.bf16`.
    public var dtype: DType {
        if case .float = storage { return .f32 }
        return .bf16
    }

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Whether the data is borrowed from a memory map rather than owned.
    public var isBorrowed: Bool {
        switch storage {
        case .float(let tensor): tensor.isBorrowed
        case .ownedBFloat16: false
        case .borrowedBFloat16: true
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
        }
    }

    /// Writes row `row` of a matrix as f32 (exact for bf16) to `destination`.
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
            }
        }
    }

    /// The values as f32 (a copy; exact for bf16).
    public var values: [Float] {
        if case .float(let tensor) = storage { return tensor.values }
        return withElements { elements in
            guard case .bf16(let bits) = elements else { return [] }
            return (0..<count).map { floatFromBFloat16Bits(bits[$0]) }
        }
    }
}

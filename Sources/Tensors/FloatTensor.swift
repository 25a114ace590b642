// Vocabulary: a weight tensor is read-only f32 data with a shape. It is either owned (converted
// from bf16/f16, or built in memory) or borrowed in place from a memory-mapped checkpoint file,
// which its `owner` keeps mapped for as long as the tensor lives.

/// A read-only f32 tensor, row-major, owned or borrowed from a memory map.
///
/// `@unchecked Sendable`: a borrowed tensor points into a read-only (PROT_READ) mapping that its
/// `owner` unmaps only on deinit; the tensor holds the owner, so the memory stays valid and is never
/// written while any copy of the tensor exists.
public struct FloatTensor: @unchecked Sendable {
    private enum Storage {
        case owned([Float])
        case borrowed(UnsafePointer<Float>, owner: any AnyObject)
    }

    /// The shape, outermost dimension first.
    public let shape: [Int]
    private let storage: Storage

    /// An owned tensor; `values.count` must equal the product of `shape`.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "FloatTensor: \(values.count) values for shape \(shape)")
        self.shape = shape
        storage = .owned(values)
    }

    /// A tensor borrowing `shape.product` f32 values at `pointer`, valid while `owner` lives.
    /// The caller guarantees the memory is aligned, read-only and owned by `owner`.
    public init(shape: [Int], borrowing pointer: UnsafePointer<Float>, owner: any AnyObject) {
        self.shape = shape
        storage = .borrowed(pointer, owner: owner)
    }

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Whether the data is borrowed from a memory map rather than owned.
    public var isBorrowed: Bool {
        if case .borrowed = storage { return true }
        return false
    }

    /// Calls `body` with a pointer to the `count` values (valid only during the call; never
    /// dereference it when `count` is 0).
    public func withUnsafePointer<Result>(_ body: (UnsafePointer<Float>) throws -> Result) rethrows -> Result {
        switch storage {
        case .borrowed(let pointer, let owner):
            return try withExtendedLifetime(owner) { try body(pointer) }
        case .owned(let values):
            return try values.withUnsafeBufferPointer { buffer in
                try body(buffer.baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<Float>.alignment)!)
            }
        }
    }

    /// The values as an array (a copy when borrowed).
    public var values: [Float] {
        switch storage {
        case .owned(let values): return values
        case .borrowed(let pointer, let owner):
            return withExtendedLifetime(owner) { Array(UnsafeBufferPointer(start: pointer, count: count)) }
        }
    }
}

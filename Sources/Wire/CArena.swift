// Memory for building protobuf-c structs from Swift values: every string, array and sub-message a
// header points to is allocated here and freed together once the header is packed.

/// Owns the C memory of one header being encoded. Not shared across threads.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        // Everything allocated here holds trivial C types, so no deinitialization is needed.
        for allocation in allocations { allocation.deallocate() }
    }

    /// A pointer to a copy of `value`, valid while the arena lives.
    func box<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        pointer.initialize(to: value)
        allocations.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    /// A C array holding `values` (nil when empty, as protobuf-c expects with a zero count).
    func array<C: Collection>(_ values: C) -> UnsafeMutablePointer<C.Element>? {
        let count = values.count
        guard count > 0 else { return nil }
        let pointer = UnsafeMutablePointer<C.Element>.allocate(capacity: count)
        var next = pointer
        for value in values {
            next.initialize(to: value)
            next += 1
        }
        allocations.append(UnsafeMutableRawPointer(pointer))
        return pointer
    }

    /// A NUL-terminated UTF-8 copy of `string`. A NUL inside `string` ends it on the wire.
    func string(_ string: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = string.utf8CString
        return array(utf8)!  // utf8CString always holds at least the terminating NUL.
    }
}

/// `value` as the wire's uint32.
/// - Precondition: 0 ≤ value ≤ UInt32.max (values come from this process, not the network).
func wireUInt32(_ value: Int, _ what: @autoclosure () -> String) -> UInt32 {
    guard let wire = UInt32(exactly: value) else {
        preconditionFailure("\(what()) is \(value), which does not fit the wire's uint32")
    }
    return wire
}

/// The Swift string of a protobuf-c string field (invalid UTF-8 is repaired, nil is empty).
func swiftString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

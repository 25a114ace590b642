// Top-k selection for the router.

/// The indices of the `k` largest of `count` values, largest first.
///
/// Ties go to the lowest index first (what `torch.topk` returns on CPU for the router's small
/// rows), so routing is deterministic. NaN is treated as smaller than every number.
/// - Parameter values: [count], f32.
/// - Returns: [k] indices into `values`.
public func topK(_ values: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
    precondition(k >= 0 && k <= count, "topK: k (\(k)) must be between 0 and count (\(count))")
    var chosen: [Int] = []
    chosen.reserveCapacity(k)
    // k is small (2 for Mixtral): insertion into a sorted prefix is cheaper than sorting.
    for index in 0..<count {
        let value = values[index]
        if value.isNaN && chosen.count == k { continue }
        var position = chosen.count
        while position > 0 && isGreater(value, than: values[chosen[position - 1]]) { position -= 1 }
        if position < k {
            chosen.insert(index, at: position)
            if chosen.count > k { chosen.removeLast() }
        }
    }
    return chosen
}

/// Array form of ``topK(_:count:k:)``.
/// - Returns: [k] indices, largest value first, ties lowest index first.
public func topK(_ values: [Float], k: Int) -> [Int] {
    values.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return [] }
        return topK(base, count: buffer.count, k: k)
    }
}

/// Strictly greater, with NaN below everything (so a NaN never displaces a number).
@inline(__always)
private func isGreater(_ a: Float, than b: Float) -> Bool {
    if a.isNaN { return false }
    if b.isNaN { return true }
    return a > b
}

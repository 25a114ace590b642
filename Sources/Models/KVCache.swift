// Vocabulary: the KV cache holds, per decoder layer, the rotated keys and the values of every
// token of one sequence seen so far, so a decode step attends without recomputing the prefix.

/// The keys and values of one sequence, per layer, preallocated for `capacity` tokens.
public struct KVCache: Sendable {
    /// Tokens the cache can hold.
    public let capacity: Int
    /// Tokens cached so far (the next token's position).
    public internal(set) var count: Int
    /// Decoder layers.
    public let layerCount: Int
    /// Floats per token per layer: key/value heads × head dimension.
    public let rowWidth: Int
    /// Per layer, [capacity, keyValueHeads, headDimension], f32; rows `0 ..< count` are valid.
    var keys: [[Float]]
    /// Per layer, [capacity, keyValueHeads, headDimension], f32; rows `0 ..< count` are valid.
    var values: [[Float]]

    /// An empty cache for `layerCount` layers of `rowWidth` floats per token.
    init(capacity: Int, layerCount: Int, rowWidth: Int) {
        precondition(capacity >= 0 && layerCount > 0 && rowWidth > 0, "KVCache: invalid dimensions")
        self.capacity = capacity
        self.count = 0
        self.layerCount = layerCount
        self.rowWidth = rowWidth
        keys = Array(repeating: [Float](repeating: 0, count: capacity * rowWidth), count: layerCount)
        values = keys
    }

    /// Forgets every cached token (the storage is kept for reuse).
    public mutating func removeAll() { count = 0 }

    /// Forgets the tokens after the first `newCount` (e.g. to retry a step).
    public mutating func truncate(to newCount: Int) {
        precondition(newCount >= 0 && newCount <= count, "KVCache: cannot truncate \(count) tokens to \(newCount)")
        count = newCount
    }
}

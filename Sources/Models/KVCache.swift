// Vocabulary: the KV cache holds, per decoder layer, the rotated keys and the values of every
// token of one sequence seen so far, so a decode step attends without recomputing the prefix.
import Kernels
public import Tensors

/// The keys and values of one sequence, per layer, preallocated for `capacity` tokens.
public struct KVCache: Sendable {
    /// Tokens the cache can hold.
    public let capacity: Int
    /// Tokens cached so far (the next token's position).
    public internal(set) var count: Int
    /// Per decoder layer, values per token: key/value heads × head dimension.
    public let rowWidths: [Int]
    /// How keys and values are stored: `.f32`, or `.bf16` (each value rounded to nearest even when
    /// written, as transformers' bf16 models cache them; half the bytes for attention to read).
    public let dtype: DType
    /// Per layer, [capacity, keyValueHeads, headDimension], f32 (empty when `dtype` is bf16); rows
    /// `0 ..< count` are valid.
    private var keys: [[Float]]
    /// Per layer, like `keys`.
    private var values: [[Float]]
    /// Per layer, [capacity, keyValueHeads, headDimension], bf16 bit patterns (empty when `dtype`
    /// is f32); rows `0 ..< count` are valid.
    private var bfloat16Keys: [[UInt16]]
    /// Per layer, like `bfloat16Keys`.
    private var bfloat16Values: [[UInt16]]

    /// An empty cache for layers of `rowWidths[layer]` values per token, stored as `dtype` (f32 or bf16).
    init(capacity: Int, rowWidths: [Int], dtype: DType = .f32) {
        precondition(capacity >= 0 && !rowWidths.isEmpty && rowWidths.allSatisfy { $0 > 0 }, "KVCache: invalid dimensions")
        precondition(dtype == .f32 || dtype == .bf16, "KVCache: \(dtype) is not a cache dtype (f32 or bf16)")
        self.capacity = capacity
        self.count = 0
        self.rowWidths = rowWidths
        self.dtype = dtype
        keys = dtype == .f32 ? rowWidths.map { [Float](repeating: 0, count: capacity * $0) } : []
        values = keys
        bfloat16Keys = dtype == .bf16 ? rowWidths.map { [UInt16](repeating: 0, count: capacity * $0) } : []
        bfloat16Values = bfloat16Keys
    }

    /// An empty cache for `layerCount` layers of `rowWidth` values per token, stored as `dtype`.
    init(capacity: Int, layerCount: Int, rowWidth: Int, dtype: DType = .f32) {
        self.init(capacity: capacity, rowWidths: Array(repeating: rowWidth, count: layerCount), dtype: dtype)
    }

    /// Decoder layers.
    public var layerCount: Int { rowWidths.count }

    /// Forgets every cached token (the storage is kept for reuse).
    public mutating func removeAll() { count = 0 }

    /// Forgets the tokens after the first `newCount` (e.g. to retry a step).
    public mutating func truncate(to newCount: Int) {
        precondition(newCount >= 0 && newCount <= count, "KVCache: cannot truncate \(count) tokens to \(newCount)")
        count = newCount
    }

    /// Writes `rowCount` rows of keys and values (f32, `rowWidth` each) at positions `first ..< first +
    /// rowCount` of `layer`, rounded to bf16 when the cache is bf16. `count` does not change.
    mutating func store(
        layer: Int, at first: Int, rowCount: Int, keys newKeys: UnsafePointer<Float>, values newValues: UnsafePointer<Float>
    ) {
        precondition(first >= 0 && first + rowCount <= capacity, "KVCache: rows \(first) ..< \(first + rowCount) beyond \(capacity)")
        let rowWidth = rowWidths[layer]
        let start = first * rowWidth, count = rowCount * rowWidth
        switch dtype {
        case .bf16:
            bfloat16Keys[layer].withUnsafeMutableBufferPointer { target in
                for index in 0..<count { target[start + index] = bfloat16Bits(from: newKeys[index]) }
            }
            bfloat16Values[layer].withUnsafeMutableBufferPointer { target in
                for index in 0..<count { target[start + index] = bfloat16Bits(from: newValues[index]) }
            }
        default:
            keys[layer].withUnsafeMutableBufferPointer { target in
                (target.baseAddress! + start).update(from: newKeys, count: count)
            }
            values[layer].withUnsafeMutableBufferPointer { target in
                (target.baseAddress! + start).update(from: newValues, count: count)
            }
        }
    }

    /// Calls `body` with the cached rows of `layer` (every row from position 0, in place).
    func withRows<Result>(layer: Int, _ body: (CachedKeyValues) -> Result) -> Result {
        switch dtype {
        case .bf16:
            bfloat16Keys[layer].withUnsafeBufferPointer { k in
                bfloat16Values[layer].withUnsafeBufferPointer { v in
                    body(.bf16(keys: k.baseAddress!, values: v.baseAddress!))
                }
            }
        default:
            keys[layer].withUnsafeBufferPointer { k in
                values[layer].withUnsafeBufferPointer { v in body(.f32(keys: k.baseAddress!, values: v.baseAddress!)) }
            }
        }
    }
}

// Vocabulary: the KV cache holds, per decoder layer, the rotated keys and the values of every
// token of one sequence seen so far, so a decode step attends without recomputing the prefix.
// A multi-head latent attention layer (DeepSeek) caches its compressed latent as the key row and no
// value row (value width 0): its keys and values are both expanded from the latent.
import Kernels
public import Tensors

/// The keys and values of one sequence, per layer, preallocated for `capacity` tokens.
public struct KVCache: Sendable {
    /// Tokens the cache can hold.
    public let capacity: Int
    /// Tokens cached so far (the next token's position).
    public internal(set) var count: Int
    /// Per decoder layer, key values per token: key/value heads × head dimension (MLA: the latent row).
    public let rowWidths: [Int]
    /// Per decoder layer, value values per token: `rowWidths` for standard attention, 0 for MLA.
    public let valueRowWidths: [Int]
    /// How keys and values are stored: `.f32`, or `.bf16` (each value rounded to nearest even when
    /// written, as transformers' bf16 models cache them; half the bytes for attention to read).
    public let dtype: DType
    /// Per layer, [capacity, keyValueHeads, headDimension], f32 (empty when `dtype` is bf16); rows
    /// `0 ..< count` are valid.
    private var keys: [[Float]]
    /// Per layer, [capacity, value row width], f32 (empty when `dtype` is bf16 or the width is 0).
    private var values: [[Float]]
    /// Per layer, [capacity, keyValueHeads, headDimension], bf16 bit patterns (empty when `dtype`
    /// is f32); rows `0 ..< count` are valid.
    private var bfloat16Keys: [[UInt16]]
    /// Per layer, like `bfloat16Keys`.
    private var bfloat16Values: [[UInt16]]

    /// An empty cache for layers of `rowWidths[layer]` key and `valueRowWidths[layer]` value values
    /// per token (nil: as many as keys), stored as `dtype` (f32 or bf16).
    init(capacity: Int, rowWidths: [Int], valueRowWidths: [Int]? = nil, dtype: DType = .f32) {
        let valueWidths = valueRowWidths ?? rowWidths
        precondition(
            capacity >= 0 && !rowWidths.isEmpty && rowWidths.allSatisfy { $0 > 0 }
                && valueWidths.count == rowWidths.count && valueWidths.allSatisfy { $0 >= 0 },
            "KVCache: invalid dimensions")
        precondition(dtype == .f32 || dtype == .bf16, "KVCache: \(dtype) is not a cache dtype (f32 or bf16)")
        self.capacity = capacity
        self.count = 0
        self.rowWidths = rowWidths
        self.valueRowWidths = valueWidths
        self.dtype = dtype
        keys = dtype == .f32 ? rowWidths.map { [Float](repeating: 0, count: capacity * $0) } : []
        values = dtype == .f32 ? valueWidths.map { [Float](repeating: 0, count: capacity * $0) } : []
        bfloat16Keys = dtype == .bf16 ? rowWidths.map { [UInt16](repeating: 0, count: capacity * $0) } : []
        bfloat16Values = dtype == .bf16 ? valueWidths.map { [UInt16](repeating: 0, count: capacity * $0) } : []
    }

    /// Bytes one token takes in every layer of this cache: keys and values, at the cache dtype.
    public var bytesPerToken: Int {
        (rowWidths.reduce(0, +) + valueRowWidths.reduce(0, +)) * (dtype == .bf16 ? 2 : 4)
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

    /// Writes `rowCount` rows of keys (f32, `rowWidths[layer]` each) and values (f32,
    /// `valueRowWidths[layer]` each; nil when that is 0) at positions `first ..< first + rowCount` of
    /// `layer`, rounded to bf16 when the cache is bf16. `count` does not change.
    mutating func store(
        layer: Int, at first: Int, rowCount: Int, keys newKeys: UnsafePointer<Float>,
        values newValues: UnsafePointer<Float>?
    ) {
        precondition(first >= 0 && first + rowCount <= capacity, "KVCache: rows \(first) ..< \(first + rowCount) beyond \(capacity)")
        precondition(
            (newValues == nil) == (valueRowWidths[layer] == 0), "KVCache: values given for no value row, or none")
        let rows = first..<(first + rowCount)
        Self.write(
            newKeys, rows: rows, width: rowWidths[layer], f32: &keys, bf16: &bfloat16Keys, layer: layer, dtype: dtype)
        if let newValues {
            Self.write(
                newValues, rows: rows, width: valueRowWidths[layer], f32: &values, bf16: &bfloat16Values, layer: layer,
                dtype: dtype)
        }
    }

    /// Copies `rows.count` rows of `width` f32 values into `layer`'s storage of the cache dtype.
    private static func write(
        _ source: UnsafePointer<Float>, rows: Range<Int>, width: Int, f32: inout [[Float]], bf16: inout [[UInt16]],
        layer: Int, dtype: DType
    ) {
        let start = rows.lowerBound * width, count = rows.count * width
        switch dtype {
        case .bf16:
            bf16[layer].withUnsafeMutableBufferPointer { target in
                for index in 0..<count { target[start + index] = bfloat16Bits(from: source[index]) }
            }
        default:
            f32[layer].withUnsafeMutableBufferPointer { target in
                (target.baseAddress! + start).update(from: source, count: count)
            }
        }
    }

    /// Calls `body` with the cached rows of `layer` (every row from position 0, in place). A layer
    /// without value rows passes its keys' pointer as the values' (the caller reads only the keys).
    func withRows<Result>(layer: Int, _ body: (CachedKeyValues) -> Result) -> Result {
        switch dtype {
        case .bf16:
            bfloat16Keys[layer].withUnsafeBufferPointer { k in
                bfloat16Values[layer].withUnsafeBufferPointer { v in
                    body(.bf16(keys: k.baseAddress!, values: v.baseAddress ?? k.baseAddress!))
                }
            }
        default:
            keys[layer].withUnsafeBufferPointer { k in
                values[layer].withUnsafeBufferPointer { v in
                    body(.f32(keys: k.baseAddress!, values: v.baseAddress ?? k.baseAddress!))
                }
            }
        }
    }
}

/// The element type of a tensor frame.
public enum WireDType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 binary32, little-endian, 4 bytes.
    case f32 = 0
    /// bfloat16: the upper 16 bits of an f32 (rounded to nearest even), little-endian, 2 bytes.
    case bf16 = 1

    /// Bytes per element: 4 for f32, 2 for bf16.
    public var byteCount: Int {
        switch self {
        case .f32: 4
        case .bf16: 2
        }
    }

    /// `f32` or `bf16`.
    public var description: String {
        switch self {
        case .f32: "f32"
        case .bf16: "bf16"
        }
    }
}

/// Conversions between `[Float]` and tensor-frame bytes, for both dtypes.
///
/// f32 is stored as its little-endian bit pattern. bf16 keeps the upper 16 bits of the f32,
/// rounded to nearest, ties to even; NaN stays a (quiet) NaN, and values that round past the
/// largest bf16 become ±infinity.
public enum TensorPayload {
    /// The bf16 bits nearest to `value` (round to nearest, ties to even).
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN {
            // Keep sign and the top of the payload, force the quiet bit so truncation cannot
            // turn a NaN into an infinity.
            return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
        }
        // Adding 0x7FFF plus the lowest kept bit rounds to nearest with ties to the even value.
        let rounding: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// The f32 value of the bf16 `bits` (exact).
    public static func float(bf16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Encodes `values` as a tensor frame in `dtype`.
    /// - Returns: `values.count × dtype.byteCount` bytes, little-endian.
    public static func bytes(from values: [Float], as dtype: WireDType) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: values.count * dtype.byteCount) { buffer, count in
            values.withUnsafeBufferPointer { source in
                encode(source, as: dtype, into: UnsafeMutableRawBufferPointer(buffer))
            }
            count = values.count * dtype.byteCount
        }
    }

    /// Decodes a tensor frame in `dtype` to floats.
    /// - Precondition: `bytes.count` is a multiple of `dtype.byteCount`.
    /// - Returns: `bytes.count / dtype.byteCount` values.
    public static func floats(from bytes: [UInt8], dtype: WireDType) -> [Float] {
        precondition(
            bytes.count % dtype.byteCount == 0,
            "TensorPayload.floats: \(bytes.count) bytes is not a whole number of \(dtype) elements")
        let count = bytes.count / dtype.byteCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            bytes.withUnsafeBytes { decode($0, dtype: dtype, into: buffer) }
            initialized = count
        }
    }

    /// Encodes `values` into `destination` without allocating.
    /// - Precondition: `destination.count == values.count × dtype.byteCount`.
    public static func encode(
        _ values: UnsafeBufferPointer<Float>, as dtype: WireDType, into destination: UnsafeMutableRawBufferPointer
    ) {
        precondition(
            destination.count == values.count * dtype.byteCount,
            "TensorPayload.encode: destination is \(destination.count) bytes, but \(values.count) × \(dtype) needs \(values.count * dtype.byteCount)"
        )
        switch dtype {
        case .f32:
            for (index, value) in values.enumerated() {
                destination.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
            }
        case .bf16:
            for (index, value) in values.enumerated() {
                destination.storeBytes(of: bf16Bits(value).littleEndian, toByteOffset: index * 2, as: UInt16.self)
            }
        }
    }

    /// Decodes tensor-frame bytes in `dtype` into `destination` without allocating.
    /// - Precondition: `source.count == destination.count × dtype.byteCount`.
    public static func decode(
        _ source: UnsafeRawBufferPointer, dtype: WireDType, into destination: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(
            source.count == destination.count * dtype.byteCount,
            "TensorPayload.decode: source is \(source.count) bytes, but \(destination.count) × \(dtype) needs \(destination.count * dtype.byteCount)"
        )
        switch dtype {
        case .f32:
            for index in destination.indices {
                let bits = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self))
                destination[index] = Float(bitPattern: bits)
            }
        case .bf16:
            for index in destination.indices {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
                destination[index] = float(bf16Bits: bits)
            }
        }
    }
}

/// The tensor frame of a DISPATCH (hidden states of the routed token rows) or a COMBINE (per row,
/// the routing-weighted sum of the worker's expert outputs).
///
/// Shape [rowCount, hiddenSize], row-major, in `dtype`, little-endian; `bytes` is the frame as
/// sent, so encoding does not copy it.
public struct HiddenStates: Sendable, Equatable {
    /// Rows (tokens), 0 ... `WireLimits.maxRowCount`.
    public let rowCount: Int
    /// Elements per row, 1 ... `WireLimits.maxHiddenSize`.
    public let hiddenSize: Int
    /// Element type of `bytes`.
    public let dtype: WireDType
    /// The frame: `rowCount × hiddenSize × dtype.byteCount` bytes.
    public let bytes: [UInt8]

    /// Wraps a frame already in wire layout.
    /// - Precondition: the shape is within `WireLimits` and `bytes.count` is
    ///   `rowCount × hiddenSize × dtype.byteCount` (a programmer error otherwise; frames from the
    ///   network are checked by `WireCodec.decode` before they get here).
    public init(rowCount: Int, hiddenSize: Int, dtype: WireDType, bytes: [UInt8]) {
        precondition(
            (0...WireLimits.maxRowCount).contains(rowCount),
            "HiddenStates: rowCount \(rowCount) is outside 0...\(WireLimits.maxRowCount)")
        precondition(
            (1...WireLimits.maxHiddenSize).contains(hiddenSize),
            "HiddenStates: hiddenSize \(hiddenSize) is outside 1...\(WireLimits.maxHiddenSize)")
        precondition(
            bytes.count == rowCount * hiddenSize * dtype.byteCount,
            "HiddenStates: \(bytes.count) bytes, but \(rowCount) rows × \(hiddenSize) × \(dtype) needs \(rowCount * hiddenSize * dtype.byteCount)"
        )
        self.rowCount = rowCount
        self.hiddenSize = hiddenSize
        self.dtype = dtype
        self.bytes = bytes
    }

    /// Encodes `values`, [rowCount, hiddenSize] row-major f32, as a frame in `dtype`.
    /// - Precondition: `values.count == rowCount × hiddenSize`, shape within `WireLimits`.
    public init(rowCount: Int, hiddenSize: Int, values: [Float], dtype: WireDType) {
        precondition(
            values.count == rowCount * hiddenSize,
            "HiddenStates: \(values.count) values, but \(rowCount) rows × \(hiddenSize) needs \(rowCount * hiddenSize)")
        self.init(
            rowCount: rowCount, hiddenSize: hiddenSize, dtype: dtype,
            bytes: TensorPayload.bytes(from: values, as: dtype))
    }

    /// The values as f32, [rowCount, hiddenSize] row-major (bf16 widened exactly).
    public func floats() -> [Float] { TensorPayload.floats(from: bytes, dtype: dtype) }

    /// Writes the values as f32 into `destination`, [rowCount, hiddenSize] row-major, without allocating.
    /// - Precondition: `destination.count == rowCount × hiddenSize`.
    public func copyFloats(into destination: UnsafeMutableBufferPointer<Float>) {
        bytes.withUnsafeBytes { TensorPayload.decode($0, dtype: dtype, into: destination) }
    }

    /// The frame size a header's shape demands, in bytes.
    static func expectedByteCount(rowCount: Int, hiddenSize: Int, dtype: WireDType) -> Int {
        // Both factors are bounded by WireLimits before this is called: at most 2^20 × 2^16 × 4.
        rowCount * hiddenSize * dtype.byteCount
    }
}

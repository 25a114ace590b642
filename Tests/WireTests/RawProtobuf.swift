// A minimal protobuf writer for building headers that `WireCodec.encode` would never produce
// (bad CSR, unknown enum values, other protocol versions), independently of protobuf-c.

/// Appends protobuf fields to `bytes`.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func tag(_ field: Int, wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    mutating func uint(_ field: Int, _ value: UInt64) {
        tag(field, wireType: 0)
        varint(value)
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        tag(field, wireType: 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    mutating func packedUInt32(_ field: Int, _ values: [UInt32]) {
        var inner = ProtoWriter()
        for value in values { inner.varint(UInt64(value)) }
        lengthDelimited(field, inner.bytes)
    }

    mutating func packedFloat(_ field: Int, _ values: [Float]) {
        var payload: [UInt8] = []
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { payload += $0 } }
        lengthDelimited(field, payload)
    }
}

/// A DISPATCH header and tensor frame with every field settable, valid by default:
/// 2 rows × 4 f32, row 0 → experts [1, 3], row 1 → expert [2].
struct RawDispatch {
    var major: UInt32 = 1
    var minor: UInt32 = 0
    var requestID: UInt64 = 7
    var step: UInt64 = 3
    var layer: UInt32 = 2
    var rowCount: UInt32 = 2
    var hiddenSize: UInt32 = 4
    var dtype: UInt64 = 0
    var offsets: [UInt32] = [0, 2, 3]
    var expertIDs: [UInt32] = [1, 3, 2]
    var weights: [Float] = [0.75, 0.25, 1]
    var tensorByteCount: Int? = nil

    var frames: [[UInt8]] {
        var body = ProtoWriter()
        body.uint(1, requestID)
        body.uint(2, step)
        body.uint(3, UInt64(layer))
        body.uint(4, UInt64(rowCount))
        body.uint(5, UInt64(hiddenSize))
        body.uint(6, dtype)
        body.packedUInt32(7, offsets)
        body.packedUInt32(8, expertIDs)
        body.packedFloat(9, weights)
        var header = ProtoWriter()
        header.uint(1, UInt64(major))
        header.uint(2, UInt64(minor))
        header.lengthDelimited(14, body.bytes)
        let elementBytes = dtype == 1 ? 2 : 4
        let tensor = [UInt8](
            repeating: 0, count: tensorByteCount ?? Int(rowCount) * Int(hiddenSize) * elementBytes)
        return [header.bytes, tensor]
    }
}

/// A header with only a version and (optionally) one raw body field.
func rawHeader(major: UInt32, minor: UInt32, bodyField: Int? = nil, body: [UInt8] = []) -> [UInt8] {
    var header = ProtoWriter()
    header.uint(1, UInt64(major))
    header.uint(2, UInt64(minor))
    if let bodyField { header.lengthDelimited(bodyField, body) }
    return header.bytes
}

// Conversions between the 16-bit storage dtypes and f32, bit-exact with PyTorch's
// (round to nearest, ties to even; NaN stays NaN).

/// Converts a bf16 bit pattern to f32 (exact: bf16 is the upper half of a binary32).
@inline(__always)
public func floatFromBFloat16Bits(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Converts an f32 to the nearest bf16 bit pattern (ties to even), as `tensor.to(torch.bfloat16)` does.
@inline(__always)
public func bfloat16Bits(from value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
    // Round to nearest even on the 16 dropped bits.
    let roundingBias = UInt32(0x7FFF) + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
}

/// Converts an f16 bit pattern to f32 (exact).
@inline(__always)
public func floatFromFloat16Bits(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
        // Subnormal or zero: mantissa × 2^-24.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

/// Converts an f32 to the nearest f16 bit pattern (ties to even; overflow gives ±infinity).
@inline(__always)
public func float16Bits(from value: Float) -> UInt16 {
    #if arch(x86_64) || arch(arm64)
        if #available(macOS 11.0, *) {
            return Float16(value).bitPattern
        }
    #endif
    return softwareFloat16Bits(from: value)
}

/// Portable f32 → f16 rounding used when the platform has no `Float16`.
func softwareFloat16Bits(from value: Float) -> UInt16 {
    let bits = value.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    if value.isNaN { return sign | 0x7E00 }
    let magnitude = abs(value)
    if magnitude >= 65520 { return sign | 0x7C00 }
    if magnitude < Float(sign: .plus, exponent: -25, significand: 1) { return sign }
    if magnitude < Float(sign: .plus, exponent: -14, significand: 1) {
        let scaled = (magnitude * Float(sign: .plus, exponent: 24, significand: 1)).rounded(.toNearestOrEven)
        return sign | UInt16(scaled)
    }
    let exponent = Int(magnitude.exponent)
    let significand = magnitude.significand  // in [1, 2)
    var mantissa = ((significand - 1) * 1024).rounded(.toNearestOrEven)
    var biased = exponent + 15
    if mantissa >= 1024 {
        mantissa = 0
        biased += 1
    }
    if biased >= 31 { return sign | 0x7C00 }
    return sign | UInt16(biased << 10) | UInt16(mantissa)
}

/// Converts `count` little-endian elements of `dtype` at `source` to f32 at `destination`.
/// - Parameters:
///   - source: raw bytes, `count × dtype.byteCount`, any alignment.
///   - destination: `count` f32 values.
public func convertToFloat(
    _ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>
) {
    switch dtype {
    case .f32:
        for index in 0..<count {
            destination[index] = Float(
                bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
        }
    case .bf16:
        for index in 0..<count {
            destination[index] = floatFromBFloat16Bits(
                UInt16(littleEndian: source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
        }
    case .f16:
        for index in 0..<count {
            destination[index] = floatFromFloat16Bits(
                UInt16(littleEndian: source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)))
        }
    }
}

/// Encodes f32 values as little-endian bytes of `dtype` (rounding to nearest even for bf16/f16).
/// - Returns: `values.count × dtype.byteCount` bytes.
public func encodeFloats(_ values: [Float], as dtype: DType) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: values.count * dtype.byteCount) { buffer, initialized in
        for (index, value) in values.enumerated() {
            switch dtype {
            case .f32:
                let bits = value.bitPattern
                for byte in 0..<4 { buffer[index * 4 + byte] = UInt8(truncatingIfNeeded: bits >> UInt32(8 * byte)) }
            case .bf16, .f16:
                let bits = dtype == .bf16 ? bfloat16Bits(from: value) : float16Bits(from: value)
                buffer[index * 2] = UInt8(truncatingIfNeeded: bits)
                buffer[index * 2 + 1] = UInt8(truncatingIfNeeded: bits >> 8)
            }
        }
        initialized = values.count * dtype.byteCount
    }
}

/// The value of a float8_e4m3fn byte (exact): sign, 4 exponent bits with bias 7, 3 mantissa bits;
/// exponent 0 is subnormal (m · 2⁻⁹), 0x7F and 0xFF are NaN (a quiet NaN with the byte's sign), and
/// there is no infinity. The same bits as CKernels' `sy_fp8_e4m3_value`.
@inline(__always)
public func floatFromFloat8E4M3(_ byte: UInt8) -> Float {
    let magnitude = UInt32(byte & 0x7F)
    let sign = UInt32(byte & 0x80) << 24
    let bits: UInt32
    if magnitude == 0x7F {
        bits = 0x7FC0_0000
    } else if magnitude < 8 {
        bits = (Float(magnitude) * Float(sign: .plus, exponent: -9, significand: 1)).bitPattern
    } else {
        // The exponent and mantissa moved into place, with the exponent bias 127 - 7 added.
        bits = (magnitude << 20) + (120 << 23)
    }
    return Float(bitPattern: bits | sign)
}

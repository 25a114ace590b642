import Tensors
import Testing
import Wire

/// An f32 bit pattern and the bf16 bits it must round to.
struct BF16Case: Sendable, CustomTestStringConvertible {
    let name: String
    let f32Bits: UInt32
    let bf16Bits: UInt16
    var testDescription: String { name }
}

@Suite("Tensor payloads")
struct TensorPayloadTests {
    @Test(
        "f32 to bf16 rounds to nearest, ties to even",
        arguments: [
            BF16Case(name: "1.0 is exact", f32Bits: 0x3F80_0000, bf16Bits: 0x3F80),
            BF16Case(name: "halfway above 1.0 ties down to even", f32Bits: 0x3F80_8000, bf16Bits: 0x3F80),
            BF16Case(name: "halfway above an odd mantissa ties up to even", f32Bits: 0x3F81_8000, bf16Bits: 0x3F82),
            BF16Case(name: "just above halfway rounds up", f32Bits: 0x3F80_8001, bf16Bits: 0x3F81),
            BF16Case(name: "just below halfway rounds down", f32Bits: 0x3F80_7FFF, bf16Bits: 0x3F80),
            BF16Case(name: "negative values round by magnitude", f32Bits: 0xBF80_8001, bf16Bits: 0xBF81),
            BF16Case(name: "the largest f32 rounds to infinity", f32Bits: 0x7F7F_FFFF, bf16Bits: 0x7F80),
            BF16Case(name: "infinity stays infinity", f32Bits: 0x7F80_0000, bf16Bits: 0x7F80),
            BF16Case(name: "negative infinity stays negative infinity", f32Bits: 0xFF80_0000, bf16Bits: 0xFF80),
            BF16Case(name: "negative zero keeps its sign", f32Bits: 0x8000_0000, bf16Bits: 0x8000),
            BF16Case(name: "the smallest subnormal rounds to zero", f32Bits: 0x0000_0001, bf16Bits: 0x0000),
            BF16Case(name: "a NaN whose payload is only in the low bits stays NaN", f32Bits: 0x7F80_0001, bf16Bits: 0x7FC0),
        ])
    func bf16Rounding(testCase: BF16Case) {
        #expect(TensorPayload.bf16Bits(Float(bitPattern: testCase.f32Bits)) == testCase.bf16Bits)
    }

    @Test("every bf16 value survives bf16 -> f32 -> bf16 unchanged (NaNs stay NaN)")
    func bf16RoundTripsExactly() {
        // All 65536 patterns in one test: as arguments this would be 65536 test cases.
        var mismatches: [UInt16] = []
        for bits in UInt16.min...UInt16.max {
            let value = TensorPayload.float(bf16Bits: bits)
            if value.isNaN {
                if !TensorPayload.float(bf16Bits: TensorPayload.bf16Bits(value)).isNaN { mismatches.append(bits) }
            } else if TensorPayload.bf16Bits(value) != bits {
                mismatches.append(bits)
            }
        }
        #expect(mismatches.isEmpty, "first mismatching bf16 patterns: \(mismatches.prefix(5))")
    }

    @Test("bf16 rounding error is at most half a bf16 unit in the last place")
    func bf16RelativeError() {
        var generator = SplitMix64(seed: 11)
        var worst: Float = 0
        for _ in 0..<10_000 {
            let value = Float.random(in: -1000...1000, using: &generator)
            guard value != 0 else { continue }
            let rounded = TensorPayload.float(bf16Bits: TensorPayload.bf16Bits(value))
            worst = max(worst, abs(rounded - value) / abs(value))
        }
        // 8 significant bits: half an ulp is at most 2^-8 relative.
        #expect(worst <= 1.0 / 256, "max relative error \(worst)")
    }

    @Test("payloads are little-endian f32 or bf16 and decode back", arguments: WireDType.allCases)
    func payloadLayout(dtype: WireDType) {
        let values: [Float] = [1, -2, 0.5, 3.140625]  // all exact in bf16
        let bytes = TensorPayload.bytes(from: values, as: dtype)
        #expect(bytes.count == values.count * dtype.byteCount)
        switch dtype {
        case .f32: #expect(Array(bytes[0..<8]) == [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])
        case .bf16: #expect(Array(bytes[0..<4]) == [0x80, 0x3F, 0x00, 0xC0])
        }
        #expect(TensorPayload.floats(from: bytes, dtype: dtype) == values)
        let states = HiddenStates(rowCount: 2, hiddenSize: 2, values: values, dtype: dtype)
        #expect(states.floats() == values)
        var copied = [Float](repeating: 0, count: 4)
        copied.withUnsafeMutableBufferPointer { states.copyFloats(into: $0) }
        #expect(copied == values)
    }
}

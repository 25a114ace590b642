// Kernels against plain Swift references on random non-zero inputs, including odd sizes.
import Foundation
import Kernels
import Tensors
import Testing

/// Tolerance for f32 kernels whose summation order differs from the reference's.
private let kernelTolerance: Float = 1e-5

@Suite("Kernels")
struct KernelTests {
    @Test(
        "linear equals the naive x·Wᵀ, with and without accumulation",
        arguments: [
            (1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 48, 130),
        ])
    func linearMatchesReference(shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: 1)
        let x = random.floats(shape.rows * shape.inputs)
        let w = random.floats(shape.outputs * shape.inputs)
        var expected = [Float](repeating: 0, count: shape.rows * shape.outputs)
        for r in 0..<shape.rows {
            for o in 0..<shape.outputs {
                var sum: Float = 0
                for i in 0..<shape.inputs { sum += x[r * shape.inputs + i] * w[o * shape.inputs + i] }
                expected[r * shape.outputs + o] = sum
            }
        }
        let actual = linear(x, rowCount: shape.rows, weight: w, outputCount: shape.outputs)
        let difference = Difference(actual, expected, tolerance: kernelTolerance)
        #expect(difference.firstMismatch == nil, "\(difference)")

        let base = random.floats(shape.rows * shape.outputs)
        var accumulated = base
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                accumulated.withUnsafeMutableBufferPointer { yp in
                    linear(
                        xp.baseAddress!, rowCount: shape.rows, inputCount: shape.inputs, weight: wp.baseAddress!,
                        outputCount: shape.outputs, into: yp.baseAddress!, accumulate: true)
                }
            }
        }
        let accumulatedDifference = Difference(accumulated, zip(base, expected).map(+), tolerance: kernelTolerance)
        #expect(accumulatedDifference.firstMismatch == nil, "\(accumulatedDifference)")
    }

    @Test("rmsNorm scales each row by rsqrt(mean(x²) + ε) and the weight", arguments: [1, 7, 64, 129])
    func rmsNormMatchesReference(width: Int) {
        var random = TestRandom(seed: 2)
        let rows = 3
        let x = random.floats(rows * width)
        let weight = random.floats(width)
        let epsilon: Float = 1e-5
        var expected: [Float] = []
        for r in 0..<rows {
            let row = x[(r * width)..<((r + 1) * width)]
            let mean = row.map { Double($0) * Double($0) }.reduce(0, +) / Double(width)
            let inverse = 1 / (mean + Double(epsilon)).squareRoot()
            expected += row.enumerated().map { Float(Double($0.element) * inverse) * weight[$0.offset] }
        }
        let difference = Difference(rmsNorm(x, weight: weight, epsilon: epsilon), expected, tolerance: kernelTolerance)
        #expect(difference.firstMismatch == nil, "\(difference)")
    }

    @Test("softmax rows sum to 1 and match exp(x)/Σexp(x); masked entries get 0", arguments: [1, 2, 8, 33])
    func softmaxMatchesReference(width: Int) {
        var random = TestRandom(seed: 3)
        var x = random.floats(2 * width, scale: 8)
        if width > 1 { x[1] = -.infinity }
        let expected: [Float] = (0..<2).flatMap { r -> [Float] in
            let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
            let total = row.map { exp($0) }.reduce(0, +)
            return row.map { Float(exp($0) / total) }
        }
        let actual = softmax(x, width: width)
        let difference = Difference(actual, expected, tolerance: 1e-6)
        #expect(difference.firstMismatch == nil, "\(difference)")
        if width > 1 { #expect(actual[1] == 0) }
    }

    @Test(
        "logSumExp is log Σ exp(x) within 1e-6 relative of an f64 reference, the same bits on every path",
        arguments: [1, 15, 16, 17, 100, 1001, 32000])
    func logSumExpMatchesReference(count: Int) {
        var random = TestRandom(seed: UInt64(count) + 7)
        // Logit-like values spread over a wide range, so that terms far below the maximum occur too.
        var values = random.floats(count, scale: 30)
        if count > 3 { values[count / 2] = -.infinity }  // a masked logit contributes 0
        let maximum = Double(values.max()!)
        let reference = maximum + log(values.reduce(0.0) { $0 + exp(Double($1) - maximum) })
        let results = KernelISA.alike.map { isa in values.withUnsafeBufferPointer { logSumExp($0, isa: isa) } }
        for (isa, result) in zip(KernelISA.alike, results) {
            #expect(abs(result - reference) <= 1e-6 * max(1, abs(reference)), "\(isa): \(result) vs \(reference)")
            #expect(result.bitPattern == results[0].bitPattern, "\(isa) differs from \(KernelISA.alike[0])")
        }
    }

    @Test("logSumExp of equal values is the value plus log n; infinities and NaN pass through")
    func logSumExpEdges() {
        for isa in KernelISA.alike {
            let ones = [Float](repeating: 2.5, count: 37)
            let equal = ones.withUnsafeBufferPointer { logSumExp($0, isa: isa) }
            #expect(abs(equal - (2.5 + log(37.0))) < 1e-6, "\(isa)")
            let masked: [Float] = [-.infinity, -.infinity]
            #expect(masked.withUnsafeBufferPointer { logSumExp($0, isa: isa) } == -.infinity, "\(isa)")
            let infinite: [Float] = [1, .infinity]
            #expect(infinite.withUnsafeBufferPointer { logSumExp($0, isa: isa) } == .infinity, "\(isa)")
            for nan: [Float] in [[.nan, 1], [1, .nan, 2]] {
                #expect(nan.withUnsafeBufferPointer { logSumExp($0, isa: isa) }.isNaN, "\(isa) \(nan)")
            }
            // Very negative terms underflow to (near) zero instead of producing garbage.
            let spread: [Float] = [0, -200, -1000]
            #expect(abs(spread.withUnsafeBufferPointer { logSumExp($0, isa: isa) }) < 1e-6, "\(isa)")
        }
    }

    @Test("silu is x·sigmoid(x) and swiGLU multiplies it by the up projection")
    func siluMatchesReference() {
        var random = TestRandom(seed: 4)
        var gate = random.floats(37, scale: 6)
        let up = random.floats(37)
        let expected = zip(gate, up).map { g, u in Float(Double(g) / (1 + exp(-Double(g)))) * u }
        gate.withUnsafeMutableBufferPointer { g in
            up.withUnsafeBufferPointer { u in swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: 37) }
        }
        let difference = Difference(gate, expected, tolerance: 1e-6)
        #expect(difference.firstMismatch == nil, "\(difference)")
    }

    @Test(
        "swiGLU is silu(g)·u within 4e-7 relative of an f64 reference, the same bits on every path",
        arguments: [1, 15, 16, 17, 1001])
    func swiGLUOnEveryPath(count: Int) {
        var random = TestRandom(seed: UInt64(count) + 11)
        // Gate values from deep in the negative tail (where silu underflows towards -0) to large
        // positive ones, plus the signed zeros.
        var gate = random.floats(count, scale: 40)
        if count > 3 {
            gate[0] = 0
            gate[1] = -0.0
            gate[2] = -95
        }
        let up = random.floats(count, scale: 3)
        let reference = zip(gate, up).map { g, u in Double(g) / (1 + exp(-Double(g))) * Double(u) }
        let results = KernelISA.alike.map { isa -> [Float] in
            var out = gate
            out.withUnsafeMutableBufferPointer { g in
                up.withUnsafeBufferPointer { u in swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: count, isa: isa) }
            }
            return out
        }
        for (isa, result) in zip(KernelISA.alike, results) {
            for index in 0..<count {
                let error = abs(Double(result[index]) - reference[index])
                #expect(
                    error <= 4e-7 * abs(reference[index]) + 1e-30,
                    "\(isa) [\(index)] silu(\(gate[index])) · \(up[index]) = \(result[index]), reference \(reference[index])")
                #expect(
                    result[index].bitPattern == results[0][index].bitPattern,
                    "\(isa) [\(index)] differs from \(KernelISA.alike[0])")
                #expect(
                    result[index].bitPattern == (silu(gate[index]) * up[index]).bitPattern,
                    "\(isa) [\(index)] is not silu(g) · u")
            }
        }
    }

    @Test(
        "topK returns the k largest, largest first, ties to the lowest index",
        arguments: [
            ([0.1, 0.5, 0.2, 0.5, 0.4] as [Float], 2, [1, 3]),
            ([0.3, 0.3, 0.3] as [Float], 3, [0, 1, 2]),
            ([1, 2, 3, 4, 5, 6, 7] as [Float], 3, [6, 5, 4]),
            ([-1, .nan, -3] as [Float], 2, [0, 2]),
            ([2, 1] as [Float], 0, [] as [Int]),
        ])
    func topKSelectsLargest(values: [Float], k: Int, expected: [Int]) {
        #expect(topK(values, k: k) == expected)
    }

    @Test("topK agrees with a full sort on random rows")
    func topKMatchesSort() {
        var random = TestRandom(seed: 5)
        for _ in 0..<50 {
            let values = random.floats(11)
            let sorted = values.indices.sorted { (values[$0], -$0) > (values[$1], -$1) }
            #expect(topK(values, k: 4) == Array(sorted.prefix(4)))
        }
    }

    @Test(
        "RoPE rotates dimension i with i + R/2 by position × θ^(-2i/R) and leaves dimensions R ..< D as they are",
        arguments: [(2, 2, 0), (8, 8, 5), (14, 14, 3), (16, 8, 4), (12, 6, 2)])
    func ropeMatchesReference(parameters: (headDimension: Int, rotaryDimension: Int, firstPosition: Int)) {
        let (headDimension, rotaryDimension, firstPosition) = parameters
        var random = TestRandom(seed: 6)
        let heads = 3
        let rows = 4
        let x = random.floats(rows * heads * headDimension)
        let rope = RotaryEmbedding(headDimension: headDimension, theta: 10_000, rotaryDimension: rotaryDimension)
        let half = rotaryDimension / 2
        var expected = x
        for r in 0..<rows {
            for h in 0..<heads {
                let base = (r * heads + h) * headDimension
                for i in 0..<half {
                    let frequency = 1 / pow(10_000.0, Double(2 * i) / Double(rotaryDimension))
                    let angle = Double(firstPosition + r) * frequency
                    let a = Double(x[base + i])
                    let b = Double(x[base + i + half])
                    expected[base + i] = Float(a * cos(angle) - b * sin(angle))
                    expected[base + i + half] = Float(b * cos(angle) + a * sin(angle))
                }
            }
        }
        let actual = rope.applied(to: x, headCount: heads, firstPosition: firstPosition)
        let difference = Difference(actual, expected, tolerance: kernelTolerance)
        #expect(difference.firstMismatch == nil, "\(difference)")
    }

    @Test(
        "attention equals a naive masked softmax(QKᵀ·scale)V with GQA, sliding windows, other value widths and scales",
        arguments: [
            (4, 2, 6, 0, 5, nil), (6, 2, 8, 3, 4, 2), (3, 3, 5, 7, 1, 3), (2, 1, 4, 0, 9, 4), (4, 4, 2, 10, 1, nil),
            // more cached keys than one block of the kernel (32), with and without a window across blocks
            (8, 2, 20, 70, 3, nil), (4, 2, 16, 90, 2, 45), (6, 3, 17, 33, 31, 40), (2, 2, 64, 31, 2, nil),
        ].map { ($0, nil, nil) }
            // Multi-head latent attention: values narrower or wider than keys, the score factor given.
            + [((4, 4, 24, 40, 3, nil), 12, 0.2), ((2, 1, 10, 5, 2, nil), 7, nil), ((3, 3, 6, 35, 2, nil), 9, 0.5)]
            as [((Int, Int, Int, Int, Int, Int?), Int?, Float?)])
    func attentionMatchesReference(
        parameters: (heads: Int, keyValueHeads: Int, headDimension: Int, cached: Int, queries: Int, window: Int?),
        valueHeadDimension: Int?, scale: Float?
    ) {
        let p = parameters
        var random = TestRandom(seed: 7)
        let keyCount = p.cached + p.queries
        let q = random.floats(p.queries * p.heads * p.headDimension)
        let k = random.floats(keyCount * p.keyValueHeads * p.headDimension)
        let valueDimension = valueHeadDimension ?? p.headDimension
        let v = random.floats(keyCount * p.keyValueHeads * valueDimension)
        let shape = AttentionShape(
            headCount: p.heads, keyValueHeadCount: p.keyValueHeads, headDimension: p.headDimension,
            valueHeadDimension: valueHeadDimension, scale: scale, slidingWindow: p.window)
        var expected = [Float](repeating: 0, count: p.queries * p.heads * valueDimension)
        let group = p.heads / p.keyValueHeads
        for t in 0..<p.queries {
            let position = p.cached + t
            for h in 0..<p.heads {
                let g = h / group
                var scores: [Double] = []
                var visible: [Int] = []
                for s in 0..<keyCount where s <= position && (p.window == nil || s > position - p.window!) {
                    var dot = 0.0
                    for d in 0..<p.headDimension {
                        dot +=
                            Double(q[(t * p.heads + h) * p.headDimension + d])
                            * Double(k[(s * p.keyValueHeads + g) * p.headDimension + d])
                    }
                    scores.append(dot * Double(scale ?? 1 / Float(p.headDimension).squareRoot()))
                    visible.append(s)
                }
                let maximum = scores.max()!
                let weights = scores.map { exp($0 - maximum) }
                let total = weights.reduce(0, +)
                for d in 0..<valueDimension {
                    var sum = 0.0
                    for (j, s) in visible.enumerated() {
                        sum += weights[j] / total * Double(v[(s * p.keyValueHeads + g) * valueDimension + d])
                    }
                    expected[(t * p.heads + h) * valueDimension + d] = Float(sum)
                }
            }
        }
        let actual = attention(queries: q, keys: k, values: v, firstQueryPosition: p.cached, shape: shape)
        let difference = Difference(actual, expected, tolerance: kernelTolerance)
        #expect(difference.firstMismatch == nil, "\(difference)")
    }

    @Test(
        "attention gives the same bits on every path (scores 16 keys at a time, tails of keys and of the head dimension)",
        arguments: [(16, 8, 64, 100, 1, nil), (4, 2, 17, 40, 3, nil), (6, 3, 5, 15, 2, 9), (2, 1, 33, 47, 1, 30)]
            as [(Int, Int, Int, Int, Int, Int?)])
    func attentionSameOnEveryPath(
        parameters: (heads: Int, keyValueHeads: Int, headDimension: Int, cached: Int, queries: Int, window: Int?)
    ) {
        let p = parameters
        var random = TestRandom(seed: 14)
        let keyCount = p.cached + p.queries
        let q = random.floats(p.queries * p.heads * p.headDimension, scale: 2)
        let k = random.floats(keyCount * p.keyValueHeads * p.headDimension)
        let v = random.floats(keyCount * p.keyValueHeads * p.headDimension)
        let shape = AttentionShape(
            headCount: p.heads, keyValueHeadCount: p.keyValueHeads, headDimension: p.headDimension,
            slidingWindow: p.window)
        let results = KernelISA.alike.map { isa in
            attention(queries: q, keys: k, values: v, firstQueryPosition: p.cached, shape: shape, isa: isa)
        }
        for (isa, result) in zip(KernelISA.alike, results) {
            #expect(
                result.map(\.bitPattern) == results[0].map(\.bitPattern), "\(isa) differs from \(KernelISA.alike[0])")
        }
    }

    @Test(
        "attention over bf16 keys and values is bitwise the f32 attention over them widened, on every path",
        arguments: [(16, 8, 64, 100, 1, nil), (4, 2, 17, 40, 3, nil), (6, 3, 5, 15, 2, 9), (2, 1, 33, 47, 1, 30)]
            as [(Int, Int, Int, Int, Int, Int?)])
    func attentionOverBFloat16Cache(
        parameters: (heads: Int, keyValueHeads: Int, headDimension: Int, cached: Int, queries: Int, window: Int?)
    ) {
        let p = parameters
        var random = TestRandom(seed: 15)
        let keyCount = p.cached + p.queries
        let q = random.floats(p.queries * p.heads * p.headDimension, scale: 2)
        let k = random.floats(keyCount * p.keyValueHeads * p.headDimension).map(bfloat16Bits(from:))
        let v = random.floats(keyCount * p.keyValueHeads * p.headDimension).map(bfloat16Bits(from:))
        let shape = AttentionShape(
            headCount: p.heads, keyValueHeadCount: p.keyValueHeads, headDimension: p.headDimension,
            slidingWindow: p.window)
        for isa in KernelISA.alike {
            let widened = attention(
                queries: q, keys: k.map(floatFromBFloat16Bits), values: v.map(floatFromBFloat16Bits),
                firstQueryPosition: p.cached, shape: shape, isa: isa)
            var result = [Float](repeating: .nan, count: q.count)
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        result.withUnsafeMutableBufferPointer { out in
                            attention(
                                queries: qp.baseAddress!, queryCount: p.queries, firstQueryPosition: p.cached,
                                cached: .bf16(keys: kp.baseAddress!, values: vp.baseAddress!), keyCount: keyCount,
                                shape: shape, into: out.baseAddress!, isa: isa)
                        }
                    }
                }
            }
            #expect(result.map(\.bitPattern) == widened.map(\.bitPattern), "\(isa)")
        }
    }

    @Test("softmax gives the same bits on every path, within 1e-6 of exp(x)/Σexp(x), masked entries 0", arguments: [1, 15, 16, 17, 100])
    func softmaxOnEveryPath(width: Int) {
        var random = TestRandom(seed: UInt64(width) + 21)
        var x = random.floats(width, scale: 20)
        if width > 2 { x[width / 2] = -.infinity }
        // Each term's exponent is x - max rounded to f32, as the kernel (and any f32 softmax) forms it.
        let maximum = x.max()!
        let exponents = x.map { Double($0 - maximum) }
        let total = exponents.reduce(0.0) { $0 + exp($1) }
        let results = KernelISA.alike.map { isa -> [Float] in
            var row = x
            row.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, count: width, isa: isa) }
            return row
        }
        for (isa, result) in zip(KernelISA.alike, results) {
            #expect(result.map(\.bitPattern) == results[0].map(\.bitPattern), "\(isa) differs from \(KernelISA.alike[0])")
            for (index, value) in result.enumerated() {
                let expected = exp(exponents[index]) / total
                #expect(abs(Double(value) - expected) <= 1e-6 * max(expected, 1e-30) + 1e-38, "\(isa) [\(index)]")
                if x[index] == -.infinity { #expect(value == 0, "\(isa): a masked entry gets 0") }
            }
        }
    }

    @Test("attention over a range of key/value heads writes exactly those heads, bitwise as over all of them")
    func attentionHeadRanges() {
        var random = TestRandom(seed: 12)
        let shape = AttentionShape(headCount: 8, keyValueHeadCount: 4, headDimension: 24, slidingWindow: 50)
        let (cached, queryCount) = (70, 3)
        let keyCount = cached + queryCount
        let q = random.floats(queryCount * 8 * 24)
        let k = random.floats(keyCount * 4 * 24)
        let v = random.floats(keyCount * 4 * 24)
        let whole = attention(queries: q, keys: k, values: v, firstQueryPosition: cached, shape: shape)
        var pieced = [Float](repeating: .nan, count: whole.count)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    pieced.withUnsafeMutableBufferPointer { out in
                        for range in [0..<1, 1..<3, 3..<4] {
                            attention(
                                queries: qp.baseAddress!, queryCount: queryCount, firstQueryPosition: cached,
                                keys: kp.baseAddress!, values: vp.baseAddress!, keyCount: keyCount, shape: shape,
                                into: out.baseAddress!, keyValueHeads: range)
                        }
                    }
                }
            }
        }
        #expect(pieced.map(\.bitPattern) == whole.map(\.bitPattern))
    }

    @Test("a key is visible iff q - window < k <= q")
    func slidingWindowVisibility() {
        let shape = AttentionShape(headCount: 1, keyValueHeadCount: 1, headDimension: 2, slidingWindow: 3)
        #expect((0...9).filter { shape.isVisible(query: 6, key: $0) } == [4, 5, 6])
        let causal = AttentionShape(headCount: 1, keyValueHeadCount: 1, headDimension: 2, slidingWindow: nil)
        #expect((0...9).filter { causal.isVisible(query: 2, key: $0) } == [0, 1, 2])
    }
}

@Suite("DType conversions")
struct DTypeTests {
    @Test("bf16 and f16 round-trip representable values and round f32 to nearest even")
    func conversions() {
        #expect(DType.f32.byteCount == 4 && DType.bf16.byteCount == 2 && DType.f16.byteCount == 2)
        for value: Float in [0, 1, -2.5, 0.15625, 384, -0.0009765625] {
            #expect(floatFromBFloat16Bits(bfloat16Bits(from: value)) == value)
            #expect(floatFromFloat16Bits(float16Bits(from: value)) == value)
        }
        // 1 + 2^-8 is halfway between two bf16 values; ties go to the even one (1.0).
        #expect(bfloat16Bits(from: 1 + 1.0 / 256) == 0x3F80)
        #expect(bfloat16Bits(from: 1 + 3.0 / 256) == 0x3F82)
        #expect(float16Bits(from: 1e6) == 0x7C00)
        #expect(floatFromFloat16Bits(0x0001) == Float(sign: .plus, exponent: -24, significand: 1))
        #expect(floatFromBFloat16Bits(bfloat16Bits(from: .nan)).isNaN)
    }
}

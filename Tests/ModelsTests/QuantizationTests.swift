// q8 weights: int8 in blocks of 32 with a scale per block, quantized at load time (the experts, and
// the coordinator's attention, dense MLPs and LM head). The kernel's integer block sums are exact, so
// every path gives the same bits; the accuracy against f32 is measured here, on the kernel and on a
// whole model.
import Foundation
import Kernels
@testable import Models
import Tensors
import TestSupport
import Testing

/// Largest accepted |q8 product - double reference| relative to Σ|x·w|: x and w are each rounded
/// to 1/254 of their block's largest magnitude; on random data the worst seen is about 2.4e-3.
private let relativeQ8Tolerance: Double = 1.0 / 128

private let q8Shapes: [(Int, Int, Int)] = [
    (1, 1, 1), (1, 33, 5), (3, 100, 17), (5, 64, 8), (7, 1024, 37), (33, 70, 9), (2, 31, 3), (4, 2816, 6),
]

/// A plain reference of the q8 product for one output (the arithmetic the header describes).
/// - Parameter quantized: the input row, quantized as the kernel quantizes it.
private func referenceQ8Dot(
    quantized: (values: [Int8], scales: [Float]), inputCount: Int, values: [Int8], scales: [Float], output: Int
) -> Float {
    let blocks = q8BlockCount(inputCount: inputCount)
    var lanes = [Float](repeating: 0, count: 16)
    for block in 0..<blocks {
        let scale = quantized.scales[block] * scales[output * blocks + block]
        for lane in 0..<8 {
            var sum: Int32 = 0
            for t in 0..<4 {
                let index = block * 32 + 4 * lane + t
                sum += Int32(quantized.values[index]) * Int32(values[output * blocks * 32 + index])
            }
            let target = (block % 2) * 8 + lane
            lanes[target] = lanes[target].addingProduct(scale, Float(sum))  // fused, as in the kernel
        }
    }
    let t8 = (0..<8).map { lanes[$0] + lanes[$0 + 8] }
    let t4 = (0..<4).map { t8[$0] + t8[$0 + 4] }
    return (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// ``referenceQ8Dot`` for every row and output: [rowCount, outputCount], each row quantized as the kernel does.
private func referenceQ8Product(
    _ x: [Float], rowCount: Int, inputCount: Int, values: [Int8], scales: [Float], outputCount: Int
) -> [Float] {
    (0..<rowCount).flatMap { r in
        let row = quantizeQ8(Array(x[(r * inputCount)..<((r + 1) * inputCount)]), outputCount: 1, inputCount: inputCount)
        return (0..<outputCount).map { o in
            referenceQ8Dot(quantized: row, inputCount: inputCount, values: values, scales: scales, output: o)
        }
    }
}

@Suite("q8 kernel")
struct Q8KernelTests {
    @Test("quantization keeps each weight within half a step of its block's scale, and padding is zero")
    func quantizationError() {
        var random = TestRandom(seed: 91)
        let (outputs, inputs) = (5, 77)
        let w = random.floats(outputs * inputs)
        let (values, scales) = quantizeQ8(w, outputCount: outputs, inputCount: inputs)
        let blocks = q8BlockCount(inputCount: inputs)
        #expect(blocks == 4, "ceil(77 / 32) = 3, rounded up to even")
        for o in 0..<outputs {
            for i in 0..<(blocks * 32) {
                let q = values[o * blocks * 32 + i]
                let scale = scales[o * blocks + i / 32]
                if i >= inputs {
                    #expect(q == 0)
                    continue
                }
                #expect(abs(Float(q) * scale - w[o * inputs + i]) <= scale * 0.5001, "row \(o), column \(i)")
            }
        }
    }

    @Test(
        "every path computes the reference's bits, and the product is within 2⁻⁷·Σ|x·w| of double precision",
        arguments: KernelISA.alike, q8Shapes)
    func matchesReference(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 131 + shape.inputs * 7 + shape.outputs))
        let x = random.floats(shape.rows * shape.inputs).map { $0 * 3 }
        let w = random.floats(shape.outputs * shape.inputs).map { $0 * 0.1 }
        let (values, scales) = quantizeQ8(w, outputCount: shape.outputs, inputCount: shape.inputs)
        let y = linear(x, rowCount: shape.rows, q8Values: values, q8Scales: scales, outputCount: shape.outputs, isa: isa)
        let reference = referenceQ8Product(
            x, rowCount: shape.rows, inputCount: shape.inputs, values: values, scales: scales, outputCount: shape.outputs)
        var worst = 0.0
        for r in 0..<shape.rows {
            for o in 0..<shape.outputs {
                let (actual, expected) = (y[r * shape.outputs + o], reference[r * shape.outputs + o])
                #expect(actual.bitPattern == expected.bitPattern, "\(isa) \(shape) [\(r), \(o)]: \(actual) vs \(expected)")
                var exact = 0.0
                var magnitude = 0.0
                for i in 0..<shape.inputs {
                    let product = Double(x[r * shape.inputs + i]) * Double(w[o * shape.inputs + i])
                    exact += product
                    magnitude += abs(product)
                }
                worst = max(worst, abs(Double(actual) - exact) / (relativeQ8Tolerance * magnitude))
            }
        }
        #expect(worst <= 1, "\(shape): worst error \(worst) × \(relativeQ8Tolerance)·Σ|x·w|")
    }

    @Test(
        "every path computes the reference's bits at the extremes: ±127 in whole blocks of one sign, zero blocks",
        arguments: KernelISA.alike, [(1, 64, 3), (3, 95, 5), (6, 161, 4)])
    func extremeValues(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 17 + shape.inputs))
        // Block b of a row: all +max, all -max, zero, or random with a ±max entry (so every q is ±127 in
        // the first two, and pairs of products reach 2 · 127 · 127, the most maddubs' int16 holds).
        func row(_ index: Int, scale: Float) -> [Float] {
            (0..<shape.inputs).map { column in
                let block = column / 32
                switch (block + index) % 4 {
                case 0: return scale
                case 1: return -scale
                case 2: return 0
                default: return column % 32 == 5 ? -scale : random.floats(1)[0] * scale
                }
            }
        }
        let x = (0..<shape.rows).flatMap { row($0, scale: 1e4) }
        let w = (0..<shape.outputs).flatMap { row($0 * 3 + 1, scale: 0.5) }
        let (values, scales) = quantizeQ8(w, outputCount: shape.outputs, inputCount: shape.inputs)
        #expect(values.contains(127) && values.contains(-127))
        let y = linear(x, rowCount: shape.rows, q8Values: values, q8Scales: scales, outputCount: shape.outputs, isa: isa)
        let reference = referenceQ8Product(
            x, rowCount: shape.rows, inputCount: shape.inputs, values: values, scales: scales, outputCount: shape.outputs)
        for (index, (actual, expected)) in zip(y, reference).enumerated() {
            #expect(actual.bitPattern == expected.bitPattern, "\(isa) \(shape) [\(index)]: \(actual) vs \(expected)")
        }
    }

    @Test(
        "a row's q8 product is bitwise identical for m = 1 … 40 and at any position in the batch",
        arguments: KernelISA.alike)
    func batchInvariant(isa: KernelISA) {
        var random = TestRandom(seed: 29)
        let (inputs, outputs) = (97, 41)
        let (values, scales) = quantizeQ8(random.floats(outputs * inputs), outputCount: outputs, inputCount: inputs)
        let row = random.floats(inputs)
        let alone = linear(row, rowCount: 1, q8Values: values, q8Scales: scales, outputCount: outputs, isa: isa)
        for rowCount in 1...40 {
            for position in Set([0, rowCount / 2, rowCount - 1]) {
                var x = random.floats(rowCount * inputs)
                x.replaceSubrange((position * inputs)..<((position + 1) * inputs), with: row)
                let y = linear(
                    x, rowCount: rowCount, q8Values: values, q8Scales: scales, outputCount: outputs, isa: isa)
                #expect(
                    Array(y[(position * outputs)..<((position + 1) * outputs)]).map(\.bitPattern) == alone.map(\.bitPattern),
                    "\(isa): m = \(rowCount), row at \(position)")
            }
        }
    }
}

/// FP8 bytes in memory of their own, for a borrowing `WeightTensor`.
private final class FP8Bytes {
    let bytes: UnsafeMutableBufferPointer<UInt8>

    init(_ values: [UInt8]) {
        bytes = .allocate(capacity: values.count)
        _ = bytes.initialize(from: values)
    }

    deinit { bytes.deallocate() }
}

@Suite("q8 matrices held by WeightTensor")
struct Q8WeightTensorTests {
    @Test(
        "a bf16 matrix quantized at load computes the q8 kernel's bits on its widened values, and dequantizes within half a step",
        arguments: [(1, 40, 7), (3, 77, 5), (9, 1024, 33)])
    func quantizedBFloat16(shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.inputs * 5 + shape.outputs))
        let bits = random.floats(shape.outputs * shape.inputs).map { roundedToBFloat16($0 * 0.2) }
        let stored = WeightTensor(shape: [shape.outputs, shape.inputs], bfloat16Bits: bits)
        let quantized = stored.quantizedQ8()
        #expect(quantized.isQ8 && !stored.isQ8)
        let blocks = q8BlockCount(inputCount: shape.inputs)
        #expect(quantized.storedByteCount == shape.outputs * blocks * (32 + 4))
        let (values, scales) = quantizeQ8(stored.values, outputCount: shape.outputs, inputCount: shape.inputs)
        let x = random.floats(shape.rows * shape.inputs)
        let expected = linear(x, rowCount: shape.rows, q8Values: values, q8Scales: scales, outputCount: shape.outputs)
        let actual = linear(x, rowCount: shape.rows, weight: quantized)
        #expect(actual.map(\.bitPattern) == expected.map(\.bitPattern))
        for (index, (dequantized, original)) in zip(quantized.values, stored.values).enumerated() {
            let scale = scales[(index / shape.inputs) * blocks + (index % shape.inputs) / 32]
            #expect(abs(dequantized - original) <= scale * 0.5001, "weight \(index)")
        }
    }

    @Test("q, k and v held as q8 run as one job with bitwise the outputs of three products; FP8 stays FP8")
    func fusedProducts() throws {
        var random = TestRandom(seed: 404)
        let (rows, inputs) = (5, 96)
        let weights = [48, 16, 16].map { outputs in
            WeightTensor(FloatTensor(shape: [outputs, inputs], values: random.floats(outputs * inputs))).quantizedQ8()
        }
        let x = random.floats(rows * inputs)
        var fused = weights.map { [Float](repeating: 0, count: rows * $0.shape[0]) }
        x.withUnsafeBufferPointer { input in
            let pointers = fused.indices.map { index in
                fused[index].withUnsafeMutableBufferPointer { $0.baseAddress! }
            }
            linear(input.baseAddress!, rowCount: rows, weights: weights, into: pointers, arithmetic: .fast)
        }
        for (weight, output) in zip(weights, fused) {
            #expect(output.map(\.bitPattern) == linear(x, rowCount: rows, weight: weight).map(\.bitPattern))
        }
        let block = FP8BlockSize(rows: 4, columns: 8)
        let (bytes, scales) = quantizeFP8(random.floats(8 * 16), outputCount: 8, inputCount: 16, block: block)
        let owner = FP8Bytes(bytes)
        let fp8 = WeightTensor(
            shape: [8, 16], borrowingFP8: UnsafePointer(owner.bytes.baseAddress!),
            scales: FloatTensor(shape: [2, 2], values: scales), block: block, owner: owner)
        #expect(fp8.quantizedQ8().isFP8)
    }
}

@Suite("q8 weights in a model")
struct Q8ModelTests {
    /// The stated tolerance of `--quantize q8` and `q8-experts`: logits within this fraction of the
    /// largest |logit|.
    static let relativeLogitTolerance: Float = 0.06

    /// A Mixtral checkpoint of weights about `initializerRange` in size.
    static func checkpoint(dtype: DType, initializerRange: Double) throws -> URL {
        var options = MixtralCheckpointOptions()
        options.hiddenSize = 128
        options.intermediateSize = 200
        options.attentionHeadCount = 4
        options.keyValueHeadCount = 2
        options.expertCount = 4
        options.expertsPerToken = 2
        options.vocabularySize = 300
        options.seed = 12
        options.dtype = dtype
        options.initializerRange = initializerRange
        let directory = try TestPaths.makeTemporaryDirectory("q8-test")
        try MixtralCheckpointWriter.write(options, to: directory)
        return directory
    }

    /// Expects `quantized` within the tolerance of `exact` with the same greedy choice at every position.
    static func expectClose(_ quantized: [Float], to exact: [Float], vocabulary: Int, _ what: String) {
        let scale = exact.map(abs).max() ?? 1
        let worst = zip(exact, quantized).map { abs($0 - $1) }.max() ?? 0
        #expect(worst > 0, "\(what) really quantizes")
        #expect(worst <= relativeLogitTolerance * scale, "\(what): worst |q8 - f32| = \(worst), largest |logit| \(scale)")
        let positions = exact.count / vocabulary
        let same = (0..<positions).filter { position in
            let range = (position * vocabulary)..<((position + 1) * vocabulary)
            return argmax(exact[range]) == argmax(quantized[range])
        }.count
        #expect(same == positions, "\(what): greedy choice equal at \(same) of \(positions) positions")
    }

    @Test(
        "q8 experts alone (q8-experts) keep the logits within 6% (of the largest |logit|) of f32 and every greedy choice, weights of size 0.3, f32 and bf16 checkpoints",
        arguments: [DType.f32, .bf16])
    func expertsWithinToleranceOfFloat(dtype: DType) throws {
        let directory = try Self.checkpoint(dtype: dtype, initializerRange: 0.3)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let exact = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .exact, greedyFrom: nil)
        let q8 = try BFloat16CheckpointTests.logits(
            checkpoint, arithmetic: .exact, quantization: .q8, denseQuantization: WeightQuantization.none,
            greedyFrom: exact)
        Self.expectClose(q8, to: exact, vocabulary: checkpoint.shape.vocabularySize, "q8 experts")
    }

    /// Attention and the LM head quantized as well add error that grows with the weights' size: on
    /// this model the worst |q8 - f32| was 1.6% of the largest |logit| at size 0.05, 3.3-3.6% at 0.1
    /// and 10-15% at 0.3 (with one greedy choice of nine changed); transformers initializes at 0.02.
    @Test(
        "q8 experts, attention and LM head (q8) keep the logits within 6% of f32 and every greedy choice, weights of size 0.1, f32 and bf16 checkpoints",
        arguments: [DType.f32, .bf16])
    func wholeModelWithinToleranceOfFloat(dtype: DType) throws {
        let directory = try Self.checkpoint(dtype: dtype, initializerRange: 0.1)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let exact = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .exact, greedyFrom: nil)
        let q8 = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .exact, quantization: .q8, greedyFrom: exact)
        Self.expectClose(q8, to: exact, vocabulary: checkpoint.shape.vocabularySize, "q8 model")
        // The dense model's matrices are quantized too, not only the experts'.
        let expertsOnly = try BFloat16CheckpointTests.logits(
            checkpoint, arithmetic: .exact, quantization: .q8, denseQuantization: WeightQuantization.none,
            greedyFrom: exact)
        #expect(expertsOnly.map(\.bitPattern) != q8.map(\.bitPattern), "q8 quantizes attention and the LM head")
    }
}

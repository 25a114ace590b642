// bf16 weights used as stored: the bf16 kernel widens each weight exactly and reduces in the f32
// kernel's fixed order, so it equals a double-precision reference within f32 rounding, equals the
// f32 kernel on the upcast weights bit for bit, and keeps batch invariance; a bf16 checkpoint runs
// from its memory map and gives bitwise the logits of the same checkpoint converted to f32.
import Foundation
import Kernels
import Models
import Synchronization
import Tensors
import TestSupport
import Testing

/// Largest accepted |kernel - double reference| relative to Σ|x·w| (f32 accumulation; the
/// widened bf16 weights are exact, so the bound is the f32 kernel's).
private let relativeBFloat16Tolerance: Double = 1e-6

/// `count` random non-zero weights rounded to bf16: the bit patterns and their exact f32 values.
private func randomBFloat16(_ random: inout TestRandom, _ count: Int) -> (bits: [UInt16], widened: [Float]) {
    let bits = random.floats(count).map { value -> UInt16 in
        let rounded = bfloat16Bits(from: value)
        // Rounding never reaches 0 from [-1, 1) \ {0}, but keep the inputs non-zero by construction.
        return rounded & 0x7FFF == 0 ? bfloat16Bits(from: 0.5) : rounded
    }
    return (bits, bits.map(floatFromBFloat16Bits))
}

/// Expects bitwise equality; on failure reports the largest difference and the first mismatch.
private func expectSameBits(
    _ actual: [Float], _ expected: [Float], _ context: @autoclosure () -> String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count != expected.count || actual.map(\.bitPattern) != expected.map(\.bitPattern) else { return }
    let detail =
        actual.count == expected.count
        ? "\(Difference(actual, expected, tolerance: 0))" : "\(actual.count) vs \(expected.count) values"
    Issue.record("\(context()): not bitwise equal, \(detail)", sourceLocation: sourceLocation)
}

/// Shapes (rows, inputs, outputs) with k below, at and above one 16-lane block, with tails, and n
/// not a multiple of any tile width.
private let bfloat16Shapes: [(Int, Int, Int)] = [
    (1, 1, 1), (1, 17, 5), (3, 15, 7), (5, 16, 4), (7, 33, 9), (9, 100, 13), (13, 257, 6), (2, 1024, 3),
]

@Suite("bf16 weight kernel")
struct BFloat16KernelTests {
    @Test(
        "the bf16-weight product equals a double-precision x·Wᵀ on the widened weights on every path, tails included",
        arguments: KernelISA.alike, bfloat16Shapes)
    func matchesDoubleReference(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 7919 + shape.inputs * 31 + shape.outputs))
        let x = random.floats(shape.rows * shape.inputs)
        let w = randomBFloat16(&random, shape.outputs * shape.inputs)
        let y = linear(x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, isa: isa)
        var worst = 0.0
        for r in 0..<shape.rows {
            for o in 0..<shape.outputs {
                var value = 0.0
                var magnitude = 0.0
                for i in 0..<shape.inputs {
                    let product = Double(x[r * shape.inputs + i]) * Double(w.widened[o * shape.inputs + i])
                    value += product
                    magnitude += abs(product)
                }
                let error = abs(Double(y[r * shape.outputs + o]) - value)
                worst = max(worst, error / (relativeBFloat16Tolerance * magnitude))
            }
        }
        #expect(worst <= 1, "\(isa) \(shape): worst error \(worst) × tolerance \(relativeBFloat16Tolerance)·Σ|x·w|")
    }

    @Test(
        "the bf16-weight product is bitwise the f32 product on the same weights upcast, on every path, accumulate included",
        arguments: KernelISA.alike, bfloat16Shapes)
    func equalsFloatKernelOnUpcastWeights(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 131 + shape.inputs * 17 + shape.outputs))
        let x = random.floats(shape.rows * shape.inputs)
        let w = randomBFloat16(&random, shape.outputs * shape.inputs)
        let expected = linear(x, rowCount: shape.rows, weight: w.widened, outputCount: shape.outputs, isa: .scalar)
        let actual = linear(x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, isa: isa)
        expectSameBits(actual, expected, "\(isa) \(shape)")

        let base = random.floats(shape.rows * shape.outputs)
        var accumulatedFloat = base
        var accumulatedBFloat16 = base
        x.withUnsafeBufferPointer { xp in
            w.widened.withUnsafeBufferPointer { wf in
                accumulatedFloat.withUnsafeMutableBufferPointer { yp in
                    linear(
                        xp.baseAddress!, rowCount: shape.rows, inputCount: shape.inputs, weight: wf.baseAddress!,
                        outputCount: shape.outputs, into: yp.baseAddress!, accumulate: true, isa: isa)
                }
            }
            w.bits.withUnsafeBufferPointer { wb in
                accumulatedBFloat16.withUnsafeMutableBufferPointer { yp in
                    linear(
                        xp.baseAddress!, rowCount: shape.rows, inputCount: shape.inputs, bfloat16Weight: wb.baseAddress!,
                        outputCount: shape.outputs, into: yp.baseAddress!, accumulate: true, isa: isa)
                }
            }
        }
        expectSameBits(accumulatedBFloat16, accumulatedFloat, "\(isa) \(shape) accumulate")
    }

    @Test(
        "a row's bf16-weight product is bitwise identical for m = 1 … 40 and at any position in the batch",
        arguments: KernelISA.alike)
    func batchInvariant(isa: KernelISA) {
        var random = TestRandom(seed: 21)
        let (inputs, outputs) = (67, 37)
        let w = randomBFloat16(&random, outputs * inputs).bits
        let row = random.floats(inputs)
        let alone = linear(row, rowCount: 1, bfloat16Weight: w, outputCount: outputs, isa: isa)
        for rowCount in 1...40 {
            for position in Set([0, rowCount / 2, rowCount - 1]) {
                var x = random.floats(rowCount * inputs)
                x.replaceSubrange((position * inputs)..<((position + 1) * inputs), with: row)
                let y = linear(x, rowCount: rowCount, bfloat16Weight: w, outputCount: outputs, isa: isa)
                expectSameBits(
                    Array(y[(position * outputs)..<((position + 1) * outputs)]), alone,
                    "\(isa): m = \(rowCount), row at \(position)")
            }
        }
    }
}

@Suite("bf16 checkpoints")
struct BFloat16CheckpointTests {
    /// A small bf16 checkpoint with sizes that leave kernel tails (by default H = 40, I = 56, V = 50).
    static func writeBFloat16Checkpoint(
        tie: Bool, hiddenSize: Int = 40, intermediateSize: Int = 56, vocabularySize: Int = 50
    ) throws -> URL {
        var options = MixtralCheckpointOptions()
        options.hiddenSize = hiddenSize
        options.intermediateSize = intermediateSize
        options.attentionHeadCount = 4
        options.keyValueHeadCount = 2
        options.expertCount = 4
        options.expertsPerToken = 2
        options.vocabularySize = vocabularySize
        options.seed = 5
        options.dtype = .bf16
        options.tieWordEmbeddings = tie
        // Weights of std 0.3 rather than 0.02 so logits vary visibly between tokens.
        options.initializerRange = 0.3
        let directory = try TestPaths.makeTemporaryDirectory("bf16-test")
        try MixtralCheckpointWriter.write(options, to: directory)
        return directory
    }

    /// Copies `source` with every tensor converted to f32 (same config.json).
    static func writeFloatCopy(of source: URL) throws -> URL {
        let checkpoint = try Checkpoint(directory: source)
        let tensors = try checkpoint.tensorNames.map { name in
            SafetensorsWriter.Tensor(
                name: name, shape: checkpoint.entry(named: name)!.shape, values: try checkpoint.floats(named: name),
                storedAs: .f32)
        }
        let directory = try TestPaths.makeTemporaryDirectory("bf16-test-f32")
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent(Checkpoint.singleFileName))
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("config.json"), to: directory.appendingPathComponent("config.json"))
        return directory
    }

    /// Logits of every position of a prompt, then of three greedy decode steps.
    /// - Parameter greedyFrom: logits of an earlier run whose greedy tokens to decode (so two runs
    ///   see the same inputs), or nil to decode this run's own greedy tokens.
    /// - Parameters:
    ///   - quantization: of the experts; `denseQuantization`: of the dense model (nil: the same).
    static func logits(
        _ checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic = .exact, quantization: WeightQuantization = .none,
        denseQuantization: WeightQuantization? = nil, keyValueCacheDType: DType? = nil,
        greedyFrom reference: [Float]? = nil
    ) throws -> [Float] {
        let c = checkpoint.shape
        let model = try DecoderStack(
            checkpoint: checkpoint, arithmetic: arithmetic, keyValueCacheDType: keyValueCacheDType,
            quantization: denseQuantization ?? quantization)
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<c.layerCount).flatMap { l in
                (0..<c.expertCount).map { LayerExpert(layer: LayerIndex(l), expert: ExpertID($0)) }
            },
            arithmetic: arithmetic, quantization: quantization)
        let experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float] = {
            try store.compute(layer: $0, hidden: $1, routing: $2)
        }
        var cache = model.makeCache(capacity: 16)
        var all = try model.forward(tokens: [1, 7, 3, 44, 20, 9], cache: &cache, logits: .allTokens, experts: experts)
        for _ in 0..<3 {
            let source = reference ?? all
            let next = Int32(argmax(source[(all.count - c.vocabularySize)..<all.count]))
            all += try model.forward(tokens: [next], cache: &cache, logits: .lastToken, experts: experts)
        }
        return all
    }

    @Test("a bf16 checkpoint keeps its matrices bf16 and memory-mapped, and its norms f32", arguments: [false, true])
    func weightsStayBFloat16(tie: Bool) throws {
        let directory = try Self.writeBFloat16Checkpoint(tie: tie)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        for name in [
            MixtralTensorNames.embedding, MixtralTensorNames.query(0), MixtralTensorNames.expertDown(1, 3),
            MixtralTensorNames.router(1),
        ] + (tie ? [] : [MixtralTensorNames.lmHead]) {
            let weight = try checkpoint.weight(named: name)
            #expect(weight.dtype == .bf16 && weight.isBorrowed, "\(name)")
            #expect(weight.values == (try checkpoint.floats(named: name)), "\(name)")
        }
        let norm = try checkpoint.tensor(named: MixtralTensorNames.finalNorm)
        #expect(norm.values == (try checkpoint.floats(named: MixtralTensorNames.finalNorm)))
    }

    @Test(
        "a bf16 checkpoint gives bitwise the logits of the same checkpoint converted to f32 (prefill and decode)",
        arguments: [false, true])
    func logitsEqualFloatCopy(tie: Bool) throws {
        let directory = try Self.writeBFloat16Checkpoint(tie: tie)
        let floatDirectory = try Self.writeFloatCopy(of: directory)
        defer { for url in [directory, floatDirectory] { try? FileManager.default.removeItem(at: url) } }
        let bfloat16 = try Checkpoint(directory: directory)
        let float = try Checkpoint(directory: floatDirectory)
        #expect(float.entry(named: MixtralTensorNames.embedding)?.dtype == .f32)
        let expected = try Self.logits(float)
        let actual = try Self.logits(bfloat16)
        expectSameBits(actual, expected, "bf16 vs f32 copy, tied = \(tie)")
        #expect(Set(expected.map(\.bitPattern)).count > 10, "the logits vary")
    }
}

/// Held while a test runs with a thread count of its own: the count is one process-wide setting and
/// the suites that change it run in parallel, so without the lock one test's "3 threads" could run on
/// another's 1. (Products computed outside it give the same bits on any count.)
private let threadCountLock = NSRecursiveLock()

/// Runs `body` with the kernels split over `count` threads, then restores the previous count; no other
/// test changes the count meanwhile.
private func withThreadCount<Result>(_ count: Int, _ body: () throws -> Result) rethrows -> Result {
    threadCountLock.lock()
    defer { threadCountLock.unlock() }
    let previous = Kernels.threadCount
    Kernels.setThreadCount(count)
    defer { Kernels.setThreadCount(previous) }
    return try body()
}

/// A random bf16 product for the thread tests: `run()` computes it on the current thread count,
/// `expected` is its result on 1 thread.
private struct ThreadTestProduct {
    let x: [Float]
    let w: [UInt16]
    let rows: Int
    let outputs: Int
    let expected: [Float]

    init(seed: UInt64, rows: Int, inputs: Int, outputs: Int) {
        var random = TestRandom(seed: seed)
        x = random.floats(rows * inputs)
        w = randomBFloat16(&random, outputs * inputs).bits
        self.rows = rows
        self.outputs = outputs
        let (x, w) = (x, w)
        expected = withThreadCount(1) { linear(x, rowCount: rows, bfloat16Weight: w, outputCount: outputs) }
    }

    func run() -> [Float] { linear(x, rowCount: rows, bfloat16Weight: w, outputCount: outputs) }
}

@Suite("Kernel threads", .serialized)
struct KernelThreadTests {
    @Test(
        "f32 and bf16 products are bitwise the same on 1, 2 and 3 threads, on every path",
        arguments: KernelISA.alike, [(1, 1024, 700), (8, 256, 531), (33, 100, 97), (2, 40, 2000)])
    func threadCountInvariant(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.outputs))
        let x = random.floats(shape.rows * shape.inputs)
        let w = randomBFloat16(&random, shape.outputs * shape.inputs)
        let f32 = withThreadCount(1) {
            linear(x, rowCount: shape.rows, weight: w.widened, outputCount: shape.outputs, isa: isa)
        }
        let bf16 = withThreadCount(1) {
            linear(x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, isa: isa)
        }
        expectSameBits(bf16, f32, "\(isa) \(shape) bf16 vs f32, 1 thread")
        for threads in [2, 3] {
            withThreadCount(threads) {
                #expect(Kernels.threadCount == threads)
                for _ in 0..<3 {
                    expectSameBits(
                        linear(x, rowCount: shape.rows, weight: w.widened, outputCount: shape.outputs, isa: isa), f32,
                        "\(isa) \(shape) f32, \(threads) threads")
                    expectSameBits(
                        linear(x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, isa: isa),
                        bf16, "\(isa) \(shape) bf16, \(threads) threads")
                }
            }
        }
    }

    @Test("products issued concurrently from several threads while the workers are busy give the same bits")
    func concurrentCallers() {
        let product = ThreadTestProduct(seed: 99, rows: 4, inputs: 512, outputs: 1000)
        let callerCount = 6
        let results = Mutex([[Float]](repeating: [], count: callerCount))
        withThreadCount(2) {
            DispatchQueue.concurrentPerform(iterations: callerCount) { caller in
                var last: [Float] = []
                for _ in 0..<20 { last = product.run() }
                results.withLock { $0[caller] = last }
            }
        }
        for (caller, result) in results.withLock({ $0 }).enumerated() { expectSameBits(result, product.expected, "caller \(caller)") }
    }

    @Test(
        "products after the threads were sent to rest, or while another thread keeps sending them, all finish with the same bits",
        .timeLimit(.minutes(1)))
    func restingThreads() {
        let product = ThreadTestProduct(seed: 7, rows: 2, inputs: 512, outputs: 1000)
        withThreadCount(3) {
            // Rest between products: each product wakes the sleeping threads.
            for round in 0..<50 {
                Kernels.restThreads()
                if round % 2 == 1 { usleep(200) }  // some rests find the threads asleep already
                expectSameBits(product.run(), product.expected, "round \(round)")
            }
            // Rests from another thread while products run.
            final class Flag: Sendable { let raised = Atomic<Bool>(false) }
            let done = Flag()
            let stopped = DispatchSemaphore(value: 0)
            Thread {
                while !done.raised.load(ordering: .relaxed) { Kernels.restThreads() }
                stopped.signal()
            }.start()
            for round in 0..<200 {
                expectSameBits(product.run(), product.expected, "concurrent round \(round)")
            }
            done.raised.store(true, ordering: .relaxed)
            stopped.wait()
        }
    }

    @Test("parallelFor runs every index exactly once, on several threads, with products inside it", arguments: [1, 2, 7, 300])
    func parallelForRunsEachIndexOnce(count: Int) {
        let product = ThreadTestProduct(seed: UInt64(count), rows: 2, inputs: 300, outputs: 200)
        for threads in [1, 2, 3] {
            let runs = Mutex([Int](repeating: 0, count: count))
            let products = Mutex([[Float]](repeating: [], count: count))
            let threadIDs = Mutex(Set<UInt>())
            withThreadCount(threads) {
                parallelFor(count) { index in
                    // A product inside a task runs on that task's thread and gives the same bits.
                    let y = product.run()
                    runs.withLock { $0[index] += 1 }
                    products.withLock { $0[index] = y }
                    threadIDs.withLock { _ = $0.insert(UInt(bitPattern: Int(pthread_self()))) }
                }
            }
            #expect(runs.withLock { $0 } == [Int](repeating: 1, count: count), "\(threads) threads")
            for (index, y) in products.withLock({ $0 }).enumerated() {
                expectSameBits(y, product.expected, "task \(index), \(threads) threads")
            }
            #expect(threadIDs.withLock { $0.count } <= threads)
        }
    }

    @Test("swiGLU of a batch large enough to be split over threads is bitwise the serial result", arguments: [16384, 50001])
    func swiGLUSplitInvariant(count: Int) {
        var random = TestRandom(seed: UInt64(count))
        let gate = random.floats(count, scale: 6)
        let up = random.floats(count)
        let serial = zip(gate, up).map { g, u in silu(g) * u }
        for threads in [1, 2, 3] {
            var result = gate
            withThreadCount(threads) {
                result.withUnsafeMutableBufferPointer { g in
                    up.withUnsafeBufferPointer { u in swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: count) }
                }
            }
            expectSameBits(result, serial, "\(count) elements, \(threads) threads")
        }
    }

    @Test("a bf16 model's logits are bitwise the same on 1 and 3 threads")
    func modelThreadCountInvariant() throws {
        // Large enough that the products are split (the kernels keep small ones on one thread).
        let directory = try BFloat16CheckpointTests.writeBFloat16Checkpoint(
            tie: false, hiddenSize: 200, intermediateSize: 424, vocabularySize: 600)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let one = try withThreadCount(1) { try BFloat16CheckpointTests.logits(checkpoint) }
        let three = try withThreadCount(3) { try BFloat16CheckpointTests.logits(checkpoint) }
        expectSameBits(three, one, "bf16 model, 3 threads vs 1")
    }
}

/// The fast arithmetic rounds each input to bf16 (relative error ≤ 2⁻⁹, so ≤ 2⁻⁹ of each |x·w|);
/// with f32 accumulation on top, |result - exact| ≤ 2⁻⁸ · Σ|x·w| is a safe bound.
private let relativeFastTolerance: Double = 1.0 / 256

/// A plain reference of ``BFloat16Arithmetic/fast``'s rounding: nearest even, denormals to a
/// signed zero, NaN stays NaN.
private func referenceRound(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if bits & 0x7F80_0000 == 0 { return UInt16((bits >> 16) & 0x8000) }
    if value.isNaN { return UInt16(bits >> 16) | 0x0040 }
    let lsb = (bits >> 16) & 1
    return UInt16((UInt64(bits) + 0x7FFF + UInt64(lsb)) >> 16)
}

/// A plain reference of the fast product for one output: per block of 32, lane l adds the product
/// at 2l + 1 then the one at 2l (f32, one rounding each), then the lanes' tree sum.
private func referenceFastDot(_ x: ArraySlice<Float>, _ w: ArraySlice<UInt16>) -> Float {
    let xs = Array(x).map { floatFromBFloat16Bits(referenceRound($0)) }
    let ws = Array(w).map(floatFromBFloat16Bits)
    var lanes = [Float](repeating: 0, count: 16)
    var p = 0
    while p < xs.count {
        for l in 0..<16 {
            for index in [p + 2 * l + 1, p + 2 * l] where index < xs.count {
                lanes[l] = (xs[index] * ws[index]) + lanes[l]  // exact product, one rounding
            }
        }
        p += 32
    }
    let t8 = (0..<8).map { lanes[$0] + lanes[$0 + 8] }
    let t4 = (0..<4).map { t8[$0] + t8[$0 + 4] }
    return (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// The `amx` path's bits (`tdpbf16ps`, as the Intel SDM's newer pseudocode describes it): for each block
/// of 32 indices, the products of the even indices summed in order from zero with one rounding each, the
/// odd ones likewise, those two sums added, and that added to the accumulator, which starts at zero.
/// Positions past the inputs are zero products, as the path's zero-padded tiles give. (The instruction
/// also flushes denormal inputs and results to zero; the callers' values stay in the normal range.)
private func referenceAMXDot(_ x: ArraySlice<Float>, _ w: ArraySlice<UInt16>) -> Float {
    let xs = Array(x).map { floatFromBFloat16Bits(referenceRound($0)) }
    let ws = Array(w).map(floatFromBFloat16Bits)
    var accumulator: Float = 0
    var p = 0
    while p < xs.count {
        var even: Float = 0
        var odd: Float = 0
        for q in 0..<16 {
            let (e, o) = (p + 2 * q, p + 2 * q + 1)
            even = (e < xs.count ? xs[e] * ws[e] : 0) + even  // exact product, one rounding
            odd = (o < xs.count ? xs[o] * ws[o] : 0) + odd
        }
        accumulator = accumulator + (even + odd)
        p += 32
    }
    return accumulator
}

/// The fast product on `isa` of random x (rows × inputs, within ±4) and bf16 weights, bitwise against
/// `reference` (one output from a row of x and a row of weights).
private func expectReferenceBits(
    isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int), seed: UInt64,
    reference: (ArraySlice<Float>, ArraySlice<UInt16>) -> Float
) {
    var random = TestRandom(seed: seed)
    let x = random.floats(shape.rows * shape.inputs).map { $0 * 4 }
    let w = randomBFloat16(&random, shape.outputs * shape.inputs)
    let y = linear(
        x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, arithmetic: .fast, isa: isa)
    var expected: [Float] = []
    for r in 0..<shape.rows {
        for o in 0..<shape.outputs {
            expected.append(
                reference(
                    x[(r * shape.inputs)..<((r + 1) * shape.inputs)],
                    w.bits[(o * shape.inputs)..<((o + 1) * shape.inputs)]))
        }
    }
    expectSameBits(y, expected, "\(isa), \(shape)")
}

@Suite("bf16 fast arithmetic kernel")
struct BFloat16FastKernelTests {
    @Test("inputs are rounded to bf16 as the reference rounds them: nearest even, denormals flushed, NaN kept")
    func rounding() {
        var random = TestRandom(seed: 41)
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, .greatestFiniteMagnitude,
            .leastNonzeroMagnitude, -.leastNormalMagnitude, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
            Float(bitPattern: 0x0070_0000), Float(bitPattern: 0x7F7F_FFFF)]
        values += random.floats(2000).map { $0 * 1e3 }
        for value in values {
            let actual = roundedToBFloat16(value)
            let expected = referenceRound(value)
            if value.isNaN {
                #expect(floatFromBFloat16Bits(actual).isNaN, "NaN stays NaN")
            } else {
                #expect(actual == expected, "\(value) (bits \(String(value.bitPattern, radix: 16)))")
            }
        }
    }

    @Test(
        "every path computes the reference's bits: pairs accumulated as vdpbf16ps does, tails included",
        arguments: KernelISA.alike, bfloat16Shapes + [(4, 31, 5), (6, 65, 7), (3, 32, 9)])
    func matchesReferenceBits(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        expectReferenceBits(
            isa: isa, shape: shape, seed: UInt64(shape.rows * 37 + shape.inputs * 5 + shape.outputs),
            reference: referenceFastDot)
    }

    @Test(
        "the amx path computes tdpbf16ps's documented bits: even and odd products summed apart within each block of 32",
        arguments: KernelISA.supported.filter { $0 == .amx },
        bfloat16Shapes + [(4, 31, 5), (6, 65, 7), (3, 32, 9), (19, 100, 37), (33, 1024, 70)])
    func amxMatchesItsReference(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        expectReferenceBits(
            isa: isa, shape: shape, seed: UInt64(shape.rows * 41 + shape.inputs * 3 + shape.outputs),
            reference: referenceAMXDot)
    }

    @Test(
        "x at rounding ties, denormals and the largest finite values is rounded as the reference on every path",
        arguments: KernelISA.alike)
    func roundsSpecialInputs(isa: KernelISA) {
        var random = TestRandom(seed: 43)
        let special: [Float] = [0, -0, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
            Float(bitPattern: 0xBF80_8000), Float(bitPattern: 0x0070_0000), Float(bitPattern: 0x8000_0001),
            .leastNormalMagnitude, Float(bitPattern: 0x7F7F_FFFF) / 1e30, Float(bitPattern: 0x3F7F_FF80)]
        let inputs = 45  // a partial last block of 16 and of 32
        var x = random.floats(3 * inputs)
        for (index, value) in special.enumerated() {
            x[index * 13 % x.count] = value
            x[(index * 13 + 7) % x.count] = -value
        }
        let outputs = 5
        let w = randomBFloat16(&random, outputs * inputs)
        let y = linear(x, rowCount: 3, bfloat16Weight: w.bits, outputCount: outputs, arithmetic: .fast, isa: isa)
        var expected: [Float] = []
        for r in 0..<3 {
            for o in 0..<outputs {
                expected.append(
                    referenceFastDot(
                        x[(r * inputs)..<((r + 1) * inputs)], w.bits[(o * inputs)..<((o + 1) * inputs)]))
            }
        }
        expectSameBits(y, expected, "\(isa)")
    }

    @Test(
        "the fast product is within 2⁻⁸·Σ|x·w| of a double-precision x·Wᵀ on every path, amx included",
        arguments: KernelISA.supported, bfloat16Shapes + [(4, 31, 5), (6, 65, 7), (19, 100, 37), (33, 1024, 70)])
    func withinTolerance(isa: KernelISA, shape: (rows: Int, inputs: Int, outputs: Int)) {
        var random = TestRandom(seed: UInt64(shape.rows * 37 + shape.inputs * 5 + shape.outputs))
        let x = random.floats(shape.rows * shape.inputs)
        let w = randomBFloat16(&random, shape.outputs * shape.inputs)
        let y = linear(
            x, rowCount: shape.rows, bfloat16Weight: w.bits, outputCount: shape.outputs, arithmetic: .fast, isa: isa)
        var worst = 0.0
        for r in 0..<shape.rows {
            for o in 0..<shape.outputs {
                var value = 0.0
                var magnitude = 0.0
                for i in 0..<shape.inputs {
                    let product = Double(x[r * shape.inputs + i]) * Double(w.widened[o * shape.inputs + i])
                    value += product
                    magnitude += abs(product)
                }
                worst = max(worst, abs(Double(y[r * shape.outputs + o]) - value) / (relativeFastTolerance * magnitude))
            }
        }
        #expect(worst <= 1, "\(isa) \(shape): worst error \(worst) × tolerance \(relativeFastTolerance)·Σ|x·w|")
    }

    @Test(
        "a row's fast product is bitwise identical for m = 1 … 40 and at any position in the batch, amx included",
        arguments: KernelISA.supported)
    func batchInvariant(isa: KernelISA) {
        var random = TestRandom(seed: 23)
        let (inputs, outputs) = (67, 37)
        let w = randomBFloat16(&random, outputs * inputs).bits
        let row = random.floats(inputs)
        let alone = linear(row, rowCount: 1, bfloat16Weight: w, outputCount: outputs, arithmetic: .fast, isa: isa)
        for rowCount in 1...40 {
            for position in Set([0, rowCount / 2, rowCount - 1]) {
                var x = random.floats(rowCount * inputs)
                x.replaceSubrange((position * inputs)..<((position + 1) * inputs), with: row)
                let y = linear(x, rowCount: rowCount, bfloat16Weight: w, outputCount: outputs, arithmetic: .fast, isa: isa)
                expectSameBits(
                    Array(y[(position * outputs)..<((position + 1) * outputs)]), alone,
                    "\(isa): m = \(rowCount), row at \(position)")
            }
        }
    }
}

@Suite("fused bf16 products")
struct FusedProductTests {
    /// (first row, rows, outputs) of each product, and the input's rows and columns.
    typealias GroupedCase = (products: [(Int, Int, Int)], rows: Int, inputs: Int)

    static let groupedCases: [GroupedCase] = [
        // One input for every product (q, k and v).
        ([(0, 5, 700), (0, 5, 33), (0, 5, 1024)], 5, 300),
        // Overlapping and empty row ranges, a range ending at the last row, 1 ... 17 rows (every tile
        // shape), outputs with tails of every tile width.
        ([(0, 5, 700), (5, 1, 33), (6, 0, 40), (6, 17, 97), (2, 9, 1024), (22, 1, 3)], 23, 301),
    ]

    /// The outputs of `groups`' products (row, rows, outputs), one after another, run on `threads` threads by
    /// `run` as one grouped call on `x`, product i's weight at `weights[starts[i]...]`.
    func runGrouped(
        _ groups: [(Int, Int, Int)], x: [Float], weights: [UInt16], at starts: [Int], threads: Int,
        _ run: (UnsafePointer<Float>, [GroupedBFloat16Product]) -> Void
    ) -> [Float] {
        let outputStarts = groups.reduce(into: [0]) { starts, group in starts.append(starts.last! + group.1 * group.2) }
        var outputs = [Float](repeating: .nan, count: outputStarts.last!)
        withThreadCount(threads) {
            x.withUnsafeBufferPointer { input in
                weights.withUnsafeBufferPointer { w in
                    outputs.withUnsafeMutableBufferPointer { y in
                        run(
                            input.baseAddress!,
                            groups.indices.map { index in
                                GroupedBFloat16Product(
                                    firstRow: groups[index].0, rowCount: groups[index].1, weight: w.baseAddress! + starts[index],
                                    outputCount: groups[index].2, output: y.baseAddress! + outputStarts[index])
                            })
                    }
                }
            }
        }
        return outputs
    }

    @Test(
        "products fused into one job, each on its own rows, give bitwise the separate products, on every path (amx included), fast and exact, 1 and 3 threads",
        arguments: KernelISA.supported, BFloat16Arithmetic.allCases)
    func groupedEqualsSeparate(isa: KernelISA, arithmetic: BFloat16Arithmetic) {
        for (caseIndex, testCase) in Self.groupedCases.enumerated() {
            var random = TestRandom(seed: 78 + UInt64(caseIndex))
            let (groups, rows, inputs) = testCase
            let x = random.floats(rows * inputs)
            let weightStarts = groups.reduce(into: [0]) { starts, group in starts.append(starts.last! + group.2 * inputs) }
            let weights = randomBFloat16(&random, weightStarts.last!).bits
            let outputStarts = groups.reduce(into: [0]) { starts, group in starts.append(starts.last! + group.1 * group.2) }
            let separate = groups.enumerated().map { index, group -> [Float] in
                guard group.1 > 0 else { return [] }
                return linear(
                    Array(x[(group.0 * inputs)..<((group.0 + group.1) * inputs)]), rowCount: group.1,
                    bfloat16Weight: Array(weights[weightStarts[index]..<weightStarts[index + 1]]), outputCount: group.2,
                    arithmetic: arithmetic, isa: isa)
            }
            for threads in [1, 3] {
                let grouped = runGrouped(groups, x: x, weights: weights, at: weightStarts, threads: threads) { input, products in
                    linear(
                        input, rowCount: rows, inputCount: inputs, groupedProducts: products, arithmetic: arithmetic, isa: isa)
                }
                for index in groups.indices {
                    expectSameBits(
                        Array(grouped[outputStarts[index]..<outputStarts[index + 1]]), separate[index],
                        "\(isa) \(arithmetic), case \(caseIndex), \(threads) threads, product \(index)")
                }
            }
        }
    }

    @Test(
        "products on weights packed for the amx path give bitwise that path's products on the weights as stored, 1 and 3 threads",
        arguments: KernelISA.supported.filter { $0 == .amx })
    func amxPackedEqualsAMX(isa: KernelISA) {
        // The grouped cases, and 1 / 16 / 17 / 33 / 40 rows on inputs with a partial last block and
        // outputs with a partial last group (the vector path at 1 row, the tiles' 16- and 32-row shapes).
        let cases = Self.groupedCases + [([(0, 1, 70), (0, 33, 70), (1, 16, 17), (3, 17, 40), (0, 40, 16)], 40, 1_000)]
        for (caseIndex, testCase) in cases.enumerated() {
            var random = TestRandom(seed: 97 + UInt64(caseIndex))
            let (groups, rows, inputs) = testCase
            let x = random.floats(rows * inputs)
            let matrices = groups.map { group in randomBFloat16(&random, group.2 * inputs).bits }
            // Every matrix packed into one array (0xFFFF where packing writes nothing, so that a missed
            // element shows), at packedStarts.
            let packedStarts = groups.reduce(into: [0]) { starts, group in
                starts.append(starts.last! + amxPackedCount(outputCount: group.2, inputCount: inputs))
            }
            var packed = [UInt16](repeating: 0xFFFF, count: packedStarts.last!)
            packed.withUnsafeMutableBufferPointer { p in
                for (index, weight) in matrices.enumerated() {
                    weight.withUnsafeBufferPointer { w in
                        packForAMX(
                            w.baseAddress!, outputCount: groups[index].2, inputCount: inputs,
                            into: p.baseAddress! + packedStarts[index])
                    }
                }
            }
            let expected = zip(groups, matrices).map { group, weight -> [Float] in
                guard group.1 > 0 else { return [] }
                return linear(
                    Array(x[(group.0 * inputs)..<((group.0 + group.1) * inputs)]), rowCount: group.1,
                    bfloat16Weight: weight, outputCount: group.2, arithmetic: .fast, isa: isa)
            }
            let outputStarts = groups.reduce(into: [0]) { starts, group in starts.append(starts.last! + group.1 * group.2) }
            for threads in [1, 3] {
                let outputs = runGrouped(groups, x: x, weights: packed, at: packedStarts, threads: threads) { input, products in
                    linear(input, rowCount: rows, inputCount: inputs, amxPackedProducts: products)
                }
                for index in groups.indices {
                    expectSameBits(
                        Array(outputs[outputStarts[index]..<outputStarts[index + 1]]), expected[index],
                        "case \(caseIndex), \(threads) threads, product \(index)")
                }
            }
        }
    }

    @Test("a weight packed for the amx path reads back, row by row, the values it was packed from")
    func amxPackedWeightValues() {
        var random = TestRandom(seed: 131)
        for (rows, columns) in [(1, 1), (3, 33), (16, 32), (17, 100), (40, 65)] {
            let bits = randomBFloat16(&random, rows * columns).bits
            let storage = PackedBFloat16Storage(count: amxPackedCount(outputCount: rows, inputCount: columns))
            bits.withUnsafeBufferPointer { w in
                packForAMX(w.baseAddress!, outputCount: rows, inputCount: columns, into: storage.values.baseAddress!)
            }
            let packed = WeightTensor(shape: [rows, columns], amxPacked: storage)
            let stored = WeightTensor(shape: [rows, columns], bfloat16Bits: bits)
            #expect(packed.isAMXPacked && packed.dtype == .bf16)
            expectSameBits(packed.values, stored.values, "\(rows) × \(columns)")
        }
    }

    @Test(
        "q8 products fused into one job, each on its own rows, give bitwise the separate products, on every path, 1 and 3 threads",
        arguments: KernelISA.alike)
    func groupedQ8EqualsSeparate(isa: KernelISA) {
        for (caseIndex, testCase) in Self.groupedCases.enumerated() {
            var random = TestRandom(seed: 91 + UInt64(caseIndex))
            let (groups, rows, inputs) = testCase
            let x = random.floats(rows * inputs)
            let matrices = groups.map { group in quantizeQ8(random.floats(group.2 * inputs), outputCount: group.2, inputCount: inputs) }
            let outputStarts = groups.reduce(into: [0]) { starts, group in starts.append(starts.last! + group.1 * group.2) }
            let separate = groups.enumerated().map { index, group -> [Float] in
                guard group.1 > 0 else { return [] }
                return linear(
                    Array(x[(group.0 * inputs)..<((group.0 + group.1) * inputs)]), rowCount: group.1,
                    q8Values: matrices[index].values, q8Scales: matrices[index].scales, outputCount: group.2, isa: isa)
            }
            // Stable addresses for every matrix during the grouped call.
            let values = matrices.map { matrix in
                let buffer = UnsafeMutableBufferPointer<Int8>.allocate(capacity: max(1, matrix.values.count))
                _ = buffer.initialize(from: matrix.values)
                return buffer
            }
            let scales = matrices.map { matrix in
                let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, matrix.scales.count))
                _ = buffer.initialize(from: matrix.scales)
                return buffer
            }
            defer {
                values.forEach { $0.deallocate() }
                scales.forEach { $0.deallocate() }
            }
            for threads in [1, 3] {
                var grouped = [Float](repeating: .nan, count: outputStarts.last!)
                withThreadCount(threads) {
                    x.withUnsafeBufferPointer { input in
                        grouped.withUnsafeMutableBufferPointer { y in
                            let products = groups.enumerated().map { index, group in
                                GroupedQ8Product(
                                    firstRow: group.0, rowCount: group.1, values: values[index].baseAddress!,
                                    scales: scales[index].baseAddress!, outputCount: group.2,
                                    output: y.baseAddress! + outputStarts[index])
                            }
                            linear(input.baseAddress!, rowCount: rows, inputCount: inputs, groupedQ8Products: products, isa: isa)
                        }
                    }
                }
                for index in groups.indices {
                    expectSameBits(
                        Array(grouped[outputStarts[index]..<outputStarts[index + 1]]), separate[index],
                        "\(isa) q8, case \(caseIndex), \(threads) threads, product \(index)")
                }
            }
        }
    }
}

@Suite("bf16 checkpoints, fast arithmetic")
struct BFloat16FastCheckpointTests {
    /// Logits with fast arithmetic stay within this distance of the exact (f32) logits, relative to
    /// the largest |logit|: the stated tolerance of `--bf16-arithmetic fast`.
    static let relativeLogitTolerance: Float = 0.04

    @Test("fast arithmetic keeps a bf16 model's logits within 4% (of the largest |logit|) of f32, and its greedy tokens")
    func logitsWithinToleranceOfExact() throws {
        let directory = try BFloat16CheckpointTests.writeBFloat16Checkpoint(
            tie: false, hiddenSize: 128, intermediateSize: 200, vocabularySize: 300)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let exact = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .exact, greedyFrom: nil)
        // Decode the exact run's greedy tokens, so both runs see the same inputs.
        let fast = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .fast, greedyFrom: exact)
        #expect(exact.count == fast.count)
        let scale = exact.map(abs).max() ?? 1
        let worst = zip(exact, fast).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= Self.relativeLogitTolerance * scale, "worst |fast - exact| = \(worst), largest |logit| \(scale)")
        #expect(worst > 0, "fast arithmetic really rounds (it is not the exact path)")
        let vocabulary = checkpoint.shape.vocabularySize
        let positions = exact.count / vocabulary
        var sameArgmax = 0
        for position in 0..<positions {
            let range = (position * vocabulary)..<((position + 1) * vocabulary)
            if argmax(exact[range]) == argmax(fast[range]) { sameArgmax += 1 }
        }
        #expect(sameArgmax == positions, "greedy choice equal at \(sameArgmax) of \(positions) positions")
    }

    @Test("a bf16 model caches keys and values in bf16 with fast arithmetic, in f32 with exact arithmetic or f32 weights")
    func defaultCacheDType() throws {
        let directory = try BFloat16CheckpointTests.writeBFloat16Checkpoint(
            tie: false, hiddenSize: 64, intermediateSize: 96, vocabularySize: 100)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bf16 = try Checkpoint(directory: directory)
        #expect(try DecoderStack(checkpoint: bf16, arithmetic: .fast).makeCache(capacity: 4).dtype == .bf16)
        #expect(try DecoderStack(checkpoint: bf16, arithmetic: .exact).makeCache(capacity: 4).dtype == .f32)
        #expect(
            try DecoderStack(checkpoint: bf16, arithmetic: .fast, keyValueCacheDType: .f32)
                .makeCache(capacity: 4).dtype == .f32)
        let floatDirectory = try BFloat16CheckpointTests.writeFloatCopy(of: directory)
        defer { try? FileManager.default.removeItem(at: floatDirectory) }
        let f32 = try Checkpoint(directory: floatDirectory)
        #expect(try DecoderStack(checkpoint: f32, arithmetic: .fast).makeCache(capacity: 4).dtype == .f32)
        #expect(throws: ModelError.self) { try DecoderStack(checkpoint: f32, keyValueCacheDType: .f16) }
    }

    @Test("a bf16 KV cache keeps fast arithmetic's logits within 4% of the f32 cache's, and its greedy tokens")
    func bfloat16CacheWithinTolerance() throws {
        let directory = try BFloat16CheckpointTests.writeBFloat16Checkpoint(
            tie: false, hiddenSize: 128, intermediateSize: 200, vocabularySize: 300)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let floatCache = try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .fast, keyValueCacheDType: .f32)
        let bfloat16Cache = try BFloat16CheckpointTests.logits(
            checkpoint, arithmetic: .fast, keyValueCacheDType: .bf16, greedyFrom: floatCache)
        let scale = floatCache.map(abs).max() ?? 1
        let worst = zip(floatCache, bfloat16Cache).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= Self.relativeLogitTolerance * scale, "worst |bf16 cache - f32 cache| = \(worst), largest \(scale)")
        #expect(worst > 0, "the bf16 cache really rounds keys and values")
        let vocabulary = checkpoint.shape.vocabularySize
        for position in 0..<(floatCache.count / vocabulary) {
            let range = (position * vocabulary)..<((position + 1) * vocabulary)
            #expect(argmax(floatCache[range]) == argmax(bfloat16Cache[range]), "greedy token at position \(position)")
        }
    }

    @Test("fast arithmetic gives the same bits for 1 and 3 threads and on every kernel path's model run")
    func threadInvariant() throws {
        let directory = try BFloat16CheckpointTests.writeBFloat16Checkpoint(
            tie: true, hiddenSize: 200, intermediateSize: 424, vocabularySize: 600)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let one = try withThreadCount(1) {
            try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .fast, greedyFrom: nil)
        }
        let three = try withThreadCount(3) {
            try BFloat16CheckpointTests.logits(checkpoint, arithmetic: .fast, greedyFrom: nil)
        }
        expectSameBits(three, one, "fast bf16 model, 3 threads vs 1")
    }
}

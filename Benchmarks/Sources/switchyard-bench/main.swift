// switchyard-bench: throughput measurements of Switchyard's compute kernels (no assertions).
//
// Modes:
//   kernels   GFLOP/s of the batch-invariant product (each supported SIMD path) against OpenBLAS
//             sgemm, for the expert shapes of the benchmark model (H = 1024, FFN = 2816) at
//             m = 1, 8, 32, 128 rows. OpenBLAS uses its own threads (OPENBLAS_NUM_THREADS); the
//             invariant kernel is single-threaded.
//   bf16      The invariant product with bf16 weights (widened on the fly) against f32 weights, at
//             k = 1024, n = 2816 on 1 and 2 threads: GB/s of weights streamed at m = 1 (decode)
//             and GFLOP/s at m = 8, 32. Several weight copies are cycled (≥ 64 MB in all) so the
//             weights come from memory, not from the last-level cache, as in a real model.
//             "dot(1t)" is the opt-in vdpbf16ps kernel (input rounded to bf16), one thread.
import Kernels
import Tensors

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One benchmark shape: y[m, n] = x[m, k] · w[n, k]ᵀ.
struct ProductShape {
    var rows: Int
    var inputs: Int
    var outputs: Int
    /// Multiply-adds × 2.
    var flopCount: Double { 2 * Double(rows) * Double(inputs) * Double(outputs) }
}

/// Deterministic inputs in [-1, 1) (SplitMix64), so runs are comparable.
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(Double(z >> 40) / Double(1 << 24) * 2 - 1)
    }
}

/// The median of five timed batches, each repeating `body` until it has run for ≥ 50 ms.
/// - Returns: seconds per call.
func secondsPerCall(_ body: () -> Void) -> Double {
    body()  // warm-up: caches, page faults, BLAS thread start
    let clock = ContinuousClock()
    var samples: [Double] = []
    for _ in 0..<5 {
        var calls = 0
        let start = clock.now
        var elapsed = Duration.zero
        repeat {
            body()
            calls += 1
            elapsed = clock.now - start
        } while elapsed < .milliseconds(50)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        samples.append(seconds / Double(calls))
    }
    return samples.sorted()[samples.count / 2]
}

func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}

func format(_ value: Double) -> String {
    let tenths = (value * 10).rounded() / 10
    return "\(tenths)"
}

func runKernels() {
    let paths = KernelISA.supported.filter { $0 != .scalar }
    let blasThreads = getenv("OPENBLAS_NUM_THREADS").map { String(cString: $0) } ?? "default"
    print("batch-invariant product vs OpenBLAS sgemm, GFLOP/s (median of 5); active path \(KernelISA.active),")
    print("invariant kernel 1 thread, OpenBLAS threads: \(blasThreads)")
    var header = pad("k", 6) + pad("n", 6) + pad("m", 5)
    for path in paths { header += pad("inv-\(path)", 12) }
    header += pad("sgemm", 9) + pad("inv/sgemm", 11)
    print(header)
    for (inputs, outputs) in [(1024, 2816), (2816, 1024)] {
        let weight = randomFloats(outputs * inputs, seed: 1)
        for rows in [1, 8, 32, 128] {
            let shape = ProductShape(rows: rows, inputs: inputs, outputs: outputs)
            let input = randomFloats(rows * inputs, seed: 2)
            var output = [Float](repeating: 0, count: rows * outputs)
            var line = pad("\(inputs)", 6) + pad("\(outputs)", 6) + pad("\(rows)", 5)
            var activeRate = 0.0
            input.withUnsafeBufferPointer { x in
                weight.withUnsafeBufferPointer { w in
                    output.withUnsafeMutableBufferPointer { y in
                        for path in paths {
                            let seconds = secondsPerCall {
                                linear(
                                    x.baseAddress!, rowCount: rows, inputCount: inputs, weight: w.baseAddress!,
                                    outputCount: outputs, into: y.baseAddress!, isa: path)
                            }
                            let rate = shape.flopCount / seconds / 1e9
                            if path == KernelISA.active { activeRate = rate }
                            line += pad(format(rate), 12)
                        }
                        let seconds = secondsPerCall {
                            linearBLAS(
                                x.baseAddress!, rowCount: rows, inputCount: inputs, weight: w.baseAddress!,
                                outputCount: outputs, into: y.baseAddress!)
                        }
                        let blasRate = shape.flopCount / seconds / 1e9
                        line += pad(format(blasRate), 9) + pad(format(activeRate / blasRate * 100) + "%", 11)
                    }
                }
            }
            print(line)
        }
    }
}

func runBFloat16() {
    let (inputs, outputs) = (1024, 2816)
    let floatWeight = randomFloats(outputs * inputs, seed: 1)
    let copyCount = max(1, (64 << 20) / (outputs * inputs * 2))
    // Copies differ only in where they live; the values are the same, rounded to bf16 for both.
    let bits = floatWeight.map { bfloat16Bits(from: $0) }
    let widened = bits.map(floatFromBFloat16Bits)
    let floatCopies = (0..<copyCount).map { _ in widened }
    let bitsCopies = (0..<copyCount).map { _ in bits }
    print("batch-invariant product, bf16 vs f32 weights, k = \(inputs), n = \(outputs), path \(KernelISA.active),")
    print("\(copyCount) weight copies cycled; m = 1: GB/s of weights streamed; m = 8, 32: GFLOP/s (median of 5)")
    print(pad("threads", 8) + pad("m", 5) + pad("f32", 10) + pad("bf16", 10) + pad("speedup", 10) + pad("dot(1t)", 10) + pad("unit", 8))
    for threads in [1, 2] {
        setThreadCount(threads)
        for rows in [1, 8, 32] {
            let shape = ProductShape(rows: rows, inputs: inputs, outputs: outputs)
            let input = randomFloats(rows * inputs, seed: 2)
            var output = [Float](repeating: 0, count: rows * outputs)
            var copy = 0
            let (floatSeconds, bitsSeconds, dotSeconds) = input.withUnsafeBufferPointer { x in
                output.withUnsafeMutableBufferPointer { y in
                    let floatSeconds = secondsPerCall {
                        floatCopies[copy % copyCount].withUnsafeBufferPointer { w in
                            linear(
                                x.baseAddress!, rowCount: rows, inputCount: inputs, weight: w.baseAddress!,
                                outputCount: outputs, into: y.baseAddress!)
                        }
                        copy += 1
                    }
                    let bitsSeconds = secondsPerCall {
                        bitsCopies[copy % copyCount].withUnsafeBufferPointer { w in
                            linear(
                                x.baseAddress!, rowCount: rows, inputCount: inputs, bfloat16Weight: w.baseAddress!,
                                outputCount: outputs, into: y.baseAddress!)
                        }
                        copy += 1
                    }
                    // The opt-in vdpbf16ps kernel runs on the calling thread only.
                    let dotSeconds = secondsPerCall {
                        bitsCopies[copy % copyCount].withUnsafeBufferPointer { w in
                            linearBFloat16Dot(
                                x.baseAddress!, rowCount: rows, inputCount: inputs, bfloat16Weight: w.baseAddress!,
                                outputCount: outputs, into: y.baseAddress!)
                        }
                        copy += 1
                    }
                    return (floatSeconds, bitsSeconds, dotSeconds)
                }
            }
            let floatRate: Double
            let bitsRate: Double
            let dotRate: Double
            let unit: String
            if rows == 1 {
                floatRate = Double(outputs * inputs * 4) / floatSeconds / 1e9
                bitsRate = Double(outputs * inputs * 2) / bitsSeconds / 1e9
                dotRate = Double(outputs * inputs * 2) / dotSeconds / 1e9
                unit = "GB/s"
            } else {
                floatRate = shape.flopCount / floatSeconds / 1e9
                bitsRate = shape.flopCount / bitsSeconds / 1e9
                dotRate = shape.flopCount / dotSeconds / 1e9
                unit = "GFLOP/s"
            }
            print(
                pad("\(threads)", 8) + pad("\(rows)", 5) + pad(format(floatRate), 10) + pad(format(bitsRate), 10)
                    + pad(format(floatSeconds / bitsSeconds) + "×", 10) + pad(format(dotRate), 10) + pad(unit, 8))
        }
    }
    setThreadCount(1)
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "kernels":
    runKernels()
case "bf16":
    runBFloat16()
default:
    let given = arguments.first.map { "'\($0)'" } ?? "nothing"
    let message = "switchyard-bench: the mode is \(given), but must be one of: kernels, bf16\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

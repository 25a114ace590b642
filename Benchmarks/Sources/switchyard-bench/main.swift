// switchyard-bench: throughput measurements of Switchyard's compute kernels (no assertions).
//
// Modes:
//   kernels   GFLOP/s of the batch-invariant product (each supported SIMD path) against OpenBLAS
//             sgemm, for the expert shapes of the benchmark model (H = 1024, FFN = 2816) at
//             m = 1, 8, 32, 128 rows. OpenBLAS uses its own threads (OPENBLAS_NUM_THREADS); the
//             invariant kernel is single-threaded.
import Kernels

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

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "kernels":
    runKernels()
default:
    let given = arguments.first.map { "'\($0)'" } ?? "nothing"
    let message = "switchyard-bench: the mode is \(given), but must be one of: kernels\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

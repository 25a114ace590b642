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
//             "fast" is the product with --bf16-arithmetic fast (input rounded to bf16, vdpbf16ps).
//   attention The attention of a batch-32 decode step of the benchmark model (16 query heads, 8
//             key/value heads of 64, 12 layers, one query per sequence) over caches of 64 ... 512
//             tokens, stored f32 and bf16, on the set threads (--threads, default 2) split by
//             sequence as the model splits it: ms per step and GB/s of cache read. Each layer has its
//             own caches (all of them ≥ 100 MB at 128 tokens), so they come from memory.
//   sampling  µs a token of the sampler (temperature, top-p, top-k as users set them) on one row of
//             model-like logits of 32,000, 151,936 (Qwen) and 201,088 (gpt-oss) tokens, against
//             transformers' logits warpers + softmax + torch.multinomial on CPU (2 torch threads;
//             Benchmarks/peers/sampling_peer.py through --python, default Benchmarks/.venv/bin/python)
//             and against the floor: one read of the row (a sum in 16 lanes; every sampler reads
//             each logit at least once).
//   decode-floor  batch-1 decode of a model (--model DIR) ÷ the memory-read floor, the two measured
//             next to each other in every round, and llama.cpp's beside it (--gguf FILE; through
//             Benchmarks/peers/llama_peer.py, --python default Benchmarks/.venv/bin/python); see
//             DecodeFloor.swift.
import Coordinator
import Foundation
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
    print(pad("threads", 8) + pad("m", 5) + pad("f32", 10) + pad("bf16", 10) + pad("speedup", 10) + pad("fast", 10) + pad("unit", 8))
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
                    // The fast arithmetic (inputs rounded to bf16; vdpbf16ps where the CPU has it).
                    let dotSeconds = secondsPerCall {
                        bitsCopies[copy % copyCount].withUnsafeBufferPointer { w in
                            linear(
                                x.baseAddress!, rowCount: rows, inputCount: inputs, bfloat16Weight: w.baseAddress!,
                                outputCount: outputs, into: y.baseAddress!, arithmetic: .fast)
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

func runAttention(threads: Int) {
    let (sequences, layers) = (32, 12)
    let shape = AttentionShape(headCount: 16, keyValueHeadCount: 8, headDimension: 64, slidingWindow: nil)
    let queryWidth = shape.headCount * shape.headDimension
    let rowWidth = shape.keyValueHeadCount * shape.headDimension
    setThreadCount(threads)
    print("attention of a batch-32 decode step, 12 layers (16 heads, 8 key/value heads of 64), \(threads) threads:")
    print("ms per step (median of 5) and GB/s of keys and values read, by cache dtype")
    print(pad("context", 8) + pad("f32 ms", 9) + pad("GB/s", 7) + pad("bf16 ms", 9) + pad("GB/s", 7) + pad("f32/bf16", 10))
    for context in [64, 128, 256, 512] {
        let queries = randomFloats(sequences * queryWidth, seed: 3)
        var output = [Float](repeating: 0, count: sequences * queryWidth)
        // [layer × sequence] caches of `context` rows of keys then `context` rows of values.
        let floats = (0..<(layers * sequences)).map { randomFloats(2 * context * rowWidth, seed: UInt64(10 + $0)) }
        let bits = floats.map { $0.map(bfloat16Bits(from:)) }
        func step(bf16: Bool) {
            queries.withUnsafeBufferPointer { q in
                output.withUnsafeMutableBufferPointer { o in
                    let (queryBase, outputBase) = (q.baseAddress!, o.baseAddress!)
                    for layer in 0..<layers {
                        parallelFor(sequences) { sequence in
                            let index = layer * sequences + sequence
                            let run = { (cached: CachedKeyValues) in
                                attention(
                                    queries: queryBase + sequence * queryWidth, queryCount: 1,
                                    firstQueryPosition: context - 1, cached: cached, keyCount: context, shape: shape,
                                    into: outputBase + sequence * queryWidth)
                            }
                            if bf16 {
                                bits[index].withUnsafeBufferPointer {
                                    run(.bf16(keys: $0.baseAddress!, values: $0.baseAddress! + context * rowWidth))
                                }
                            } else {
                                floats[index].withUnsafeBufferPointer {
                                    run(.f32(keys: $0.baseAddress!, values: $0.baseAddress! + context * rowWidth))
                                }
                            }
                        }
                    }
                }
            }
        }
        let floatSeconds = secondsPerCall { step(bf16: false) }
        let bitsSeconds = secondsPerCall { step(bf16: true) }
        let elements = Double(layers * sequences * 2 * context * rowWidth)
        print(
            pad("\(context)", 8) + pad(format(floatSeconds * 1e3), 9) + pad(format(elements * 4 / floatSeconds / 1e9), 7)
                + pad(format(bitsSeconds * 1e3), 9) + pad(format(elements * 2 / bitsSeconds / 1e9), 7)
                + pad(format(floatSeconds / bitsSeconds) + "×", 10))
    }
    setThreadCount(1)
}

/// One row of logits shaped like a language model's: a bell of spread 2.5 around 0 (three uniforms
/// summed) and 24 tokens 8 to 15 above it. Benchmarks/peers/sampling_peer.py builds the same row.
func modelLikeLogits(count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { index in
        let total = (0..<3).reduce(0.0) { sum, _ in sum + Double(generator.next() >> 40) / Double(1 << 24) }
        var value = (total - 1.5) * 5
        if (index * 7919) % count < 24 { value += Double(8 + index % 8) }
        return Float(value)
    }
}

func runSampling(python: String) {
    let vocabularies = [32_000, 151_936, 201_088]
    let configurations: [(name: String, label: String, parameters: SamplingParameters)] = [
        ("t0", "temperature 0 (greedy: argmax)", SamplingParameters(temperature: 0, seed: 1)),
        ("t1", "temperature 1", SamplingParameters(temperature: 1, seed: 1)),
        ("t1p09", "temperature 1, top-p 0.9", SamplingParameters(temperature: 1, topP: 0.9, seed: 1)),
        ("t07k50", "temperature 0.7, top-k 50", SamplingParameters(temperature: 0.7, topK: 50, seed: 1)),
        ("qwen", "temperature 0.6, top-p 0.95, top-k 20", SamplingParameters(temperature: 0.6, topP: 0.95, topK: 20, seed: 1)),
    ]
    var peer: [String: Double] = [:]
    var peerNote = "transformers: \(python) not found"
    if FileManager.default.isExecutableFile(atPath: python) {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../peers/sampling_peer.py")
        let specs = configurations.map { c in "\(c.name)=\(c.parameters.temperature):\(c.parameters.topP):\(c.parameters.topK)" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.standardized.path, "--configurations", specs.joined(separator: ","),
                             "--vocabularies", vocabularies.map(String.init).joined(separator: ",")]
        let output = Pipe()
        process.standardOutput = output
        do {
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationStatus == 0, let figures = try JSONSerialization.jsonObject(with: data) as? [String: Double] {
                peer = figures
                peerNote = "transformers: logits warpers + softmax + torch.multinomial, 2 torch threads (\(python))"
            } else {
                peerNote = "transformers: sampling_peer.py exited with status \(process.terminationStatus)"
            }
        } catch {
            peerNote = "transformers: could not run \(python): \(error)"
        }
    }
    print("sampling one token from a row of model-like logits, path \(KernelISA.active), µs a token (median of 5)")
    print(peerNote)
    print(pad("vocabulary", 11) + "  " + "configuration".padding(toLength: 38, withPad: " ", startingAt: 0)
        + pad("Switchyard", 11) + pad("transformers", 13) + pad("÷", 7) + pad("floor", 8) + pad("÷ floor", 9))
    for vocabulary in vocabularies {
        let logits = modelLikeLogits(count: vocabulary, seed: 1)
        // The floor: reading the row once (a sum in 16 lanes), which any sampler does at least.
        var floorSink: Float = 0
        let floor = logits.withUnsafeBufferPointer { row in
            row.withMemoryRebound(to: SIMD16<Float>.self) { lanes in
                secondsPerCall {
                    var sum = SIMD16<Float>()
                    for vector in lanes { sum += vector }
                    floorSink += sum.sum()
                }
            }
        } * 1e6
        for configuration in configurations {
            var sampler = Sampler(configuration.parameters)
            var sink: Int32 = 0
            let ours = secondsPerCall { sink &+= sampler.sample(logits) } * 1e6
            let theirs = peer["\(vocabulary)/\(configuration.name)"]
            print(pad("\(vocabulary)", 11) + "  " + configuration.label.padding(toLength: 38, withPad: " ", startingAt: 0)
                + pad(format(ours), 11) + pad(theirs.map(format) ?? "-", 13)
                + pad(theirs.map { format($0 / ours) + "×" } ?? "-", 7) + pad(format(floor), 8)
                + pad(format(ours / floor) + "×", 9) + (sink == .min || floorSink.isNaN ? " " : ""))
        }
    }
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "kernels":
    runKernels()
case "bf16":
    runBFloat16()
case "sampling":
    let python = arguments.firstIndex(of: "--python").flatMap { arguments.index(after: $0) < arguments.endIndex
        ? arguments[arguments.index(after: $0)] : nil }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.venv/bin/python").standardized.path
    runSampling(python: python)
case "attention":
    let threads = arguments.firstIndex(of: "--threads").flatMap { arguments.index(after: $0) < arguments.endIndex
        ? Int(arguments[arguments.index(after: $0)]) : nil } ?? 2
    runAttention(threads: max(1, min(threads, maximumThreadCount)))
case "decode-floor":
    func option(_ name: String) -> String? {
        arguments.firstIndex(of: name).flatMap { arguments.index(after: $0) < arguments.endIndex ? arguments[arguments.index(after: $0)] : nil }
    }
    func count(_ name: String, _ fallback: Int, _ range: ClosedRange<Int>) -> Int {
        guard let text = option(name) else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            let message = "switchyard-bench decode-floor: \(name) is '\(text)', but must be a whole number in \(range)\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
        return value
    }
    guard let model = option("--model") else {
        let message = "usage: switchyard-bench decode-floor --model DIR [--quantize none|q8] [--gguf FILE [--python PATH]] [--rounds 9] [--tokens 64] [--prompt-tokens 128] [--threads 2]\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }
    do {
        try runDecodeFloor(
            model: model, rounds: count("--rounds", 9, 1...1000), tokens: count("--tokens", 64, 2...100_000),
            promptTokens: count("--prompt-tokens", 128, 1...100_000), threads: count("--threads", 2, 1...2),
            q8: try {
                switch option("--quantize") {
                case nil, "none": return false
                case "q8": return true
                case let other?: throw BenchError("--quantize is '\(other)', but must be none or q8")
                }
            }(),
            gguf: option("--gguf"),
            python: option("--python")
                ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.venv/bin/python").standardized.path)
    } catch {
        let message = "switchyard-bench decode-floor: \(error)\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }
default:
    let given = arguments.first.map { "'\($0)'" } ?? "nothing"
    let message = "switchyard-bench: the mode is \(given), but must be one of: kernels, bf16, attention, sampling, decode-floor\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

// decode-floor: batch-1 decode against the memory-read floor, measured next to each other.
//
// run.sh divides each round's decode by `floors --bandwidth` taken at the start and at the end of
// the round, a minute apart on a host whose bandwidth can change by half within seconds. Here the
// model is loaded once and every round is: 3 read passes of 512 MiB (the floor's pass,
// Benchmarks/floors/read_pass.h), one greedy generation (run.sh's prompt ids and token count), 3
// passes again. The weight bytes the decode streamed a second are divided by the best of the 6
// passes (as `floors` takes the best of 7) and by their median (the passes of this host differ by
// up to 1.5× within a second; a decode of about a second averages over such swings, a 10 ms pass
// does not). With --gguf, llama.cpp (llama-cpp-python, Benchmarks/peers/llama_peer.py, loaded once)
// decodes the same prompt in every round after Switchyard, followed by 3 more passes: its floor is
// taken from the 6 passes around it.
import CReadPass
import Coordinator
import Foundation
import Kernels
import Models
import Tensors
import Tokenization

/// Weights one token's decode step reads in a checkpoint of this config.json, counted as
/// Benchmarks/report.py's `active_params` counts them: the attention projections, the router and
/// `num_experts_per_tok` experts of every layer, the norms, the LM head and one embedding row.
func activeWeights(config: [String: Any]) -> Double? {
    func integer(_ key: String) -> Int? { (config[key] as? NSNumber)?.intValue }
    guard let hidden = integer("hidden_size"), let heads = integer("num_attention_heads"),
          let layers = integer("num_hidden_layers"), let topK = integer("num_experts_per_tok"),
          let vocabulary = integer("vocab_size"),
          let experts = integer("num_local_experts") ?? integer("num_experts"),
          let ffn = integer("moe_intermediate_size") ?? integer("intermediate_size")
    else { return nil }
    let keyValueHeads = integer("num_key_value_heads") ?? heads
    let headDimension = integer("head_dim") ?? hidden / heads
    let attention = hidden * heads * headDimension * 2 + hidden * keyValueHeads * headDimension * 2
    let perLayer = attention + experts * hidden + topK * 3 * hidden * ffn + 2 * hidden
    return Double(layers * perLayer + vocabulary * hidden + hidden)
}

/// llama.cpp through Benchmarks/peers/llama_peer.py --rounds-from-stdin: one decode a line written.
final class LlamaRounds {
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    var pending = Data()
    /// llama-cpp-python's version and what its ggml was built with (`llama_print_system_info`).
    private(set) var build = ""

    init(python: String, gguf: String, prompt: [Int32], tokens: Int, threads: Int) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../peers/llama_peer.py").standardized.path
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, "--gguf", gguf, "--prompt-ids", prompt.map(String.init).joined(separator: ","),
                             "--decode", "\(tokens)", "--threads", "\(threads)", "--rounds-from-stdin"]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let ready = try line()
        guard ready["ready"] != nil else { throw BenchError("llama_peer.py did not start") }
        build = "llama-cpp-python \(ready["llama_cpp_python"] as? String ?? "?"), \(ready["system_info"] as? String ?? "?")"
    }

    /// The next JSON line the peer prints.
    func line() throws -> [String: Any] {
        while true {
            if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let text = pending[pending.startIndex..<end]
                pending = Data(pending[pending.index(after: end)...])
                guard let object = try JSONSerialization.jsonObject(with: text) as? [String: Any] else {
                    throw BenchError("llama_peer.py printed a line that is not a JSON object")
                }
                return object
            }
            let more = output.fileHandleForReading.availableData
            if more.isEmpty { throw BenchError("llama_peer.py exited (status \(process.isRunning ? 0 : process.terminationStatus))") }
            pending.append(more)
        }
    }

    /// One round: the prompt from an empty cache, then the decode; its tokens/s.
    func decode() throws -> Double {
        input.fileHandleForWriting.write(Data("go\n".utf8))
        guard let rate = try line()["decode_tokens_per_s"] as? Double else {
            throw BenchError("llama_peer.py answered without decode_tokens_per_s")
        }
        return rate
    }

    deinit {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

func runDecodeFloor(
    model: String, rounds: Int, tokens: Int, promptTokens: Int, threads: Int, q8: Bool, gguf: String?, python: String
) throws {
    let directory = URL(fileURLWithPath: model)
    guard let configData = FileManager.default.contents(atPath: directory.appendingPathComponent("config.json").path) else {
        throw BenchError("\(model)/config.json cannot be read: --model takes a checkpoint directory (Benchmarks/.work/model after run.sh)")
    }
    guard let config = try JSONSerialization.jsonObject(with: configData) as? [String: Any],
          let weights = activeWeights(config: config)
    else {
        throw BenchError("\(model)/config.json lacks a field of the active-weight count (hidden_size, num_attention_heads, num_hidden_layers, num_experts_per_tok, vocab_size, the expert count or width)")
    }
    // Bytes a weight: bf16; or, with --quantize q8, Switchyard's q8 (32 int8 and an f32 scale a
    // block) and llama.cpp's q8_0 (32 int8 and an f16 scale); the routers and norms, left as
    // stored, are under 1% of the count.
    let activeBytes = weights * (q8 ? 36.0 / 32 : 2)
    let peerActiveBytes = weights * (q8 ? 34.0 / 32 : 2)
    keepFreedMemoryInHeap()
    setThreadCount(threads)
    let checkpoint = try Checkpoint(directory: directory)
    let engine = GenerationEngine(
        model: try DecoderStack(checkpoint: checkpoint, arithmetic: .fast, quantization: q8 ? .q8 : .none),
        tokenizer: try Tokenizer(directory: directory),
        generationConfig: try GenerationConfig(directory: directory))
    var experts = LocalExperts(
        store: try ExpertStore(
            checkpoint: checkpoint, experts: checkpoint.shape.allExperts, arithmetic: .fast, quantization: q8 ? .q8 : .none))
    // run.sh's PROMPT_IDS.
    let prompt = (0..<promptTokens).map { Int32(500 + ($0 * 7919) % 20000) }
    let request = GenerationRequest(
        prompt: .tokenIDs(prompt), maxTokens: tokens, sampling: SamplingParameters(temperature: 0), ignoreEOS: true)

    let readBytes = 512 << 20
    guard let buffer = bench_read_buffer(readBytes) else { throw BenchError("could not map \(readBytes) bytes for the read passes") }
    var sink: Float = 0
    func reads(_ passes: Int) -> [Double] {
        (0..<passes).map { _ in bench_read_pass(buffer, readBytes, Int32(threads), &sink) }
    }
    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
    _ = try engine.generate(request, experts: &experts)  // warm-up: first touches, the pool's threads
    _ = reads(2)
    let llama = try gguf.map { try LlamaRounds(python: python, gguf: $0, prompt: prompt, tokens: tokens, threads: threads) }
    _ = try llama?.decode()

    let cpu = CPUDescription.read()
    print("batch-1 decode ÷ the memory-read floor, measured next to each other: \(model)")
    print("\(cpu.model); kernel path \(KernelISA.active); \(threads) threads; "
        + (q8 ? "--quantize q8 (llama.cpp: q8_0)" : "bf16 weights, fast arithmetic"))
    print("\(String(format: "%.1f", activeBytes / 1e6)) MB of weights a token (report.py's count\(q8 ? String(format: "; llama.cpp's q8_0 %.1f MB", peerActiveBytes / 1e6) : "")); prompt \(promptTokens) tokens, \(tokens) decoded a round")
    print("floor: 3 read passes of 512 MiB (2 threads, huge pages) before the decode and 3 after; ÷ best divides by the best")
    print("of the 6 (as `floors` takes the best of 7), ÷ median by their median (this host's passes differ by up to 1.5×")
    print("within a second, and a decode of about a second averages over them as the median does)")
    if let gguf, let llama {
        print("llama.cpp: \(gguf) through \(python), after Switchyard in every round (the same weights; its passes: the 3")
        print("after Switchyard's decode and 3 after its own); \(llama.build)")
    }
    print(pad("round", 6) + pad("decode tok/s", 14) + pad("streamed GB/s", 15) + pad("best GB/s", 11) + pad("÷ best", 8)
        + pad("median GB/s", 13) + pad("÷ median", 10)
        + (llama == nil ? "" : pad("llama.cpp tok/s", 17) + pad("÷ best", 8) + pad("÷ median", 10) + pad("÷ llama.cpp", 13)))
    var ratios: [[Double]] = Array(repeating: [], count: 5)  // ÷ best, ÷ median, llama's two, ÷ llama.cpp
    for round in 1...rounds {
        let before = reads(3)
        let rate = try engine.generate(request, experts: &experts).timing.decodeTokensPerSecond
        let after = reads(3)
        let streamed = rate * activeBytes / 1e9
        let (best, typical) = ((before + after).max() ?? 0, median(before + after))
        ratios[0].append(streamed / best)
        ratios[1].append(streamed / typical)
        var line = pad("\(round)", 6) + pad(format(rate), 14) + pad(format(streamed), 15) + pad(format(best), 11)
            + pad(String(format: "%.2f", streamed / best), 8) + pad(format(typical), 13) + pad(String(format: "%.2f", streamed / typical), 10)
        if let llama {
            let peerRate = try llama.decode()
            let around = after + reads(3)
            let peerStreamed = peerRate * peerActiveBytes / 1e9
            ratios[2].append(peerStreamed / (around.max() ?? 0))
            ratios[3].append(peerStreamed / median(around))
            ratios[4].append(rate / peerRate)
            line += pad(format(peerRate), 17) + pad(String(format: "%.2f", ratios[2].last!), 8)
                + pad(String(format: "%.2f", ratios[3].last!), 10) + pad(String(format: "%.2f", ratios[4].last!), 13)
        }
        print(line)
    }
    func summary(_ values: [Double]) -> String {
        String(format: "%.2f (rounds %.2f–%.2f)", median(values), values.min() ?? 0, values.max() ?? 0)
    }
    print("Switchyard decode ÷ floor: ÷ best \(summary(ratios[0])), ÷ median \(summary(ratios[1]))" + (sink.isNaN ? " " : ""))
    if llama != nil {
        print("llama.cpp decode ÷ floor: ÷ best \(summary(ratios[2])), ÷ median \(summary(ratios[3]))")
        print("Switchyard ÷ llama.cpp decode: median \(summary(ratios[4]))")
    }
    // The last line: the figures as one JSON object, for Benchmarks/report.py.
    let names = ["divided_by_best", "divided_by_median", "llama_divided_by_best", "llama_divided_by_median", "versus_llama"]
    var summaryObject: [String: Any] = [
        "model": model, "quantize": q8 ? "q8" : "none", "kernel_path": "\(KernelISA.active)", "threads": threads,
        "tokens": tokens, "prompt_tokens": promptTokens, "active_bytes": activeBytes,
    ]
    if let llama { summaryObject["llama_build"] = llama.build }
    for (name, values) in zip(names, ratios) where !values.isEmpty {
        summaryObject[name] = ["median": median(values), "rounds": values]
    }
    let json = try JSONSerialization.data(withJSONObject: summaryObject, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
    setThreadCount(1)
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import TestSupport
import Testing

/// The JSON object `switchyard generate --json` prints, read loosely (only what the tests check).
struct GenerateOutput {
    let promptTokenIDs: [Int]
    let completionTokenIDs: [Int]
    let topLogprobs: [[(Int, Double)]]
    let prefillLoad: [[Int]]
    let decodeLoad: [[Int]]
    let workers: [String]

    init(json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let prompt = object["prompt_token_ids"] as? [Int],
            let completion = object["completion_token_ids"] as? [Int],
            let load = object["expert_load"] as? [String: Any],
            let prefill = load["prefill"] as? [[Int]], let decode = load["decode"] as? [[Int]],
            let workers = object["workers"] as? [[String: Any]]
        else { throw TestProcessError(description: "not a generate result: \(json.prefix(400))") }
        promptTokenIDs = prompt
        completionTokenIDs = completion
        let logprobs = object["logprobs"] as? [[String: Any]] ?? []
        topLogprobs = logprobs.map { entry in
            (entry["top_logprobs"] as? [[String: Any]] ?? []).map {
                (($0["token_id"] as? Int) ?? -1, ($0["logprob"] as? Double) ?? .nan)
            }
        }
        prefillLoad = prefill
        decodeLoad = decode
        self.workers = workers.compactMap { $0["name"] as? String }
    }
}

/// Runs `generate --json` and parses its output; a failure reports the process's stderr. bf16
/// weights run with exact arithmetic, as the f32 references from transformers were computed.
func generateJSON(_ arguments: [String]) throws -> GenerateOutput {
    let output = try runSwitchyard(["generate", "--json", "--bf16-arithmetic", "exact"] + arguments)
    guard output.status == 0 else {
        throw TestProcessError(description: "generate \(arguments) failed (\(output.status)):\n\(output.stderr)")
    }
    return try GenerateOutput(json: output.stdout)
}

/// Top logprobs equal in ids and within `tolerance` in value; returns the first mismatch.
func logprobMismatch(_ a: [[(Int, Double)]], _ b: [[(Int, Double)]], tolerance: Double) -> String? {
    guard a.count == b.count else { return "\(a.count) steps vs \(b.count)" }
    for (step, (left, right)) in zip(a, b).enumerated() {
        guard left.map(\.0) == right.map(\.0) else { return "step \(step): ids \(left.map(\.0)) vs \(right.map(\.0))" }
        for ((_, x), (_, y)) in zip(left, right) where abs(x - y) > tolerance {
            return "step \(step): logprob \(x) vs \(y) (tolerance \(tolerance))"
        }
    }
    return nil
}

@Suite("generate: distributed equals in-process", .serialized)
struct DistributedGenerateTests {
    static let model: URL = {
        let directory = TestPaths.scratch.appendingPathComponent("switchyard-it-model")
        return directory
    }()

    static func ensureModel() throws -> URL {
        if !FileManager.default.fileExists(atPath: model.appendingPathComponent("config.json").path) {
            let output = try runSwitchyard([
                "make-model", "--arch", "mixtral", "--out", model.path, "--hidden", "64", "--layers", "3",
                "--experts", "6", "--top-k", "2", "--vocab", "400", "--heads", "4", "--kv-heads", "2", "--seed", "5",
            ])
            guard output.status == 0 else { throw TestProcessError(description: "make-model failed: \(output.stderr)") }
        }
        return model
    }

    @Test("greedy tokens, logprobs and expert load with 1, 2 and 3 worker processes equal the in-process run",
          arguments: [1, 2, 3])
    func workersEqualLocal(workers: Int) throws {
        let model = try Self.ensureModel()
        let common = ["--model", model.path, "--prompt", "Experts on workers, tokens on the coordinator.",
                      "--max-tokens", "12", "--temperature", "0", "--ignore-eos", "--logprobs", "5"]
        let local = try generateJSON(common + ["--spawn-workers", "0"])
        let distributed = try generateJSON(common + ["--spawn-workers", "\(workers)"])
        #expect(distributed.promptTokenIDs == local.promptTokenIDs)
        #expect(distributed.completionTokenIDs == local.completionTokenIDs)
        #expect(logprobMismatch(distributed.topLogprobs, local.topLogprobs, tolerance: 1e-5) == nil)
        #expect(distributed.prefillLoad == local.prefillLoad)
        #expect(distributed.decodeLoad == local.decodeLoad)
        #expect(distributed.workers.count == workers)
        #expect(local.completionTokenIDs.count == 12)
    }

    static let bfloat16Model: URL = TestPaths.scratch.appendingPathComponent("switchyard-it-bf16-model")

    static func ensureBFloat16Model() throws -> URL {
        if !FileManager.default.fileExists(atPath: bfloat16Model.appendingPathComponent("config.json").path) {
            let output = try runSwitchyard([
                "make-model", "--arch", "mixtral", "--out", bfloat16Model.path, "--hidden", "96", "--layers", "2",
                "--experts", "4", "--top-k", "2", "--vocab", "300", "--heads", "4", "--kv-heads", "2", "--seed", "8",
                "--dtype", "bf16",
            ])
            guard output.status == 0 else { throw TestProcessError(description: "make-model failed: \(output.stderr)") }
        }
        return bfloat16Model
    }

    @Test(
        "workers take the coordinator's bf16 arithmetic and q8 quantization from ASSIGN: 2 workers equal in-process",
        arguments: [["--bf16-arithmetic", "fast"], ["--bf16-arithmetic", "fast", "--quantize", "q8"],
                    ["--bf16-arithmetic", "exact", "--quantize", "q8"], ["--bf16-arithmetic", "fast", "--quantize", "q8-experts"]])
    func workersFollowNumerics(options: [String]) throws {
        let model = try Self.ensureBFloat16Model()
        let common = ["--model", model.path, "--prompt", "Numerics travel with the assignment.", "--max-tokens", "10",
                      "--temperature", "0", "--ignore-eos", "--logprobs", "3", "--wire-dtype", "f32"] + options
        let local = try generateJSON(common + ["--spawn-workers", "0"])
        let distributed = try generateJSON(common + ["--spawn-workers", "2"])
        #expect(distributed.completionTokenIDs == local.completionTokenIDs)
        #expect(logprobMismatch(distributed.topLogprobs, local.topLogprobs, tolerance: 1e-6) == nil)
        // And the options really change the arithmetic (against exact, unquantized).
        let exact = try generateJSON(
            ["--model", model.path, "--prompt", "Numerics travel with the assignment.", "--max-tokens", "10",
             "--temperature", "0", "--ignore-eos", "--logprobs", "3", "--spawn-workers", "0"])
        #expect(logprobMismatch(local.topLogprobs, exact.topLogprobs, tolerance: 1e-7) != nil)
    }

    @Test("bf16 on the wire with fast arithmetic gives bitwise the in-process tokens and logprobs (the default for bf16 models)")
    func bfloat16Wire() throws {
        let model = try Self.ensureBFloat16Model()
        let common = ["--model", model.path, "--prompt", "Half the bytes.", "--max-tokens", "8", "--temperature", "0",
                      "--ignore-eos", "--logprobs", "3", "--bf16-arithmetic", "fast"]
        let local = try generateJSON(common + ["--spawn-workers", "0"])
        for wire in [["--wire-dtype", "bf16"], []] {
            let distributed = try generateJSON(common + ["--spawn-workers", "2"] + wire)
            #expect(distributed.completionTokenIDs == local.completionTokenIDs, "\(wire)")
            #expect(logprobMismatch(distributed.topLogprobs, local.topLogprobs, tolerance: 0) == nil, "\(wire)")
        }
    }

    @Test("sampling with a seed gives the same tokens in-process and with 2 workers")
    func seededSampling() throws {
        let model = try Self.ensureModel()
        let common = ["--model", model.path, "--prompt", "Sampling", "--max-tokens", "16", "--temperature", "0.9",
                      "--top-p", "0.9", "--top-k", "50", "--seed", "1234", "--ignore-eos"]
        let first = try generateJSON(common + ["--spawn-workers", "0"])
        let second = try generateJSON(common + ["--spawn-workers", "2"])
        #expect(first.completionTokenIDs == second.completionTokenIDs)
    }

    @Test("with top-3 routing and every expert replicated on 2 of 3 workers, tokens and logprobs are bitwise the in-process run")
    func replicatedTopThree() throws {
        let directory = TestPaths.scratch.appendingPathComponent("switchyard-it-top3")
        let made = try runSwitchyard([
            "make-model", "--arch", "mixtral", "--out", directory.path, "--hidden", "64", "--layers", "2",
            "--experts", "6", "--top-k", "3", "--vocab", "400", "--heads", "4", "--kv-heads", "2", "--seed", "8",
        ])
        guard made.status == 0 else { throw TestProcessError(description: "make-model failed: \(made.stderr)") }
        // Expert e of layer l on workers (e + l) % 3 and (e + l + 1) % 3.
        var workers: [[[Int]]] = [[], [], []]
        for layer in 0..<2 {
            for expert in 0..<6 {
                workers[(expert + layer) % 3].append([layer, expert])
                workers[(expert + layer + 1) % 3].append([layer, expert])
            }
        }
        let file = directory.appendingPathComponent("placement.json")
        let json = try JSONSerialization.data(withJSONObject: [
            "workers": workers.enumerated().map { ["name": "r\($0.offset)", "experts": $0.element] }
        ])
        try json.write(to: file)
        let common = ["--model", directory.path, "--prompt", "Replicas split the rows of an expert.",
                      "--max-tokens", "12", "--temperature", "0", "--ignore-eos", "--logprobs", "5"]
        let local = try generateJSON(common + ["--spawn-workers", "0"])
        let replicated = try generateJSON(common + ["--spawn-workers", "3", "--placement", file.path])
        #expect(replicated.completionTokenIDs == local.completionTokenIDs)
        #expect(logprobMismatch(replicated.topLogprobs, local.topLogprobs, tolerance: 0) == nil)
        #expect(replicated.workers == ["r0", "r1", "r2"])
    }
}

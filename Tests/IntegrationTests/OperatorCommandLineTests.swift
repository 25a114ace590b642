import Foundation
import TestSupport
import Testing

/// What an operator meets first on the command line: finding a model in the Hugging Face cache,
/// GGUF refused by name, `--version`, option values listed and refused by name, a port in use.
@Suite("operator command line", .serialized)
struct OperatorCommandLineTests {
    /// A hub cache under `root` holding one make-model checkpoint as acme/tiny-moe at snapshot `commit`.
    static func makeCache(root: URL, commit: String = "0123abcd4567") throws -> URL {
        let repository = root.appendingPathComponent("models--acme--tiny-moe")
        let snapshot = repository.appendingPathComponent("snapshots/\(commit)")
        let made = try runSwitchyard([
            "make-model", "--arch", "mixtral", "--out", snapshot.path, "--hidden", "32", "--layers", "2",
            "--experts", "4", "--top-k", "2", "--vocab", "300", "--heads", "2", "--kv-heads", "1", "--seed", "3",
        ])
        guard made.status == 0 else { throw TestProcessError(description: "make-model failed: \(made.stderr)") }
        try FileManager.default.createDirectory(
            at: repository.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try Data("\(commit)\n".utf8).write(to: repository.appendingPathComponent("refs/main"))
        return snapshot
    }

    static let greedy = ["--prompt", "Hello there", "--max-tokens", "3", "--temperature", "0", "--ignore-eos"]

    @Test("--model ORG/NAME is found in HF_HUB_CACHE and under HF_HOME/hub, and gives the tokens of the snapshot's directory")
    func hubIDFromCache() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try Self.makeCache(root: root.appendingPathComponent("home/hub"))
        let direct = try generateJSON(["--model", snapshot.path] + Self.greedy)
        for environment in [["HF_HUB_CACHE": root.appendingPathComponent("home/hub").path],
                            ["HF_HOME": root.appendingPathComponent("home").path, "HF_HUB_CACHE": ""]] {
            let output = try runSwitchyard(
                ["generate", "--json", "--model", "acme/tiny-moe"] + Self.greedy, environment: environment)
            #expect(output.status == 0, "\(environment): \(output.stderr)")
            let cached = try GenerateOutput(json: output.stdout)
            #expect(cached.promptTokenIDs == direct.promptTokenIDs)
            #expect(cached.completionTokenIDs == direct.completionTokenIDs)
        }
        // The cache folder itself is a model argument too.
        let folder = try generateJSON(
            ["--model", root.appendingPathComponent("home/hub/models--acme--tiny-moe").path] + Self.greedy)
        #expect(folder.completionTokenIDs == direct.completionTokenIDs)
    }

    @Test("a Hub id that is not in the cache is an error naming where it looked and the download command")
    func hubIDMissing() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let output = try runSwitchyard(
            ["generate", "--model", "acme/not-here"] + Self.greedy, environment: ["HF_HUB_CACHE": root.path])
        #expect(output.status != 0)
        #expect(output.stderr.contains("not in the Hugging Face cache"), "\(output.stderr)")
        #expect(output.stderr.contains(root.appendingPathComponent("models--acme--not-here").path), "\(output.stderr)")
        #expect(output.stderr.contains("hf download acme/not-here"), "\(output.stderr)")
    }

    @Test("a cache folder whose refs/main names a missing snapshot says so")
    func brokenReference() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        _ = try Self.makeCache(root: root)
        try Data("ffff0000\n".utf8).write(to: root.appendingPathComponent("models--acme--tiny-moe/refs/main"))
        let output = try runSwitchyard(
            ["generate", "--model", "acme/tiny-moe"] + Self.greedy, environment: ["HF_HUB_CACHE": root.path])
        #expect(output.status != 0)
        #expect(output.stderr.contains("refs/main names snapshot ffff0000"), "\(output.stderr)")
    }

    @Test("a GGUF file is refused as GGUF, with what to use instead", arguments: ["model.gguf", "weights.bin"])
    func ggufRefused(name: String) throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent(name)
        try Data("GGUF\u{3}\0\0\0".utf8).write(to: file)
        let output = try runSwitchyard(["generate", "--model", file.path] + Self.greedy)
        #expect(output.status != 0)
        #expect(output.stderr.contains("does not read GGUF"), "\(output.stderr)")
        #expect(output.stderr.contains("safetensors"), "\(output.stderr)")
    }

    @Test("--version prints the version")
    func version() throws {
        let output = try runSwitchyard(["--version"])
        #expect(output.status == 0)
        #expect(output.stdout.range(of: #"^switchyard [0-9]+\.[0-9]+\.[0-9]+\n$"#, options: .regularExpression) != nil,
                "\(output.stdout)")
    }

    @Test("--wire-dtype and --kv-cache-dtype list and accept f32 and bf16 by name, and nothing else")
    func dtypeValues() throws {
        let help = try runSwitchyard(["serve", "--help"])
        #expect(help.status == 0)
        let flat = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for option in ["--wire-dtype", "--kv-cache-dtype"] {
            guard let start = flat.range(of: "\(option) <") else {
                Issue.record("\(option) not in serve --help")
                continue
            }
            // This option's entry: up to the next option's "--name <".
            let rest = flat[start.upperBound...]
            let end = rest.range(of: #" --[a-z-]+ <"#, options: .regularExpression)?.lowerBound ?? rest.endIndex
            let entry = flat[start.lowerBound..<end]
            #expect(entry.hasPrefix("\(option) <f32|bf16>"), "\(entry)")
            if let values = entry.range(of: "(values: ") {
                #expect(entry[values.lowerBound...].hasPrefix("(values: f32, bf16)"), "\(entry)")
            }
        }
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try Self.makeCache(root: root)
        for (option, value) in [("--wire-dtype", "1"), ("--kv-cache-dtype", "f16")] {
            let refused = try runSwitchyard(["generate", "--model", snapshot.path, option, value] + Self.greedy)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains(option) && refused.stderr.contains("bf16"), "\(refused.stderr)")
        }
        let accepted = try generateJSON(
            ["--model", snapshot.path, "--kv-cache-dtype", "bf16", "--wire-dtype", "bf16", "--spawn-workers", "1"] + Self.greedy)
        #expect(accepted.completionTokenIDs.count == 3)
    }

    @Test("serve on an HTTP port in use names the address, also as `serve MODEL --host H --port P`")
    func portInUse() throws {
        let root = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let snapshot = try Self.makeCache(root: root)
        let first = SwitchyardProcess(["serve", "--model", snapshot.path, "--workers", "0", "--http", "127.0.0.1:0"])
        try first.start()
        defer { first.kill() }
        let log = try first.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        let address = String(log[range])
        let second = try runSwitchyard(["serve", "--model", snapshot.path, "--workers", "0", "--http", address])
        #expect(second.status != 0)
        #expect(second.stderr.contains("HTTP address \(address) (--http, --host, --port): address already in use"), "\(second.stderr)")
        // vLLM's spelling: `serve MODEL --host H --port P`.
        let port = String(address.split(separator: ":").last ?? "")
        let vllmStyle = try runSwitchyard(["serve", snapshot.path, "--workers", "0", "--host", "127.0.0.1", "--port", port])
        #expect(vllmStyle.status != 0)
        #expect(vllmStyle.stderr.contains("HTTP address \(address) (--http, --host, --port): address already in use"), "\(vllmStyle.stderr)")
        let twice = try runSwitchyard(["serve", snapshot.path, "--model", snapshot.path])
        #expect(twice.status != 0)
        #expect(twice.stderr.contains("give the model once"), "\(twice.stderr)")
    }
}

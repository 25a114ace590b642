// `switchyard generate` reads generation_config.json next to config.json: its eos_token_id ends
// generation; a malformed one stops the command with one line naming the file and the field.
import Foundation
import TestSupport
import Testing

@Suite("generate: generation_config.json", .serialized)
struct GenerationConfigCommandTests {
    /// A copy of the top2 fixture model with `generationConfig` as its generation_config.json.
    static func model(generationConfig: String?) throws -> URL {
        let fixture = TestPaths.fixtures.appendingPathComponent("models/top2")
        let directory = try TestPaths.makeTemporaryDirectory("generation-config-model")
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(
                at: fixture.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        if let generationConfig {
            try Data(generationConfig.utf8).write(to: directory.appendingPathComponent("generation_config.json"))
        }
        return directory
    }

    static func generate(_ model: URL) throws -> (ids: [Int], finishReason: String?) {
        let output = try runSwitchyard([
            "generate", "--json", "--model", model.path, "--prompt", "Once upon a time", "--max-tokens", "16",
            "--temperature", "0", "--spawn-workers", "0",
        ])
        guard output.status == 0,
            let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any],
            let ids = object["completion_token_ids"] as? [Int]
        else { throw TestProcessError(description: "generate failed (\(output.status)): \(output.stderr)") }
        return (ids, object["finish_reason"] as? String)
    }

    @Test("generation stops at the second eos_token_id of generation_config.json, which config.json does not list")
    func stopsAtSecondID() throws {
        let free = try Self.model(generationConfig: nil)
        defer { try? FileManager.default.removeItem(at: free) }
        let tokens = try Self.generate(free).ids
        let stopIndex = try #require(
            tokens.indices.dropFirst().first { !tokens[..<$0].contains(tokens[$0]) }, "greedy tokens \(tokens)")
        let unused = try #require((3..<384).first { !tokens.contains($0) })

        let stopping = try Self.model(generationConfig: #"{"eos_token_id": [\#(unused), \#(tokens[stopIndex])]}"#)
        defer { try? FileManager.default.removeItem(at: stopping) }
        let (stopped, reason) = try Self.generate(stopping)
        #expect(stopped == Array(tokens[...stopIndex]))
        #expect(reason == "stop")
    }

    @Test("a malformed generation_config.json stops generate with one line naming the file and the field")
    func malformed() throws {
        let model = try Self.model(generationConfig: #"{"eos_token_id": ["</s>"]}"#)
        defer { try? FileManager.default.removeItem(at: model) }
        let output = try runSwitchyard([
            "generate", "--model", model.path, "--prompt", "Hi", "--max-tokens", "2", "--spawn-workers", "0",
        ])
        #expect(output.status != 0)
        #expect(
            output.stderr.contains("generation_config.json: eos_token_id[0] is a string, but must be a token id"),
            "\(output.stderr)")
    }
}

import Foundation
import TestSupport
import Testing

/// One case of a committed Hugging Face transformers reference (Tests/Fixtures/models/*/reference.json).
struct ReferenceCase: CustomTestStringConvertible, Sendable {
    let model: URL
    let index: Int
    let prompt: String
    let promptTokenIDs: [Int]
    let completionTokenIDs: [Int]
    let topLogprobs: [[(Int, Double)]]
    let prefillLoad: [[Int]]
    let decodeLoad: [[Int]]

    var testDescription: String { "\(model.lastPathComponent) case \(index)" }

    static func all() -> [ReferenceCase] {
        let root = TestPaths.fixtures.appendingPathComponent("models")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        var cases: [ReferenceCase] = []
        for name in names.sorted() {
            let model = root.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: model.appendingPathComponent("reference.json")),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let entries = object["cases"] as? [[String: Any]]
            else { continue }
            for (index, entry) in entries.enumerated() {
                let load = entry["expert_load"] as? [String: Any] ?? [:]
                cases.append(ReferenceCase(
                    model: model, index: index,
                    prompt: entry["prompt"] as? String ?? "",
                    promptTokenIDs: entry["prompt_token_ids"] as? [Int] ?? [],
                    completionTokenIDs: entry["completion_token_ids"] as? [Int] ?? [],
                    topLogprobs: (entry["step_top_logprobs"] as? [[[String: Any]]] ?? []).map { step in
                        step.map { (($0["token_id"] as? Int) ?? -1, ($0["logprob"] as? Double) ?? .nan) }
                    },
                    prefillLoad: load["prefill"] as? [[Int]] ?? [],
                    decodeLoad: load["decode"] as? [[Int]] ?? []))
            }
        }
        return cases
    }
}

@Suite("generate equals Hugging Face transformers", .serialized)
struct ReferenceGenerateTests {
    @Test("the committed reference fixtures exist")
    func fixturesPresent() {
        #expect(ReferenceCase.all().count >= 5)
    }

    @Test("prompt ids, greedy tokens, top-5 logprobs and expert load equal transformers, in-process and with 2 and 3 workers",
          arguments: ReferenceCase.all())
    func matchesTransformers(reference: ReferenceCase) throws {
        let prompt = reference.prompt.isEmpty
            ? ["--prompt-token-ids", reference.promptTokenIDs.map(String.init).joined(separator: ",")]
            : ["--prompt", reference.prompt]
        for workers in [0, 2, 3] {
            let output = try generateJSON(
                ["--model", reference.model.path, "--max-tokens", "\(reference.completionTokenIDs.count)",
                 "--temperature", "0", "--ignore-eos", "--logprobs", "5", "--spawn-workers", "\(workers)"] + prompt)
            #expect(output.promptTokenIDs == reference.promptTokenIDs, "workers: \(workers)")
            #expect(output.completionTokenIDs == reference.completionTokenIDs, "workers: \(workers)")
            let mismatch = logprobMismatch(output.topLogprobs, reference.topLogprobs, tolerance: 1e-3)
            #expect(mismatch == nil, "workers: \(workers): \(mismatch ?? "")")
            #expect(output.prefillLoad == reference.prefillLoad, "workers: \(workers)")
            #expect(output.decodeLoad == reference.decodeLoad, "workers: \(workers)")
        }
    }
}

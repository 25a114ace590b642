import Foundation
import TestSupport
import Testing

/// The trained demo checkpoint (Models/kjv-moe) against its transformers reference
/// (Models/kjv-moe/reference.json, from Scripts/reference/demo_model_fixture.py).
@Suite("the demo checkpoint generates what transformers generates", .serialized)
struct DemoModelTests {
    static let model = TestPaths.packageRoot.appendingPathComponent("Models/kjv-moe")

    static func cases() -> [ReferenceCase] {
        guard let data = try? Data(contentsOf: model.appendingPathComponent("reference.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let entries = object["cases"] as? [[String: Any]]
        else { return [] }
        return entries.enumerated().map { index, entry in
            let load = entry["expert_load"] as? [String: Any] ?? [:]
            return ReferenceCase(
                model: model, index: index,
                prompt: entry["prompt"] as? String ?? "",
                promptTokenIDs: entry["prompt_token_ids"] as? [Int] ?? [],
                completionTokenIDs: entry["completion_token_ids"] as? [Int] ?? [],
                topLogprobs: (entry["step_top_logprobs"] as? [[[String: Any]]] ?? []).map { step in
                    step.map { (($0["token_id"] as? Int) ?? -1, ($0["logprob"] as? Double) ?? .nan) }
                },
                prefillLoad: load["prefill"] as? [[Int]] ?? [],
                decodeLoad: load["decode"] as? [[Int]] ?? [])
        }
    }

    @Test("the demo checkpoint and its reference are committed")
    func committed() {
        #expect(Self.cases().count >= 1)
    }

    @Test("prompt ids, greedy tokens, top-5 logprobs and expert load equal transformers, in-process and with 2 workers",
          arguments: DemoModelTests.cases())
    func matchesTransformers(reference: ReferenceCase) throws {
        for workers in [0, 2] {
            let output = try generateJSON(
                ["--model", reference.model.path, "--prompt", reference.prompt,
                 "--max-tokens", "\(reference.completionTokenIDs.count)",
                 "--temperature", "0", "--ignore-eos", "--logprobs", "5", "--spawn-workers", "\(workers)"])
            #expect(output.promptTokenIDs == reference.promptTokenIDs, "workers: \(workers)")
            #expect(output.completionTokenIDs == reference.completionTokenIDs, "workers: \(workers)")
            let mismatch = logprobMismatch(output.topLogprobs, reference.topLogprobs, tolerance: 1e-3)
            #expect(mismatch == nil, "workers: \(workers): \(mismatch ?? "")")
            #expect(output.prefillLoad == reference.prefillLoad, "workers: \(workers)")
            #expect(output.decodeLoad == reference.decodeLoad, "workers: \(workers)")
        }
    }
}

// The end-of-sequence set: config.json's eos_token_id, generation_config.json's, and the tokenizer's.
import Foundation
import Models
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

@Suite("End of sequence")
struct EndOfSequenceTests {
    /// A copy of the top2 fixture model without its generation_config.json; the caller removes it.
    static func modelCopy() throws -> URL {
        let fixture = TestPaths.fixtures.appendingPathComponent("models/top2")
        let directory = try TestPaths.makeTemporaryDirectory("eos-model")
        for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(
                at: fixture.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        return directory
    }

    @Test("a model directory whose generation_config.json lists eos ids stops generation at the second of them")
    func stopsAtGenerationConfigEOS() throws {
        let directory = try Self.modelCopy()
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let model = try DecoderStack(checkpoint: checkpoint)
        let tokenizer = try Tokenizer(directory: directory)
        let c = checkpoint.shape
        var experts = LocalExperts(
            store: try ExpertStore(
                checkpoint: checkpoint,
                experts: (0..<c.layerCount).flatMap { layer in
                    (0..<c.expertCount).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
                }))
        let plain = GenerationEngine(model: model, tokenizer: tokenizer)
        var request = GenerationRequest(
            prompt: .text("Once upon a time"), maxTokens: 16, sampling: .init(temperature: 0), ignoreEOS: true)
        let free = try plain.generate(request, experts: &experts).completionTokenIDs

        // Stop at a token that is not the first generated, appears for the first time there, and
        // comes before any end-of-sequence id config.json or the tokenizer name.
        let stopIndex = try #require(
            free.indices.dropFirst().first { !free[..<$0].contains(free[$0]) }, "greedy tokens \(free)")
        #expect(
            !free[...stopIndex].contains { plain.endOfSequenceTokenIDs.contains($0) },
            "greedy tokens \(free) hit config.json's end of sequence first")
        let unused = try #require((3..<Int32(c.vocabularySize)).first { !free.contains($0) })
        try Data(#"{"eos_token_id": [\#(unused), \#(free[stopIndex])], "bos_token_id": 1}"#.utf8)
            .write(to: directory.appendingPathComponent("generation_config.json"))

        let engine = GenerationEngine(
            model: model, tokenizer: tokenizer, generationConfig: try GenerationConfig(directory: directory))
        #expect(engine.endOfSequenceTokenIDs == plain.endOfSequenceTokenIDs.union([unused, free[stopIndex]]))
        request.ignoreEOS = false
        let result = try engine.generate(request, experts: &experts)
        #expect(result.completionTokenIDs == Array(free[...stopIndex]))
        #expect(result.finishReason == "stop")
        // ignore_eos ignores these too, as vLLM does.
        request.ignoreEOS = true
        #expect(try engine.generate(request, experts: &experts).completionTokenIDs == free)
    }
}

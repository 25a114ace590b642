import Foundation
import Models
import Tensors
import TestSupport
import Testing

@Suite("Skewed checkpoints (hot experts)")
struct HotExpertsTests {
    /// Tokens routed per expert, `[layer][expert]`, for 64 prompt tokens.
    static func routedCounts(hotExperts: Int, bias: Double) throws -> (counts: [[Int]], options: MixtralCheckpointOptions) {
        var options = MixtralCheckpointOptions()
        options.layerCount = 3
        options.expertCount = 8
        options.hotExpertCount = hotExperts
        options.hotExpertBias = bias
        options.seed = 9
        let directory = try TestPaths.makeTemporaryDirectory("hot-experts")
        try MixtralCheckpointWriter.write(options, to: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let c = checkpoint.shape
        let model = try DecoderStack(checkpoint: checkpoint)
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<c.layerCount).flatMap { l in
                (0..<c.expertCount).map { LayerExpert(layer: LayerIndex(l), expert: ExpertID($0)) }
            })
        var counts = Array(repeating: Array(repeating: 0, count: c.expertCount), count: c.layerCount)
        var cache = model.makeCache(capacity: 64)
        let tokens = (0..<64).map { Int32(($0 * 37 + 5) % c.vocabularySize) }
        _ = try model.forward(tokens: tokens, cache: &cache, logits: .lastToken) { layer, hidden, routing in
            for expert in routing.expertIDs { counts[layer.rawValue][Int(expert)] += 1 }
            return try store.compute(layer: layer, hidden: hidden, routing: routing)
        }
        return (counts, options)
    }

    @Test("with --hot-experts the routers send most tokens to the preferred experts of each layer")
    func hotExpertsTakeMostTokens() throws {
        let (skewed, options) = try Self.routedCounts(hotExperts: 2, bias: 3)
        let (plain, _) = try Self.routedCounts(hotExperts: 0, bias: 0)
        for layer in 0..<3 {
            let hot = MixtralCheckpointWriter.hotExperts(layer: layer, options)
            #expect(hot == [(2 * layer) % 8, (2 * layer + 1) % 8])
            let share = Double(hot.map { skewed[layer][$0] }.reduce(0, +)) / Double(skewed[layer].reduce(0, +))
            let plainShare = Double(hot.map { plain[layer][$0] }.reduce(0, +)) / Double(plain[layer].reduce(0, +))
            // 2 of 8 experts would get 25% of the routed pairs under an even router.
            #expect(share > 0.75, "layer \(layer): hot share \(share), counts \(skewed[layer])")
            #expect(plainShare < 0.6, "layer \(layer): unbiased share \(plainShare)")
        }
    }

    @Test("the same seed and bias write the same checkpoint")
    func deterministic() throws {
        var options = MixtralCheckpointOptions()
        options.hotExpertCount = 3
        options.hotExpertBias = 2
        options.seed = 4
        let first = try TestPaths.makeTemporaryDirectory("hot-a")
        let second = try TestPaths.makeTemporaryDirectory("hot-b")
        try MixtralCheckpointWriter.write(options, to: first)
        try MixtralCheckpointWriter.write(options, to: second)
        let name = Checkpoint.singleFileName
        #expect(
            try Data(contentsOf: first.appendingPathComponent(name)) == Data(contentsOf: second.appendingPathComponent(name)))
    }
}

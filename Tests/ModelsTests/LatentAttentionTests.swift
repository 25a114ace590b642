// Multi-head latent attention: the absorbed form (queries multiplied into kv_b_proj's key part, scores
// taken against the cached latent, output through kv_b_proj's value part) against the unabsorbed form
// that the fixtures pin to transformers, on the DeepSeek-V3 fixtures' own layers.
import Foundation
import Tensors
import Testing

@testable import Models

/// The absorbed form sums in another order: its outputs stay this close to the unabsorbed ones
/// (the layers' outputs are of order 1).
private let absorbedTolerance: Float = 1e-5

@Suite("Multi-head latent attention")
struct LatentAttentionTests {
    @Test(
        "the absorbed form gives the unabsorbed outputs within 1e-5, over a prefill and decode steps",
        arguments: [
            "deepseek_v3_mla", "deepseek_v3_q_proj_bf16", "deepseek_v3_yarn", "deepseek_v3_fp8",
            "deepseek_v2_lite_bf16", "deepseek_v2_greedy",
        ])
    func absorbedMatchesUnabsorbed(name: String) throws {
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        let parts = try checkpoint.configuration.assemble(from: checkpoint, arithmetic: .exact)
        let shape = checkpoint.shape
        var random = TestRandom(seed: 17)
        var largest: Float = 0
        for layer in parts.layers {
            guard case .latent(let loaded) = layer.attention else {
                Issue.record("layer \(layer.index) of \(name) is not latent attention")
                continue
            }
            let unabsorbed = loaded.expanded(), absorbed = loaded.absorbed()
            var caches = [
                KVCache(capacity: 8, rowWidths: shape.keyValueWidths, valueRowWidths: shape.valueWidths),
                KVCache(capacity: 8, rowWidths: shape.keyValueWidths, valueRowWidths: shape.valueWidths),
            ]
            // A prefill of 5 tokens, then 3 decode steps.
            for rowCount in [5, 1, 1, 1] {
                let normed = random.floats(rowCount * shape.hiddenSize)
                let chunks = [ChunkSpan(firstRow: 0, rowCount: rowCount)]
                let (expected, actual) = caches.withUnsafeMutableBufferPointer { both in
                    (
                        unabsorbed(
                            normed, chunks: chunks, layer: layer.index,
                            caches: UnsafeMutableBufferPointer(rebasing: both[0..<1])),
                        absorbed(
                            normed, chunks: chunks, layer: layer.index,
                            caches: UnsafeMutableBufferPointer(rebasing: both[1..<2]))
                    )
                }
                let difference = Difference(actual, expected, tolerance: absorbedTolerance)
                #expect(difference.firstMismatch == nil, "\(name) layer \(layer.index): \(difference)")
                largest = max(largest, difference.maximum)
                caches[0].count += rowCount
                caches[1].count += rowCount
            }
        }
        print("\(name): absorbed vs unabsorbed MLA, max abs difference \(largest)")
    }

    @Test(
        "the runtime attends every chunk absorbed, a decode step and a long prefill chunk alike (FP8 too); the cost-based form would not",
        arguments: ["deepseek_v3_mla", "deepseek_v3_q_proj_bf16", "deepseek_v2_lite_bf16", "deepseek_v3_fp8"])
    func runtimeForm(name: String) throws {
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        let parts = try checkpoint.configuration.assemble(from: checkpoint, arithmetic: .exact)
        for layer in parts.layers {
            guard case .latent(let loaded) = layer.attention else {
                Issue.record("layer \(layer.index) of \(name) is not latent attention")
                continue
            }
            let shape = loaded.shape
            let longChunk = 64
            // Every chunk absorbed, so that a prompt's bits do not depend on how it is chunked
            // (BatchInvarianceTests checks the bits).
            #expect(loaded.attendsAbsorbed(rowCount: 1, positionCount: 2), "\(name) layer \(layer.index)")
            #expect(loaded.attendsAbsorbed(rowCount: 1, positionCount: 4096), "\(name) layer \(layer.index)")
            #expect(loaded.attendsAbsorbed(rowCount: longChunk, positionCount: longChunk), "\(name) layer \(layer.index)")
            // The cost-based form: both pay T·C·(N + Dv) for the products, then T²·(N + R + Dv) against
            // T²·(2C + R), so it would expand a long chunk unless 2C < N + Dv.
            let absorbsLongChunk = 2 * shape.latentDimension < shape.nopeDimension + shape.valueDimension
            #expect(loaded.cheaperForm().attendsAbsorbed(rowCount: longChunk, positionCount: longChunk) == absorbsLongChunk)
            #expect(loaded.cheaperForm().attendsAbsorbed(rowCount: 1, positionCount: 4096))
            #expect(!loaded.expanded().attendsAbsorbed(rowCount: 1, positionCount: 64))
            #expect(loaded.absorbed().attendsAbsorbed(rowCount: longChunk, positionCount: longChunk))
        }
    }
}

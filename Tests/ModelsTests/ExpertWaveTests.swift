// The experts of one call run in waves, each wave's products grouped into one job per stage; the
// result must be bitwise the per-expert computation whatever the wave size, and bitwise each expert's
// own products on the checkpoint's weights.
import Kernels
@testable import Models
import Tensors
import Testing

@Suite("expert waves")
struct ExpertWaveTests {
    @Test(
        "a call's rows give bitwise the same output in one wave, in waves of a few rows, and expert by expert",
        arguments: BFloat16Arithmetic.allCases)
    func wavesEqualExpertByExpert(arithmetic: BFloat16Arithmetic) throws {
        let checkpoint = try Checkpoint(directory: BFloat16CheckpointTests.writeBFloat16Checkpoint(tie: false))
        let c = checkpoint.shape
        let layer = LayerIndex(1)
        let held = (0..<c.expertCount).map { LayerExpert(layer: layer, expert: ExpertID($0)) }
        // One wave (the default), waves of at most 5 rows, and one expert per wave.
        let rowBytes = 2 * checkpoint.configuration.expertSpec.intermediateSize * MemoryLayout<Float>.size
        let stores = try [16 << 20, 5 * rowBytes, 1].map { bytes in
            try ExpertStore(
                checkpoint: checkpoint, experts: held, arithmetic: arithmetic, quantization: .none,
                waveScratchBytes: bytes)
        }
        var random = TestRandom(seed: 91)
        let rowCount = 29
        let hidden = random.floats(rowCount * c.hiddenSize)
        // Rows with 0 ... 3 experts each (ids ascending per row), uneven counts per expert.
        var offsets: [UInt32] = [0]
        var ids: [UInt32] = []
        var weights: [Float] = []
        for row in 0..<rowCount {
            for expert in 0..<c.expertCount where (row * 7 + expert * 3) % 5 < (row % 4 == 0 ? 0 : 2) {
                ids.append(UInt32(expert))
                weights.append(Float(expert + 1) * 0.25)
            }
            offsets.append(UInt32(ids.count))
        }
        let outputs = try stores.map { store in
            try store.compute(
                layer: layer, hidden: hidden, rowCount: rowCount, rowExpertOffsets: offsets, expertIDs: ids,
                weights: weights)
        }
        // Expert by expert through the public API: each call holds one expert's entries; the terms are
        // added in ascending expert order, as the store adds them.
        var expected = [Float](repeating: 0, count: rowCount * c.hiddenSize)
        for expert in 0..<c.expertCount {
            var oneOffsets: [UInt32] = [0]
            var oneWeights: [Float] = []
            for row in 0..<rowCount {
                for entry in Int(offsets[row])..<Int(offsets[row + 1]) where ids[entry] == UInt32(expert) {
                    oneWeights.append(weights[entry])
                }
                oneOffsets.append(UInt32(oneWeights.count))
            }
            guard !oneWeights.isEmpty else { continue }
            let term = try stores[0].compute(
                layer: layer, hidden: hidden, rowCount: rowCount, rowExpertOffsets: oneOffsets,
                expertIDs: [UInt32](repeating: UInt32(expert), count: oneWeights.count), weights: oneWeights)
            for index in expected.indices { expected[index] += term[index] }
        }
        #expect(expected.contains { $0 != 0 }, "the routing reaches some experts")
        for (index, output) in outputs.enumerated() {
            #expect(
                zip(output, expected).allSatisfy { $0.bitPattern == $1.bitPattern },
                "\(arithmetic): store \(index) differs from the expert-by-expert sum")
        }
    }

    @Test(
        "the grouped products on the store's plain pointers give bitwise each expert's own products on the checkpoint's weights, bf16 and q8",
        arguments: [(BFloat16Arithmetic.exact, WeightQuantization.none), (.fast, .none), (.exact, .q8)])
    func groupedEqualsEachExpertsProducts(arithmetic: BFloat16Arithmetic, quantization: WeightQuantization) throws {
        let checkpoint = try Checkpoint(directory: BFloat16CheckpointTests.writeBFloat16Checkpoint(tie: false))
        let c = checkpoint.shape
        let spec = checkpoint.configuration.expertSpec
        let layer = LayerIndex(1)
        let held = (0..<c.expertCount).map { LayerExpert(layer: layer, expert: ExpertID($0)) }
        let store = try ExpertStore(
            checkpoint: checkpoint, experts: held, arithmetic: arithmetic, quantization: quantization)
        var random = TestRandom(seed: 17)
        let hidden = random.floats(c.hiddenSize)
        // One token routed to three experts, as a decode step routes it.
        let chosen = [0, 2, c.expertCount - 1]
        let weights: [Float] = [0.5, 0.25, 0.125]
        let output = try store.compute(
            layer: layer, hidden: hidden, rowCount: 1, rowExpertOffsets: [0, UInt32(chosen.count)],
            expertIDs: chosen.map { UInt32($0) }, weights: weights)
        // Each expert alone: gate and up, SwiGLU, down, each a `linear` on the weight as loaded (or
        // quantized to q8 as the store quantizes it), the terms added in ascending expert order.
        var expected = [Float](repeating: 0, count: c.hiddenSize)
        for (expert, weight) in zip(chosen, weights) {
            let names = spec.tensorNames(layer: layer.rawValue, expert: expert)
            let matrices = try [names.gate, names.up, names.down].map { name in
                let stored = try checkpoint.weight(named: name)
                return quantization == .q8 ? stored.quantizedQ8() : stored
            }
            var gate = linear(hidden, rowCount: 1, weight: matrices[0], arithmetic: arithmetic)
            let up = linear(hidden, rowCount: 1, weight: matrices[1], arithmetic: arithmetic)
            gate.withUnsafeMutableBufferPointer { g in
                up.withUnsafeBufferPointer { u in swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: g.count) }
            }
            let down = linear(gate, rowCount: 1, weight: matrices[2], arithmetic: arithmetic)
            for index in expected.indices { expected[index] += down[index] * weight }
        }
        #expect(expected.contains { $0 != 0 })
        #expect(
            zip(output, expected).allSatisfy { $0.bitPattern == $1.bitPattern },
            "\(arithmetic), \(quantization): the store's grouped products differ from each expert's own")
    }
}

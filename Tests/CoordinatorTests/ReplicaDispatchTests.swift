import Models
import Testing
import Tensors

@testable import Coordinator

/// Emulates a worker (and the in-process path): a row's terms weight · f_e(x), added in ascending
/// expert id starting from 0, as `ExpertStore.compute` does. f_e is a cheap stand-in for an expert
/// FFN with values of mixed magnitude, so a change in the order of additions changes the bits.
private func expertTerm(_ expert: Int, _ x: Float, column: Int) -> Float {
    x * Float(expert + 1) * 0.731 + Float((expert * 7 + column * 3) % 11) * 1e-3 * (expert % 2 == 0 ? 1 : -1000)
}

private func workerRows(_ batch: DispatchPlan.WorkerBatch, hidden: [Float], hiddenSize: Int) -> [Float] {
    let rows = DispatchPlan.gather(batch, from: hidden, hiddenSize: hiddenSize)
    var out = [Float](repeating: 0, count: rows.count)
    for row in 0..<batch.rowCount {
        let entries = Int(batch.rowExpertOffsets[row])..<Int(batch.rowExpertOffsets[row + 1])
        for entry in entries.sorted(by: { batch.expertIDs[$0] < batch.expertIDs[$1] }) {
            for column in 0..<hiddenSize {
                out[row * hiddenSize + column] +=
                    expertTerm(Int(batch.expertIDs[entry]), rows[row * hiddenSize + column], column: column) * batch.weights[entry]
            }
        }
    }
    return out
}

private func inProcess(_ routing: RoutingDecision, hidden: [Float], hiddenSize: Int) -> [Float] {
    let everything = DispatchPlan(
        routing: routing, layer: LayerIndex(0),
        placement: try! Placement(workerNames: ["all"], holders: [Array(repeating: [0], count: 8)]))
    return workerRows(everything.batches[0], hidden: hidden, hiddenSize: hiddenSize)
}

private func randomRouting(tokens: Int, k: Int, experts: Int, skewTo hot: Int?, seed: UInt64) -> RoutingDecision {
    var random = SplitMix64(seed: seed)
    var ids: [Int32] = []
    var weights: [Float] = []
    for _ in 0..<tokens {
        var chosen: [Int32] = []
        if let hot { chosen.append(Int32(hot)) }
        while chosen.count < k {
            let candidate = Int32(random.next() % UInt64(experts))
            if !chosen.contains(candidate) { chosen.append(candidate) }
        }
        chosen.shuffle(using: &random)
        ids += chosen
        weights += (0..<k).map { _ in Float(random.next() % 1000) / 997 + 0.01 }
    }
    return RoutingDecision(tokenCount: tokens, expertsPerToken: k, expertIDs: ids, weights: weights)
}

private func randomPlacement(workers: Int, experts: Int, seed: UInt64) -> Placement {
    var random = SplitMix64(seed: seed)
    let holders: [[Int]] = (0..<experts).map { _ in
        let replicas = Int(random.next() % UInt64(min(3, workers))) + 1
        return Array((0..<workers).shuffled(using: &random).prefix(replicas))
    }
    return try! Placement(workerNames: (0..<workers).map { "w\($0)" }, holders: [holders])
}

@Suite("Replicas in the dispatch plan")
struct ReplicaDispatchTests {
    @Test("a replicated expert's tokens are split between its replicas in contiguous runs of balanced size")
    func contiguousSplit() throws {
        // Expert 0 on w0 and w1, expert 1 on w2; 5 tokens all routed to expert 0 (top-1).
        let placement = try Placement(workerNames: ["w0", "w1", "w2"], holders: [[[0, 1], [2]]])
        let routing = RoutingDecision(tokenCount: 5, expertsPerToken: 1, expertIDs: [0, 0, 0, 0, 0], weights: [1, 1, 1, 1, 1])
        let plan = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: placement)
        #expect(plan.batches.map(\.slot) == [0, 1])
        #expect(plan.batches[0].tokens == [0, 1, 2])
        #expect(plan.batches[1].tokens == [3, 4])
    }

    @Test("with top-2 a worker holding both of a token's experts gets one row for them, as without replicas")
    func topTwoRowsMerge() throws {
        let placement = try Placement(workerNames: ["w0", "w1"], holders: [[[0], [0], [1], [0, 1]]])
        let routing = RoutingDecision(tokenCount: 2, expertsPerToken: 2, expertIDs: [1, 0, 3, 2], weights: [0.6, 0.4, 0.7, 0.3])
        let plan = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: placement)
        // Token 0: experts 1 and 0 both on w0, one row. Token 1: expert 3's only token goes to its first replica (w0), 2 on w1.
        #expect(plan.batches[0].tokens == [0, 1])
        #expect(plan.batches[0].rowExpertOffsets == [0, 2, 3])
        #expect(plan.batches[0].expertIDs == [1, 0, 3])
        #expect(plan.batches[1].tokens == [1])
        #expect(plan.batches[1].expertIDs == [2])
    }

    @Test(
        "the combined output is bitwise the in-process sum for any placement with replicas",
        arguments: [(2, UInt64(1)), (2, 2), (3, 3), (3, 4), (4, 5)])
    func combineIsPlacementIndependent(k: Int, seed: UInt64) throws {
        let hiddenSize = 5
        let tokens = 23
        let routing = randomRouting(tokens: tokens, k: k, experts: 8, skewTo: Int(seed % 8), seed: seed)
        var random = SplitMix64(seed: seed &+ 99)
        let hidden = (0..<(tokens * hiddenSize)).map { _ in Float(Int(random.next() % 20_001) - 10_000) / 77 }
        let reference = inProcess(routing, hidden: hidden, hiddenSize: hiddenSize)
        var slotOrderDiffers = false
        for trial in 0..<20 {
            let placement = randomPlacement(workers: 4, experts: 8, seed: seed * 1000 + UInt64(trial))
            let plan = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: placement)
            // Every (token, expert) pair is dispatched exactly once, to a worker holding the expert.
            var pairs: [[Int]] = []
            for batch in plan.batches {
                for row in 0..<batch.rowCount {
                    for entry in Int(batch.rowExpertOffsets[row])..<Int(batch.rowExpertOffsets[row + 1]) {
                        let expert = Int(batch.expertIDs[entry])
                        #expect(placement.holders[0][expert].contains(batch.slot))
                        pairs.append([batch.tokens[row], expert])
                    }
                }
            }
            let expected = (0..<tokens).flatMap { token in routing.experts(ofToken: token).map { [token, Int($0)] } }
            #expect(pairs.sorted { $0.lexicographicallyPrecedes($1) } == expected.sorted { $0.lexicographicallyPrecedes($1) })

            let partials = plan.batches.map { workerRows($0, hidden: hidden, hiddenSize: hiddenSize) }
            // Answers may arrive in any order; combine takes them by batch.
            let combined = plan.combine(partials, tokenCount: tokens, hiddenSize: hiddenSize)
            #expect(combined.map(\.bitPattern) == reference.map(\.bitPattern), "placement \(placement.holders)")

            var slotOrder = [Float](repeating: 0, count: tokens * hiddenSize)
            for (index, batch) in plan.batches.enumerated() {
                DispatchPlan.scatterAdd(partials[index], of: batch, into: &slotOrder, hiddenSize: hiddenSize)
            }
            if slotOrder.map(\.bitPattern) != reference.map(\.bitPattern) { slotOrderDiffers = true }
        }
        if k >= 3 {
            // The order matters for k ≥ 3: adding in slot order would have changed the bits.
            #expect(slotOrderDiffers)
        }
    }
}

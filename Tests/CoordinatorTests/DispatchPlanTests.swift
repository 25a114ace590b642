import Models
import Testing
import Tensors

@testable import Coordinator

@Suite("Dispatch plan and combine")
struct DispatchPlanTests {
    /// 4 tokens, top-2 over 4 experts held by two workers (experts 0-1 on w0, 2-3 on w1).
    let routing = RoutingDecision(
        tokenCount: 4, expertsPerToken: 2,
        expertIDs: [0, 1, 2, 0, 3, 2, 1, 3],
        weights: [0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.9, 0.1])

    @Test("each worker gets one row per token routed to it, with only its experts")
    func rowsPerWorker() throws {
        let placement = try Placement.even(layerCount: 1, expertCount: 4, workerNames: ["w0", "w1"])
        let plan = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: placement)
        #expect(plan.batches.count == 2)
        let w0 = plan.batches[0]
        #expect(w0.tokens == [0, 1, 3])
        #expect(w0.rowExpertOffsets == [0, 2, 3, 4])
        #expect(w0.expertIDs == [0, 1, 0, 1])
        #expect(w0.weights == [0.6, 0.4, 0.3, 0.9])
        let w1 = plan.batches[1]
        #expect(w1.tokens == [1, 2, 3])
        #expect(w1.rowExpertOffsets == [0, 1, 3, 4])
        #expect(w1.expertIDs == [2, 3, 2, 3])
    }

    @Test("a worker with no routed token gets no dispatch")
    func idleWorkerSkipped() throws {
        let placement = try Placement.even(layerCount: 1, expertCount: 4, workerNames: ["w0", "w1"])
        let onlyLow = RoutingDecision(tokenCount: 1, expertsPerToken: 2, expertIDs: [0, 1], weights: [0.5, 0.5])
        let plan = DispatchPlan(routing: onlyLow, layer: LayerIndex(0), placement: placement)
        #expect(plan.batches.map(\.slot) == [0])
    }

    @Test("gather then scatter-add of the partial sums puts every row back at its token")
    func gatherScatter() throws {
        let placement = try Placement.even(layerCount: 1, expertCount: 4, workerNames: ["w0", "w1", "w2"])
        let plan = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: placement)
        let hiddenSize = 3
        let hidden: [Float] = (0..<(4 * hiddenSize)).map { Float($0) + 0.5 }
        var output = [Float](repeating: 0, count: hidden.count)
        var rowsPerToken = [Int](repeating: 0, count: 4)
        for batch in plan.batches {
            let rows = DispatchPlan.gather(batch, from: hidden, hiddenSize: hiddenSize)
            for token in batch.tokens { rowsPerToken[token] += 1 }
            DispatchPlan.scatterAdd(rows, of: batch, into: &output, hiddenSize: hiddenSize)
        }
        for token in 0..<4 {
            for column in 0..<hiddenSize {
                let index = token * hiddenSize + column
                #expect(output[index] == hidden[index] * Float(rowsPerToken[token]))
            }
        }
    }

    @Test("expert load counts every token once at each of its experts, by phase")
    func expertLoad() {
        var load = ExpertLoad(layerCount: 2, expertCount: 4)
        load.record(routing, layer: LayerIndex(1), phase: .prefill)
        load.record(RoutingDecision(tokenCount: 1, expertsPerToken: 2, expertIDs: [3, 0], weights: [0.5, 0.5]),
                    layer: LayerIndex(0), phase: .decode)
        #expect(load.prefill == [[0, 0, 0, 0], [2, 2, 2, 2]])
        #expect(load.decode == [[1, 0, 0, 1], [0, 0, 0, 0]])
        #expect(load.total == [[1, 0, 0, 1], [2, 2, 2, 2]])
    }
}

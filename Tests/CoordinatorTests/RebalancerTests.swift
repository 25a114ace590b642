import Testing
import Tensors

@testable import Coordinator

@Suite("Rebalancer")
struct RebalancerTests {
    let names = ["w0", "w1", "w2", "w3"]

    /// Layer 0: experts 0 and 1 carry most tokens (both on w0 in an even placement); layer 1: even.
    let skewed: [[Double]] = [
        [400, 300, 20, 20, 20, 20, 10, 10],
        [100, 100, 100, 100, 100, 100, 100, 100],
    ]

    func check(_ placement: Placement, budget: Int) {
        for layer in 0..<placement.layerCount {
            for slots in placement.holders[layer] {
                #expect(!slots.isEmpty, "every expert has a worker")
                #expect(Set(slots).count == slots.count, "no worker holds one expert twice")
            }
            for worker in 0..<placement.workerCount {
                let held = placement.experts(ofWorker: worker).filter { $0.layer.rawValue == layer }.count
                #expect(held <= budget, "worker \(worker) holds \(held) experts of layer \(layer), budget \(budget)")
            }
        }
    }

    @Test("a dense layer (an empty load row) keeps no experts; the MoE layers are planned as without it")
    func denseLayer() throws {
        let withDense = try Rebalancer.placement(
            load: [skewed[0], [], skewed[1]], workerNames: names, expertSlotsPerWorker: 3)
        let without = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)
        #expect(withDense.expertCounts == [8, 0, 8])
        #expect(withDense.holders[0] == without.holders[0] && withDense.holders[2] == without.holders[1])
        #expect(throws: PlacementError.self) {
            try Rebalancer.placement(load: [skewed[0], [1, 2]], workerNames: names, expertSlotsPerWorker: 3)
        }
    }

    @Test("hot experts get replicas and the worst layer's worker balancedness rises")
    func replicatesHotExperts() throws {
        let even = try Placement.even(layerCount: 2, expertCount: 8, workerNames: names)
        let placement = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)
        check(placement, budget: 3)
        #expect(placement.holders[0][0].count >= 2)
        #expect(placement.holders[0][1].count >= 2)
        let before = Rebalancer.balancedness(Rebalancer.workerLoad(load: skewed[0], holders: even.holders[0], workerCount: 4))
        let after = Rebalancer.balancedness(Rebalancer.workerLoad(load: skewed[0], holders: placement.holders[0], workerCount: 4))
        #expect(before < 0.4)
        #expect(after > 0.9, "after: \(after)")
    }

    @Test("an even load gets no replicas: a replica must lower the most loaded worker")
    func evenLoadNoReplicas() throws {
        let placement = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)
        #expect(placement.holders[1].allSatisfy { $0.count == 1 })
        let loads = Rebalancer.workerLoad(load: skewed[1], holders: placement.holders[1], workerCount: 4)
        #expect(loads == [200, 200, 200, 200])
    }

    @Test("with a budget of experts ÷ workers there is no room for replicas, only packing")
    func tightBudget() throws {
        let placement = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 2)
        check(placement, budget: 2)
        #expect(placement.holders[0].allSatisfy { $0.count == 1 })
        // The two hot experts end up on different workers.
        #expect(placement.holders[0][0] != placement.holders[0][1])
    }

    @Test("the plan is deterministic")
    func deterministic() throws {
        let first = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)
        let second = try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)
        #expect(first == second)
    }

    @Test(
        "bad input is refused with what would be valid",
        arguments: [
            ([[1.0, 2, 3, 4, 5, 6, 7, 8]], 1, "the budget must be at least 2"),
            ([[1.0, 2], [1.0]], 2, "layer 1 has 1 experts"),
            ([[1.0, -2]], 2, "must be a finite count ≥ 0"),
        ])
    func badInput(load: [[Double]], budget: Int, message: String) {
        do {
            _ = try Rebalancer.placement(load: load, workerNames: names, expertSlotsPerWorker: budget)
            Issue.record("expected an error containing \(message)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test("automatic rebalancing decides once per interval, from the tokens routed in that interval")
    func automatic() throws {
        let even = try Placement.even(layerCount: 2, expertCount: 8, workerNames: names)
        var automatic = AutoRebalancer(interval: .seconds(30), expertSlotsPerWorker: 3)
        let start = ContinuousClock.now
        // Up to the first interval: a baseline with an even load, then nothing is due.
        let baseline: [[UInt64]] = [Array(repeating: 1000, count: 8), Array(repeating: 1000, count: 8)]
        let first = automatic.decide(cumulative: baseline, current: even, now: start)
        #expect(first == nil)
        let skewedCounts = zip(baseline, skewed).map { zip($0, $1).map { $0 + UInt64($1) } }
        let early = automatic.decide(cumulative: skewedCounts, current: even, now: start + .seconds(10))
        #expect(early == nil)
        // Due: the interval's load alone is skewed (the cumulative counts are nearly even).
        let decision = automatic.decide(cumulative: skewedCounts, current: even, now: start + .seconds(31))
        let proposed = try #require(decision)
        #expect(proposed == (try Rebalancer.placement(load: skewed, workerNames: names, expertSlotsPerWorker: 3)))
        // Next interval: an even load gains nothing over the even placement.
        let evenAgain = skewedCounts.map { $0.map { $0 + 100 } }
        let next = automatic.decide(cumulative: evenAgain, current: even, now: start + .seconds(62))
        #expect(next == nil)
    }
}

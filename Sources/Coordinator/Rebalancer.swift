// The rebalancer: a new placement from measured expert load.
//
// Pure: load in, placement out; no I/O. Per MoE layer (each layer waits for its own slowest
// worker, so each is balanced on its own), in the manner of DeepSeek's EPLB:
// 1. replication — hot experts get more replicas; an expert with `r` replicas has its tokens split
//    evenly between them (as `DispatchPlan` does), so each replica carries `load / r`;
// 2. packing — replicas, heaviest first, each go to the least loaded worker that still has a free
//    expert slot and does not already hold that expert (longest-processing-time-first).
// A replica costs memory and weight traffic, so replicas are added only while they lower the
// layer's most loaded worker: the plan keeps the fewest replicas that reach the lowest maximum.

/// Computes placements that spread measured expert load over workers.
public enum Rebalancer {
    /// A new placement for `load`.
    /// - Parameters:
    ///   - load: tokens routed, `[layer][expert]` (any non-negative measure of work).
    ///   - workerNames: the workers, in slot order (the running cluster's).
    ///   - expertSlotsPerWorker: how many experts of one layer a worker may hold (its memory budget).
    /// - Throws: `PlacementError` when the budget cannot hold every expert or the load is malformed.
    public static func placement(
        load: [[Double]], workerNames: [String], expertSlotsPerWorker: Int
    ) throws(PlacementError) -> Placement {
        let workerCount = workerNames.count
        guard workerCount >= 1 else { throw PlacementError("rebalancing needs at least one worker") }
        // A dense layer's row is empty: it has no experts and keeps none.
        guard let expertCount = load.map(\.count).max(), expertCount >= 1 else {
            throw PlacementError("the expert load is empty; expected [layer][expert] token counts")
        }
        for (layer, row) in load.enumerated() {
            guard row.count == expertCount || row.isEmpty else {
                throw PlacementError(
                    "the expert load of layer \(layer) has \(row.count) experts, but the MoE layers have \(expertCount)")
            }
            if let bad = row.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                throw PlacementError("the expert load of layer \(layer) expert \(bad) is \(row[bad]), but must be a finite count ≥ 0")
            }
        }
        guard expertSlotsPerWorker * workerCount >= expertCount else {
            throw PlacementError(
                "a memory budget of \(expertSlotsPerWorker) experts per worker on \(workerCount) workers holds "
                    + "\(expertSlotsPerWorker * workerCount) experts, but a layer has \(expertCount); "
                    + "the budget must be at least \((expertCount + workerCount - 1) / workerCount)")
        }
        let holders = load.map {
            $0.isEmpty ? [] : layerHolders(load: $0, workerCount: workerCount, slotsPerWorker: min(expertSlotsPerWorker, expertCount))
        }
        return try Placement(workerNames: workerNames, holders: holders)
    }

    /// Per worker, the load it carries under `holders` when each expert's load is split evenly between its replicas.
    /// - Parameters:
    ///   - load: per expert of one layer
    ///   - holders: per expert, the slots holding it
    public static func workerLoad(load: [Double], holders: [[Int]], workerCount: Int) -> [Double] {
        var perWorker = [Double](repeating: 0, count: workerCount)
        for (expert, slots) in holders.enumerated() where !slots.isEmpty {
            for slot in slots { perWorker[slot] += load[expert] / Double(slots.count) }
        }
        return perWorker
    }

    /// Balancedness: mean ÷ max (1 is perfectly even; 1 when there is no load at all).
    public static func balancedness(_ loads: [Double]) -> Double {
        guard let maximum = loads.max(), maximum > 0 else { return 1 }
        return loads.reduce(0, +) / Double(loads.count) / maximum
    }

    /// One layer: the fewest replicas that reach the lowest packed maximum.
    static func layerHolders(load: [Double], workerCount: Int, slotsPerWorker: Int) -> [[Int]] {
        let expertCount = load.count
        var replicas = [Int](repeating: 1, count: expertCount)
        var best = pack(load: load, replicas: replicas, workerCount: workerCount, slotsPerWorker: slotsPerWorker)!
        var bestMax = maxLoad(best, load: load, workerCount: workerCount)
        let spare = workerCount * slotsPerWorker - expertCount
        for _ in 0..<spare {
            // The expert whose replicas carry the most; ties go to the lower id.
            var hottest: Int?
            for expert in 0..<expertCount where replicas[expert] < workerCount && load[expert] > 0 {
                if let current = hottest,
                    load[expert] / Double(replicas[expert]) <= load[current] / Double(replicas[current])
                {
                    continue
                }
                hottest = expert
            }
            guard let hottest else { break }
            replicas[hottest] += 1
            guard let packed = pack(load: load, replicas: replicas, workerCount: workerCount, slotsPerWorker: slotsPerWorker)
            else { continue }
            let packedMax = maxLoad(packed, load: load, workerCount: workerCount)
            // Strictly lower (beyond rounding): another replica must pay for itself.
            if packedMax < bestMax * (1 - 1e-9) {
                best = packed
                bestMax = packedMax
            }
        }
        return best
    }

    private static func maxLoad(_ holders: [[Int]], load: [Double], workerCount: Int) -> Double {
        workerLoad(load: load, holders: holders, workerCount: workerCount).max() ?? 0
    }

    /// Longest-processing-time-first packing under the slot budget, one replica of an expert per
    /// worker at most; nil when the greedy packing gets stuck.
    static func pack(load: [Double], replicas: [Int], workerCount: Int, slotsPerWorker: Int) -> [[Int]]? {
        var items: [(expert: Int, weight: Double)] = []
        for (expert, count) in replicas.enumerated() {
            for _ in 0..<count { items.append((expert, load[expert] / Double(count))) }
        }
        // Heaviest first; ties by expert id, so the result is deterministic.
        items.sort { ($0.weight, -$0.expert) > ($1.weight, -$1.expert) }
        var workerLoads = [Double](repeating: 0, count: workerCount)
        var used = [Int](repeating: 0, count: workerCount)
        var holders = [[Int]](repeating: [], count: load.count)
        for item in items {
            var chosen: Int?
            for worker in 0..<workerCount where used[worker] < slotsPerWorker && !holders[item.expert].contains(worker) {
                if let current = chosen,
                    (workerLoads[worker], used[worker]) >= (workerLoads[current], used[current])
                {
                    continue
                }
                chosen = worker
            }
            guard let chosen else { return nil }
            workerLoads[chosen] += item.weight
            used[chosen] += 1
            holders[item.expert].append(chosen)
        }
        return holders.map { $0.sorted() }
    }
}

/// Automatic rebalancing (`serve --rebalance-interval`): at each interval, a new placement from the
/// tokens routed since the previous one, proposed only when it raises the worst layer's worker
/// balancedness by at least `minimumGain`. Pure: the caller supplies the clock's readings.
public struct AutoRebalancer: Sendable {
    /// Time between two decisions.
    public let interval: Duration
    /// Experts of one layer a worker may hold; nil: ⌈experts ÷ workers⌉ + 1.
    public let expertSlotsPerWorker: Int?
    /// The worst layer's balancedness must rise by at least this much.
    public let minimumGain: Double
    private var lastCounts: [[UInt64]] = []
    private var lastDecision: ContinuousClock.Instant?

    public init(interval: Duration, expertSlotsPerWorker: Int? = nil, minimumGain: Double = 0.05) {
        self.interval = interval
        self.expertSlotsPerWorker = expertSlotsPerWorker
        self.minimumGain = minimumGain
    }

    /// Decides whether to change `current` given the cumulative counts `[layer][expert]` at `now`.
    /// - Returns: the placement to stage, or nil (not due, no tokens routed, or no worthwhile gain).
    public mutating func decide(
        cumulative counts: [[UInt64]], current: Placement, now: ContinuousClock.Instant
    ) -> Placement? {
        guard let last = lastDecision else {
            lastDecision = now
            lastCounts = counts
            return nil
        }
        guard now - last >= interval else { return nil }
        lastDecision = now
        defer { lastCounts = counts }
        guard counts.map(\.count) == current.expertCounts else { return nil }
        let load: [[Double]] = counts.enumerated().map { layer, row in
            row.enumerated().map { expert, count in
                let before = layer < lastCounts.count && expert < lastCounts[layer].count ? lastCounts[layer][expert] : 0
                return Double(count >= before ? count - before : count)
            }
        }
        guard load.joined().contains(where: { $0 > 0 }) else { return nil }
        let workers = current.workerCount
        let budget = expertSlotsPerWorker ?? min(current.expertCount, (current.expertCount + workers - 1) / workers + 1)
        guard
            let proposed = try? Rebalancer.placement(
                load: load, workerNames: current.workerNames, expertSlotsPerWorker: budget),
            proposed != current
        else { return nil }
        func worst(_ placement: Placement) -> Double {
            (0..<load.count).map {
                Rebalancer.balancedness(
                    Rebalancer.workerLoad(load: load[$0], holders: placement.holders[$0], workerCount: workers))
            }.min() ?? 1
        }
        return worst(proposed) >= worst(current) + minimumGain ? proposed : nil
    }
}

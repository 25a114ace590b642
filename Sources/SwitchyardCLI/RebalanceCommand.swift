import ArgumentParser
import Coordinator
import Foundation
import Server

/// `switchyard rebalance`: a new placement from the measured expert load, applied live.
struct Rebalance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance",
        abstract: "Spread the measured expert load over the workers: replicate hot experts, pack the rest, apply live.",
        discussion: """
            Reads the tokens routed per expert from a running coordinator (GET /v1/expert_load) and \
            its placement (GET /v1/placement), computes a placement that minimises each layer's most \
            loaded worker (hot experts get replicas whose rows are split between them; the rest are \
            packed heaviest first) under --memory-budget experts per worker per layer, prints each \
            layer's worker balancedness (mean ÷ max load) before and after, and applies it with \
            POST /v1/placement: workers load their new experts, the coordinator switches between \
            steps, running requests keep their tokens. With --interval it repeats, using the load \
            routed since the previous round.
            """
    )

    @Option(help: "The coordinator's HTTP API, e.g. http://127.0.0.1:8080.")
    var server: String

    @OptionGroup var tls: ClientTLSOptions

    @Option(name: .customLong("memory-budget"), help: "Experts of one layer a worker may hold. Default: ⌈experts ÷ workers⌉ + 1.")
    var memoryBudget: Int?

    @Flag(name: .customLong("dry-run"), help: "Print the new placement and its balancedness; do not apply it.")
    var dryRun = false

    @Option(help: "Rebalance every INTERVAL (e.g. 30s, 500ms, 2m) until stopped, from the load of each interval.")
    var interval: String?

    @Option(name: .customLong("min-gain"), help: "Apply only when the worst layer's balancedness rises by at least this much.")
    var minGain: Double = 0.01

    @OptionGroup var auth: ClientAPIKeyOptions

    @Flag(help: "Print the new placement as JSON (the placement file's shape) after the table.")
    var json = false

    func validate() throws {
        if let memoryBudget, memoryBudget < 1 {
            throw ValidationError("--memory-budget is \(memoryBudget), but must be at least 1")
        }
        if interval != nil { _ = try intervalDuration() }
        guard minGain.isFinite, minGain >= 0 else { throw ValidationError("--min-gain must be a number ≥ 0") }
    }

    func intervalDuration() throws -> Duration? {
        guard let interval else { return nil }
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where interval.hasSuffix(suffix) {
            if let value = Double(interval.dropLast(suffix.count)), value > 0, value.isFinite {
                return .milliseconds(Int(value * scale * 1000))
            }
        }
        if let seconds = Double(interval), seconds > 0, seconds.isFinite { return .milliseconds(Int(seconds * 1000)) }
        throw ValidationError("--interval is \"\(interval)\", but must be a duration like 30s, 500ms or 2m")
    }

    func run() async throws {
        do {
            let client = try PlacementClient(server: server, apiKey: try auth.key(), connection: try tls.connection())
            guard let every = try intervalDuration() else {
                _ = try await round(client: client, load: try await client.expertLoad())
                return
            }
            StopSignal.install()
            var previous = try await client.expertLoad()
            _ = try await round(client: client, load: previous)
            while !StopSignal.isStopped {
                try await Task.sleep(for: every)
                let total = try await client.expertLoad()
                let recent = zip(total, previous).map { zip($0, $1).map { max(0, $0 - $1) } }
                previous = total
                if recent.joined().reduce(0, +) == 0 {
                    print("no tokens routed in the last \(interval!); placement unchanged")
                    continue
                }
                _ = try await round(client: client, load: recent)
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            fail("\(error)")
        }
    }

    /// One rebalancing round; returns whether a placement was applied.
    func round(client: PlacementClient, load: [[Double]]) async throws -> Bool {
        let file = try await client.placement()
        let layerCount = load.count
        let expertCount = load.map(\.count).max() ?? 0
        // A dense layer's load row is empty: it has no experts to place.
        let current = try Placement.decode(
            try JSONEncoder().encode(file), source: "\(server)/v1/placement", expertCounts: load.map(\.count))
        guard current.expertCounts == load.map(\.count) else {
            throw ClientError(
                "the expert load has experts per layer \(load.map(\.count)), but the placement has \(current.expertCounts)")
        }
        let workerCount = current.workerCount
        let budget = memoryBudget ?? min(expertCount, (expertCount + workerCount - 1) / workerCount + 1)
        let proposed = try Rebalancer.placement(
            load: load, workerNames: current.workerNames, expertSlotsPerWorker: budget)

        func balancedness(_ placement: Placement, _ layer: Int) -> Double {
            Rebalancer.balancedness(
                Rebalancer.workerLoad(load: load[layer], holders: placement.holders[layer], workerCount: workerCount))
        }
        print("worker balancedness per layer (mean ÷ max tokens per worker; 1 is even), budget \(budget) experts per worker per layer:")
        print("layer  tokens     before  after   replicas")
        var worstBefore = 1.0
        var worstAfter = 1.0
        for layer in 0..<layerCount where !load[layer].isEmpty {
            let before = balancedness(current, layer)
            let after = balancedness(proposed, layer)
            worstBefore = min(worstBefore, before)
            worstAfter = min(worstAfter, after)
            let replicas = proposed.holders[layer].reduce(0) { $0 + $1.count }
            print(
                String(
                    format: "%-6d %-10.0f %-7.3f %-7.3f %d", layer, load[layer].reduce(0, +), before, after, replicas))
        }
        print(String(format: "worst layer: %.3f -> %.3f", worstBefore, worstAfter))
        if json { print(String(decoding: proposed.jsonData(), as: UTF8.self)) }
        if dryRun {
            print("dry run: not applied")
            return false
        }
        guard proposed != current else {
            print("placement unchanged")
            return false
        }
        guard worstAfter >= worstBefore + minGain else {
            print(String(format: "not applied: the worst layer would gain less than --min-gain %.3f", minGain))
            return false
        }
        let started = ContinuousClock.now
        _ = try await client.apply(proposed.file)
        let seconds = (ContinuousClock.now - started) / .milliseconds(1) / 1000
        print(String(format: "applied the new placement in %.2f s", seconds))
        return true
    }
}

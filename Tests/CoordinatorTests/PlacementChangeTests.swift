import Foundation
import Models
import Synchronization
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

/// What the engine did, in order: "boundary" (prepareStep), "layer N", "staged", "applied".
final class EngineLog: Sendable {
    private let entries = Mutex<[String]>([])
    func append(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

/// In-process experts behind a placement that changes like the cluster's: a staged placement
/// takes effect at the second step boundary after it was staged (its "workers" load meanwhile).
struct PlacedExperts: ExpertExecutor {
    let local: LocalExperts
    let log: EngineLog
    var placement: Placement
    var staged: (placement: Placement, ticket: PlacementTicket, boundariesLeft: Int)?
    var outcomes: [PlacementTicket: PlacementOutcome] = [:]
    var nextTicket: UInt64 = 0

    func computeExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> [Float] {
        log.append("layer \(layer.rawValue)")
        return try local.computeExperts(layer: layer, hidden: hidden, routing: routing)
    }

    var workerSummaries: [WorkerSummary] { local.workerSummaries }

    mutating func prepareStep() {
        log.append("boundary")
        guard var pending = staged else { return }
        pending.boundariesLeft -= 1
        staged = pending
        if pending.boundariesLeft == 0 {
            placement = pending.placement
            outcomes[pending.ticket] = .applied
            staged = nil
            log.append("applied")
        }
    }

    var currentPlacement: Placement? { placement }

    mutating func stagePlacement(_ newPlacement: Placement) throws(PlacementError) -> PlacementTicket {
        let reordered = try newPlacement.reordered(as: placement.workerNames)
        nextTicket += 1
        staged = (reordered, PlacementTicket(nextTicket), 2)
        log.append("staged")
        return PlacementTicket(nextTicket)
    }

    func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome {
        staged?.ticket == ticket ? .pending : outcomes[ticket] ?? .failed("unknown")
    }
}

@Suite("Scheduler: placement changes", .serialized)
struct PlacementChangeTests {
    static func start() throws -> (Scheduler, EngineLog, ExpertPermits, DispatchSemaphore) {
        let directory = TestPaths.fixtures.appendingPathComponent("models/top2")
        let checkpoint = try Checkpoint(directory: directory)
        let c = checkpoint.shape
        let engine = GenerationEngine(
            model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: directory))
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<c.layerCount).flatMap { layer in
                (0..<c.expertCount).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
            })
        let scheduler = Scheduler(engine: engine, modelName: "top2", limits: SchedulerLimits())
        let log = EngineLog()
        let permits = ExpertPermits()
        let done = DispatchSemaphore(value: 0)
        let placement = try Placement.even(layerCount: c.layerCount, expertCount: c.expertCount, workerNames: ["a", "b"])
        let thread = Thread { [scheduler, log, permits] in
            var held = PermittedPlaced(
                inner: PlacedExperts(local: LocalExperts(store: store), log: log, placement: placement), permits: permits)
            scheduler.run(executor: &held)
            done.signal()
        }
        thread.start()
        let deadline = Date().addingTimeInterval(30)
        while scheduler.health() != .ready && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        return (scheduler, log, permits, done)
    }

    // The executor here computes every expert in-process whatever the placement, so this test shows
    // where the switch happens (at a step boundary, never inside a step), not that tokens survive it:
    // PlacementChangeWorkerTests does that with real workers.
    @Test("a placement change takes effect at a step boundary while requests run, never inside a step")
    func switchBetweenSteps() async throws {
        let (scheduler, log, permits, done) = try Self.start()
        defer {
            permits.set(nil)
            scheduler.stop()
            done.wait()
        }
        let request = { (prompt: String) in
            GenerationRequest(
                prompt: .text(prompt), maxTokens: 8, sampling: SamplingParameters(temperature: 0), ignoreEOS: true,
                logprobs: 0)
        }
        let prompts = ["One placement", "then another", "and the tokens stay"]
        var solo: [[Int32]] = []
        for prompt in prompts { solo.append(try await collect(try scheduler.submit(request(prompt))).tokens) }

        let current = try #require(scheduler.placement())
        let replicated = try Placement(
            workerNames: ["b", "a"], holders: current.holders.map { $0.map { _ in [0, 1] } })
        // The engine advances one MoE layer per permit: hold it inside the batch's first step, ask
        // for the change, and let it run a layer at a time until the change is staged, so the
        // requests are still running when it is applied two boundaries later.
        permits.set(0)
        let soloEntries = log.all.count
        let streams = try prompts.map { try scheduler.submit(request($0)) }
        async let change = scheduler.applyPlacement(json: Array(replicated.jsonData()))
        while !log.all[soloEntries...].contains("staged") {
            if permits.available == 0 { permits.set(1) }
            try await Task.sleep(for: .milliseconds(1))
        }
        permits.set(nil)
        let applied = await change
        var together: [[Int32]] = []
        for stream in streams { together.append(try await collect(stream).tokens) }

        #expect(together == solo)
        #expect(try applied.get() == (try replicated.reordered(as: ["a", "b"])))
        #expect(scheduler.placement() == (try replicated.reordered(as: ["a", "b"])))
        let entries = Array(log.all[soloEntries...])
        let index = try #require(entries.firstIndex(of: "applied"))
        // The requests ran on both sides of the switch.
        #expect(entries[..<index].contains("layer 0"))
        #expect(entries[index...].contains("layer 0"))
        // The engine never reaches a step boundary inside a step: between a step's first layer
        // and its last, only its layers follow each other, in order.
        let layerCount = try #require(scheduler.placement()).layerCount
        for (position, entry) in entries.enumerated() where entry == "layer 0" {
            let step = entries[position..<min(entries.count, position + layerCount)]
            #expect(step.elementsEqual((0..<layerCount).map { "layer \($0)" }), "\(step)")
        }
    }

    @Test("a placement that does not fit is refused naming the problem, and the placement stays")
    func refused() async throws {
        let (scheduler, _, permits, done) = try Self.start()
        defer {
            permits.set(nil)
            scheduler.stop()
            done.wait()
        }
        let before = scheduler.placement()
        let unknown = await scheduler.applyPlacement(json: Array(#"{"workers": [{"name": "a", "experts": []}, {"name": "c", "experts": []}]}"#.utf8))
        #expect(unknown == .failure(.invalid(
            "the placement must name the same workers as the running one (a, b); missing: b; unknown: c")))
        let malformed = await scheduler.applyPlacement(json: Array(#"{"workers": "a"}"#.utf8))
        guard case .failure(.invalid(let message)) = malformed else { Issue.record("\(malformed)"); return }
        #expect(message.contains("not a placement"))
        #expect(scheduler.placement() == before)
    }
}

/// `PlacedExperts` whose expert layers wait for permits (so requests are still running when the change arrives).
struct PermittedPlaced: ExpertExecutor {
    var inner: PlacedExperts
    let permits: ExpertPermits
    func computeExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> [Float] {
        permits.take()
        return try inner.computeExperts(layer: layer, hidden: hidden, routing: routing)
    }
    var workerSummaries: [WorkerSummary] { inner.workerSummaries }
    mutating func prepareStep() { inner.prepareStep() }
    var currentPlacement: Placement? { inner.currentPlacement }
    mutating func stagePlacement(_ placement: Placement) throws(PlacementError) -> PlacementTicket {
        try inner.stagePlacement(placement)
    }
    func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome { inner.placementOutcome(ticket) }
}

import ExpertWorker
import Foundation
import Logging
import Models
import Synchronization
import TestSupport
import Tensors
import Testing
import Tokenization
import Transport

@testable import Coordinator

/// Log lines of the coordinator and the in-process workers: the test's events ("placement 1
/// staged", "worker w0: loaded 8 experts", "worker w1 … lost").
final class CapturedLog: Sendable {
    private let entries = Mutex<[String]>([])
    func append(_ line: String) { entries.withLock { $0.append(line) } }
    var all: [String] { entries.withLock { $0 } }
    func count(_ text: String) -> Int { entries.withLock { $0.filter { $0.contains(text) }.count } }
    /// Lines that contain every one of `texts`.
    func lines(containing texts: String...) -> [String] {
        entries.withLock { $0.filter { line in texts.allSatisfy { line.contains($0) } } }
    }
}

/// A swift-log handler that keeps every line in a `CapturedLog`.
struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { log.append("\(event.level): \(event.message)") }
}

/// The cluster coordinator whose expert layers each wait for a permit first, so the test holds
/// the engine at a known expert layer of a known step while the real workers go on.
struct PermittedCoordinator: ExpertExecutor {
    let inner: ClusterCoordinator
    let permits: ExpertPermits

    func computeExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> [Float] {
        permits.take()
        return try inner.computeExperts(layer: layer, hidden: hidden, routing: routing)
    }
    func dispatchExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> ExpertDispatch {
        permits.take()
        return try inner.dispatchExperts(layer: layer, hidden: hidden, routing: routing)
    }
    func collectExperts(_ dispatch: ExpertDispatch) throws(GenerationError) -> [Float] { try inner.collectExperts(dispatch) }
    var workerSummaries: [WorkerSummary] { inner.workerSummaries }
    var readiness: HealthStatus { inner.readiness }
    func idle(timeout: Duration, wakeSignal: WakeSignal?) { inner.idle(timeout: timeout, wakeSignal: wakeSignal) }
    var clusterMetrics: ClusterMetrics? { inner.clusterMetrics }
    func takeRemoteJobs() -> [RemoteJob] { inner.takeRemoteJobs() }
    func finishRemoteJob(_ job: RemoteJob, with outcome: Result<GenerationResult, GenerationError>) {
        inner.finishRemoteJob(job, with: outcome)
    }
    func takeDispatchObservations() -> [WorkerDispatchObservation] { inner.takeDispatchObservations() }
    var dispatchWorkerNames: [String] { inner.dispatchWorkerNames }
    func prepareStep() { inner.prepareStep() }
    func beginStep(sequences: [SequenceID]) { inner.beginStep(sequences: sequences) }
    var currentPlacement: Placement? { inner.currentPlacement }
    func stagePlacement(_ placement: Placement) throws(PlacementError) -> PlacementTicket {
        try inner.stagePlacement(placement)
    }
    func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome { inner.placementOutcome(ticket) }
}

/// A scheduler on its own engine thread over a real `ClusterCoordinator` (ZeroMQ on 127.0.0.1,
/// an ephemeral port), with real `WorkerService` workers on threads of their own, each loading
/// its experts from the fixture checkpoint. Liveness limits are generous: holding the engine
/// never makes a worker look lost.
final class WorkerCluster: Sendable {
    let scheduler: Scheduler
    let permits = ExpertPermits()
    let log = CapturedLog()
    let workerNames: [String]
    private let stopFlags: [StopFlag]
    /// Engine stops the test has answered with a permit (see `advance`).
    private let answeredHolds = Mutex(0)
    private let engineDone = DispatchSemaphore(value: 0)
    private let workerDone = DispatchSemaphore(value: 0)
    /// Worker threads started (deinit waits for each, also when init failed half-way).
    private let startedWorkers = Mutex(0)

    init(model: URL, workerNames: [String], replicas: Int = 1) throws {
        self.workerNames = workerNames
        stopFlags = workerNames.map { _ in StopFlag() }
        let checkpoint = try Checkpoint(directory: model)
        scheduler = Scheduler(
            engine: GenerationEngine(model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: model)),
            modelName: model.lastPathComponent, limits: SchedulerLimits())
        let logger = Logger(label: "switchyard") { [log] _ in CapturingLogHandler(log: log) }
        let options = CoordinatorOptions(
            bind: "tcp://127.0.0.1:0", workerCount: workerNames.count, workerNames: workerNames,
            liveness: LivenessPolicy(heartbeatMisses: 2000, dispatchTimeout: .seconds(600)), replicas: replicas)
        let endpoint = Mutex<Result<String, any Error>?>(nil)
        let bound = DispatchSemaphore(value: 0)
        // The coordinator's socket is made, used and closed on the engine thread only.
        let engine = Thread { [scheduler, permits, engineDone] in
            defer { engineDone.signal() }
            let coordinator: ClusterCoordinator
            do {
                coordinator = try ClusterCoordinator(checkpoint: checkpoint, options: options, logger: logger)
            } catch {
                endpoint.withLock { $0 = .failure(error) }
                bound.signal()
                return
            }
            coordinator.onHealthChange = { scheduler.publishHealth($0) }
            endpoint.withLock { $0 = .success(coordinator.endpoint) }
            bound.signal()
            var executor = PermittedCoordinator(inner: coordinator, permits: permits)
            scheduler.run(executor: &executor)
            coordinator.shutdown(reason: "the test is over")
        }
        engine.stackSize = 16 << 20
        engine.start()
        bound.wait()
        let address = try endpoint.withLock { $0! }.get()
        for (index, name) in workerNames.enumerated() {
            // Heartbeats a minute apart: a worker decides the coordinator forgot it only after ten
            // silent intervals, far longer than the test ever holds the engine.
            let options = WorkerOptions(
                coordinator: address, modelDirectory: model, name: name, heartbeatInterval: .seconds(60))
            let thread = Thread { [stopFlags, workerDone, log] in
                defer { workerDone.signal() }
                do {
                    try WorkerService(options: options, logger: logger).run { stopFlags[index].isSet }
                } catch {
                    log.append("error: worker \(name) failed: \(error)")
                }
            }
            thread.stackSize = 16 << 20
            thread.start()
            startedWorkers.withLock { $0 += 1 }
        }
        let deadline = ContinuousClock.now + .seconds(120)
        while scheduler.health() != .ready && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
    }

    /// Stops the worker `name` (it says BYE and closes its socket), as a worker that leaves.
    func stopWorker(_ name: String) {
        stopFlags[workerNames.firstIndex(of: name)!].set()
    }

    /// Lets the engine run one expert layer at a time until `condition` holds while it is held
    /// (bounded generously); false when the engine ran out of work first. It returns with the
    /// engine held (permits must be 0 when it is called), and a later call starts from there.
    func advance(until condition: () -> Bool) async throws -> Bool {
        while true {
            guard let held = try await permits.waitUntilHeld(after: answeredHolds.withLock({ $0 })) else { return false }
            if condition() { return true }
            answeredHolds.withLock { $0 = held }
            permits.set(1)
        }
    }

    deinit {
        permits.set(nil)
        scheduler.stop()
        engineDone.wait()
        for flag in stopFlags { flag.set() }
        for _ in 0..<startedWorkers.withLock({ $0 }) { workerDone.wait() }
    }
}

/// Set once to tell a worker thread to leave.
final class StopFlag: Sendable {
    private let stopped = Mutex(false)
    var isSet: Bool { stopped.withLock { $0 } }
    func set() { stopped.withLock { $0 = true } }
}

/// A request's token events as its stream delivers them.
final class Recording: Sendable {
    private let state = Mutex<(tokens: [TokenEvent], finish: FinishEvent?)>(([], nil))
    var tokenCount: Int { state.withLock { $0.tokens.count } }
    var tokens: [TokenEvent] { state.withLock { $0.tokens } }
    var finish: FinishEvent? { state.withLock { $0.finish } }

    func read(_ stream: AsyncThrowingStream<GenerationEvent, any Error>) async throws {
        for try await event in stream {
            switch event {
            case .token(let token): state.withLock { $0.tokens.append(token) }
            case .finished(let finish): state.withLock { $0.finish = finish }
            }
        }
    }
}

@Suite("Scheduler: placement changes with real workers over ZeroMQ", .serialized)
struct PlacementChangeWorkerTests {
    /// Top-3 routing: the order in which a token's experts are summed changes its bits, so a
    /// dispatch lost, sent twice or combined in another order across the switch shows in the
    /// logprobs even where the greedy token survives it.
    static let model = TestPaths.fixtures.appendingPathComponent("models/top3_sliding")
    static let prompts = [
        "One placement", "then another", "and the tokens stay", "1, 2, 3, 4,", "Experts and routers", "Zebra",
    ]
    static let maxTokens = 24

    static func requests() -> [GenerationRequest] {
        prompts.map {
            GenerationRequest(
                prompt: .text($0), maxTokens: maxTokens, sampling: SamplingParameters(temperature: 0), ignoreEOS: true,
                logprobs: 2)
        }
    }

    /// The requests at once with the engine left alone: (token ids, logprobs with alternatives).
    static func undisturbed(_ cluster: WorkerCluster) async throws -> [[TokenEvent]] {
        let recordings = requests().map { _ in Recording() }
        let streams = try requests().map { try cluster.scheduler.submit($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (recording, stream) in zip(recordings, streams) { group.addTask { try await recording.read(stream) } }
            try await group.waitForAll()
        }
        return recordings.map(\.tokens)
    }

    /// Submits the requests with the engine held, lets it run a layer at a time until every
    /// request has a token, runs `change` (which must leave the engine held), then lets the engine
    /// go and returns what each request received.
    static func disturbed(
        _ cluster: WorkerCluster, change: ([Recording]) async throws -> Void
    ) async throws -> [[TokenEvent]] {
        cluster.permits.set(0)
        let recordings = requests().map { _ in Recording() }
        let streams = try requests().map { try cluster.scheduler.submit($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (recording, stream) in zip(recordings, streams) { group.addTask { try await recording.read(stream) } }
            let started = try await cluster.advance { recordings.allSatisfy { $0.tokenCount >= 1 } }
            #expect(started, "the engine ran out of work before every request had its first token")
            try await change(recordings)
            cluster.permits.set(nil)
            try await group.waitForAll()
        }
        for (index, recording) in recordings.enumerated() {
            #expect(recording.finish?.reason == .length, "request \(index) did not run to max_tokens: \(String(describing: recording.finish))")
        }
        return recordings.map(\.tokens)
    }

    static func expectSame(_ got: [[TokenEvent]], _ want: [[TokenEvent]]) {
        #expect(got.count == want.count)
        for (index, (mine, reference)) in zip(got, want).enumerated() {
            #expect(mine.count == maxTokens)
            #expect(mine.map(\.tokenID) == reference.map(\.tokenID), "request \(index): token ids")
            // Bit for bit: the logprobs are Doubles computed from the same f32 logits.
            #expect(mine.map(\.logprob) == reference.map(\.logprob), "request \(index): logprobs")
        }
    }

    @Test("a new placement applied between steps while 6 requests run: tokens and logprobs of an undisturbed run")
    func rebalance() async throws {
        let cluster = try WorkerCluster(model: Self.model, workerNames: ["w0", "w1", "w2"])
        #expect(cluster.scheduler.health() == .ready)
        let reference = try await Self.undisturbed(cluster)

        let current = try #require(cluster.scheduler.placement())
        // Every expert on two workers, and on other workers than before: each worker loads.
        let replicated = try Placement(
            workerNames: current.workerNames,
            holders: current.holders.enumerated().map { layer, experts in
                experts.indices.map { expert in [(expert + layer) % 3, (expert + layer + 1) % 3].sorted() }
            })
        #expect(replicated != current)
        let disturbed = try await Self.disturbed(cluster) { recordings in
            async let applied = cluster.scheduler.applyPlacement(json: Array(replicated.jsonData()))
            // The engine takes the change at its next loop; then every worker loads its new
            // experts while the engine stays held, so the requests cannot run out meanwhile.
            #expect(try await cluster.advance { cluster.log.count("placement 1 staged") == 1 })
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline,
                !cluster.workerNames.allSatisfy({ cluster.log.count("worker \($0): loaded ") >= 2 })
            {
                try await Task.sleep(for: .milliseconds(1))
            }
            #expect(cluster.workerNames.allSatisfy { cluster.log.count("worker \($0): loaded ") >= 2 }, "\(cluster.log.all)")
            let tokensBefore = recordings.map(\.tokenCount)
            #expect(try await cluster.advance { cluster.log.count("placement 1 applied") == 1 })
            // Held in the first step on the new placement: every request is in it.
            #expect(cluster.scheduler.metrics().runningRequests == Self.prompts.count)
            #expect(tokensBefore.allSatisfy { $0 >= 1 && $0 < Self.maxTokens }, "\(tokensBefore)")
            cluster.permits.set(nil)
            #expect(try await applied.get() == replicated)
        }
        #expect(cluster.scheduler.placement() == replicated)
        Self.expectSame(disturbed, reference)
    }

    @Test("a worker that leaves while 6 requests run: its experts move to the others, the tokens and logprobs stay")
    func workerLeaves() async throws {
        let cluster = try WorkerCluster(model: Self.model, workerNames: ["w0", "w1", "w2"])
        #expect(cluster.scheduler.health() == .ready)
        let reference = try await Self.undisturbed(cluster)
        let before = try #require(cluster.scheduler.placement())

        let disturbed = try await Self.disturbed(cluster) { recordings in
            cluster.stopWorker("w1")
            // The coordinator hears of it when the engine next waits on its socket: a layer at a
            // time until w1 is lost, then until its experts are loaded elsewhere and a step ran.
            #expect(try await cluster.advance { !cluster.log.lines(containing: "worker w1 (pid", ") lost: ").isEmpty })
            let lost = try #require(cluster.log.lines(containing: "worker w1 (pid", ") lost: ").first)
            #expect(lost.contains("its experts moved"), "\(lost)")
            let tokensBefore = recordings.map(\.tokenCount)
            #expect(try await cluster.advance {
                cluster.log.count("worker w0: loaded ") >= 2 || cluster.log.count("worker w2: loaded ") >= 2
            })
            #expect(cluster.scheduler.metrics().runningRequests == Self.prompts.count)
            #expect(tokensBefore.allSatisfy { $0 >= 1 && $0 < Self.maxTokens }, "\(tokensBefore)")
        }
        let after = try #require(cluster.scheduler.placement())
        #expect(after != before)
        #expect(after.holders.joined().allSatisfy { !$0.contains(1) }, "w1's experts are held elsewhere")
        Self.expectSame(disturbed, reference)
    }
}

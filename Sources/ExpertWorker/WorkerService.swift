// The expert worker process: connects to the coordinator, registers, loads the experts it is
// assigned and answers dispatches until told to leave.
//
// The DEALER socket is created, used and closed on the thread that calls `run`, and on no other;
// experts load on a thread of their own (`ExpertLoad`) so that heartbeats go on meanwhile.
public import Foundation
import Kernels
public import Logging
import Models
import Synchronization
import Tensors
public import Transport
import Wire

/// How a worker connects and what it serves.
public struct WorkerOptions: Sendable {
    /// The coordinator's worker endpoint, e.g. `tcp://127.0.0.1:5555`.
    public var coordinator: String
    /// The model directory (the worker's local copy of the coordinator's checkpoint).
    public var modelDirectory: URL
    /// The name the worker registers with (placement files refer to it).
    public var name: String
    /// Compute threads reported to the coordinator.
    public var threads: Int
    /// Exit when this process is no longer our parent (set for workers spawned by `generate`).
    public var parentPID: Int32?
    /// How often to send a heartbeat (the coordinator declares a silent worker lost after a few).
    public var heartbeatInterval: Duration
    /// CURVE keys (the worker's pair and the coordinator's public key), or plaintext (`--insecure`).
    public var security: DealerSecurity

    public init(
        coordinator: String, modelDirectory: URL, name: String, threads: Int = 1, parentPID: Int32? = nil,
        heartbeatInterval: Duration = .milliseconds(500), security: DealerSecurity = .plaintext
    ) {
        self.security = security
        self.coordinator = coordinator
        self.modelDirectory = modelDirectory
        self.name = name
        self.threads = threads
        self.parentPID = parentPID
        self.heartbeatInterval = heartbeatInterval
    }
}

/// Why a worker stopped with an error.
public struct WorkerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs one expert worker until the coordinator says BYE, `shouldStop` returns true, or an error.
public struct WorkerService {
    public let options: WorkerOptions
    public let logger: Logger

    public init(options: WorkerOptions, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run(shouldStop: () -> Bool) throws {
        let checkpoint = try Checkpoint(directory: options.modelDirectory)
        let digests = try checkpoint.expertTensorDigests(cache: .standard()) { logger.info("worker \(options.name): \($0)") }
        var handler = DispatchHandler(shape: checkpoint.shape)
        let context = try ZMQContext()
        // A fresh identity per run: a restarted worker is a new peer that registers again.
        let identity = PeerIdentity("\(options.name)-\(getpid())-\(UInt32.random(in: 1...UInt32.max))")
        let socket = try DealerSocket(
            context: context, connect: options.coordinator, identity: identity, security: options.security)
        var handshakes: HandshakeWatch
        if case .plaintext = options.security { handshakes = HandshakeWatch(secure: false) } else { handshakes = HandshakeWatch(secure: true) }
        let hello = WireCodec.encode(.hello(.init(
            workerName: options.name, modelFingerprint: checkpoint.fingerprint, threads: options.threads,
            pid: Int(getpid()), expertTensorDigests: digests.digests, kernelPath: KernelISA.active.rawValue)))
        logger.info("worker \(options.name): connecting to \(options.coordinator) (model \(checkpoint.fingerprint.prefix(12)))")

        let clock = ContinuousClock()
        var session = WorkerSession(heartbeatInterval: options.heartbeatInterval)
        var lastReply: ContinuousClock.Instant?
        // Experts load on a thread of their own, so heartbeats and dispatches for the experts
        // already held go on meanwhile; ASSIGNs are loaded (and answered READY) in order.
        var queuedAssigns: [WireMessage.Assign] = []
        var loading: ExpertLoad?
        do {
            while !shouldStop() {
                if let parent = options.parentPID, getppid() != parent {
                    logger.warning("worker \(options.name): the process that started it (pid \(parent)) is gone; exiting")
                    return
                }
                for action in session.tick(now: clock.now) {
                    switch action {
                    case .sendHello(let reason):
                        if let reason { logger.warning("worker \(options.name): \(reason); registering again") }
                        try socket.send(frames: hello)
                    case .sendHeartbeat:
                        let millis = UInt64(Date().timeIntervalSince1970 * 1000)
                        try socket.send(frames: WireCodec.encode(.heartbeat(.init(sentUnixMillis: millis))))
                    }
                }
                if let load = loading, let result = load.result() {
                    loading = nil
                    let store = try result.get()
                    handler.store = store
                    logger.info(
                        "worker \(options.name): loaded \(store.heldExperts.count) experts (\(Self.summary(store.heldExperts.sorted()))) in \(String(format: "%.2f", load.seconds)) s"
                    )
                    try socket.send(frames: WireCodec.encode(.ready(.init(loadedExpertCount: store.heldExperts.count, loadSeconds: load.seconds))))
                }
                while loading == nil, !queuedAssigns.isEmpty {
                    let assign = queuedAssigns.removeFirst()
                    if let store = handler.store, store.heldExperts == Set(assign.experts), store.arithmetic == assign.arithmetic,
                        store.quantization == assign.quantization
                    {
                        // The same experts again (a repeated registration): nothing to load.
                        try socket.send(frames: WireCodec.encode(.ready(.init(loadedExpertCount: assign.experts.count, loadSeconds: 0))))
                    } else {
                        loading = ExpertLoad(
                            checkpoint: checkpoint, assign: assign, reusing: handler.store,
                            progress: { [logger, name = options.name] in logger.info("worker \(name): \($0)") })
                    }
                }
                // While the coordinator is generating, its next dispatch follows within about a
                // millisecond: poll for it for 2 ms before sleeping (no wake-up on its arrival).
                let generating = lastReply.map { clock.now - $0 < .milliseconds(100) } ?? false
                let wait: Duration = loading != nil ? .milliseconds(20) : min(.milliseconds(200), options.heartbeatInterval / 2)
                guard let frames = try socket.receive(timeout: wait, spin: generating ? .milliseconds(2) : .zero) else {
                    if let problem = handshakes.problem(after: try socket.handshakeEvents()) {
                        throw WorkerError("worker \(options.name): \(problem.explanation(endpoint: options.coordinator))")
                    }
                    continue
                }
                session.heard(at: clock.now)
                switch handler.handle(frames: frames) {
                case .reply(let reply):
                    try socket.send(frames: reply)
                    lastReply = clock.now
                case .load(let assign):
                    queuedAssigns.append(assign)
                case .welcomed(let id):
                    session.welcomed()
                    logger.info("worker \(options.name): registered with the coordinator (worker id \(id.rawValue))")
                case .refused(let report):
                    if report.code == .notReady {
                        // The coordinator does not know us (it restarted, or declared us lost) or our
                        // name is still held: register again, with backoff.
                        if session.refused(now: clock.now) {
                            logger.warning("worker \(options.name): \(report.message); registering again")
                            try socket.send(frames: hello)
                        }
                    } else if report.requestID != nil {
                        logger.warning("worker \(options.name): the coordinator reported: \(report.message)")
                    } else {
                        throw WorkerError("worker \(options.name): the coordinator refused it: \(report.message)")
                    }
                case .leave(let reason):
                    logger.info("worker \(options.name): coordinator said bye (\(reason)); exiting")
                    return
                case .none:
                    continue
                }
            }
        } catch {
            // A send that timed out because the handshake failed says what to fix, not that the
            // coordinator is not reading.
            if let problem = handshakes.problem(behind: error, on: socket) {
                throw WorkerError("worker \(options.name): \(problem.explanation(endpoint: options.coordinator))")
            }
            throw error
        }
        try? socket.send(frames: WireCodec.encode(.bye(.init(reason: "worker \(options.name) stopping"))))
    }

    /// "layers 0-3 experts 0-3" style summary of an expert list.
    static func summary(_ experts: [LayerExpert]) -> String {
        let layers = Set(experts.map(\.layer.rawValue)).sorted()
        let ids = Set(experts.map(\.expert.rawValue)).sorted()
        func ranges(_ values: [Int]) -> String {
            guard let first = values.first, let last = values.last else { return "none" }
            return values.count == last - first + 1 ? (first == last ? "\(first)" : "\(first)-\(last)")
                : values.map(String.init).joined(separator: ",")
        }
        return "layers \(ranges(layers)), experts \(ranges(ids))"
    }
}

/// One ASSIGN being loaded on a thread of its own.
final class ExpertLoad: Sendable {
    private let outcome = Mutex<(Result<ExpertStore, any Error>, Double)?>(nil)

    /// Loads `assign`'s experts on a thread of its own, taking those `previous` holds from it; a load
    /// that takes longer than 5 s says how far it is every 5 s through `progress`.
    init(
        checkpoint: Checkpoint, assign: WireMessage.Assign, reusing previous: ExpertStore?,
        progress: @escaping @Sendable (String) -> Void
    ) {
        let thread = Thread { [self] in
            let started = ContinuousClock.now
            let lines = LoadProgress("experts", emit: progress)
            let result = Result { () throws -> ExpertStore in
                try ExpertStore(
                    checkpoint: checkpoint, experts: assign.experts, arithmetic: assign.arithmetic,
                    quantization: assign.quantization, reusing: previous, progress: lines.report)
            }
            let seconds = (ContinuousClock.now - started).secondsValue
            self.outcome.withLock { $0 = (result, seconds) }
        }
        thread.stackSize = 8 << 20
        thread.name = "switchyard-expert-load"
        thread.start()
    }

    /// The loaded store (or why it failed) once the load has finished.
    func result() -> Result<ExpertStore, any Error>? { outcome.withLock { $0?.0 } }

    /// Seconds the load took (valid once `result()` is not nil).
    var seconds: Double { outcome.withLock { $0?.1 ?? 0 } }
}

// The expert worker process: connects to the coordinator, registers, loads the experts it is
// assigned and answers dispatches until told to leave.
//
// The DEALER socket is created, used and closed on the thread that calls `run`, and on no other.
public import Foundation
public import Logging
import Models
import Tensors
import Transport
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
    /// How often to send a heartbeat.
    public var heartbeatInterval: Duration

    public init(
        coordinator: String, modelDirectory: URL, name: String, threads: Int = 1, parentPID: Int32? = nil,
        heartbeatInterval: Duration = .seconds(2)
    ) {
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
        var handler = DispatchHandler(shape: checkpoint.shape)
        let context = try ZMQContext()
        // A fresh identity per run: a restarted worker is a new peer that registers again.
        let identity = PeerIdentity("\(options.name)-\(getpid())-\(UInt32.random(in: 1...UInt32.max))")
        let socket = try DealerSocket(context: context, connect: options.coordinator, identity: identity)

        let hello = WireMessage.hello(.init(
            workerName: options.name, modelFingerprint: checkpoint.fingerprint, threads: options.threads,
            pid: Int(getpid())))
        try socket.send(frames: WireCodec.encode(hello))
        logger.info("worker \(options.name): connecting to \(options.coordinator) (model \(checkpoint.fingerprint.prefix(12)))")

        let clock = ContinuousClock()
        var nextHeartbeat = clock.now + options.heartbeatInterval
        var lastReply: ContinuousClock.Instant?
        while !shouldStop() {
            if let parent = options.parentPID, getppid() != parent {
                logger.warning("worker \(options.name): the process that started it (pid \(parent)) is gone; exiting")
                return
            }
            if clock.now >= nextHeartbeat {
                let millis = UInt64(Date().timeIntervalSince1970 * 1000)
                try socket.send(frames: WireCodec.encode(.heartbeat(.init(sentUnixMillis: millis))))
                nextHeartbeat = clock.now + options.heartbeatInterval
            }
            // While the coordinator is generating, its next dispatch follows within about a
            // millisecond: poll for it for 2 ms before sleeping (no wake-up on its arrival).
            let generating = lastReply.map { clock.now - $0 < .milliseconds(100) } ?? false
            guard let frames = try socket.receive(timeout: .milliseconds(200), spin: generating ? .milliseconds(2) : .zero)
            else { continue }
            switch handler.handle(frames: frames) {
            case .reply(let reply):
                try socket.send(frames: reply)
                lastReply = clock.now
            case .load(let assign):
                let experts = assign.experts
                let started = clock.now
                let store = try ExpertStore(
                    checkpoint: checkpoint, experts: experts, arithmetic: assign.arithmetic,
                    quantization: assign.quantization)
                handler.store = store
                let seconds = (clock.now - started).secondsValue
                logger.info(
                    "worker \(options.name): loaded \(experts.count) experts (\(Self.summary(experts))) in \(String(format: "%.2f", seconds)) s"
                )
                try socket.send(frames: WireCodec.encode(.ready(.init(loadedExpertCount: experts.count, loadSeconds: seconds))))
            case .welcomed(let id):
                logger.info("worker \(options.name): registered with the coordinator (worker id \(id.rawValue))")
            case .refused(let report):
                if report.code == .notReady {
                    // The coordinator does not know us (it restarted): register again.
                    logger.warning("worker \(options.name): \(report.message); registering again")
                    try socket.send(frames: WireCodec.encode(hello))
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

extension Duration {
    var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}

// The coordinator's decisions about its workers, as a value type: registration, liveness, the
// placement and its staged changes, the dispatches in flight, and what to do when a worker is lost.
//
// Events in (a message arrived, a send failed, a connection closed, time passed), actions out
// (send this message, dispatch these rows, log this line). No sockets, no clock reads, no logging:
// every call takes `now`, the time since the shell started, so tests drive it with plain durations.
// `ClusterCoordinator` is the shell that carries the actions out.
//
// Vocabulary: a *worker slot* is a place in the placement (a name and its experts); a *worker*
// is the process filling it. A *flight* is the dispatch of one layer's experts for one step (or
// micro-batch); its *batches* are the per-worker row sets of the `DispatchPlan`; each batch is
// computed by one or more *attempts*, each a set of *parts* (one DISPATCH each, to one worker).
// A worker is *lost* when its connection closed, it left, it stayed silent past the heartbeat
// limit, or it did not answer a dispatch within the dispatch timeout.
//
// Why a failover cannot change a token: a lost worker's rows are sent again unchanged (the same
// hidden state, experts and routing weights, in the same order within the row) to a worker that
// holds all of the row's experts. A row's output depends neither on the other rows it travels
// with (the kernels are batch invariant) nor on the worker (every worker runs the same kernels
// with the same arithmetic, from its own copy of the same checkpoint; registration refuses a worker
// whose expert digests differ or, with fast bf16 experts, whose kernel path gives other bits), and
// `DispatchPlan.combine` adds a token's rows in an order fixed by their experts. So the step's result is bitwise the one
// the lost worker would have produced, and a late answer from it is simply ignored.
//
// Verification (`--verify-fraction F`): the same determinism lets the coordinator check workers.
// A sampled fraction of batches is also sent, as a *check* attempt, to other holders of the rows'
// experts, and the two answers are compared bitwise before the batch is taken. Two answers that
// differ cannot say which worker is wrong, so the coordinator *arbitrates*: it computes the rows
// itself from its own copy of the experts (the copy whose digests every worker proved it holds;
// the shell does the computing, on the rows exactly as the workers decoded them) and takes its own
// result. Every worker whose answer differs from it is taken out of the placement as a lost worker
// is, and may not register again under its name.
import Foundation
public import Kernels
public import Logging
public import Models
public import Tensors
public import Transport
public import Wire

/// How the coordinator decides that a worker is gone, and what it waits for.
public struct LivenessPolicy: Sendable, Equatable {
    /// How often the coordinator and the workers send each other a heartbeat.
    public var heartbeatInterval: Duration
    /// Heartbeat intervals a worker may stay silent (while no dispatch of it is pending) before it is lost.
    public var heartbeatMisses: Int
    /// A fixed per-dispatch deadline; nil derives it from the measured round trips
    /// (`derivedTimeoutFactor` × the expected round trip, at least `minimumDispatchTimeout`).
    public var dispatchTimeout: Duration?
    /// The least derived dispatch deadline.
    public var minimumDispatchTimeout: Duration
    /// How long rows wait for a worker to (re)join when no live worker holds their experts and
    /// none can take them, before their requests fail.
    public var rejoinTimeout: Duration
    /// Experts of one layer a worker may hold after taking over a lost worker's; nil: no limit
    /// (every worker maps its experts from its own copy of the checkpoint).
    public var expertBudget: Int?

    /// The derived deadline is this many expected round trips.
    public static let derivedTimeoutFactor = 10
    /// A dispatch with a replica elsewhere is hedged after this many expected round trips.
    public static let hedgeFactor = 3
    /// The least hedge delay: below it, a slow answer is normal jitter.
    public static let minimumHedgeDelay: Duration = .milliseconds(100)
    /// The deadline and hedge delay before any round trip was measured.
    public static let initialDispatchTimeout: Duration = .seconds(10)
    public static let initialHedgeDelay: Duration = .seconds(1)

    public init(
        heartbeatInterval: Duration = .milliseconds(500), heartbeatMisses: Int = 3, dispatchTimeout: Duration? = nil,
        minimumDispatchTimeout: Duration = .seconds(2), rejoinTimeout: Duration = .seconds(60), expertBudget: Int? = nil
    ) {
        precondition(heartbeatMisses >= 1, "heartbeatMisses must be at least 1")
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatMisses = heartbeatMisses
        self.dispatchTimeout = dispatchTimeout
        self.minimumDispatchTimeout = minimumDispatchTimeout
        self.rejoinTimeout = rejoinTimeout
        self.expertBudget = expertBudget
    }

    /// How long a worker with nothing pending may stay silent.
    public var silenceLimit: Duration { heartbeatInterval * heartbeatMisses }
}

/// Counters of the cluster's faults and recoveries, since start.
public struct ClusterCounters: Sendable, Equatable {
    /// Worker registrations accepted (first joins and rejoins).
    public var workersJoined = 0
    /// Workers declared lost (closed connection, BYE, silence, missed deadline, bad answer).
    public var workersLost = 0
    /// Lost workers whose experts had to move to other workers or wait for a rejoin.
    public var failovers = 0
    /// Dispatches sent again because their worker was lost or refused them.
    public var retriedDispatches = 0
    /// Dispatches also sent to a replica because the first worker was slow to answer.
    public var hedgedDispatches = 0
    /// Seconds steps spent waiting for rows that had to be sent again (retried or hedged), summed.
    public var stallSeconds = 0.0
    /// Dispatches computed a second time by another holder and compared bitwise with the first answer.
    public var verifiedDispatches = 0
    /// Dispatches sampled for verification whose rows no second ready holder could compute.
    public var unverifiableDispatches = 0
    /// Per worker name: verified dispatches it answered differently from the coordinator's own computation.
    public var verifyMismatches: [String: Int] = [:]
}

/// Which dispatches are computed a second time, by another holder, to check the first answer
/// (`--verify-fraction`).
public struct VerificationPolicy: Sendable, Equatable {
    /// The fraction of dispatches (one worker's rows of one layer) sampled, from 0 (off) to 1 (all).
    public var fraction: Double
    /// Seeds the sampling (a fixed seed makes it repeatable; `serve` draws one at start, so a worker
    /// cannot predict which of its answers are checked).
    public var seed: UInt64

    /// No verification.
    public static let off = VerificationPolicy(fraction: 0, seed: 0)

    public init(fraction: Double, seed: UInt64) {
        precondition(fraction >= 0 && fraction <= 1, "the verified fraction must be between 0 and 1")
        self.fraction = fraction
        self.seed = seed
    }
}

/// Rows the coordinator computes itself because two workers answered them differently.
public struct ArbitrationOrder: Sendable, Equatable {
    public let flight: FlightID
    /// The batch of the flight's dispatch plan.
    public let batch: Int
    public let layer: LayerIndex
    /// The whole batch as planned, then every part of the two answers as it was sent; the shell
    /// computes each (`tokens` index the flight's hidden states) and reports them in this order.
    public let rows: [DispatchPlan.WorkerBatch]
}

/// Identifies one flight (one layer's dispatch of one step or micro-batch).
public struct FlightID: Hashable, Sendable, Comparable {
    public let rawValue: UInt64
    public static func < (lhs: FlightID, rhs: FlightID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Rows to send to one worker, as the shell needs them to build a DISPATCH.
public struct DispatchOrder: Sendable, Equatable {
    public let flight: FlightID
    /// The DISPATCH's step field: unique per DISPATCH, so an answer names the part it belongs to.
    public let step: StepIndex
    public let requestID: RequestID
    public let layer: LayerIndex
    /// The rows, in the dispatch plan's CSR form; `batch.tokens` index the flight's hidden states.
    public let batch: DispatchPlan.WorkerBatch
}

/// A decision for the shell to carry out.
public enum ClusterAction: Sendable, Equatable {
    /// Send a message to a peer; a failure to send comes back as `.sendFailed`.
    case send(PeerIdentity, WireMessage)
    /// Gather the order's rows from the flight's hidden states and send them as a DISPATCH.
    case dispatch(PeerIdentity, DispatchOrder)
    /// Write a log line.
    case log(Logger.Level, String)
    /// A worker answered a dispatch part: for the load accounting.
    case answered(step: StepIndex, worker: String, layer: LayerIndex, rowCount: Int, expertRowCount: Int,
                  computeMicroseconds: Int, roundTrip: Duration)
    /// Two holders answered a verified batch differently: compute the order's rows in-process and
    /// report them with ``ClusterState/arbitrated(_:outputs:now:)``.
    case arbitrate(ArbitrationOrder)
    /// A worker answered a verified batch differently from the coordinator's own computation and is
    /// taken out of the placement: log it loudly, with its key and address.
    case faulty(PeerIdentity, worker: String, reason: String)
}

/// What the shell observed.
public enum ClusterEvent: Sendable, Equatable {
    /// A decoded message from a peer.
    case received(PeerIdentity, WireMessage)
    /// A message from a peer that could not be decoded.
    case undecodable(PeerIdentity, WireError)
    /// A send to the peer failed: it is no longer connected (or its queue stayed full).
    case sendFailed(PeerIdentity, reason: String)
    /// Some connection closed (the socket monitor does not say whose).
    case connectionClosed
}

/// Where a flight stands.
public enum FlightOutcome: Sendable, Equatable {
    case pending
    /// [tokens, hiddenSize], f32: the combined expert output.
    case done([Float])
    case failed(GenerationError)
}

/// The coordinator's state machine. See the top of this file.
public struct ClusterState {
    /// A worker filling a slot.
    struct Worker {
        var peer: PeerIdentity
        var name: String
        var pid: Int
        /// True once the worker has loaded its first assignment.
        var ready: Bool
        /// ASSIGNs sent and not yet answered with READY (a worker answers them in order).
        var assignsInFlight: Int
        /// The experts of the latest ASSIGN; usable once `assignsInFlight` is 0.
        var assigned: Set<LayerExpert>
        /// The experts it has loaded (those of the last ASSIGN it answered).
        var loaded: Set<LayerExpert>
        var lastHeard: Duration
        /// Every DISPATCH sent to it and not answered, needed or not any more (a hedge may have
        /// answered for it): when sent, and its expert rows. The oldest decides whether the worker
        /// is slow (avoided where a replica exists) or hung (lost).
        var outstanding: [StepIndex: (sentAt: Duration, expertRows: Int)] = [:]
    }

    struct Part {
        let step: StepIndex
        let slot: Int
        /// The worker the part was sent to (the slot may have another by the time it is judged).
        let peer: PeerIdentity
        let worker: String
        /// The pieces of the batch's rows this part carries, one DISPATCH row each.
        let pieces: [Piece]
        let expertRowCount: Int
        let sentAt: Duration
        var partial: [Float]?
    }

    /// A row of a batch, or some of its experts (a row is split when no live worker holds all of
    /// its experts: each expert's term then comes back alone and is added here, in ascending
    /// expert order from 0, which is exactly what a worker holding them all would have added).
    struct Piece: Equatable {
        let row: Int
        /// Indices into the batch's `expertIDs` / `weights`.
        let entries: [Int]
    }

    struct Attempt {
        var parts: [Part]
        var dead = false
        /// A verification's second computation: compared with the batch's answer, never taken alone.
        var check = false
    }

    struct BatchProgress {
        var partial: [Float]?
        var attempts: [Attempt] = []
        /// Set while no live worker can take the batch's rows.
        var parkedSince: Duration?
        var hedged = false
        /// Errors workers answered for this batch; too many fail the flight.
        var refusals = 0
        var firstSent: Duration?
        var lastRefusal: String?
        /// Sampled for verification, with a check attempt sent (or to be sent again).
        var verifying = false
        /// The first compute attempt to complete, waiting for the check.
        var answer: (attempt: Int, rows: [Float])?
        /// The check attempt, once complete.
        var checked: (attempt: Int, rows: [Float])?
        /// Waiting for the coordinator's own computation of the rows.
        var arbitrating = false
    }

    struct Flight {
        let requestID: RequestID
        /// The sequences of the step (empty for a single `generate`).
        let sequences: [SequenceID]
        let layer: LayerIndex
        let plan: DispatchPlan
        let hidden: [Float]
        let tokenCount: Int
        var batches: [BatchProgress]
        var failure: GenerationError?
    }

    struct PendingPlacement {
        let placement: Placement
        let ticket: PlacementTicket
        let staged: Duration
    }

    public let policy: LivenessPolicy
    public let shape: ModelShape
    let fingerprint: String
    /// The coordinator's digests of every expert tensor, which a worker's must equal (nil: not
    /// checked, for tests of other rules).
    let expertDigests: ExpertTensorDigests?
    /// What a user runs to add a worker (for error messages).
    let joinHint: String
    /// True when the worker names are fixed (a placement file or `--worker-names`).
    let namedSlots: Bool
    let arithmetic: BFloat16Arithmetic
    let quantization: WeightQuantization
    /// The coordinator's kernel path, whose fast bf16 bits a worker's must share (nil: not checked,
    /// for tests of other rules).
    let kernelPath: KernelISA?
    /// Which dispatches are checked on a second holder.
    public let verification: VerificationPolicy
    private var verificationSampler: SplitMix64
    /// Names of workers taken out of the placement for a wrong answer, with why: refused if they
    /// register again (until the coordinator restarts).
    public private(set) var excluded: [String: String] = [:]
    /// Experts with a single holder when that was last logged (verification on only).
    private var reportedSingleHolders: Int?
    private var coverageCheckedVersion: UInt64?

    /// The placement the cluster returns to once every slot has a worker (the configured one, or
    /// the last applied rebalance).
    public private(set) var home: Placement
    /// The placement dispatches use: `home`, or, after a loss, with the lost slot's experts moved
    /// to the survivors (or still on the lost slot, waiting for a worker to rejoin).
    public private(set) var active: Placement
    private var staged: PendingPlacement?
    private var nextTicket: UInt64 = 0
    private var placementOutcomes: [PlacementTicket: PlacementOutcome] = [:]

    private(set) var slots: [Worker?]
    /// When each empty slot lost its worker (absent: never filled, or filled again).
    private var lostAt: [Int: (at: Duration, worker: String, reason: String)] = [:]
    /// True once every slot had a ready worker: from then on a missing worker is a degradation.
    public private(set) var hasServed = false
    private var nextWorkerID: UInt32 = 0

    private var flights: [FlightID: Flight] = [:]
    private var nextFlight: UInt64 = 0
    private var nextStep: UInt64 = 0
    /// Every unanswered part by its DISPATCH step, to find it when its answer comes.
    private var partIndex: [StepIndex: (flight: FlightID, batch: Int, attempt: Int, part: Int)] = [:]
    /// Recent round trips (duration, expert rows), for the derived deadline.
    private var roundTrips: [(seconds: Double, expertRows: Int)] = []
    /// The slowest of `roundTrips`, and the slowest per expert row, in seconds (kept with it:
    /// the time-driven decisions ask for them on every message).
    private var slowestRoundTrip = 0.0
    private var slowestPerExpertRow = 0.0
    private var lastHeartbeatSent: Duration?
    /// When an unknown peer was last told to register (at most once a second each).
    private var toldToRegister: [PeerIdentity: Duration] = [:]

    public private(set) var counters = ClusterCounters()
    /// Changes whenever a worker joins, loads, is lost or the placement changes: health, which
    /// walks every expert, need only be computed again then.
    public private(set) var version: UInt64 = 0

    /// - Parameters:
    ///   - placement: the configured placement (its slots are filled by registering workers)
    ///   - namedSlots: true when a worker must register under one of the placement's names
    ///   - joinHint: the command that starts a worker, for messages
    public init(
        shape: ModelShape, fingerprint: String, placement: Placement, namedSlots: Bool, policy: LivenessPolicy,
        arithmetic: BFloat16Arithmetic, quantization: WeightQuantization, joinHint: String,
        expertDigests: ExpertTensorDigests? = nil, verification: VerificationPolicy = .off, kernelPath: KernelISA? = nil
    ) {
        self.kernelPath = kernelPath
        self.verification = verification
        verificationSampler = SplitMix64(seed: verification.seed)
        self.shape = shape
        self.fingerprint = fingerprint
        self.expertDigests = expertDigests
        self.home = placement
        self.active = placement
        self.namedSlots = namedSlots
        self.policy = policy
        self.arithmetic = arithmetic
        self.quantization = quantization
        self.joinHint = joinHint
        slots = Array(repeating: nil, count: placement.workerCount)
    }

    // MARK: queries

    /// Slots whose worker has loaded its experts.
    public var readyWorkerCount: Int { slots.filter { $0?.ready == true }.count }

    /// The name each slot is known by: its worker's, or the placement's while it is empty.
    public var workerNames: [String] { (0..<active.workerCount).map { slots[$0]?.name ?? active.workerNames[$0] } }

    /// The peers of registered workers.
    public var workerPeers: [PeerIdentity] { slots.compactMap { $0?.peer } }

    /// True when `peer` fills a slot.
    public func isWorker(_ peer: PeerIdentity) -> Bool { slots.contains { $0?.peer == peer } }

    /// The name of a registered worker's peer.
    public func name(of peer: PeerIdentity) -> String? { slots.first { $0?.peer == peer }??.name }

    /// The hidden states of a flight, [tokens, hiddenSize], f32 (the shell gathers DISPATCH rows from them).
    public func hidden(of flight: FlightID) -> [Float] { flights[flight]?.hidden ?? [] }

    /// Experts of the active placement that no ready worker can compute now.
    var unheldExperts: [LayerExpert] {
        var missing: [LayerExpert] = []
        for (layer, experts) in active.holders.enumerated() {
            for (expert, holders) in experts.enumerated() {
                let held = holders.contains { canCompute(slot: $0, LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert))) }
                if !held { missing.append(LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert))) }
            }
        }
        return missing
    }

    /// Whether `slot` has a ready worker that has loaded `expert` and has not been told to drop it.
    func canCompute(slot: Int, _ expert: LayerExpert) -> Bool {
        guard let worker = slots[slot], worker.ready else { return false }
        return worker.loaded.contains(expert) && worker.assigned.contains(expert)
    }

    /// The cluster's health: not ready until every slot first had a ready worker; then stalled
    /// (requests wait) while some expert has no ready holder, degraded while a slot is empty,
    /// ready otherwise.
    public func health(now: Duration) -> HealthStatus {
        guard hasServed else {
            return .notReady(reason:
                "\(readyWorkerCount) of \(active.workerCount) workers are ready; start workers with: \(joinHint)")
        }
        let missing = unheldExperts
        let lost = lostAt.sorted { $0.key < $1.key }.map { slot, entry in
            "\(entry.worker) lost \(Self.seconds(now - entry.at)) ago (\(entry.reason))"
        }
        if !missing.isEmpty {
            let list = missing.prefix(4).map(\.description).joined(separator: ", ") + (missing.count > 4 ? ", …" : "")
            return .stalled(reason:
                "\(missing.count) experts have no live worker (\(list)); \(lost.joined(separator: "; ")); "
                    + "running requests wait up to \(Self.seconds(policy.rejoinTimeout)) for a worker to join: \(joinHint)")
        }
        if readyWorkerCount < active.workerCount {
            return .degraded(
                "serving on \(readyWorkerCount) of \(active.workerCount) workers"
                    + (lost.isEmpty ? "" : "; \(lost.joined(separator: "; "))")
                    + (active == home ? "" : "; the other workers serve its experts"))
        }
        return .ready
    }

    /// Whether a placement has been staged and not yet applied or given up.
    public func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome {
        if staged?.ticket == ticket { return .pending }
        return placementOutcomes[ticket] ?? .failed("unknown placement ticket \(ticket.rawValue)")
    }

    // MARK: events

    /// Handles one event.
    public mutating func handle(_ event: ClusterEvent, now: Duration) -> [ClusterAction] {
        switch event {
        case .received(let peer, let message):
            return receive(message, from: peer, now: now)
        case .undecodable(let peer, let error):
            var report = error.errorReport()
            if case .protocolMismatch = error { report.code = .versionMismatch }
            return [
                .log(.warning, "refused a message from \(name(of: peer) ?? "peer \(peer)"): \(error)"),
                .send(peer, .error(report)),
            ]
        case .sendFailed(let peer, let reason):
            guard let slot = slots.firstIndex(where: { $0?.peer == peer }) else { return [] }
            return lose(slot: slot, reason: "unreachable (\(reason))", now: now)
        case .connectionClosed:
            // Find out whose: a send to a peer whose connection closed fails at once.
            return slots.compactMap { $0 }.map { .send($0.peer, .heartbeat(.init(sentUnixMillis: 0))) }
        }
    }

    private mutating func receive(_ message: WireMessage, from peer: PeerIdentity, now: Duration) -> [ClusterAction] {
        let slot = slots.firstIndex { $0?.peer == peer }
        if let slot { slots[slot]!.lastHeard = now }
        switch message {
        case .hello(let hello):
            return register(hello, from: peer, now: now)
        case .ready(let ready):
            guard let slot else { return tellToRegister(peer, now: now) }
            return markReady(slot: slot, ready, now: now)
        case .heartbeat:
            return slot == nil ? tellToRegister(peer, now: now) : []
        case .bye(let bye):
            guard let slot else { return [] }
            return lose(slot: slot, reason: "it left (\(bye.reason))", now: now)
        case .combine(let combine):
            guard let slot else { return [] }  // a late answer from a worker already lost
            slots[slot]!.outstanding[combine.step] = nil
            return take(combine, from: slot, now: now)
        case .error(let report):
            guard let slot else { return [.log(.warning, "peer \(peer) reported: \(report.message)")] }
            return refused(report, by: slot, now: now)
        case .welcome, .assign, .dispatch, .generateResult, .generateRequest:
            return [.send(peer, .error(.init(code: .badRequest, message: "the coordinator does not accept \(message.kind) from a worker")))]
        }
    }

    /// Answers a message from a peer that is not registered: at most once a second per peer, so
    /// a backlog of heartbeats from a worker that has not registered yet does not produce a
    /// registration for each.
    private mutating func tellToRegister(_ peer: PeerIdentity, now: Duration) -> [ClusterAction] {
        if let last = toldToRegister[peer], now - last < .seconds(1) { return [] }
        if toldToRegister.count > 1024 { toldToRegister = toldToRegister.filter { now - $0.value < .seconds(1) } }
        toldToRegister[peer] = now
        return [.send(peer, .error(.init(code: .notReady, message: "unknown worker: send HELLO first")))]
    }

    // MARK: registration

    private mutating func register(_ hello: WireMessage.Hello, from peer: PeerIdentity, now: Duration) -> [ClusterAction] {
        func refuse(_ code: WireMessage.ErrorReport.Code, _ reason: String) -> [ClusterAction] {
            [.log(.warning, "refused worker \(hello.workerName) (pid \(hello.pid)): \(reason)"),
             .send(peer, .error(.init(code: code, message: reason)))]
        }
        guard hello.modelFingerprint == fingerprint else {
            return refuse(
                .modelMismatch,
                "worker \(hello.workerName) serves another model (fingerprint \(hello.modelFingerprint.prefix(16))), "
                    + "but the coordinator's fingerprint is \(fingerprint.prefix(16)); "
                    + "start the worker with --model pointing at a copy of the coordinator's checkpoint")
        }
        // Every expert tensor, not only those assigned now: a rebalance or a lost worker's experts
        // may be assigned to this worker later.
        if let expertDigests {
            guard let mismatches = expertDigests.mismatches(hello.expertTensorDigests) else {
                return refuse(
                    .modelMismatch,
                    "worker \(hello.workerName) sent \(hello.expertTensorDigests.count) expert tensor digests, but the "
                        + "model has \(expertDigests.names.count) expert tensors; a worker older than full-content "
                        + "digests cannot register: run the coordinator's switchyard version")
            }
            if let first = mismatches.first {
                let more = mismatches.count > 1 ? " (and \(mismatches.count - 1) more expert tensors)" : ""
                return refuse(
                    .modelMismatch,
                    "worker \(hello.workerName)'s copy of expert tensor \(first) differs from the coordinator's\(more): "
                        + "its SHA-256 is not the coordinator's; replace the worker's checkpoint files with a good copy")
            }
        }
        if let reason = kernelPathMismatch(hello) { return refuse(.badRequest, reason) }
        if let reason = excluded[hello.workerName] {
            return refuse(
                .badRequest,
                "worker \(hello.workerName) was taken out of the placement: \(reason); a worker of that name may not "
                    + "register again until the coordinator restarts: check its host and weights, or start a replacement under another --name")
        }
        // The same process registering again (it did not hear from the coordinator for a while):
        // it keeps its slot and its readiness; the ASSIGN repeats what it holds.
        if let slot = slots.firstIndex(where: { $0?.peer == peer }) {
            slots[slot]!.assignsInFlight += 1
            return [.send(peer, welcome()), .send(peer, assignMessage(slot: slot)),
                    .log(.info, "worker \(hello.workerName) registered again")]
        }
        if let holder = slots.firstIndex(where: { $0?.name == hello.workerName }) {
            // Another process under a live worker's name: a restart whose predecessor is not yet
            // known to be gone (probe it: a closed connection fails the send and frees the name),
            // or a second worker given the same --name. It is told to retry.
            let other = slots[holder]!
            return [.send(other.peer, .heartbeat(.init(sentUnixMillis: 0)))] + refuse(
                .notReady,
                "the name \(hello.workerName) is taken by a live worker (pid \(other.pid)); this worker will retry "
                    + "and take the slot once that one is lost or leaves; give each worker its own --name")
        }
        // A free slot: the one named so, else (a replacement, named or not) any free slot,
        // preferring one that has been lost the longest.
        var slot = active.workerNames.indices.first { slots[$0] == nil && active.workerNames[$0] == hello.workerName }
        if slot == nil {
            let free = active.workerNames.indices.filter { slots[$0] == nil }
            slot = free.min { (lostAt[$0]?.at ?? .zero, $0) < (lostAt[$1]?.at ?? .zero, $1) }
        }
        guard let slot else {
            let taken = slots.compactMap { $0?.name }.joined(separator: ", ")
            let expected = namedSlots ? "; the placement's workers are: \(active.workerNames.joined(separator: ", "))" : ""
            return refuse(.badRequest, "all \(active.workerCount) worker slots are taken by live workers (\(taken))\(expected)")
        }
        var actions: [ClusterAction] = []
        if active.workerNames[slot] != hello.workerName {
            // The slot takes the worker's name (placements, reports and rebalancing name workers);
            // with fixed names, a replacement of another name takes the lost worker's place.
            let old = active.workerNames[slot]
            if let renamedActive = try? active.renamingWorker(slot, to: hello.workerName),
                let renamedHome = try? home.renamingWorker(slot, to: hello.workerName)
            {
                active = renamedActive
                home = renamedHome
                if namedSlots { actions.append(.log(.info, "worker \(hello.workerName) takes the place of \(old)")) }
            }
        }
        lostAt[slot] = nil
        version += 1
        let experts = assignment(ofSlot: slot)
        slots[slot] = Worker(
            peer: peer, name: hello.workerName, pid: hello.pid, ready: false, assignsInFlight: 1,
            assigned: Set(experts), loaded: [], lastHeard: now, outstanding: [:])
        counters.workersJoined += 1
        let path = hello.kernelPath.isEmpty ? "" : ", kernel path \(hello.kernelPath)"
        actions += [
            .send(peer, welcome()), .send(peer, assignMessage(slot: slot)),
            .log(.info, "worker \(hello.workerName) (pid \(hello.pid)\(path)) registered; assigned \(experts.count) experts"),
        ]
        return actions
    }

    /// Why a worker's fast bf16 products would not give the coordinator's bits (the experts bf16 with
    /// fast arithmetic, one of the two on ``KernelISA/amx`` and the other not, or a path this version does not
    /// know), or nil. Exact arithmetic and q8 experts give every path the same bits.
    private func kernelPathMismatch(_ hello: WireMessage.Hello) -> String? {
        guard let kernelPath, arithmetic == .fast, quantization == .none else { return nil }
        let fix = "set SWITCHYARD_KERNEL=amx on every host or on none (`switchyard system-info` shows a host's path), "
            + "or serve with --bf16-arithmetic exact or --quantize q8, whose bits every path shares"
        func bits(_ ownBits: Bool) -> String { ownBits ? "AMX tiles, bits of their own" : "the bits every path but amx gives" }
        // A worker older than the field says nothing: taken as a path with the common bits.
        let ownBits: Bool
        if hello.kernelPath.isEmpty {
            ownBits = false
        } else if let path = KernelISA(rawValue: hello.kernelPath) {
            ownBits = path.fastProductsHaveOwnBits
        } else {
            return "worker \(hello.workerName) runs kernel path \(hello.kernelPath.debugDescription), which this "
                + "coordinator does not know, so its fast bf16 products may not give the coordinator's bits: run the "
                + "same switchyard version on every host, or \(fix)"
        }
        guard ownBits != kernelPath.fastProductsHaveOwnBits else { return nil }
        let path = hello.kernelPath.isEmpty ? "not named (a switchyard older than this check)" : hello.kernelPath
        return "worker \(hello.workerName) computes fast bf16 products on kernel path \(path) (\(bits(ownBits))), but the "
            + "coordinator's is \(kernelPath) (\(bits(kernelPath.fastProductsHaveOwnBits))): a sequence's tokens would "
            + "depend on where its experts ran; \(fix)"
    }

    private mutating func welcome() -> WireMessage {
        nextWorkerID += 1
        return .welcome(.init(workerID: WorkerID(nextWorkerID), coordinatorName: "switchyard"))
    }

    /// The experts a slot must hold now: those the active, staged and home placements give it
    /// (they differ only during a placement change or after a failover).
    func assignment(ofSlot slot: Int) -> [LayerExpert] {
        var experts = Set(active.experts(ofWorker: slot)).union(home.experts(ofWorker: slot))
        if let staged { experts.formUnion(staged.placement.experts(ofWorker: slot)) }
        return experts.sorted()
    }

    /// An ASSIGN of the slot's current assignment (every ASSIGN carries the arithmetic and
    /// quantization: a worker rebuilds its store from each one).
    private mutating func assignMessage(slot: Int) -> WireMessage {
        version += 1
        let experts = assignment(ofSlot: slot)
        slots[slot]?.assigned = Set(experts)
        return .assign(.init(experts: experts, arithmetic: arithmetic, quantization: quantization))
    }

    /// Sends a slot its current assignment (it loads what is new and drops what is no longer in it).
    private mutating func reassign(slot: Int) -> [ClusterAction] {
        guard let peer = slots[slot]?.peer else { return [] }
        slots[slot]!.assignsInFlight += 1
        return [.send(peer, assignMessage(slot: slot))]
    }

    private mutating func markReady(slot: Int, _ ready: WireMessage.Ready, now: Duration) -> [ClusterAction] {
        guard slots[slot]!.assignsInFlight > 0 else { return [] }
        slots[slot]!.assignsInFlight -= 1
        var actions: [ClusterAction] = []
        if slots[slot]!.assignsInFlight == 0 {
            version += 1
            let wasReady = slots[slot]!.ready
            slots[slot]!.ready = true
            slots[slot]!.loaded = slots[slot]!.assigned
            if !wasReady {
                actions.append(.log(.info,
                    "worker \(slots[slot]!.name) ready: \(ready.loadedExpertCount) experts loaded in "
                        + "\(String(format: "%.2f", ready.loadSeconds)) s (\(readyWorkerCount) of \(active.workerCount) ready)"))
            }
            if !hasServed && readyWorkerCount == active.workerCount {
                hasServed = true
                actions.append(.log(.info, "all \(active.workerCount) workers ready; serving"))
            }
            // Rows that waited for a holder of their experts may go now.
            actions += resumeParked(now: now)
        }
        return actions
    }

    // MARK: losing a worker

    /// Declares the worker of `slot` lost: moves its experts to the survivors (or leaves them to
    /// wait for a rejoin) and sends its unanswered rows elsewhere.
    mutating func lose(slot: Int, reason: String, now: Duration) -> [ClusterAction] {
        guard let worker = slots[slot] else { return [] }
        slots[slot] = nil
        version += 1
        lostAt[slot] = (now, worker.name, reason)
        counters.workersLost += 1
        var actions: [ClusterAction] = []
        if let pending = staged {
            staged = nil
            placementOutcomes[pending.ticket] = .failed(
                "worker \(worker.name) was lost before the placement was applied (\(reason)); the placement is unchanged")
        }
        // Experts with another holder just lose this one; the others move to survivors with room.
        var holders = active.holders
        var orphans: [LayerExpert] = []
        for layer in holders.indices {
            for expert in holders[layer].indices where holders[layer][expert].contains(slot) {
                if holders[layer][expert].count > 1 {
                    holders[layer][expert].removeAll { $0 == slot }
                } else {
                    orphans.append(LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert)))
                }
            }
        }
        var moved: [Int: [LayerExpert]] = [:]
        if !orphans.isEmpty, let takers = takeOver(orphans, holders: holders, lost: slot) {
            moved = takers
            for (taker, experts) in takers {
                for expert in experts { holders[expert.layer.rawValue][expert.expert.rawValue] = [taker] }
            }
            counters.failovers += 1
        } else if !orphans.isEmpty {
            counters.failovers += 1
        }
        active = active.withHolders(holders)
        for taker in moved.keys.sorted() { actions += reassign(slot: taker) }
        // The lost worker's unanswered rows, elsewhere.
        var affected: [String] = []
        for request in retryParts(of: slot, now: now, actions: &actions) where !affected.contains(request) {
            affected.append(request)
        }
        let movedText = moved.isEmpty ? "" : "; its experts moved: " + moved.keys.sorted().map { taker in
            "\(moved[taker]!.count) to \(slots[taker]!.name)"
        }.joined(separator: ", ")
        let waiting = !orphans.isEmpty && moved.isEmpty
            ? "; \(orphans.count) experts wait for a worker to join (up to \(Self.seconds(policy.rejoinTimeout))): \(joinHint)" : ""
        let requests = affected.isEmpty ? "" : "; requests affected: " + affected.joined(separator: ", ")
        actions.insert(.log(.warning,
            "worker \(worker.name) (pid \(worker.pid)) lost: \(reason)\(movedText)\(waiting)\(requests)"), at: 0)
        return actions
    }

    /// Assigns `orphans` to the ready survivors, each expert to the one holding fewest experts of
    /// its layer, within the policy's per-layer budget. Nil when some expert has no room.
    private func takeOver(_ orphans: [LayerExpert], holders: [[[Int]]], lost: Int) -> [Int: [LayerExpert]]? {
        let survivors = slots.indices.filter { $0 != lost && slots[$0]?.ready == true }
        guard !survivors.isEmpty else { return nil }
        var count = [[Int]](repeating: [Int](repeating: 0, count: slots.count), count: holders.count)
        for (layer, experts) in holders.enumerated() {
            for experts in experts { for holder in experts { count[layer][holder] += 1 } }
        }
        var takers: [Int: [LayerExpert]] = [:]
        for orphan in orphans {
            let layer = orphan.layer.rawValue
            count[layer][lost] -= 1
            guard let taker = survivors.min(by: { (count[layer][$0], $0) < (count[layer][$1], $1) }) else { return nil }
            if let budget = policy.expertBudget, count[layer][taker] + 1 > budget { return nil }
            count[layer][taker] += 1
            takers[taker, default: []].append(orphan)
        }
        return takers
    }

    /// Marks every live attempt with an unanswered part on `slot` dead and sends those batches'
    /// rows again. Returns the requests (sequences, or the request) whose flights were affected.
    private mutating func retryParts(of slot: Int, now: Duration, actions: inout [ClusterAction]) -> [String] {
        var affected: [String] = []
        for id in flights.keys.sorted() {
            for batch in flights[id]!.batches.indices where flights[id]!.batches[batch].partial == nil {
                var hit = false
                for attempt in flights[id]!.batches[batch].attempts.indices
                where !flights[id]!.batches[batch].attempts[attempt].dead
                    && flights[id]!.batches[batch].attempts[attempt].parts.contains(where: { $0.slot == slot && $0.partial == nil })
                {
                    kill(flight: id, batch: batch, attempt: attempt)
                    hit = true
                }
                guard hit else { continue }
                let flight = flights[id]!
                affected += flight.sequences.isEmpty ? [flight.requestID.description] : flight.sequences.map(\.description)
                actions += recover(flight: id, batch: batch, excluding: [], now: now)
            }
        }
        return affected
    }

    private mutating func kill(flight id: FlightID, batch: Int, attempt: Int) {
        flights[id]!.batches[batch].attempts[attempt].dead = true
        for part in flights[id]!.batches[batch].attempts[attempt].parts { partIndex[part.step] = nil }
    }

    // MARK: dispatching

    /// Plans and sends the dispatch of one layer for `hidden`'s rows.
    /// - Parameters:
    ///   - hidden: [tokens, hiddenSize], f32
    /// - Returns: the flight, to be followed with ``outcome(of:)``, and the actions to carry out.
    public mutating func dispatch(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision, requestID: RequestID,
        sequences: [SequenceID] = [], now: Duration
    ) -> (FlightID, [ClusterAction]) {
        nextFlight += 1
        let id = FlightID(rawValue: nextFlight)
        let plan = DispatchPlan(routing: routing, layer: layer, placement: active)
        flights[id] = Flight(
            requestID: requestID, sequences: sequences, layer: layer, plan: plan, hidden: hidden, tokenCount: routing.tokenCount,
            batches: Array(repeating: BatchProgress(), count: plan.batches.count))
        var actions: [ClusterAction] = []
        // A worker slow to answer an earlier part is avoided where a replica can take its rows.
        let suspects = suspectSlots(now: now)
        for batch in plan.batches.indices {
            let slot = plan.batches[batch].slot
            if suspects.contains(slot) {
                let elsewhere = route(flight: id, batch: batch, excluding: suspects, now: now, mode: .avoid)
                if !elsewhere.isEmpty {
                    actions += elsewhere
                    continue
                }
            }
            if canCompute(slot: slot, layer: layer, rows: plan.batches[batch]) {
                let pieces = (0..<plan.batches[batch].rowCount).map { row in
                    Piece(row: row, entries: Array(Int(plan.batches[batch].rowExpertOffsets[row])..<Int(plan.batches[batch].rowExpertOffsets[row + 1])))
                }
                actions += send(flight: id, batch: batch, parts: [(slot, pieces)], now: now)
            } else {
                actions += route(flight: id, batch: batch, excluding: [], now: now, mode: .retry)
            }
        }
        // Verification (off: not even a draw): the sampled batches also go to other holders,
        // after every first computation is on its way.
        if verification.fraction > 0 {
            for batch in plan.batches.indices {
                guard sampleVerification() else { continue }
                actions += startCheck(flight: id, batch: batch, now: now)
            }
        }
        return (id, actions)
    }

    /// Whether `slot` can compute every expert of a batch's rows now.
    private func canCompute(slot: Int, layer: LayerIndex, rows batch: DispatchPlan.WorkerBatch) -> Bool {
        return batch.expertIDs.allSatisfy { canCompute(slot: slot, LayerExpert(layer: layer, expert: ExpertID(Int($0)))) }
    }

    /// Why rows are routed away from their planned worker.
    enum RouteMode {
        /// Their worker was lost or refused them: park the batch if nobody else can take it.
        case retry
        /// Their worker is slow to answer: a second attempt elsewhere, if possible.
        case hedge
        /// Their worker was slow on an earlier part: elsewhere if possible, else nothing.
        case avoid
        /// A verification: a second computation on other holders, if possible, else nothing.
        case check
    }

    /// Workers with a DISPATCH unanswered past its hedge delay.
    func suspectSlots(now: Duration) -> Set<Int> {
        Set(slots.indices.filter { slot in
            slots[slot]?.outstanding.values.contains { (now - $0.sentAt).secondsValue > hedgeDelaySeconds(expertRows: $0.expertRows) } ?? false
        })
    }

    /// Sends a batch's rows as a new attempt, each row to a ready worker (not in `excluding`)
    /// that holds all of the row's experts. When some row has none: a retry parks the batch
    /// (it waits for a worker to join); a hedge or an avoidance does nothing.
    private mutating func route(
        flight id: FlightID, batch: Int, excluding: Set<Int>, now: Duration, mode: RouteMode
    ) -> [ClusterAction] {
        let hedge = mode != .retry
        let rows = flights[id]!.plan.batches[batch]
        let layer = flights[id]!.layer
        func holders(_ entries: [Int]) -> [Int] {
            slots.indices.filter { slot in
                !excluding.contains(slot)
                    && entries.allSatisfy { canCompute(slot: slot, LayerExpert(layer: layer, expert: ExpertID(Int(rows.expertIDs[$0])))) }
            }
        }
        var bySlot: [Int: [Piece]] = [:]
        for row in 0..<rows.rowCount {
            let entries = Array(Int(rows.rowExpertOffsets[row])..<Int(rows.rowExpertOffsets[row + 1]))
            // Spread the rows of one batch over the candidates, in a fixed order.
            let spread = rows.tokens[row] + batch
            let whole = holders(entries)
            if !whole.isEmpty {
                bySlot[whole[spread % whole.count], default: []].append(Piece(row: row, entries: entries))
                continue
            }
            // No live worker holds all of the row's experts: one piece per expert.
            for entry in entries {
                let candidates = holders([entry])
                guard !candidates.isEmpty else {
                    if hedge { return [] }
                    if flights[id]!.batches[batch].parkedSince == nil { flights[id]!.batches[batch].parkedSince = now }
                    return []
                }
                bySlot[candidates[spread % candidates.count], default: []].append(Piece(row: row, entries: [entry]))
            }
        }
        flights[id]!.batches[batch].parkedSince = nil
        switch mode {
        case .retry: counters.retriedDispatches += bySlot.count
        case .hedge: counters.hedgedDispatches += bySlot.count
        case .avoid, .check: break
        }
        return send(
            flight: id, batch: batch, parts: bySlot.keys.sorted().map { ($0, bySlot[$0]!) }, check: mode == .check, now: now)
    }

    /// Sends one attempt of a batch as the given parts.
    private mutating func send(
        flight id: FlightID, batch: Int, parts: [(slot: Int, pieces: [Piece])], check: Bool = false, now: Duration
    ) -> [ClusterAction] {
        let flight = flights[id]!
        let whole = flight.plan.batches[batch]
        let attempt = flight.batches[batch].attempts.count
        var sent: [Part] = []
        var actions: [ClusterAction] = []
        for (index, part) in parts.enumerated() {
            nextStep += 1
            let step = StepIndex(nextStep)
            let rows = whole.selecting(part.pieces)
            sent.append(Part(
                step: step, slot: part.slot, peer: slots[part.slot]!.peer, worker: slots[part.slot]!.name, pieces: part.pieces,
                expertRowCount: rows.expertIDs.count, sentAt: now))
            partIndex[step] = (id, batch, attempt, index)
            slots[part.slot]!.outstanding[step] = (now, rows.expertIDs.count)
            actions.append(.dispatch(
                slots[part.slot]!.peer,
                DispatchOrder(flight: id, step: step, requestID: flight.requestID, layer: flight.layer, batch: rows)))
        }
        if flights[id]!.batches[batch].firstSent == nil { flights[id]!.batches[batch].firstSent = now }
        flights[id]!.batches[batch].attempts.append(Attempt(parts: sent, check: check))
        return actions
    }

    /// Sends parked batches whose rows now have a ready holder.
    private mutating func resumeParked(now: Duration) -> [ClusterAction] {
        var actions: [ClusterAction] = []
        for id in flights.keys.sorted() where flights[id]!.failure == nil {
            for batch in flights[id]!.batches.indices where flights[id]!.batches[batch].parkedSince != nil {
                actions += route(flight: id, batch: batch, excluding: [], now: now, mode: .retry)
            }
        }
        return actions
    }

    private mutating func take(_ combine: WireMessage.Combine, from slot: Int, now: Duration) -> [ClusterAction] {
        guard let (id, batch, attempt, index) = partIndex[combine.step], combine.requestID == flights[id]?.requestID
        else { return [] }  // an answer to a part no longer awaited (hedged, or retried elsewhere)
        let part = flights[id]!.batches[batch].attempts[attempt].parts[index]
        guard part.slot == slot else { return [] }
        let name = slots[slot]!.name
        let layer = flights[id]!.layer
        guard combine.layer == layer, combine.outputs.rowCount == part.pieces.count, combine.outputs.hiddenSize == shape.hiddenSize else {
            // A worker that answers the wrong shape cannot be trusted with the rest either.
            return lose(slot: slot, reason:
                "it answered \(layer) with \(combine.outputs.rowCount) rows × \(combine.outputs.hiddenSize) for \(combine.layer), "
                    + "but \(part.pieces.count) rows × \(shape.hiddenSize) were dispatched", now: now)
        }
        partIndex[combine.step] = nil
        flights[id]!.batches[batch].attempts[attempt].parts[index].partial = combine.outputs.floats()
        let roundTrip = now - part.sentAt
        record(roundTrip: roundTrip.secondsValue, expertRows: max(1, part.expertRowCount))
        let actions: [ClusterAction] = [.answered(
            step: combine.step, worker: name, layer: layer, rowCount: part.pieces.count, expertRowCount: part.expertRowCount,
            computeMicroseconds: Int(clamping: combine.computeMicroseconds), roundTrip: roundTrip)]
        // The attempt is complete: assemble the batch's rows in order; other attempts are dropped.
        let parts = flights[id]!.batches[batch].attempts[attempt].parts
        guard flights[id]!.batches[batch].partial == nil, parts.allSatisfy({ $0.partial != nil }) else { return actions }
        let hiddenSize = shape.hiddenSize
        let whole = flights[id]!.plan.batches[batch]
        if parts.count == 1, parts[0].pieces.count == whole.rowCount,
            parts[0].pieces.indices.allSatisfy({ parts[0].pieces[$0].row == $0 && parts[0].pieces[$0].entries.count == Int(whole.rowExpertOffsets[$0 + 1] - whole.rowExpertOffsets[$0]) })
        {
            // The batch as planned, from one worker (the common case): its answer as it is.
            return actions + complete(flight: id, batch: batch, attempt: attempt, rows: parts[0].partial!, now: now)
        }
        var assembled = [Float](repeating: 0, count: whole.rowCount * hiddenSize)
        // Per row, its pieces by their expert: a whole row is copied; a split row's terms are
        // added in ascending expert order, starting from 0, as the worker adds them.
        var pieces = [[(expert: UInt32, part: Int, local: Int)]](repeating: [], count: whole.rowCount)
        for (partIndex, part) in parts.enumerated() {
            for (local, piece) in part.pieces.enumerated() {
                pieces[piece.row].append((piece.entries.map { whole.expertIDs[$0] }.min()!, partIndex, local))
            }
        }
        for row in 0..<whole.rowCount {
            let target = row * hiddenSize
            if pieces[row].count == 1 {
                let (_, part, local) = pieces[row][0]
                assembled.replaceSubrange(target..<(target + hiddenSize),
                                          with: parts[part].partial![local * hiddenSize..<(local + 1) * hiddenSize])
                continue
            }
            for (_, part, local) in pieces[row].sorted(by: { $0.expert < $1.expert }) {
                let partial = parts[part].partial!
                for column in 0..<hiddenSize { assembled[target + column] += partial[local * hiddenSize + column] }
            }
        }
        return actions + complete(flight: id, batch: batch, attempt: attempt, rows: assembled, now: now)
    }

    /// Records a batch's rows, [rowCount, hiddenSize], f32; its other attempts are dropped.
    private mutating func finish(flight id: FlightID, batch: Int, attempt: Int, partial: [Float], now: Duration) {
        flights[id]!.batches[batch].partial = partial
        for other in flights[id]!.batches[batch].attempts.indices where other != attempt {
            kill(flight: id, batch: batch, attempt: other)
        }
        if flights[id]!.batches[batch].attempts.filter({ !$0.check }).count > 1, let first = flights[id]!.batches[batch].firstSent {
            let stall = (now - first).secondsValue
            counters.stallSeconds += stall
        }
    }

    private mutating func refused(_ report: WireMessage.ErrorReport, by slot: Int, now: Duration) -> [ClusterAction] {
        let name = slots[slot]!.name
        var actions: [ClusterAction] = [.log(.warning, "worker \(name) reported: \(report.message)")]
        guard let requestID = report.requestID else { return actions }
        // An ERROR names the request and layer, not the part: every unanswered part of that
        // worker for them is refused, and its rows go to another holder.
        for id in flights.keys.sorted() where flights[id]!.requestID == requestID && report.layer.map({ $0 == flights[id]!.layer }) ?? true {
            for batch in flights[id]!.batches.indices where flights[id]!.batches[batch].partial == nil {
                var hit = false
                for attempt in flights[id]!.batches[batch].attempts.indices
                where !flights[id]!.batches[batch].attempts[attempt].dead
                    && flights[id]!.batches[batch].attempts[attempt].parts.contains(where: { $0.slot == slot && $0.partial == nil })
                {
                    for part in flights[id]!.batches[batch].attempts[attempt].parts where part.slot == slot {
                        slots[slot]!.outstanding[part.step] = nil
                    }
                    kill(flight: id, batch: batch, attempt: attempt)
                    hit = true
                }
                guard hit else { continue }
                flights[id]!.batches[batch].refusals += 1
                flights[id]!.batches[batch].lastRefusal = "worker \(name): \(report.message)"
                if flights[id]!.batches[batch].refusals >= 3 {
                    flights[id]!.failure = .expertsFailed(
                        "\(flights[id]!.layer) could not be computed: \(flights[id]!.batches[batch].lastRefusal!)")
                } else {
                    actions += recover(flight: id, batch: batch, excluding: [slot], now: now)
                    if flights[id]!.batches[batch].parkedSince != nil {
                        // No other holder: the refusal stands.
                        flights[id]!.failure = .expertsFailed(
                            "\(flights[id]!.layer) could not be computed: \(flights[id]!.batches[batch].lastRefusal!)")
                    }
                }
            }
        }
        return actions
    }

    /// The combined output of a flight once every batch is in, or why it failed.
    public mutating func outcome(of id: FlightID) -> FlightOutcome {
        guard let flight = flights[id] else {
            return .failed(.expertsFailed("collecting experts that were not dispatched (or were dropped after a failure)"))
        }
        if let failure = flight.failure { return .failed(failure) }
        guard flight.batches.allSatisfy({ $0.partial != nil }) else { return .pending }
        drop(id)
        return .done(flight.plan.combine(flight.batches.map { $0.partial! }, tokenCount: flight.tokenCount, hiddenSize: shape.hiddenSize))
    }

    /// Forgets a flight (done, or given up by the step); later answers to it are ignored.
    public mutating func drop(_ id: FlightID) {
        guard let flight = flights.removeValue(forKey: id) else { return }
        for batch in flight.batches { for attempt in batch.attempts { for part in attempt.parts { partIndex[part.step] = nil } } }
    }

    /// Forgets every flight (a step failed or ended).
    public mutating func dropAllFlights() {
        flights.removeAll()
        partIndex.removeAll()
    }

    // MARK: verification

    /// Whether the next batch is verified: every one at fraction 1, else a seeded draw.
    private mutating func sampleVerification() -> Bool {
        if verification.fraction >= 1 { return true }
        return verificationSampler.nextUnit() < verification.fraction
    }

    /// The slots of a batch's live compute attempts (the one whose answer is in, or those still running).
    private func computeSlots(flight id: FlightID, batch: Int) -> Set<Int> {
        Set(flights[id]!.batches[batch].attempts.filter { !$0.dead && !$0.check }.flatMap { $0.parts.map(\.slot) })
    }

    /// Sends a batch's rows also to other holders than those computing them, to compare the answers;
    /// counts the batch as unverifiable when no other ready worker holds its rows' experts.
    private mutating func startCheck(flight id: FlightID, batch: Int, now: Duration) -> [ClusterAction] {
        let computing = computeSlots(flight: id, batch: batch)
        let check = computing.isEmpty ? [] : route(flight: id, batch: batch, excluding: computing, now: now, mode: .check)
        guard !check.isEmpty else {
            counters.unverifiableDispatches += 1
            return []
        }
        flights[id]!.batches[batch].verifying = true
        return check
    }

    /// After some attempts of a batch were killed (their worker was lost or refused): sends the
    /// rows again when no computation of them is left, and checks a verified batch again elsewhere
    /// when its check was killed (or takes its answer unverified when nobody else can check it).
    private mutating func recover(flight id: FlightID, batch: Int, excluding: Set<Int>, now: Duration) -> [ClusterAction] {
        var actions: [ClusterAction] = []
        let progress = flights[id]!.batches[batch]
        if progress.answer == nil, !progress.attempts.contains(where: { !$0.dead && !$0.check }) {
            actions += route(flight: id, batch: batch, excluding: excluding, now: now, mode: .retry)
        }
        let checking = flights[id]!.batches[batch].attempts.contains { !$0.dead && $0.check }
        guard progress.verifying, progress.checked == nil, !checking else { return actions }
        let computing = computeSlots(flight: id, batch: batch)
        let check = computing.isEmpty
            ? [] : route(flight: id, batch: batch, excluding: computing.union(excluding), now: now, mode: .check)
        if !check.isEmpty { return actions + check }
        flights[id]!.batches[batch].verifying = false
        counters.unverifiableDispatches += 1
        if let answer = flights[id]!.batches[batch].answer {
            finish(flight: id, batch: batch, attempt: answer.attempt, partial: answer.rows, now: now)
        }
        return actions
    }

    /// An attempt of a batch is complete with `rows`, [rowCount, hiddenSize], f32: taken as the
    /// batch's result, or (verified batches) kept until the other computation is in and compared.
    private mutating func complete(flight id: FlightID, batch: Int, attempt: Int, rows: [Float], now: Duration) -> [ClusterAction] {
        guard flights[id]!.batches[batch].verifying else {
            finish(flight: id, batch: batch, attempt: attempt, partial: rows, now: now)
            return []
        }
        if flights[id]!.batches[batch].attempts[attempt].check {
            flights[id]!.batches[batch].checked = (attempt, rows)
        } else {
            guard flights[id]!.batches[batch].answer == nil else { return [] }
            flights[id]!.batches[batch].answer = (attempt, rows)
            // Other computations of the rows (a hedge) are no longer needed; the check is.
            for other in flights[id]!.batches[batch].attempts.indices
            where other != attempt && !flights[id]!.batches[batch].attempts[other].check {
                kill(flight: id, batch: batch, attempt: other)
            }
        }
        return compareAnswers(flight: id, batch: batch, now: now)
    }

    /// Once both the answer and the check are in: equal bits take the answer; different bits ask
    /// the shell for the coordinator's own computation.
    private mutating func compareAnswers(flight id: FlightID, batch: Int, now: Duration) -> [ClusterAction] {
        let progress = flights[id]!.batches[batch]
        guard let answer = progress.answer, let checked = progress.checked, !progress.arbitrating else { return [] }
        let answerSlots = Set(progress.attempts[answer.attempt].parts.map(\.slot))
        guard answerSlots.isDisjoint(with: progress.attempts[checked.attempt].parts.map(\.slot)) else {
            // A retry went to the checking worker: it would be compared with itself.
            counters.unverifiableDispatches += 1
            finish(flight: id, batch: batch, attempt: answer.attempt, partial: answer.rows, now: now)
            return []
        }
        counters.verifiedDispatches += 1
        if Self.firstDifference(answer.rows, checked.rows) == nil {
            finish(flight: id, batch: batch, attempt: answer.attempt, partial: answer.rows, now: now)
            return []
        }
        flights[id]!.batches[batch].arbitrating = true
        let whole = flights[id]!.plan.batches[batch]
        let parts = progress.attempts[answer.attempt].parts + progress.attempts[checked.attempt].parts
        return [.arbitrate(ArbitrationOrder(
            flight: id, batch: batch, layer: flights[id]!.layer, rows: [whole] + parts.map { whole.selecting($0.pieces) }))]
    }

    /// The coordinator's own computation of an arbitration's rows (`outputs[i]` for `order.rows[i]`,
    /// each [rows, hiddenSize], f32), or why it could not compute them. The batch takes the
    /// coordinator's rows; every worker whose answer differs from them is taken out of the placement
    /// (its unanswered rows go elsewhere and its experts to the other holders, as for a lost worker)
    /// and may not register again under its name.
    public mutating func arbitrated(
        _ order: ArbitrationOrder, outputs result: Result<[[Float]], GenerationError>, now: Duration
    ) -> [ClusterAction] {
        guard let flight = flights[order.flight], order.batch < flight.batches.count,
            flight.batches[order.batch].arbitrating, let answer = flight.batches[order.batch].answer,
            let checked = flight.batches[order.batch].checked
        else { return [] }
        flights[order.flight]!.batches[order.batch].arbitrating = false
        let progress = flight.batches[order.batch]
        let parts = progress.attempts[answer.attempt].parts + progress.attempts[checked.attempt].parts
        let workers = Set(parts.map(\.worker)).sorted().joined(separator: " and ")
        let requests = flight.sequences.isEmpty ? flight.requestID.description : flight.sequences.map(\.description).joined(separator: ", ")
        let outputs: [[Float]]
        switch result {
        case .failure(let error):
            let reason = "workers \(workers) answered a verified dispatch of \(flight.layer) differently, and the coordinator "
                + "could not compute the rows itself to tell which is right: \(error)"
            flights[order.flight]!.failure = .expertsFailed(reason)
            return [.log(.error, "verification: \(reason); requests affected: \(requests)")]
        case .success(let computed):
            outputs = computed
        }
        precondition(outputs.count == order.rows.count, "one output per row set of the arbitration order")
        let hiddenSize = shape.hiddenSize
        // Per worker (by peer), the first of its answers that differs from the coordinator's.
        var faulty: [(part: Part, detail: String)] = []
        for (index, part) in parts.enumerated() where !faulty.contains(where: { $0.part.peer == part.peer }) {
            guard let partial = part.partial, let at = Self.firstDifference(partial, outputs[index + 1]) else { continue }
            let differing = zip(partial, outputs[index + 1]).filter { $0.bitPattern != $1.bitPattern }.count
            faulty.append((part, "\(differing) of \(partial.count) values differ; first at row \(at / hiddenSize), column "
                + "\(at % hiddenSize): it answered \(partial[at]), the coordinator computed \(outputs[index + 1][at])"))
        }
        finish(flight: order.flight, batch: order.batch, attempt: answer.attempt, partial: outputs[0], now: now)
        guard !faulty.isEmpty else {
            return [.log(.error,
                "verification: workers \(workers) answered a verified dispatch of \(flight.layer) differently, but each answer "
                    + "equals the coordinator's own computation of the rows it was sent; the coordinator's result is used")]
        }
        var actions: [ClusterAction] = []
        for (part, detail) in faulty {
            counters.verifyMismatches[part.worker, default: 0] += 1
            let reason = "its answer to a verified dispatch of \(flight.layer) for \(requests) differs bitwise from the "
                + "coordinator's own computation of the same rows (\(detail))"
            excluded[part.worker] = reason
            actions.append(.faulty(part.peer, worker: part.worker, reason: reason))
            actions.append(.send(part.peer, .bye(.init(reason: "taken out of the placement: \(reason)"))))
            if let slot = slots.firstIndex(where: { $0?.peer == part.peer }) {
                actions += lose(slot: slot, reason: "taken out of the placement: \(reason)", now: now)
            }
        }
        return actions
    }

    /// The index of the first value whose bits differ, nil when the two are bitwise equal.
    static func firstDifference(_ a: [Float], _ b: [Float]) -> Int? {
        guard a.count == b.count else { return 0 }
        return a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                for index in 0..<x.count where x[index].bitPattern != y[index].bitPattern { return index }
                return nil
            }
        }
    }

    /// Experts of the active placement with fewer than two holders: the dispatches of their rows
    /// cannot be verified.
    public var singleHolderExpertCount: Int { active.holders.joined().filter { $0.count < 2 }.count }

    /// With verification on, a log line when the experts without a second holder change (at
    /// start, after a lost worker, after a placement change).
    private mutating func noteVerificationCoverage() -> [ClusterAction] {
        guard verification.fraction > 0, coverageCheckedVersion != version else { return [] }
        coverageCheckedVersion = version
        let single = singleHolderExpertCount
        guard single != reportedSingleHolders else { return [] }
        let first = reportedSingleHolders == nil
        reportedSingleHolders = single
        if single == 0 {
            return first ? [] : [.log(.info, "verification: every expert has a second holder again; sampled dispatches are verified")]
        }
        let total = active.holders.joined().count
        return [.log(.warning,
            "verification (--verify-fraction \(verification.fraction)): \(single) of \(total) experts have a single holder, "
                + "so dispatches of their rows cannot be verified (counted in switchyard_verify_unverifiable_total); "
                + "give every expert a second holder with --replicas 2 or a placement file")]
    }

    // MARK: time

    /// Keeps the last 64 round trips and their slowest.
    private mutating func record(roundTrip seconds: Double, expertRows: Int) {
        roundTrips.append((seconds, expertRows))
        if roundTrips.count > 64 { roundTrips.removeFirst(roundTrips.count - 64) }
        slowestRoundTrip = roundTrips.map(\.seconds).max()!
        slowestPerExpertRow = roundTrips.map { $0.seconds / Double($0.expertRows) }.max()!
    }

    /// The expected round trip of a part with `expertRows` rows, in seconds, from the recent ones
    /// (the slowest, or the slowest per row times its rows); nil before any.
    func expectedRoundTrip(expertRows: Int) -> Double? {
        guard !roundTrips.isEmpty else { return nil }
        return max(slowestRoundTrip, slowestPerExpertRow * Double(max(1, expertRows)))
    }

    /// Seconds a part may go unanswered before its worker is lost.
    func deadlineSeconds(expertRows: Int) -> Double {
        if let fixed = policy.dispatchTimeout { return fixed.secondsValue }
        guard let expected = expectedRoundTrip(expertRows: expertRows) else {
            return LivenessPolicy.initialDispatchTimeout.secondsValue
        }
        return min(300, max(policy.minimumDispatchTimeout.secondsValue, expected * Double(LivenessPolicy.derivedTimeoutFactor)))
    }

    /// Seconds a part may go unanswered before its rows are also sent to a replica.
    func hedgeDelaySeconds(expertRows: Int) -> Double {
        let delay = expectedRoundTrip(expertRows: expertRows).map {
            max(LivenessPolicy.minimumHedgeDelay.secondsValue, $0 * Double(LivenessPolicy.hedgeFactor))
        } ?? LivenessPolicy.initialHedgeDelay.secondsValue
        return min(delay, deadlineSeconds(expertRows: expertRows) / 2)
    }

    /// Time-driven decisions: heartbeats to the workers, workers lost to silence or a missed
    /// deadline, hedges of slow parts, rows that waited too long for a worker to join, a staged
    /// placement that took too long. Call it with the socket drained (so silence is real).
    public mutating func tick(now: Duration) -> [ClusterAction] {
        var actions: [ClusterAction] = []
        if lastHeartbeatSent.map({ now - $0 >= policy.heartbeatInterval }) ?? true {
            lastHeartbeatSent = now
            let millis = UInt64(max(0, now.secondsValue * 1000))
            actions += slots.compactMap { $0 }.map { .send($0.peer, .heartbeat(.init(sentUnixMillis: millis))) }
        }
        // Unanswered parts: past the hedge delay, with a replica elsewhere, the rows also go there.
        for id in flights.keys.sorted() where flights[id]!.failure == nil {
            for batch in flights[id]!.batches.indices where flights[id]!.batches[batch].partial == nil {
                let progress = flights[id]!.batches[batch]
                if let parked = progress.parkedSince, now - parked > policy.rejoinTimeout {
                    flights[id]!.failure = .expertsFailed(
                        "no live worker holds the experts of \(flights[id]!.layer) needed by \(flights[id]!.requestID) "
                            + "for \(Self.seconds(now - parked)) (rejoin timeout \(Self.seconds(policy.rejoinTimeout))); "
                            + "start a worker: \(joinHint)")
                    continue
                }
                // A batch whose answer is in waits only for its check, which is not hedged.
                guard !progress.hedged, progress.answer == nil else { continue }
                for attempt in progress.attempts where !attempt.dead && !attempt.check {
                    let slow = Set(attempt.parts.filter {
                        $0.partial == nil && (now - $0.sentAt).secondsValue > hedgeDelaySeconds(expertRows: $0.expertRowCount)
                    }.map(\.slot))
                    guard !slow.isEmpty else { continue }
                    let hedge = route(flight: id, batch: batch, excluding: slow, now: now, mode: .hedge)
                    if !hedge.isEmpty {
                        flights[id]!.batches[batch].hedged = true
                        actions += hedge
                        break
                    }
                }
            }
        }
        // A worker that has not answered a dispatch within its deadline is hung: lost. One with
        // nothing pending must be heard from every few heartbeats.
        for slot in slots.indices {
            guard let worker = slots[slot] else { continue }
            if let late = worker.outstanding.values.first(where: { (now - $0.sentAt).secondsValue > deadlineSeconds(expertRows: $0.expertRows) }) {
                actions += lose(slot: slot, reason:
                    "it did not answer a dispatch within \(String(format: "%.1f s", deadlineSeconds(expertRows: late.expertRows)))", now: now)
            } else if worker.outstanding.isEmpty, now - worker.lastHeard > policy.silenceLimit {
                actions += lose(slot: slot, reason:
                    "nothing heard from it for \(Self.seconds(now - worker.lastHeard)) (\(policy.heartbeatMisses) heartbeats of \(Self.seconds(policy.heartbeatInterval)))",
                    now: now)
            }
        }
        if let pending = staged, now - pending.staged > placementTimeout {
            staged = nil
            let reason = "the workers did not load the new experts within \(Self.seconds(placementTimeout)) "
                + "(\(readyWorkerCount) of \(active.workerCount) ready); the placement is unchanged"
            placementOutcomes[pending.ticket] = .failed(reason)
            actions.append(.log(.warning, "placement \(pending.ticket.rawValue) abandoned: \(reason)"))
            for slot in slots.indices where slots[slot] != nil { actions += reassign(slot: slot) }
        }
        actions += noteVerificationCoverage()
        return actions
    }

    /// How long a staged placement may wait for its workers.
    var placementTimeout: Duration { max(.seconds(60), policy.rejoinTimeout) }

    // MARK: placement changes

    /// Stages `newPlacement`: every worker is told to hold the union of its current and new
    /// experts; once all have answered READY, the next step boundary switches to it.
    /// - Throws: `PlacementError` when it does not fit the model or names other workers, or while
    ///   a worker is missing.
    public mutating func stage(_ newPlacement: Placement, now: Duration) throws(PlacementError) -> (PlacementTicket, [ClusterAction]) {
        guard newPlacement.expertCounts == active.expertCounts else {
            throw PlacementError(
                "the placement has \(newPlacement.layerCount) layers with experts per layer \(newPlacement.expertCounts), "
                    + "but the model has \(active.layerCount) with \(active.expertCounts)")
        }
        let reordered = try newPlacement.reordered(as: workerNames)
        guard readyWorkerCount == active.workerCount, active == home else {
            throw PlacementError(
                "serving on \(readyWorkerCount) of \(active.workerCount) workers; the placement can change once every worker is back")
        }
        var actions: [ClusterAction] = []
        if let superseded = staged {
            placementOutcomes[superseded.ticket] = .failed("superseded by a newer placement before it was applied")
        }
        nextTicket += 1
        let ticket = PlacementTicket(nextTicket)
        staged = PendingPlacement(placement: reordered, ticket: ticket, staged: now)
        for slot in slots.indices { actions += reassign(slot: slot) }
        actions.append(.log(.info, "placement \(ticket.rawValue) staged; waiting for the workers to load their new experts"))
        return (ticket, actions)
    }

    /// At a step boundary (no flight pending): applies a staged placement whose workers hold
    /// their experts, or returns to the home placement once every slot has a worker again.
    public mutating func stepBoundary(now: Duration) -> [ClusterAction] {
        dropAllFlights()
        let settled = slots.allSatisfy { $0 != nil && $0!.ready && $0!.assignsInFlight == 0 }
        guard settled else { return [] }
        var actions: [ClusterAction] = []
        if let pending = staged {
            staged = nil
            home = pending.placement
            active = pending.placement
            placementOutcomes[pending.ticket] = .applied
            let replicas = active.holders.joined().reduce(0) { $0 + $1.count }
            actions.append(.log(.info,
                "placement \(pending.ticket.rawValue) applied: \(replicas) expert replicas on \(active.workerCount) workers"))
        } else if active != home {
            // Every slot is filled again and holds its home experts (the union was assigned).
            active = home
            actions.append(.log(.info, "every worker is back; the configured placement is restored"))
        } else {
            return []
        }
        // The workers may now drop what they no longer hold: later dispatches use only the new
        // placement, and each worker handles its messages in order.
        for slot in slots.indices { actions += reassign(slot: slot) }
        return actions
    }

    static func seconds(_ duration: Duration) -> String {
        let value = duration.secondsValue
        return value < 10 ? String(format: "%.1f s", value) : String(format: "%.0f s", value)
    }
}

extension DispatchPlan.WorkerBatch {
    /// The batch restricted to some of its rows, or parts of rows (in the given order).
    func selecting(_ pieces: [ClusterState.Piece]) -> DispatchPlan.WorkerBatch {
        var batch = DispatchPlan.WorkerBatch(slot: slot, tokens: [], rowExpertOffsets: [0], expertIDs: [], weights: [])
        for piece in pieces {
            batch.tokens.append(tokens[piece.row])
            for entry in piece.entries {
                batch.expertIDs.append(expertIDs[entry])
                batch.weights.append(weights[entry])
            }
            batch.rowExpertOffsets.append(UInt32(batch.expertIDs.count))
        }
        return batch
    }
}

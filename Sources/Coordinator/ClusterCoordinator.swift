// The coordinator's side of the cluster: one ROUTER socket that workers and clients connect to.
//
// A thin shell around `ClusterState`, which makes every decision (registration, liveness,
// placement changes, dispatches, failover): this file owns the socket and the clock, turns what
// arrives into events and carries out the actions that come back. Everything happens on the
// thread that created the coordinator (ZeroMQ sockets are not thread-safe). Generation is
// synchronous: while a step waits for its COMBINEs, other messages (a worker registering, a
// client's request, heartbeats) are handled, and time-driven decisions (a worker lost to
// silence, a slow dispatch hedged) are taken.
public import Foundation
import Kernels
public import Logging
public import Models
public import Tensors
public import Transport
public import Wire

/// How the coordinator listens and whom it waits for.
public struct CoordinatorOptions: Sendable {
    /// The worker endpoint to bind, e.g. `tcp://127.0.0.1:5555` (port 0 picks a free port).
    public var bind: String
    /// Worker slots to fill before serving (ignored when a placement file names the workers).
    public var workerCount: Int
    /// Names of the worker slots, in placement order; a worker registering with one of them fills
    /// that slot. Nil lets workers fill slots in arrival order.
    public var workerNames: [String]?
    /// A placement file (`{"workers": [{"name": …, "experts": [[layer, expert], …]}]}`), or nil for an even split.
    public var placementFile: URL?
    /// The text of a placement file given inline (`serve --placement-json`); used when `placementFile` is nil.
    public var placementJSON: String?
    /// Heartbeats, deadlines and the failover budget.
    public var liveness: LivenessPolicy
    /// Replicas of every expert in the even placement (ignored with a placement file).
    public var replicas: Int
    /// How workers multiply by bf16-stored expert weights (sent in ASSIGN; it must match the
    /// coordinator's own model for distributed runs to equal in-process ones).
    public var arithmetic: BFloat16Arithmetic
    /// The element type of the hidden states in DISPATCH (workers always answer COMBINE in f32, so
    /// that tokens do not depend on the placement). bf16 halves the bytes sent; with bf16 fast
    /// arithmetic it changes no result (the products round their inputs to bf16 anyway).
    public var wireDType: WireDType
    /// How workers hold the expert weights (sent in ASSIGN).
    public var quantization: WeightQuantization
    /// The coordinator's CURVE key pair and the workers' and clients' keys it accepts; nil speaks
    /// plaintext to anyone who reaches `bind` (`--insecure`), which is logged loudly.
    public var curve: CurveServerKeys?
    /// The fraction of dispatches also computed by a second holder and compared bitwise
    /// (`--verify-fraction`, 0 to 1; 0 is off and costs nothing).
    public var verifyFraction: Double
    /// Seeds the choice of the verified dispatches; nil draws one at start (a worker cannot
    /// predict which of its answers are checked).
    public var verifySeed: UInt64?

    public init(
        bind: String, workerCount: Int, workerNames: [String]? = nil, placementFile: URL? = nil,
        placementJSON: String? = nil, liveness: LivenessPolicy = LivenessPolicy(), replicas: Int = 1,
        arithmetic: BFloat16Arithmetic = .exact, wireDType: WireDType = .f32, quantization: WeightQuantization = .none,
        curve: CurveServerKeys? = nil, verifyFraction: Double = 0, verifySeed: UInt64? = nil
    ) {
        self.curve = curve
        self.verifyFraction = verifyFraction
        self.verifySeed = verifySeed
        self.placementJSON = placementJSON
        self.bind = bind
        self.workerCount = workerCount
        self.workerNames = workerNames
        self.placementFile = placementFile
        self.liveness = liveness
        self.replicas = replicas
        self.arithmetic = arithmetic
        self.wireDType = wireDType
        self.quantization = quantization
    }
}

/// Runs the coordinator side of the protocol on the calling thread.
public final class ClusterCoordinator: ExpertExecutor {
    public let endpoint: String
    let options: CoordinatorOptions
    let logger: Logger
    let modelPath: String
    /// The coordinator's own copy of the experts: computes the rows two workers disagreed on.
    private let checkpoint: Checkpoint
    /// Each worker peer's CURVE key name and network address, as of its HELLO (for the log of a
    /// worker taken out for a wrong answer).
    private var workerLinks: [PeerIdentity: (keyName: String?, address: String?)] = [:]
    private let socket: RouterSocket
    private var state: ClusterState
    /// The shell's time origin: `ClusterState` sees durations since it.
    private let started = ContinuousClock.now
    private var now: Duration { ContinuousClock.now - started }

    private var pendingClientRequests: [(PeerIdentity, WireMessage.GenerateRequest)] = []
    private var remoteClients: [UInt64: (PeerIdentity, ClientRequestID)] = [:]
    private var nextRemoteToken: UInt64 = 0
    private var nextRequestID: UInt64 = 0
    private var currentRequestID = RequestID(0)
    /// The sequences of the running step (for the log of a failover).
    private var currentSequences: [SequenceID] = []
    /// Bytes of each DISPATCH sent and not yet answered, for the accounting.
    private var sentBytes: [StepIndex: Int] = [:]
    /// The most flights in flight at once so far (the micro-batches of a step): a step then holds
    /// up to layers × workers × this many observations.
    private var mostInFlight = 1
    private var flightsInFlight = 0
    /// Dispatches measured since the engine loop last took them (`takeDispatchObservations`).
    private var observations: [WorkerDispatchObservation] = []
    private var lastHealth: HealthStatus?
    /// When a step's wait last took the time-driven decisions.
    private var lastTick = ContinuousClock.now
    /// The state's version when health was last published.
    private var publishedVersion: UInt64?
    private var cachedHealth: (version: UInt64, at: Duration, health: HealthStatus)?

    /// Told of every change of health as it happens (also in the middle of a step).
    public var onHealthChange: (@Sendable (HealthStatus) -> Void)?

    /// Binds the worker socket.
    /// - Throws: `PlacementError` for a bad placement, `TransportError` when the address cannot be
    ///   bound, `CoordinatorOptionsError` for a verified fraction outside 0...1.
    public init(checkpoint: Checkpoint, options: CoordinatorOptions, logger: Logger) throws {
        guard options.verifyFraction >= 0 && options.verifyFraction <= 1 else {
            throw CoordinatorOptionsError(
                "--verify-fraction is \(options.verifyFraction), but must be a number from 0 (off) to 1 (every dispatch)")
        }
        let shape = checkpoint.shape
        let placement: Placement
        let namedSlots: Bool
        if let file = options.placementFile {
            placement = try Placement.load(from: file, expertCounts: shape.expertCounts)
            namedSlots = true
        } else if let json = options.placementJSON {
            placement = try Placement.load(
                json: Data(json.utf8), source: "--placement-json", expertCounts: shape.expertCounts)
            namedSlots = true
        } else {
            placement = try Placement.replicated(
                expertCounts: shape.expertCounts,
                workerNames: options.workerNames ?? (0..<options.workerCount).map { "slot\($0)" },
                replicas: options.replicas)
            namedSlots = options.workerNames != nil
        }
        // Hashed (or read from the cache) before the socket is bound: a worker registering is
        // checked against every expert tensor's digest.
        let expertDigests = try checkpoint.expertTensorDigests(cache: .standard()) { logger.info("\($0)") }
        self.options = options
        self.logger = logger
        self.checkpoint = checkpoint
        modelPath = checkpoint.directory.path
        let security: RouterSecurity
        if let curve = options.curve {
            security = .curve(
                server: curve.server, allowed: curve.allowed,
                onAuthentication: { [logger] decision in
                    if let name = decision.name {
                        logger.info("CURVE: accepted key \(name) (\(decision.key.z85)) from \(decision.address)")
                    } else {
                        logger.warning(
                            "CURVE: refused a peer at \(decision.address): its key \(decision.key.z85) is not on the allow-list")
                    }
                })
        } else {
            security = .plaintext
        }
        socket = try RouterSocket(context: ZMQContext(), bind: options.bind, security: security)
        // Only a worker taken out for a wrong answer is logged with its address (read per message).
        socket.recordsSenderAddress = options.verifyFraction > 0
        try socket.enableDisconnectEvents()
        let boundEndpoint = socket.boundEndpoint
        endpoint = boundEndpoint
        socket.onHandshakeFailure = { [logger, endpoint = boundEndpoint] failure in
            // libzmq's monitor does not say which peer: only the endpoint and why.
            logger.warning("a peer failed the handshake on \(endpoint) and was refused: \(failure)")
        }
        if options.curve == nil {
            logger.warning(
                "INSECURE: \(boundEndpoint) speaks plaintext and authenticates no one (--insecure): anyone who can reach it can register as a worker, read every hidden state and change every answer. Use it only on a network you trust.")
        }
        let keyHint = options.curve == nil ? " --insecure" : " --key WORKER.key --coordinator-key COORDINATOR.pub"
        state = ClusterState(
            shape: shape, fingerprint: checkpoint.fingerprint, placement: placement, namedSlots: namedSlots,
            policy: options.liveness, arithmetic: options.arithmetic, quantization: options.quantization,
            joinHint: "switchyard worker --coordinator \(boundEndpoint) --model \(checkpoint.directory.path)\(keyHint)",
            expertDigests: expertDigests,
            verification: VerificationPolicy(
                fraction: options.verifyFraction, seed: options.verifySeed ?? UInt64.random(in: 0...UInt64.max)),
            kernelPath: KernelISA.active)
        if options.verifyFraction > 0 {
            logger.info(
                "verification: \(options.verifyFraction * 100)% of dispatches are computed again on a second holder of their experts and compared bitwise (--verify-fraction \(options.verifyFraction)); a worker that answers differently from the coordinator's own computation is taken out of the placement")
        }
    }

    /// The command that starts a worker for this coordinator (keys named by placeholders).
    public var joinCommand: String { state.joinHint }

    /// The placement dispatches use now.
    public var placement: Placement { state.active }

    /// Worker slots with a worker that has loaded its experts.
    public var readyWorkerCount: Int { state.readyWorkerCount }

    /// True when every slot has a ready worker.
    public var isReady: Bool { state.readyWorkerCount == state.active.workerCount }

    /// Faults and recoveries since start.
    public var counters: ClusterCounters { state.counters }

    // MARK: waiting and serving

    /// Handles messages until every worker slot is filled and ready.
    /// - Parameters:
    ///   - timeout: give up after this long (nil waits until `shouldStop`)
    ///   - abandoned: returns a reason when waiting is pointless (a spawned worker exited)
    public func waitUntilReady(
        timeout: Duration?, shouldStop: () -> Bool, abandoned: () -> String? = { nil }
    ) throws(GenerationError) {
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now + $0 }
        var lastReport = clock.now
        while !state.hasServed {
            if shouldStop() { throw .unavailable("stopped while waiting for workers") }
            if let reason = abandoned() { throw .unavailable(reason) }
            if let deadline, clock.now >= deadline {
                throw .unavailable(
                    "only \(readyWorkerCount) of \(placement.workerCount) workers were ready after \(timeout!); "
                        + "start workers with: \(state.joinHint)")
            }
            if clock.now - lastReport >= .seconds(10) {
                logger.info("waiting for workers: \(readyWorkerCount) of \(placement.workerCount) ready at \(endpoint)")
                lastReport = clock.now
            }
            pump(until: clock.now + .milliseconds(100), wakeSignal: nil)
        }
    }

    // MARK: engine loop hooks

    public var readiness: HealthStatus {
        // Health walks every expert: computed again when the workers changed, or (for the elapsed
        // times in its reason) once a second.
        let now = self.now
        if let cached = cachedHealth, cached.version == state.version, now - cached.at < .seconds(1) { return cached.health }
        let health = state.health(now: now)
        cachedHealth = (state.version, now, health)
        return health
    }

    public func idle(timeout: Duration, wakeSignal: WakeSignal?) {
        pump(until: .now + timeout, wakeSignal: wakeSignal)
    }

    public func beginStep(sequences: [SequenceID]) {
        // One request id per step on the wire: answers and errors of an earlier step are told apart.
        nextRequestID += 1
        currentRequestID = RequestID(nextRequestID)
        currentSequences = sequences
    }

    public func prepareStep() {
        // A step that failed outside the executor (in the model) may have left dispatches in flight.
        flightsInFlight = 0
        sentBytes.removeAll()
        perform(state.stepBoundary(now: now))
        publishHealth()
    }

    // MARK: placement changes

    public var currentPlacement: Placement? { state.active }

    /// Stages `newPlacement`: every worker is told to load the union of its current and new experts;
    /// once all have answered READY, the next step boundary switches to it and the workers drop the
    /// experts they no longer hold. A placement staged before and not yet applied is superseded.
    /// - Throws: `PlacementError` when the placement names other workers, does not fit the model,
    ///   or a worker is missing.
    public func stagePlacement(_ newPlacement: Placement) throws(PlacementError) -> PlacementTicket {
        let (ticket, actions) = try state.stage(newPlacement, now: now)
        perform(actions)
        return ticket
    }

    /// What became of a staged placement.
    public func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome {
        state.placementOutcome(ticket)
    }

    public func takeRemoteJobs() -> [RemoteJob] {
        defer { pendingClientRequests.removeAll() }
        return pendingClientRequests.map { peer, request in
            nextRemoteToken += 1
            remoteClients[nextRemoteToken] = (peer, request.clientRequestID)
            return RemoteJob(token: nextRemoteToken, request: Self.generationRequest(request))
        }
    }

    public func finishRemoteJob(_ job: RemoteJob, with outcome: Result<GenerationResult, GenerationError>) {
        guard let (peer, clientID) = remoteClients.removeValue(forKey: job.token) else { return }
        switch outcome {
        case .success(let result):
            let json = (try? result.jsonData()).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            sendQuietly(.generateResult(.init(clientRequestID: clientID, resultJSON: json)), to: peer)
            logger.info("\(clientID): \(result.promptTokenIDs.count) prompt + \(result.completionTokenIDs.count) completion tokens")
        case .failure(let error):
            let code: WireMessage.ErrorReport.Code = if case .invalidRequest = error { .badRequest } else { .internal }
            sendQuietly(.error(.init(code: code, message: error.description)), to: peer)
            logger.warning("\(clientID) failed: \(error)")
        }
    }

    /// Runs one request through `engine` with this coordinator's workers computing the experts.
    public func generate(
        engine: GenerationEngine, request: GenerationRequest, onText: ((String) -> Void)? = nil
    ) throws(GenerationError) -> GenerationResult {
        nextRequestID += 1
        currentRequestID = RequestID(nextRequestID)
        var executor = self
        defer { observations.removeAll() }
        return try engine.generate(request, experts: &executor, onText: onText)
    }

    /// Tells every worker to leave.
    public func shutdown(reason: String) {
        for peer in state.workerPeers { sendQuietly(.bye(.init(reason: reason)), to: peer) }
    }

    static func generationRequest(_ request: WireMessage.GenerateRequest) -> GenerationRequest {
        let prompt: Prompt = switch request.prompt {
        case .text(let text): .text(text)
        case .tokenIDs(let ids): .tokenIDs(ids.map { Int32(truncatingIfNeeded: $0) })
        }
        return GenerationRequest(
            prompt: prompt, maxTokens: request.maxTokens,
            sampling: SamplingParameters(
                temperature: request.temperature, topP: request.topP, topK: request.topK, seed: request.seed),
            ignoreEOS: request.ignoreEOS, logprobs: request.logprobs)
    }

    // MARK: ExpertExecutor

    public var workerSummaries: [WorkerSummary] {
        let names = state.workerNames
        return (0..<placement.workerCount).map { WorkerSummary(name: names[$0], experts: placement.experts(ofWorker: $0)) }
    }

    public var dispatchWorkerNames: [String] { state.workerNames }

    public var clusterMetrics: ClusterMetrics? {
        ClusterMetrics(configured: placement.workerCount, up: state.readyWorkerCount, counters: state.counters)
    }

    public func takeDispatchObservations() -> [WorkerDispatchObservation] {
        defer { observations.removeAll(keepingCapacity: true) }
        return observations
    }

    public func computeExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> [Float] {
        try collectExperts(try dispatchExperts(layer: layer, hidden: hidden, routing: routing))
    }

    /// Sends the DISPATCHes of one layer for `hidden`'s rows; ``collectExperts(_:)`` waits for
    /// their COMBINEs. Several may be in flight (micro-batches); if one fails, all are dropped.
    public func dispatchExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> ExpertDispatch {
        let (flight, actions) = state.dispatch(
            layer: layer, hidden: hidden, routing: routing, requestID: currentRequestID,
            sequences: currentSequences, now: now)
        flightsInFlight += 1
        mostInFlight = max(mostInFlight, flightsInFlight)
        perform(actions)
        return .sent(step: flight.rawValue)
    }

    /// Waits for the COMBINEs of a dispatch (taking those of other dispatches in flight as they
    /// come, and recovering from lost workers meanwhile) and returns their combined output.
    public func collectExperts(_ dispatch: ExpertDispatch) throws(GenerationError) -> [Float] {
        switch dispatch {
        case .computed(let output):
            return output
        case .sent(let raw):
            let flight = FlightID(rawValue: raw)
            while true {
                switch state.outcome(of: flight) {
                case .done(let output):
                    flightsInFlight -= 1
                    return output
                case .failed(let error):
                    state.dropAllFlights()
                    flightsInFlight = 0
                    publishHealth()
                    throw error
                case .pending:
                    // Wait for the next message, asleep: a spin here took a core from the workers
                    // when they share the host (2 workers on 2 cores decoded about 7% slower at
                    // batch 1). The time-driven decisions (and closed connections) are taken at
                    // least every 20 ms, not per reply, which would cost the step its latency.
                    // The product threads have nothing to do until the replies are in: they sleep
                    // too (a dispatch whose replies are in already, as with micro-batches, leaves
                    // them spinning for the next product).
                    Kernels.restThreads()
                    let received: (peer: PeerIdentity, frames: [[UInt8]])?
                    do {
                        received = try socket.receive(timeout: .milliseconds(20))
                    } catch {
                        logger.error("receiving on \(endpoint) failed: \(error)")
                        received = nil
                    }
                    if let (peer, frames) = received { handle(frames: frames, from: peer) }
                    if received == nil || ContinuousClock.now - lastTick >= .milliseconds(20) {
                        lastTick = .now
                        drain()
                        perform(state.tick(now: now))
                        publishHealth()
                    }
                }
            }
        }
    }

    // MARK: the shell

    /// Handles what is queued, then waits until `deadline` for one more event (a message, a
    /// closed connection, a wake-up), handles what came meanwhile, and takes the time-driven
    /// decisions with the socket drained (so a worker's silence is real, not a queued heartbeat).
    private func pump(until deadline: ContinuousClock.Instant, wakeSignal: WakeSignal?) {
        drain()
        perform(state.tick(now: now))
        // What the queued messages changed is published before the wait: a worker's READY that
        // made the cluster ready (and logged "serving") must not leave the API answering 503 for
        // the rest of an idle wait (up to 250 ms; a test's requests sent right after the log got it).
        publishHealth()
        let remaining = deadline - .now
        if remaining > .zero {
            do {
                if let event = try socket.receiveEvent(timeout: remaining, wakeSignal: wakeSignal) {
                    handle(event)
                    drain()
                    perform(state.tick(now: now))
                }
            } catch {
                logger.error("receiving on \(endpoint) failed: \(error)")
            }
        }
        publishHealth()
    }

    /// Handles every queued event without waiting.
    private func drain() {
        while true {
            do {
                guard let event = try socket.receiveEvent(timeout: .zero) else { return }
                handle(event)
            } catch {
                logger.error("receiving on \(endpoint) failed: \(error)")
                return
            }
        }
    }

    private func handle(_ event: RouterEvent) {
        switch event {
        case .message(let peer, let frames): handle(frames: frames, from: peer)
        case .peerDisconnected: perform(state.handle(.connectionClosed, now: now))
        case .woken: break
        }
    }

    private func publishHealth() {
        guard state.version != publishedVersion else { return }
        publishedVersion = state.version
        let health = readiness
        // The reason of a degraded or stalled cluster names elapsed seconds: publish changes of
        // kind at once, and the text at most with the next change.
        if let lastHealth, Self.sameKind(lastHealth, health) { return }
        lastHealth = health
        onHealthChange?(health)
    }

    private static func sameKind(_ a: HealthStatus, _ b: HealthStatus) -> Bool {
        switch (a, b) {
        case (.ready, .ready), (.degraded, .degraded), (.notReady, .notReady), (.stalled, .stalled): true
        default: false
        }
    }

    private func handle(frames: [[UInt8]], from peer: PeerIdentity) {
        let message: WireMessage
        do {
            message = try WireCodec.decode(frames)
        } catch {
            perform(state.handle(.undecodable(peer, error), now: now))
            return
        }
        if case .hello = message {
            if workerLinks.count > 4096 { workerLinks = workerLinks.filter { state.isWorker($0.key) } }
            workerLinks[peer] = (socket.lastSenderKeyName, socket.lastSenderAddress)
        }
        switch message {
        case .hello(let hello) where !mayRegister(as: hello.workerName, peer: peer):
            return
        case .generateRequest(let request):
            pendingClientRequests.append((peer, request))
        case .heartbeat(let beat) where isClient(peer):
            // A client waiting for its job checks that the coordinator is still there.
            sendQuietly(.heartbeat(beat), to: peer)
        case .combine:
            let bytes = frames.reduce(0) { $0 + $1.count }
            let actions = state.handle(.received(peer, message), now: now)
            for case .answered(let step, let worker, let layer, let rows, let expertRows, let compute, let roundTrip) in actions {
                recordObservation(
                    step: step, worker: worker, layer: layer, rows: rows, expertRows: expertRows, compute: compute,
                    roundTrip: roundTrip, bytesReceived: bytes)
            }
            perform(actions)
        default:
            perform(state.handle(.received(peer, message), now: now))
        }
    }

    /// A worker name that is also the name of a key on the allow-list belongs to that key: another
    /// listed key cannot register under it (and so take over its experts). Refused with an ERROR.
    private func mayRegister(as name: String, peer: PeerIdentity) -> Bool {
        guard let curve = options.curve, let sender = socket.lastSenderKeyName, sender != name,
            curve.allowed.values.contains(name)
        else { return true }
        logger.warning("refused worker \(name) from \(peer): that name belongs to the key \(name), but the peer holds the key \(sender)")
        sendQuietly(
            .error(.init(code: .badRequest, message: "the worker name \(name) belongs to the key \(name); this worker holds the key \(sender)")),
            to: peer)
        return false
    }

    private func isClient(_ peer: PeerIdentity) -> Bool {
        pendingClientRequests.contains { $0.0 == peer } || remoteClients.values.contains { $0.0 == peer }
    }

    private func recordObservation(
        step: StepIndex, worker: String, layer: LayerIndex, rows: Int, expertRows: Int, compute: Int,
        roundTrip: Duration, bytesReceived: Int
    ) {
        // One step holds at most layers × workers dispatches per micro-batch; more means nobody takes them.
        if observations.count >= 4 * state.shape.layerCount * placement.workerCount * mostInFlight {
            observations.removeAll(keepingCapacity: true)
        }
        let parts = roundTrip.components
        observations.append(WorkerDispatchObservation(
            layer: layer, worker: worker, rowCount: rows, expertRowCount: expertRows,
            bytesSent: sentBytes.removeValue(forKey: step) ?? 0, bytesReceived: bytesReceived,
            computeMicroseconds: compute,
            roundTripMicroseconds: Int(parts.seconds) * 1_000_000 + Int(parts.attoseconds / 1_000_000_000_000)))
    }

    /// Carries out actions; a failed send becomes an event whose actions are carried out in turn.
    private func perform(_ actions: [ClusterAction]) {
        var queue = actions[...]
        while let action = queue.popFirst() {
            var failure: (PeerIdentity, String)?
            switch action {
            case .send(let peer, let message):
                do { try socket.send(to: peer, frames: WireCodec.encode(message)) } catch {
                    failure = (peer, "\(error)")
                }
            case .dispatch(let peer, let order):
                let hiddenSize = state.shape.hiddenSize
                let dispatch = WireMessage.Dispatch(
                    requestID: order.requestID, step: order.step, layer: order.layer,
                    rowExpertOffsets: order.batch.rowExpertOffsets.map { Int($0) },
                    expertIDs: order.batch.expertIDs.map { ExpertID(Int($0)) }, weights: order.batch.weights,
                    hiddenStates: HiddenStates(
                        rowCount: order.batch.rowCount, hiddenSize: hiddenSize,
                        values: DispatchPlan.gather(order.batch, from: state.hidden(of: order.flight), hiddenSize: hiddenSize),
                        dtype: options.wireDType))
                let frames = WireCodec.encode(.dispatch(dispatch))
                do {
                    try socket.send(to: peer, frames: frames)
                    if sentBytes.count > 100_000 { sentBytes.removeAll() }
                    sentBytes[order.step] = frames.reduce(0) { $0 + $1.count }
                } catch {
                    failure = (peer, "\(error)")
                }
            case .log(let level, let message):
                logger.log(level: level, "\(message)")
            case .answered:
                break  // recorded by `handle(frames:from:)`, which knows the bytes received
            case .arbitrate(let order):
                queue.append(contentsOf: state.arbitrated(order, outputs: computeLocally(order), now: now))
            case .faulty(let peer, let worker, let reason):
                logger.error("VERIFICATION FAILED: worker \(worker) (\(describeLink(of: peer))) is taken out of the placement: \(reason)")
            }
            if let (peer, reason) = failure {
                queue.append(contentsOf: state.handle(.sendFailed(peer, reason: reason), now: now))
            }
        }
    }

    /// The coordinator's own computation of the rows two workers answered differently, from its own
    /// copy of the experts (only those of the order, read from the memory map), on the hidden states
    /// exactly as the workers decoded them from the wire.
    /// - Returns: per row set of the order, [rows, hiddenSize], f32.
    private func computeLocally(_ order: ArbitrationOrder) -> Result<[[Float]], GenerationError> {
        let hiddenSize = state.shape.hiddenSize
        let hidden = state.hidden(of: order.flight)
        let experts = Set(order.rows.flatMap { rows in rows.expertIDs.map { LayerExpert(layer: order.layer, expert: ExpertID(Int($0))) } })
        do {
            let store = try ExpertStore(
                checkpoint: checkpoint, experts: experts.sorted(), arithmetic: options.arithmetic,
                quantization: options.quantization)
            return .success(try order.rows.map { rows in
                let sent = HiddenStates(
                    rowCount: rows.rowCount, hiddenSize: hiddenSize,
                    values: DispatchPlan.gather(rows, from: hidden, hiddenSize: hiddenSize), dtype: options.wireDType)
                return try store.compute(
                    layer: order.layer, hidden: sent.floats(), rowCount: rows.rowCount,
                    rowExpertOffsets: rows.rowExpertOffsets, expertIDs: rows.expertIDs, weights: rows.weights)
            })
        } catch {
            return .failure(.expertsFailed("computing \(order.layer) in the coordinator: \(error)"))
        }
    }

    /// "key NAME (Z85), address ADDRESS" of a worker peer, as far as known.
    private func describeLink(of peer: PeerIdentity) -> String {
        let link = workerLinks[peer]
        let key: String
        if let curve = options.curve {
            if let name = link?.keyName {
                let texts = curve.allowed.filter { $0.value == name }.map(\.key.z85).sorted()
                key = "key \(name)" + (texts.isEmpty ? "" : " (\(texts.joined(separator: ", ")))")
            } else {
                key = "key unknown"
            }
        } else {
            key = "no key: --insecure"
        }
        return "\(key), address \(link?.address ?? "unknown"), peer \(peer)"
    }

    /// Sends to a client (or a worker at shutdown); a failure is only logged.
    private func sendQuietly(_ message: WireMessage, to peer: PeerIdentity) {
        do { try socket.send(to: peer, frames: WireCodec.encode(message)) } catch {
            logger.warning("sending \(message.kind) to \(state.name(of: peer) ?? "peer \(peer)") failed: \(error)")
        }
    }
}

/// The workers' state, for /metrics.
public struct ClusterMetrics: Sendable, Equatable {
    /// Worker slots in the placement.
    public var configured: Int
    /// Slots with a ready worker.
    public var up: Int
    public var counters: ClusterCounters
}

/// Coordinator options that cannot work together or are out of range.
public struct CoordinatorOptionsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

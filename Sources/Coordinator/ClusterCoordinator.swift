// The coordinator's side of the cluster: one ROUTER socket that workers and clients connect to.
//
// Registration (HELLO → WELCOME + ASSIGN → READY), heartbeats, refusals, and the per-layer
// dispatch/combine of every step all happen on the thread that created the coordinator: the
// socket is confined to it (ZeroMQ sockets are not thread-safe). Generation is synchronous: while
// a step waits for its COMBINEs, other messages (a worker registering, a client's request) are
// handled or queued, so nothing is lost and nothing blocks the step.
public import Foundation
public import Logging
public import Models
public import Tensors
import Transport
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
    /// How long a step waits for a worker's COMBINE before the request fails.
    public var dispatchTimeout: Duration
    /// How workers multiply by bf16-stored expert weights (sent in ASSIGN; it must match the
    /// coordinator's own model for distributed runs to equal in-process ones).
    public var arithmetic: BFloat16Arithmetic
    /// The element type of the hidden states in DISPATCH (workers always answer COMBINE in f32, so
    /// that tokens do not depend on the placement). bf16 halves the bytes sent; with bf16 fast
    /// arithmetic it changes no result (the products round their inputs to bf16 anyway).
    public var wireDType: WireDType
    /// How workers hold the expert weights (sent in ASSIGN).
    public var quantization: WeightQuantization

    public init(
        bind: String, workerCount: Int, workerNames: [String]? = nil, placementFile: URL? = nil,
        placementJSON: String? = nil, dispatchTimeout: Duration = .seconds(60),
        arithmetic: BFloat16Arithmetic = .exact, wireDType: WireDType = .f32, quantization: WeightQuantization = .none
    ) {
        self.placementJSON = placementJSON
        self.bind = bind
        self.workerCount = workerCount
        self.workerNames = workerNames
        self.placementFile = placementFile
        self.dispatchTimeout = dispatchTimeout
        self.arithmetic = arithmetic
        self.wireDType = wireDType
        self.quantization = quantization
    }
}

/// Runs the coordinator side of the protocol on the calling thread.
public final class ClusterCoordinator: ExpertExecutor {
    /// A registered worker filling one placement slot.
    struct Slot {
        var peer: PeerIdentity
        var name: String
        var pid: Int
        /// True once the worker has loaded its first assignment.
        var ready: Bool
        /// ASSIGNs sent and not yet answered with READY (the worker answers them in order).
        var assignsInFlight: Int
    }

    /// A placement waiting for its workers to load their new experts.
    struct PendingPlacement {
        let placement: Placement
        let ticket: PlacementTicket
        let staged: ContinuousClock.Instant
    }

    public let endpoint: String
    /// The placement dispatches use; replaced between steps by a staged one once its workers are ready.
    public private(set) var placement: Placement
    private var pending: PendingPlacement?
    private var nextTicket: UInt64 = 0
    private var placementOutcomes: [PlacementTicket: PlacementOutcome] = [:]
    let shape: ModelShape
    let fingerprint: String
    let modelPath: String
    let options: CoordinatorOptions
    let logger: Logger
    private let socket: RouterSocket
    /// True when the placement file fixes the worker names.
    private let namedSlots: Bool
    private var slots: [Slot?]
    private var pendingClientRequests: [(PeerIdentity, WireMessage.GenerateRequest)] = []
    private var remoteClients: [UInt64: (PeerIdentity, ClientRequestID)] = [:]
    private var nextRemoteToken: UInt64 = 0
    private var nextRequestID: UInt64 = 0
    private var currentRequestID = RequestID(0)
    private var nextStep: UInt64 = 0
    /// One dispatch of a layer's experts, sent and not yet collected.
    struct InFlight {
        let layer: LayerIndex
        let plan: DispatchPlan
        let tokenCount: Int
        /// Per worker slot: its rows, when it was sent and its size in bytes, and its reply.
        var outstanding: [Int: DispatchPlan.WorkerBatch] = [:]
        var sent: [Int: (at: ContinuousClock.Instant, bytes: Int)] = [:]
        var partials: [Int: [Float]] = [:]
    }
    /// Dispatches in flight, by step (several when a step runs in micro-batches).
    private var inFlight: [StepIndex: InFlight] = [:]
    /// The most dispatches in flight at once so far (the micro-batches of a step): a step then
    /// holds up to layers × workers × this many observations.
    private var mostInFlight = 1
    private var nextWorkerID: UInt32 = 0
    /// Dispatches measured since the engine loop last took them (`takeDispatchObservations`).
    /// The scheduler takes them after every step; `generate` (one request, no scheduler) does not,
    /// so the list is bounded to a few steps' worth.
    private var observations: [WorkerDispatchObservation] = []

    /// Binds the worker socket.
    /// - Throws: `PlacementError` for a bad placement, `TransportError` when the address cannot be bound.
    public init(checkpoint: Checkpoint, options: CoordinatorOptions, logger: Logger) throws {
        let shape = checkpoint.shape
        if let file = options.placementFile {
            placement = try Placement.load(from: file, expertCounts: shape.expertCounts)
            namedSlots = true
        } else if let json = options.placementJSON {
            placement = try Placement.load(
                json: Data(json.utf8), source: "--placement-json", expertCounts: shape.expertCounts)
            namedSlots = true
        } else {
            placement = try Placement.even(
                expertCounts: shape.expertCounts,
                workerNames: options.workerNames ?? (0..<options.workerCount).map { "slot\($0)" })
            namedSlots = options.workerNames != nil
        }
        self.shape = shape
        self.fingerprint = checkpoint.fingerprint
        self.modelPath = checkpoint.directory.path
        self.options = options
        self.logger = logger
        slots = Array(repeating: nil, count: placement.workerCount)
        socket = try RouterSocket(context: ZMQContext(), bind: options.bind)
        endpoint = socket.boundEndpoint
    }

    /// Worker slots with a worker that has loaded its experts.
    public var readyWorkerCount: Int { slots.filter { $0?.ready == true }.count }

    /// True when every slot has a ready worker.
    public var isReady: Bool { readyWorkerCount == placement.workerCount }

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
        while !isReady {
            if shouldStop() { throw .unavailable("stopped while waiting for workers") }
            if let reason = abandoned() { throw .unavailable(reason) }
            if let deadline, clock.now >= deadline {
                throw .unavailable(
                    "only \(readyWorkerCount) of \(placement.workerCount) workers were ready after \(timeout!); "
                        + "start workers with: switchyard worker --coordinator \(endpoint) --model \(modelPath)")
            }
            if clock.now - lastReport >= .seconds(10) {
                logger.info("waiting for workers: \(readyWorkerCount) of \(placement.workerCount) ready at \(endpoint)")
                lastReport = clock.now
            }
            pump(timeout: .milliseconds(100))
        }
    }

    // MARK: engine loop hooks

    public var readiness: HealthStatus {
        isReady
            ? .ready
            : .notReady(reason: "\(readyWorkerCount) of \(placement.workerCount) workers are ready; start workers with: "
                + "switchyard worker --coordinator \(endpoint) --model \(modelPath)")
    }

    public func idle(timeout: Duration) {
        pump(timeout: timeout)
        // Drain whatever else is queued without waiting.
        while let (peer, frames) = receive(timeout: .zero) { handle(frames: frames, from: peer) }
        switchPlacementIfReady()
    }

    public func prepareStep() {
        // A step that failed outside the executor (in the model) may have left dispatches in flight.
        inFlight.removeAll()
        switchPlacementIfReady()
    }

    // MARK: placement changes

    public var currentPlacement: Placement? { placement }

    /// Stages `newPlacement`: every worker is told to load the union of its current and new experts;
    /// once all have answered READY, the next step boundary switches to it and the workers drop the
    /// experts they no longer hold. A placement staged before and not yet applied is superseded.
    /// - Throws: `PlacementError` when the placement names other workers or does not fit the model.
    public func stagePlacement(_ newPlacement: Placement) throws(PlacementError) -> PlacementTicket {
        guard newPlacement.expertCounts == placement.expertCounts else {
            throw PlacementError(
                "the placement has \(newPlacement.layerCount) layers with experts per layer \(newPlacement.expertCounts), "
                    + "but the model has \(placement.layerCount) with \(placement.expertCounts)")
        }
        let reordered = try newPlacement.reordered(as: placement.workerNames)
        if let superseded = pending {
            placementOutcomes[superseded.ticket] = .failed("superseded by a newer placement before it was applied")
        }
        nextTicket += 1
        let ticket = PlacementTicket(nextTicket)
        pending = PendingPlacement(placement: reordered, ticket: ticket, staged: .now)
        for index in slots.indices where slots[index] != nil {
            let experts = assignment(ofSlot: index)
            guard send(assignment(experts), to: slots[index]!.peer) else {
                // Without its new experts this worker could not serve the placement: give it up.
                pending = nil
                placementOutcomes[ticket] = .failed(
                    "worker \(slots[index]!.name) could not be sent its new experts; the placement is unchanged")
                return ticket
            }
            slots[index]!.assignsInFlight += 1
        }
        logger.info("placement \(ticket.rawValue) staged; waiting for the workers to load their new experts")
        switchPlacementIfReady()
        return ticket
    }

    /// What became of a staged placement.
    public func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome {
        if pending?.ticket == ticket { return .pending }
        return placementOutcomes[ticket] ?? .failed("unknown placement ticket \(ticket.rawValue)")
    }

    /// The experts a slot must hold now: its current ones, plus the staged placement's.
    private func assignment(ofSlot slot: Int) -> [LayerExpert] {
        let current = placement.experts(ofWorker: slot)
        guard let pending else { return current }
        let held = Set(current)
        return current + pending.placement.experts(ofWorker: slot).filter { !held.contains($0) }
    }

    /// Between steps: switches to the staged placement once every worker holds its experts, or
    /// gives it up when the workers have not loaded them within the dispatch timeout.
    private func switchPlacementIfReady() {
        guard let staged = pending else { return }
        let loaded = slots.allSatisfy { $0 != nil && $0!.ready && $0!.assignsInFlight == 0 }
        guard loaded else {
            if ContinuousClock.now - staged.staged > options.dispatchTimeout {
                pending = nil
                let reason =
                    "the workers did not load the new experts within \(options.dispatchTimeout) "
                    + "(\(readyWorkerCount) of \(placement.workerCount) ready); the placement is unchanged"
                placementOutcomes[staged.ticket] = .failed(reason)
                logger.warning("placement \(staged.ticket.rawValue) abandoned: \(reason)")
            }
            return
        }
        pending = nil
        placement = staged.placement
        placementOutcomes[staged.ticket] = .applied
        // Now the workers may drop what they no longer hold; dispatches after this ASSIGN only use
        // the new placement, and each worker handles its messages in order.
        for index in slots.indices {
            if send(assignment(placement.experts(ofWorker: index)), to: slots[index]!.peer) {
                slots[index]!.assignsInFlight += 1
            }
        }
        let replicas = placement.holders.joined().reduce(0) { $0 + $1.count }
        logger.info(
            "placement \(staged.ticket.rawValue) applied: \(replicas) expert replicas on \(placement.workerCount) workers")
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
            send(.generateResult(.init(clientRequestID: clientID, resultJSON: json)), to: peer)
            logger.info("\(clientID): \(result.promptTokenIDs.count) prompt + \(result.completionTokenIDs.count) completion tokens")
        case .failure(let error):
            let code: WireMessage.ErrorReport.Code = if case .invalidRequest = error { .badRequest } else { .internal }
            send(.error(.init(code: code, message: error.description)), to: peer)
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
        for case let slot? in slots {
            send(.bye(.init(reason: reason)), to: slot.peer)
        }
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
        (0..<placement.workerCount).map { index in
            WorkerSummary(name: slots[index]?.name ?? placement.workerNames[index], experts: placement.experts(ofWorker: index))
        }
    }

    public var dispatchWorkerNames: [String] {
        (0..<placement.workerCount).map { slots[$0]?.name ?? placement.workerNames[$0] }
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

    /// Sends one DISPATCH per worker for `hidden`'s rows, as a step of its own; ``collectExperts(_:)``
    /// waits for the COMBINEs. Several may be in flight (micro-batches); if one fails, all are dropped.
    public func dispatchExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> ExpertDispatch {
        nextStep += 1
        let step = StepIndex(nextStep)
        let hiddenSize = shape.hiddenSize
        var flight = InFlight(
            layer: layer, plan: DispatchPlan(routing: routing, layer: layer, placement: placement),
            tokenCount: routing.tokenCount)
        do throws(GenerationError) {
            for batch in flight.plan.batches {
                guard let slot = slots[batch.slot], slot.ready else {
                    throw .unavailable(
                        "worker slot \(placement.workerNames[batch.slot]) has no ready worker for \(layer)")
                }
                let dispatch = WireMessage.Dispatch(
                    requestID: currentRequestID, step: step, layer: layer,
                    rowExpertOffsets: batch.rowExpertOffsets.map { Int($0) },
                    expertIDs: batch.expertIDs.map { ExpertID(Int($0)) }, weights: batch.weights,
                    hiddenStates: HiddenStates(
                        rowCount: batch.rowCount, hiddenSize: hiddenSize,
                        values: DispatchPlan.gather(batch, from: hidden, hiddenSize: hiddenSize),
                        dtype: options.wireDType))
                let frames = WireCodec.encode(.dispatch(dispatch))
                guard send(frames, kind: .dispatch, to: slot.peer) else {
                    throw .expertsFailed(
                        "worker \(slot.name) is unreachable (sending \(layer) of \(step) failed)")
                }
                flight.outstanding[batch.slot] = batch
                flight.sent[batch.slot] = (ContinuousClock.now, frames.reduce(0) { $0 + $1.count })
            }
        } catch {
            inFlight.removeAll()
            throw error
        }
        inFlight[step] = flight
        mostInFlight = max(mostInFlight, inFlight.count)
        return .sent(step: step.rawValue)
    }

    /// Waits for the COMBINEs of a dispatch (taking those of other dispatches in flight as they
    /// come) and returns their combined output.
    public func collectExperts(_ dispatch: ExpertDispatch) throws(GenerationError) -> [Float] {
        switch dispatch {
        case .computed(let output):
            return output
        case .sent(let raw):
            guard inFlight[StepIndex(raw)] != nil else {
                throw .expertsFailed("collecting experts that were not dispatched (or were dropped after a failure)")
            }
            do throws(GenerationError) {
                return try collect(StepIndex(raw))
            } catch {
                inFlight.removeAll()
                throw error
            }
        }
    }

    /// Whether the dispatch of `step` is in flight and still waits for worker slot `slot`'s reply.
    private func awaits(_ step: StepIndex, from slot: Int) -> Bool {
        guard let flight = inFlight[step] else { return false }
        return flight.outstanding[slot] != nil && flight.partials[slot] == nil
    }

    private func collect(_ step: StepIndex) throws(GenerationError) -> [Float] {
        let hiddenSize = shape.hiddenSize
        let clock = ContinuousClock()
        let deadline = clock.now + options.dispatchTimeout
        while let flight = inFlight[step], flight.partials.count < flight.outstanding.count {
            let layer = flight.layer
            let remaining = deadline - clock.now
            guard remaining > .zero else {
                let late = flight.outstanding.keys.filter { flight.partials[$0] == nil }.sorted()
                    .map { slots[$0]?.name ?? placement.workerNames[$0] }
                throw .expertsFailed(
                    "worker \(late.joined(separator: ", ")) did not answer \(layer) of \(step) within \(options.dispatchTimeout)")
            }
            guard let (peer, frames) = receive(timeout: remaining, spin: Self.replySpin) else { continue }
            // A reply only counts from a worker that some dispatch in flight still waits for.
            guard let slotIndex = slots.firstIndex(where: { $0?.peer == peer }),
                inFlight.keys.contains(where: { awaits($0, from: slotIndex) })
            else {
                handle(frames: frames, from: peer)
                continue
            }
            let name = slots[slotIndex]!.name
            let message: WireMessage
            do { message = try WireCodec.decode(frames) } catch {
                logger.warning("bad frame from worker \(name) while waiting for \(layer): \(error)")
                send(.error(error.errorReport(requestID: currentRequestID, layer: layer)), to: peer)
                continue
            }
            switch message {
            case .combine(let combine) where combine.requestID == currentRequestID && awaits(combine.step, from: slotIndex):
                let answered = inFlight[combine.step]!
                let batch = answered.outstanding[slotIndex]!
                guard combine.layer == answered.layer, combine.outputs.rowCount == batch.rowCount,
                    combine.outputs.hiddenSize == hiddenSize
                else {
                    throw .expertsFailed(
                        "worker \(name) answered \(answered.layer) of \(combine.step) with \(combine.outputs.rowCount) rows × "
                            + "\(combine.outputs.hiddenSize) for \(combine.layer), but \(batch.rowCount) rows × \(hiddenSize) were dispatched")
                }
                inFlight[combine.step]!.partials[slotIndex] = combine.outputs.floats()
                let sent = answered.sent[slotIndex]!
                let roundTrip = (clock.now - sent.at).components
                // One step holds at most layers × workers dispatches per micro-batch; more means nobody takes them.
                if observations.count >= 4 * shape.layerCount * placement.workerCount * mostInFlight {
                    observations.removeAll(keepingCapacity: true)
                }
                observations.append(WorkerDispatchObservation(
                    layer: answered.layer, worker: name, rowCount: batch.rowCount, expertRowCount: batch.expertIDs.count,
                    bytesSent: sent.bytes, bytesReceived: frames.reduce(0) { $0 + $1.count },
                    computeMicroseconds: Int(clamping: combine.computeMicroseconds),
                    roundTripMicroseconds: Int(roundTrip.seconds) * 1_000_000 + Int(roundTrip.attoseconds / 1_000_000_000_000)))
            case .error(let report) where report.requestID == currentRequestID:
                throw .expertsFailed("worker \(name) could not compute \(layer): \(report.message)")
            case .bye(let bye):
                slots[slotIndex] = nil
                throw .expertsFailed("worker \(name) left while computing \(layer) (\(bye.reason))")
            default:
                handle(message, from: peer)
            }
        }
        let flight = inFlight.removeValue(forKey: step)!
        // Added in a fixed order, so the result depends neither on arrival order nor on placement.
        return flight.plan.combine(
            flight.plan.batches.map { flight.partials[$0.slot]! }, tokenCount: flight.tokenCount,
            hiddenSize: hiddenSize)
    }

    /// An ASSIGN of `experts` with this coordinator's arithmetic and quantization (every ASSIGN
    /// carries them: a worker rebuilds its store from each one).
    private func assignment(_ experts: [LayerExpert]) -> WireMessage {
        .assign(.init(experts: experts, arithmetic: options.arithmetic, quantization: options.quantization))
    }

    // MARK: message handling

    /// Receives and handles at most one message.
    private func pump(timeout: Duration) {
        guard let (peer, frames) = receive(timeout: timeout) else { return }
        handle(frames: frames, from: peer)
    }

    /// How long a wait for a dispatch's replies polls before it sleeps: replies come back within
    /// a few milliseconds, and taking them without a wake-up saves tens of microseconds a layer.
    static let replySpin: Duration = .milliseconds(2)

    private func receive(timeout: Duration, spin: Duration = .zero) -> (PeerIdentity, [[UInt8]])? {
        do {
            return try socket.receive(timeout: timeout, spin: spin)
        } catch {
            logger.error("receiving on \(endpoint) failed: \(error)")
            return nil
        }
    }

    @discardableResult
    private func send(_ message: WireMessage, to peer: PeerIdentity) -> Bool {
        send(WireCodec.encode(message), kind: message.kind, to: peer)
    }

    /// Sends an encoded message.
    private func send(_ frames: [[UInt8]], kind: MessageKind, to peer: PeerIdentity) -> Bool {
        do {
            try socket.send(to: peer, frames: frames)
            return true
        } catch {
            logger.warning("sending \(kind) to \(peerName(peer)) failed: \(error)")
            return false
        }
    }

    private func peerName(_ peer: PeerIdentity) -> String {
        slots.first { $0?.peer == peer }??.name ?? "peer \(peer)"
    }

    private func handle(frames: [[UInt8]], from peer: PeerIdentity) {
        do {
            handle(try WireCodec.decode(frames), from: peer)
        } catch {
            let code: WireMessage.ErrorReport.Code = if case .protocolMismatch = error { .versionMismatch } else { .badFrame }
            logger.warning("refused a message from \(peerName(peer)): \(error)")
            var report = error.errorReport()
            report.code = code
            send(.error(report), to: peer)
        }
    }

    private func handle(_ message: WireMessage, from peer: PeerIdentity) {
        let slotIndex = slots.firstIndex { $0?.peer == peer }
        switch message {
        case .hello(let hello):
            register(hello, from: peer)
        case .ready(let ready):
            guard let slotIndex else {
                send(.error(.init(code: .notReady, message: "unknown worker: send HELLO first")), to: peer)
                return
            }
            let wasReady = isReady
            slots[slotIndex]!.assignsInFlight = max(0, slots[slotIndex]!.assignsInFlight - 1)
            if slots[slotIndex]!.assignsInFlight == 0 { slots[slotIndex]!.ready = true }
            logger.info(
                "worker \(slots[slotIndex]!.name) ready: \(ready.loadedExpertCount) experts loaded in \(String(format: "%.2f", ready.loadSeconds)) s (\(readyWorkerCount) of \(placement.workerCount) ready)"
            )
            if isReady && !wasReady { logger.info("all \(placement.workerCount) workers ready; serving") }
        case .heartbeat(let beat):
            if slotIndex == nil {
                send(.error(.init(code: .notReady, message: "unknown worker: send HELLO first")), to: peer)
            } else {
                send(.heartbeat(beat), to: peer)
            }
        case .bye(let bye):
            if let slotIndex {
                logger.warning("worker \(slots[slotIndex]!.name) left: \(bye.reason)")
                slots[slotIndex] = nil
            }
        case .generateRequest(let request):
            pendingClientRequests.append((peer, request))
        case .combine(let combine):
            logger.debug("ignored a late COMBINE from \(peerName(peer)) for \(combine.requestID) \(combine.step)")
        case .error(let report):
            logger.warning("\(peerName(peer)) reported: \(report.message)")
        case .welcome, .assign, .dispatch, .generateResult:
            send(.error(.init(code: .badRequest, message: "the coordinator does not accept \(message.kind)")), to: peer)
        }
    }

    private func register(_ hello: WireMessage.Hello, from peer: PeerIdentity) {
        func refuse(_ code: WireMessage.ErrorReport.Code, _ reason: String) {
            logger.warning("refused worker \(hello.workerName) (pid \(hello.pid)): \(reason)")
            send(.error(.init(code: code, message: reason)), to: peer)
        }
        guard hello.modelFingerprint == fingerprint else {
            refuse(
                .modelMismatch,
                "worker \(hello.workerName) serves another model (fingerprint \(hello.modelFingerprint.prefix(16))), "
                    + "but the coordinator serves \(modelPath) (fingerprint \(fingerprint.prefix(16))); "
                    + "start the worker with --model pointing at a copy of the coordinator's checkpoint")
            return
        }
        // A worker that registers again (restarted, or its coordinator restarted) keeps its slot.
        var slotIndex = slots.firstIndex { $0?.peer == peer || $0?.name == hello.workerName }
        if slotIndex == nil {
            if namedSlots {
                guard let named = placement.workerNames.firstIndex(of: hello.workerName) else {
                    refuse(
                        .badRequest,
                        "no worker named \(hello.workerName) in the placement file; expected one of: \(placement.workerNames.joined(separator: ", "))")
                    return
                }
                slotIndex = named
            } else {
                slotIndex = slots.firstIndex { $0 == nil }
            }
        }
        guard let slotIndex else {
            refuse(.badRequest, "all \(placement.workerCount) worker slots are taken (\(slots.compactMap { $0?.name }.joined(separator: ", ")))")
            return
        }
        slots[slotIndex] = Slot(peer: peer, name: hello.workerName, pid: hello.pid, ready: false, assignsInFlight: 1)
        nextWorkerID += 1
        // During a placement change the worker also loads what the staged placement gives it.
        let experts = assignment(ofSlot: slotIndex)
        send(.welcome(.init(workerID: WorkerID(nextWorkerID), coordinatorName: ProcessInfo.processInfo.hostName)), to: peer)
        send(
            assignment(experts),
            to: peer)
        logger.info("worker \(hello.workerName) (pid \(hello.pid)) registered; assigned \(experts.count) experts")
    }
}

// The scheduler: continuous batching over one engine thread.
//
// Front ends (the HTTP API, on any thread) submit requests through the thread-safe `Scheduler`;
// one engine thread runs `Scheduler.run`, which owns the expert executor (and so the worker
// socket), merges every running sequence into one step per iteration (one dispatch per worker per
// MoE layer for the whole batch), samples, and streams each sequence's tokens to its consumer.
// New requests join between steps; cancelled ones leave between steps and free their KV memory.
import Dispatch
import Foundation
import Models
import Synchronization
import Tensors
public import Tokenization
import Transport

/// Runs generation requests with continuous batching. Thread-safe; `run` must be called on one
/// dedicated thread.
public final class Scheduler: GenerationService {
    public let modelName: String
    public let tokenizer: Tokenizer
    public let limits: SchedulerLimits
    let engine: GenerationEngine
    private let shared: Mutex<SharedState>
    /// The accounting's time origin.
    private let started = ContinuousClock.now
    /// Wakes the engine loop out of its wait (on the worker socket too) when work arrives.
    private let wake: WakeSignal

    /// State shared between submitting threads and the engine thread.
    struct SharedState: ~Copyable {
        var submissions: [Submission] = []
        var cancelled: Set<SequenceID> = []
        var nextID: UInt64 = 0
        var waitingCount = 0
        var health: HealthStatus = .notReady(reason: "the engine has not started")
        var metrics = EngineMetrics()
        var stopping = false
        var load: ExpertLoadAccounting
        /// The executor's placement as of the last engine iteration (nil: experts in-process).
        var placement: Placement?
        /// Placement changes asked for, not yet seen by the engine thread.
        var placementRequests: [PlacementRequest] = []
    }

    /// A placement change asked for through `applyPlacement`.
    struct PlacementRequest: Sendable {
        let placement: Placement
        let continuation: CheckedContinuation<Result<Placement, PlacementChangeError>, Never>
    }

    /// A request accepted by `submit`, not yet seen by the engine thread.
    struct Submission: Sendable {
        let id: SequenceID
        let request: GenerationRequest
        let promptIDs: [Int32]
        let continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
        let submitted: ContinuousClock.Instant
    }

    public init(engine: GenerationEngine, modelName: String, limits: SchedulerLimits) {
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.modelName = modelName
        self.limits = limits
        shared = Mutex(SharedState(load: ExpertLoadAccounting(expertCounts: engine.model.shape.expertCounts)))
        do {
            wake = try WakeSignal()
        } catch {
            // Only when the process has no file descriptors left.
            preconditionFailure("the engine loop cannot make its wake-up pipe: \(error)")
        }
    }

    /// Publishes the executor's health as it changes, also in the middle of a step (a worker
    /// lost while a step waits for its experts).
    public func publishHealth(_ health: HealthStatus) {
        shared.withLock { $0.health = health }
    }

    /// `--max-model-len` when given (never above the model's), else the model's `max_position_embeddings`.
    public var contextLength: Int { min(limits.maxModelLength ?? .max, engine.model.shape.maxPositionEmbeddings) }

    public func health() -> HealthStatus { shared.withLock { $0.health } }

    public func metrics() -> EngineMetrics {
        shared.withLock { state in
            var metrics = state.metrics
            // Accepted requests the engine has not taken yet wait too (it takes them at its next
            // loop, which a long step delays).
            metrics.waitingRequests = state.waitingCount + state.submissions.count
            let whole = LoadPeriodReport(state.load.whole, workerOrder: state.load.workerNames)
            metrics.layerBalancedness = whole.balancedness
            metrics.moeLayers = whole.moeLayers
            metrics.layerWorkerBalancedness = whole.workerBalancedness
            metrics.workers = whole.workers.map { worker in
                WorkerMetrics(
                    name: worker.name, load: worker.total,
                    roundTripSeconds: state.load.roundTripHistograms[worker.name]
                        ?? Histogram(upperBounds: ExpertLoadAccounting.dispatchBuckets),
                    computeSeconds: state.load.computeHistograms[worker.name]
                        ?? Histogram(upperBounds: ExpertLoadAccounting.dispatchBuckets))
            }
            return metrics
        }
    }

    /// The sliding window `GET /v1/expert_load` uses when none is given.
    public static let defaultLoadWindow = "60s"

    public func expertLoad(window: String?) throws(SubmitError) -> ExpertLoadReport {
        let now = ContinuousClock.now - started
        return try shared.withLock { (state: inout SharedState) throws(SubmitError) -> ExpertLoadReport in
            let seconds: Int
            do throws(LoadWindowError) {
                seconds = try state.load.checkedWindowSeconds(window ?? Self.defaultLoadWindow)
            } catch {
                throw .invalid(field: "window", message: error.description)
            }
            return state.load.report(windowSeconds: seconds, at: now)
        }
    }

    public func startExpertLoadRecording() -> ExpertLoadRecording {
        let now = ContinuousClock.now - started
        return shared.withLock { state in
            state.load.startRecording(at: now)
            return state.load.recordingStatus
        }
    }

    public func stopExpertLoadRecording() -> ExpertLoadRecording {
        let now = ContinuousClock.now - started
        return shared.withLock { state in
            state.load.stopRecording(at: now)
            return state.load.recordingStatus
        }
    }

    public func expertLoadRecording() -> ExpertLoadRecording { shared.withLock { $0.load.currentRecording } }

    /// Counts a finished step in the expert-load accounting.
    func record(_ step: StepLoad) {
        let now = ContinuousClock.now - started
        shared.withLock { $0.load.record(step, at: now) }
    }

    /// Lists the workers in the accounting (with zero load until they compute).
    func register(workers: [String]) {
        shared.withLock { $0.load.register(workers: workers) }
    }

    public func applyChatTemplate(
        _ messages: [ChatMessage], tools: [OrderedJSON]?, addGenerationPrompt: Bool, arguments: ChatTemplateArguments
    ) throws(SubmitError) -> String {
        do {
            return try tokenizer.applyChatTemplate(
                conversation: messages.map(\.templateValue), tools: tools, addGenerationPrompt: addGenerationPrompt,
                arguments: arguments)
        } catch {
            throw .invalid(field: "messages", message: "\(error)")
        }
    }

    public func submit(_ request: GenerationRequest) throws(SubmitError) -> AsyncThrowingStream<GenerationEvent, any Error> {
        let promptIDs: [Int32]
        do {
            promptIDs = try engine.checkedPromptTokenIDs(for: request)
        } catch {
            if case .invalidRequest(let field, let message) = error { throw .invalid(field: field, message: message) }
            throw .unavailable(error.description)
        }
        // The vocabulary trie is built once, here on the caller's thread rather than on the engine's.
        if request.adjustments.grammar != nil { _ = engine.vocabulary.get() }
        let needed = promptIDs.count + request.maxTokens
        // The engine checked against the model's context; requests not from HTTP (`generate --coordinator`)
        // meet --max-model-len here.
        guard needed <= contextLength else {
            throw .invalid(
                field: "max_tokens",
                message: "This model's maximum context length is \(contextLength) tokens. However, you requested \(needed) tokens "
                    + "(\(promptIDs.count) in the prompt, \(request.maxTokens) in the completion). Please reduce the length of the prompt or completion.")
        }
        guard needed <= limits.kvCacheTokens else {
            throw .unavailable(
                "the request needs \(needed) KV cache tokens (prompt \(promptIDs.count) + max_tokens \(request.maxTokens)), "
                    + "but the server holds \(limits.kvCacheTokens); lower max_tokens or start the server with a larger --kv-cache-tokens")
        }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let id: SequenceID = try shared.withLock { (state: inout SharedState) throws(SubmitError) -> SequenceID in
            if state.stopping { throw .unavailable("the server is shutting down") }
            switch state.health {
            case .notReady(let reason), .stalled(let reason): throw .unavailable(reason)
            case .ready, .degraded: break
            }
            guard state.waitingCount + state.submissions.count < limits.maxWaitingRequests else {
                throw .queueFull(
                    "\(state.waitingCount + state.submissions.count) requests are waiting (the limit is \(limits.maxWaitingRequests)); retry later")
            }
            state.nextID += 1
            let id = SequenceID(state.nextID)
            state.submissions.append(Submission(
                id: id, request: request, promptIDs: promptIDs, continuation: continuation, submitted: .now))
            return id
        }
        continuation.onTermination = { [weak self] termination in
            guard case .cancelled = termination, let self else { return }
            self.shared.withLock { _ = $0.cancelled.insert(id) }
            self.wake.wake()
        }
        wake.wake()
        return stream
    }

    /// The placement experts are dispatched by; nil when they are computed in-process.
    public func placement() -> Placement? { shared.withLock { $0.placement } }

    /// Parses a placement (placement-file JSON, untrusted) and applies it between steps once every
    /// worker has loaded its new experts. Running requests continue across the switch with the
    /// same tokens. Returns the placement in effect afterwards.
    public func applyPlacement(json: [UInt8]) async -> Result<Placement, PlacementChangeError> {
        guard let current = placement() else {
            return .failure(.unsupported("the experts are computed in-process (serve --workers 0); there is no placement to change"))
        }
        let parsed: Placement
        do {
            parsed = try Placement.decode(Data(json), source: "placement", expertCounts: current.expertCounts)
        } catch {
            return .failure(.invalid(error.description))
        }
        return await withCheckedContinuation { continuation in
            let accepted = shared.withLock { state -> Bool in
                if state.stopping { return false }
                state.placementRequests.append(PlacementRequest(placement: parsed, continuation: continuation))
                return true
            }
            if accepted { wake.wake() } else { continuation.resume(returning: .failure(.failed("the server is shutting down"))) }
        }
    }

    /// Stops accepting requests; `run` returns after failing what is left.
    public func stop() {
        shared.withLock { $0.stopping = true }
        wake.wake()
    }

    /// Runs the engine loop on the calling thread until `stop()` is called or `shouldStop` returns true.
    /// - Parameter rebalancer: when given, the placement is rebalanced automatically from the load
    ///   routed in each of its intervals.
    public func run(
        executor: inout some ExpertExecutor, rebalancer: AutoRebalancer? = nil, shouldStop: () -> Bool = { false }
    ) {
        var rebalancer = rebalancer
        var loop = EngineLoop(scheduler: self)
        var wasReady = false
        var placementWaiters: [(PlacementTicket, PlacementRequest)] = []
        while !shouldStop() && !shared.withLock({ $0.stopping }) {
            let health = executor.readiness
            let requests = shared.withLock { state in
                state.health = health
                state.placement = executor.currentPlacement
                defer { state.placementRequests.removeAll() }
                return state.placementRequests
            }
            if health.runsSteps && !wasReady { register(workers: executor.dispatchWorkerNames) }
            wasReady = health.runsSteps
            if var automatic = rebalancer, let current = executor.currentPlacement {
                let counts = shared.withLock { $0.metrics.expertTokens }
                if let proposed = automatic.decide(cumulative: counts, current: current, now: .now) {
                    _ = try? executor.stagePlacement(proposed)
                }
                rebalancer = automatic
            }
            for request in requests {
                do {
                    placementWaiters.append((try executor.stagePlacement(request.placement), request))
                } catch {
                    request.continuation.resume(returning: .failure(.invalid(error.description)))
                }
            }
            loop.accept(shared.withLock { state in
                defer {
                    // Counted as waiting until the planner's own count replaces it below, so
                    // `submit` never sees fewer waiting requests than there are.
                    state.waitingCount += state.submissions.count
                    state.submissions.removeAll()
                    state.cancelled.removeAll()
                }
                return (state.submissions, state.cancelled)
            })
            for job in executor.takeRemoteJobs() { loop.acceptRemote(job) }
            loop.admit()
            shared.withLock { state in
                state.waitingCount = loop.planner.waiting.count
                state.metrics.waitingRequests = loop.planner.waiting.count
                state.metrics.runningRequests = loop.planner.running.count
                if health.runsSteps && !loop.planner.running.isEmpty {
                    state.metrics.stepRequests.observe(Double(loop.planner.running.count))
                }
                state.metrics.cluster = executor.clusterMetrics
                state.metrics.kvCacheUsage = loop.planner.kvUsage
            }
            defer { placementWaiters = Self.answer(placementWaiters, executor: executor) }
            if health.runsSteps {
                executor.prepareStep()
                if loop.step(executor: &executor) { continue }
            }
            // Nothing to run: sleep until a message, a submission or cancellation (the wake
            // signal), or the next time-driven decision.
            executor.idle(timeout: .milliseconds(250), wakeSignal: wake)
        }
        loop.failAll(.unavailable("the server is shutting down"), executor: &executor)
        let unseen = shared.withLock { state in
            state.stopping = true
            defer { state.placementRequests.removeAll() }
            return state.placementRequests
        }
        for request in placementWaiters.map(\.1) + unseen {
            request.continuation.resume(returning: .failure(.failed("the server is shutting down")))
        }
    }

    /// Resumes the placement requests whose change was applied or failed; returns the others.
    private static func answer(
        _ waiters: [(PlacementTicket, PlacementRequest)], executor: some ExpertExecutor
    ) -> [(PlacementTicket, PlacementRequest)] {
        waiters.filter { ticket, request in
            switch executor.placementOutcome(ticket) {
            case .pending:
                return true
            case .applied:
                request.continuation.resume(returning: .success(executor.currentPlacement ?? request.placement))
            case .failed(let reason):
                request.continuation.resume(returning: .failure(.failed(reason)))
            }
            return false
        }
    }

    func update(_ body: (inout EngineMetrics) -> Void) {
        shared.withLock { body(&$0.metrics) }
    }
}

/// Where a sequence's output goes.
enum SequenceSink {
    case stream(AsyncThrowingStream<GenerationEvent, any Error>.Continuation)
    case remote(RemoteJob)
}

/// One sequence on the engine thread.
struct SequenceState {
    let id: SequenceID
    let request: GenerationRequest
    let promptIDs: [Int32]
    let sink: SequenceSink
    let submitted: ContinuousClock.Instant
    var cache: KVCache?
    var sampler: Sampler
    var processor: SequenceLogitsProcessor
    var decoder: StreamingDecoder
    var stopMatcher: StopMatcher
    /// Tokens that end the sequence, and those masked until `min_tokens` (computed once, not per token).
    let endTokenIDs: Set<Int32>
    let maskedEndTokenIDs: Set<Int32>
    var completion: [Int32] = []
    var logprobs: [TokenLogprob] = []
    var text = ""
    var load: ExpertLoad
    /// Prompt tokens already fed through the model.
    var prefilled = 0
    var firstScheduled: ContinuousClock.Instant?
    var firstToken: ContinuousClock.Instant?
    var lastToken: ContinuousClock.Instant?
}

/// The engine thread's state: not shared, not locked.
struct EngineLoop {
    let scheduler: Scheduler
    var planner: BatchPlanner
    var sequences: [SequenceID: SequenceState] = [:]
    private var nextRemoteID: UInt64 = 1 << 62
    private var stepIndex: UInt64 = 0

    init(scheduler: Scheduler) {
        self.scheduler = scheduler
        planner = BatchPlanner(limits: scheduler.limits)
    }

    var engine: GenerationEngine { scheduler.engine }

    mutating func accept(_ inbox: ([Scheduler.Submission], Set<SequenceID>)) {
        for submission in inbox.0 {
            add(
                id: submission.id, request: submission.request, promptIDs: submission.promptIDs,
                sink: .stream(submission.continuation), submitted: submission.submitted)
        }
        for id in inbox.1 where sequences[id] != nil {
            finish(id, reason: .cancelled)
        }
    }

    mutating func acceptRemote(_ job: RemoteJob) {
        nextRemoteID += 1
        let id = SequenceID(nextRemoteID)
        do {
            let promptIDs = try engine.checkedPromptTokenIDs(for: job.request)
            add(id: id, request: job.request, promptIDs: promptIDs, sink: .remote(job), submitted: .now)
        } catch {
            sequences[id] = nil
            pendingRemoteFailures.append((job, error))
        }
    }

    /// Remote jobs refused before scheduling; reported by the next `step`/`failAll`.
    private var pendingRemoteFailures: [(RemoteJob, GenerationError)] = []

    private mutating func add(
        id: SequenceID, request: GenerationRequest, promptIDs: [Int32], sink: SequenceSink,
        submitted: ContinuousClock.Instant
    ) {
        let configuration = engine.model.shape
        var state = SequenceState(
            id: id, request: request, promptIDs: promptIDs, sink: sink, submitted: submitted, cache: nil,
            sampler: Sampler(request.sampling),
            processor: SequenceLogitsProcessor(request.adjustments, promptIDs: promptIDs, vocabulary: engine.vocabulary.get),
            decoder: engine.tokenizer.makeStreamingDecoder(skipSpecialTokens: request.skipSpecialTokens),
            stopMatcher: StopMatcher(stops: request.stop, includesStop: request.includeStopInText),
            endTokenIDs: engine.endTokenIDs(of: request), maskedEndTokenIDs: engine.maskedEndTokenIDs(of: request),
            load: ExpertLoad(expertCounts: configuration.expertCounts))
        do throws(BatchPlanner.Refusal) {
            try planner.enqueue(id, promptTokens: promptIDs.count, maxTokens: request.maxTokens)
        } catch {
            let message: String = switch error {
            case .queueFull(let waiting): "\(waiting) requests are waiting; retry later"
            case .tooLarge(let needed, let capacity): "the request needs \(needed) KV cache tokens, but the server holds \(capacity)"
            }
            state.cache = nil
            sequences[id] = state
            fail(id, .unavailable(message))
            return
        }
        sequences[id] = state
    }

    /// Admits waiting sequences and gives each its KV cache.
    mutating func admit() {
        for id in planner.admit() {
            guard var state = sequences[id] else { continue }
            state.cache = engine.model.makeCache(capacity: state.promptIDs.count + state.request.maxTokens)
            sequences[id] = state
        }
    }

    /// Runs one step over the running batch.
    /// - Returns: false when there was nothing to run.
    mutating func step(executor: inout some ExpertExecutor) -> Bool {
        for (job, error) in pendingRemoteFailures { executor.finishRemoteJob(job, with: .failure(error)) }
        pendingRemoteFailures.removeAll()
        let plan = planner.planStep()
        guard !plan.entries.isEmpty else { return false }
        stepIndex += 1
        let now = ContinuousClock.now
        var chunks: [[Int32]] = []
        var caches: [KVCache] = []
        var rowRanges: [(Range<Int>, GenerationPhase)] = []
        var row = 0
        for entry in plan.entries {
            var state = sequences[entry.id]!
            if state.firstScheduled == nil {
                state.firstScheduled = now
                let queued = (now - state.submitted).seconds
                scheduler.update { $0.queueTime.observe(queued) }
            }
            let chunk: [Int32]
            let phase: GenerationPhase
            if state.prefilled < state.promptIDs.count {
                chunk = Array(state.promptIDs[state.prefilled..<(state.prefilled + entry.tokenCount)])
                phase = .prefill
            } else {
                chunk = [state.completion.last!]
                phase = .decode
            }
            chunks.append(chunk)
            caches.append(state.cache!)
            state.cache = nil  // moved into `caches` for the step, so the KV arrays are not copied
            sequences[entry.id] = state
            rowRanges.append((row..<(row + chunk.count), phase))
            row += chunk.count
        }

        executor.beginStep(sequences: plan.entries.map(\.id))
        var loads = plan.entries.map { sequences[$0.id]!.load }
        let configuration = engine.model.shape
        var stepLoad = ExpertLoad(expertCounts: configuration.expertCounts)
        let logits: [Float]
        do {
            logits = try engine.model.forward(
                batch: chunks, caches: &caches, microBatchCount: planner.limits.microBatches,
                dispatch: { layer, batchRows, hidden, routing in
                    // Each micro-batch holds whole sequences; `routing` numbers its rows from 0.
                    for (index, (rows, phase)) in rowRanges.enumerated() where batchRows.contains(rows.lowerBound) {
                        let local = (rows.lowerBound - batchRows.lowerBound)..<(rows.upperBound - batchRows.lowerBound)
                        loads[index].record(routing, tokens: local, layer: layer, phase: phase)
                    }
                    stepLoad.record(routing, layer: layer, phase: .decode)
                    return try executor.dispatchExperts(layer: layer, hidden: hidden, routing: routing)
                },
                collect: { dispatch in try executor.collectExperts(dispatch) })
        } catch {
            // The model leaves the caches untouched when a step fails: give them back, then fail
            // the step's sequences with the reason.
            let reason: GenerationError = (error as? GenerationError) ?? .expertsFailed("\(error)")
            // A failed step is not counted: its tokens were not committed.
            _ = executor.takeDispatchObservations()
            for (index, entry) in plan.entries.enumerated() { sequences[entry.id]?.cache = caches[index] }
            for entry in plan.entries { fail(entry.id, reason, executor: &executor) }
            return true
        }
        planner.commit(plan)
        var prefillTokens = 0
        for (rows, phase) in rowRanges where phase == .prefill { prefillTokens += rows.count }
        // `stepLoad` counts the whole step's routing under `decode`; the phases are split by rows here.
        scheduler.record(StepLoad(
            tokensPerExpert: stepLoad.decode, prefillTokenCount: prefillTokens, decodeTokenCount: row - prefillTokens,
            dispatches: executor.takeDispatchObservations()))
        scheduler.update { metrics in
            if metrics.expertTokens.isEmpty {
                metrics.expertTokens = stepLoad.decode.map { $0.map { _ in 0 } }
            }
            for (layer, counts) in stepLoad.decode.enumerated() {
                for (expert, count) in counts.enumerated() { metrics.expertTokens[layer][expert] += UInt64(count) }
            }
        }
        let vocabularySize = engine.model.shape.vocabularySize
        for (index, entry) in plan.entries.enumerated() {
            var state = sequences[entry.id]!
            state.cache = caches[index]
            state.load = loads[index]
            if rowRanges[index].1 == .prefill {
                state.prefilled += entry.tokenCount
                scheduler.update { $0.promptTokensTotal += UInt64(entry.tokenCount) }
            }
            sequences[entry.id] = state
            guard state.prefilled == state.promptIDs.count else { continue }  // mid-prefill: no token yet
            logits.withUnsafeBufferPointer { all in
                let row = UnsafeBufferPointer(rebasing: all[(index * vocabularySize)..<((index + 1) * vocabularySize)])
                emitToken(entry.id, logits: row, executor: &executor)
            }
        }
        return true
    }

    /// Samples the next token of a sequence, streams it, and finishes the sequence when due.
    /// - Parameter logits: [vocabularySize], f32: the sequence's row of the step's logits.
    private mutating func emitToken(
        _ id: SequenceID, logits: UnsafeBufferPointer<Float>, executor: inout some ExpertExecutor
    ) {
        guard var state = sequences[id] else { return }
        let token: Int32
        do {
            token = try state.processor.sample(logits, with: &state.sampler, endOfSequence: state.maskedEndTokenIDs)
        } catch {
            sequences[id] = state
            fail(id, error, executor: &executor)
            return
        }
        let now = ContinuousClock.now
        if let last = state.lastToken {
            let gap = (now - last).seconds
            scheduler.update { $0.interTokenLatency.observe(gap) }
        } else {
            let ttft = (now - state.submitted).seconds
            scheduler.update { $0.timeToFirstToken.observe(ttft) }
            state.firstToken = now
        }
        state.lastToken = now
        state.completion.append(token)
        scheduler.update { $0.generationTokensTotal += 1 }
        let logprob = state.request.logprobs > 0
            ? TokenLogprob(chosen: token, logits: logits, top: state.request.logprobs) : nil
        if let logprob { state.logprobs.append(logprob) }
        let isEnd = state.endTokenIDs.contains(token)
        // As vLLM, the text of the token that ended the sequence is left out unless asked for, and
        // stop strings count only once the completion is past min_tokens.
        let piece = isEnd && !state.request.includeStopInText ? "" : state.decoder.append(token)
        var outcome =
            state.completion.count <= state.request.adjustments.minTokens
            ? StopMatcher.Outcome(released: piece, stopped: false) : state.stopMatcher.append(piece)
        var reason: FinishReason?
        if outcome.stopped {
            reason = .stop
        } else if isEnd || state.processor.isComplete {
            reason = .stop
        } else if state.completion.count == state.request.maxTokens {
            reason = .length
        }
        var trailing = ""
        if reason != nil && !outcome.stopped {
            let flushed = state.stopMatcher.append(state.decoder.finish())
            trailing = flushed.released + (flushed.stopped ? "" : state.stopMatcher.finish())
            if flushed.stopped { reason = .stop }
            outcome = StopMatcher.Outcome(released: outcome.released, stopped: flushed.stopped)
        }
        state.text += outcome.released + trailing
        sequences[id] = state
        if case .stream(let continuation) = state.sink {
            continuation.yield(.token(TokenEvent(tokenID: token, text: outcome.released, logprob: logprob)))
        }
        if let reason { finish(id, reason: reason, trailing: trailing, executor: &executor) }
    }

    /// Ends a sequence: reports it, frees its KV memory, updates the metrics.
    private mutating func finish(
        _ id: SequenceID, reason: FinishReason, trailing: String = "", executor: inout some ExpertExecutor
    ) {
        guard let state = sequences.removeValue(forKey: id) else { return }
        planner.remove(id)
        let elapsed = (ContinuousClock.now - state.submitted).seconds
        let queued = ((state.firstScheduled ?? .now) - state.submitted).seconds
        scheduler.update { metrics in
            metrics.requestLatency.observe(elapsed)
            metrics.finishedRequests[reason.rawValue, default: 0] += 1
        }
        switch state.sink {
        case .stream(let continuation):
            continuation.yield(.finished(FinishEvent(
                reason: reason, promptTokenIDs: state.promptIDs, completionTokenIDs: state.completion,
                trailingText: trailing, expertLoad: state.load, queueSeconds: queued)))
            continuation.finish()
        case .remote(let job):
            var outcome = result(of: state, reason: reason)
            outcome.workers = executor.workerSummaries
            executor.finishRemoteJob(job, with: .success(outcome))
        }
    }

    private mutating func finish(_ id: SequenceID, reason: FinishReason) {
        var none = NoExecutor()
        finish(id, reason: reason, executor: &none)
    }

    /// Fails a sequence with an error and frees its memory.
    private mutating func fail(_ id: SequenceID, _ error: GenerationError, executor: inout some ExpertExecutor) {
        guard let state = sequences.removeValue(forKey: id) else { return }
        planner.remove(id)
        scheduler.update { $0.finishedRequests["error", default: 0] += 1 }
        switch state.sink {
        case .stream(let continuation): continuation.finish(throwing: error)
        case .remote(let job): executor.finishRemoteJob(job, with: .failure(error))
        }
    }

    private mutating func fail(_ id: SequenceID, _ error: GenerationError) {
        guard let state = sequences[id] else { return }
        if case .remote(let job) = state.sink {
            sequences[id] = nil
            planner.remove(id)
            pendingRemoteFailures.append((job, error))
            return
        }
        var none = NoExecutor()
        fail(id, error, executor: &none)
    }

    mutating func failAll(_ error: GenerationError, executor: inout some ExpertExecutor) {
        for (job, failure) in pendingRemoteFailures { executor.finishRemoteJob(job, with: .failure(failure)) }
        pendingRemoteFailures.removeAll()
        for id in Array(sequences.keys) { fail(id, error, executor: &executor) }
    }

    private func result(of state: SequenceState, reason: FinishReason) -> GenerationResult {
        let prefill = ((state.firstToken ?? .now) - (state.firstScheduled ?? state.submitted)).seconds
        let decode = ((state.lastToken ?? .now) - (state.firstToken ?? .now)).seconds
        return GenerationResult(
            promptTokenIDs: state.promptIDs, completionTokenIDs: state.completion, text: state.text,
            finishReason: reason.rawValue, logprobs: state.request.logprobs > 0 ? state.logprobs : nil,
            expertLoad: state.load, workers: [],
            timing: GenerationTiming(
                prefillTokensPerSecond: Double(state.promptIDs.count) / max(prefill, 1e-9),
                decodeTokensPerSecond: Double(max(0, state.completion.count - 1)) / max(decode, 1e-9)))
    }
}

/// Stands in for the executor where a sequence ends outside a step (cancellation, refusal):
/// stream sinks need no executor.
private struct NoExecutor: ExpertExecutor {
    func computeExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws(GenerationError) -> [Float] {
        throw .unavailable("no executor")
    }
    var workerSummaries: [WorkerSummary] { [] }
}

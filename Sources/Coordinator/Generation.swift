// Generation of one request: prefill the prompt, then decode token by token, with the experts of
// every MoE layer computed by an `ExpertExecutor` (in-process or on remote workers).
public import Foundation
public import Transport
public import Models
public import Tensors
public import Tokenization

/// Errors of a generation request; the message names what is wrong and what would be valid.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    /// The request itself is invalid (a parameter out of range, a prompt too long); `field`
    /// names the parameter as the API spells it.
    case invalidRequest(field: String, String)
    /// The experts could not be computed (a worker failed, timed out or answered wrongly).
    case expertsFailed(String)
    /// The cluster is not able to run requests (workers missing, shutting down).
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalidRequest(_, let message): "invalid request: \(message)"
        case .expertsFailed(let message): "expert computation failed: \(message)"
        case .unavailable(let message): "unavailable: \(message)"
        }
    }
}

/// Computes the combined expert output of one MoE layer of one step.
public protocol ExpertExecutor {
    /// - Parameters:
    ///   - hidden: [tokens, hiddenSize], f32, the post-attention-normed hidden states
    ///   - routing: the router's top-k experts and renormalised weights per token
    /// - Returns: [tokens, hiddenSize], f32: per token, the routing-weighted sum of its experts' outputs
    mutating func computeExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> [Float]

    /// Starts the experts of one layer for `hidden`'s rows (a step's micro-batch); their combined
    /// output comes from ``collectExperts(_:)``. Several may be in flight at once, collected in any
    /// order. The default computes at once with ``computeExperts(layer:hidden:routing:)``.
    mutating func dispatchExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> ExpertDispatch

    /// The combined output of a dispatch, as ``computeExperts(layer:hidden:routing:)`` returns it.
    mutating func collectExperts(_ dispatch: ExpertDispatch) throws(GenerationError) -> [Float]

    /// Which worker holds which experts, for reports.
    var workerSummaries: [WorkerSummary] { get }

    /// Whether every expert has a ready worker.
    var readiness: HealthStatus { get }

    /// Called by the engine loop when no step is due: handles background work (worker
    /// registration, heartbeats) until `timeout` passes or `wakeSignal` is woken (new work).
    mutating func idle(timeout: Duration, wakeSignal: WakeSignal?)

    /// The workers' state and fault counters, for /metrics; nil when the experts run in-process.
    var clusterMetrics: ClusterMetrics? { get }

    /// Jobs that arrived over the worker socket (`generate --coordinator`), to be scheduled.
    mutating func takeRemoteJobs() -> [RemoteJob]

    /// Sends a remote job's outcome back to its client.
    mutating func finishRemoteJob(_ job: RemoteJob, with outcome: Result<GenerationResult, GenerationError>)

    /// What each worker did for the dispatches since the last call (rows, bytes, compute and
    /// round-trip time), for the expert-load accounting; empties the list. An executor that
    /// computes the experts in-process dispatches nothing and returns none.
    mutating func takeDispatchObservations() -> [WorkerDispatchObservation]

    /// The workers dispatches go to, in placement order, for the accounting (an idle worker is
    /// reported with zero load); empty when the experts run in-process.
    var dispatchWorkerNames: [String] { get }

    /// Called by the engine loop before each step: the point where a staged placement may take effect.
    mutating func prepareStep()

    /// Called by the engine loop as a step starts, with the sequences it advances (for logs of
    /// the requests a worker fault affected).
    mutating func beginStep(sequences: [SequenceID])

    /// The placement experts are dispatched by; nil when the experts are computed in-process.
    var currentPlacement: Placement? { get }

    /// Starts a change of placement; it takes effect between steps once the workers hold the new experts.
    /// - Throws: `PlacementError` when the placement does not fit the running cluster.
    mutating func stagePlacement(_ placement: Placement) throws(PlacementError) -> PlacementTicket

    /// What became of a staged placement.
    func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome
}

/// Identifies one staged placement change.
public struct PlacementTicket: Hashable, Sendable {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
}

/// The state of a staged placement change.
public enum PlacementOutcome: Sendable, Equatable {
    /// Workers are loading their new experts.
    case pending
    /// Dispatches use the new placement.
    case applied
    /// Not applied; the current placement stays. The message says why.
    case failed(String)
}

/// A job submitted over the coordinator's ZeroMQ socket.
public struct RemoteJob: Sendable {
    /// Opaque to the scheduler; the executor uses it to find the client again.
    public let token: UInt64
    public let request: GenerationRequest
    public init(token: UInt64, request: GenerationRequest) {
        self.token = token
        self.request = request
    }
}

/// One layer's experts for a micro-batch, started by ``ExpertExecutor/dispatchExperts(layer:hidden:routing:)``.
public enum ExpertDispatch: Sendable {
    /// Computed already (in-process executors).
    case computed([Float])
    /// Sent to the workers as the step with this number.
    case sent(step: UInt64)
}

extension ExpertExecutor {
    public mutating func dispatchExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> ExpertDispatch {
        .computed(try computeExperts(layer: layer, hidden: hidden, routing: routing))
    }

    public mutating func collectExperts(_ dispatch: ExpertDispatch) throws(GenerationError) -> [Float] {
        guard case .computed(let output) = dispatch else {
            throw .expertsFailed("collecting experts this executor did not dispatch")
        }
        return output
    }

    public var readiness: HealthStatus { .ready }
    public mutating func idle(timeout: Duration, wakeSignal: WakeSignal?) { wakeSignal?.wait(timeout: timeout) }
    public var clusterMetrics: ClusterMetrics? { nil }
    public mutating func takeRemoteJobs() -> [RemoteJob] { [] }
    public mutating func finishRemoteJob(_ job: RemoteJob, with outcome: Result<GenerationResult, GenerationError>) {}
    public mutating func takeDispatchObservations() -> [WorkerDispatchObservation] { [] }
    public var dispatchWorkerNames: [String] { [] }

    public mutating func prepareStep() {}
    public mutating func beginStep(sequences: [SequenceID]) {}
    public var currentPlacement: Placement? { nil }
    public mutating func stagePlacement(_ placement: Placement) throws(PlacementError) -> PlacementTicket {
        throw PlacementError(
            "the experts are computed in-process (serve --workers 0); there is no placement to change")
    }
    public func placementOutcome(_ ticket: PlacementTicket) -> PlacementOutcome {
        .failed("the experts are computed in-process; there is no placement")
    }
}

/// The experts a worker holds, as reported in results.
public struct WorkerSummary: Sendable, Equatable, Codable {
    public let name: String
    /// `[layer, expert]` pairs.
    public let experts: [[Int]]
    public init(name: String, experts: [LayerExpert]) {
        self.name = name
        self.experts = experts.map { [$0.layer.rawValue, $0.expert.rawValue] }
    }
}

/// The prompt of a request: text for the tokenizer, or token ids as they are.
public enum Prompt: Sendable, Equatable {
    case text(String)
    case tokenIDs([Int32])
}

/// One generation job.
public struct GenerationRequest: Sendable, Equatable {
    public var prompt: Prompt
    /// The number of tokens to generate, at least 1.
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Keep generating after an end-of-sequence token.
    public var ignoreEOS: Bool
    /// How many alternatives to report per token; 0 reports no logprobs.
    public var logprobs: Int
    /// Generation ends when the text contains one of these; the text is cut before it.
    public var stop: [String]
    /// Penalties, biases, `min_tokens` and the `response_format` grammar.
    public var adjustments: LogitsAdjustments
    /// Generation ends when one of these tokens is sampled (vLLM's `stop_token_ids`), even with
    /// `ignoreEOS`; like end-of-sequence tokens they are masked until `min_tokens`.
    public var stopTokenIDs: Set<Int32> = []
    /// Keep a matched stop string, and the text of a stop or end-of-sequence token that ended the
    /// sequence, in the text (vLLM's `include_stop_str_in_output`).
    public var includeStopInText = false
    /// Leave special tokens out of the text (vLLM's `skip_special_tokens`, true by default).
    public var skipSpecialTokens = true

    public init(
        prompt: Prompt, maxTokens: Int, sampling: SamplingParameters = .init(), ignoreEOS: Bool = false,
        logprobs: Int = 0, stop: [String] = [], adjustments: LogitsAdjustments = .init()
    ) {
        self.adjustments = adjustments
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.ignoreEOS = ignoreEOS
        self.logprobs = logprobs
        self.stop = stop
    }
}

/// Throughput of one request.
public struct GenerationTiming: Sendable, Equatable, Codable {
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    /// Bytes one token takes in the sequence's KV cache, every layer (a latent-attention model's
    /// cache holds the compressed latent): `generate` reports it, the benchmark prints it.
    public var keyValueCacheBytesPerToken: Int?
    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_s"
        case decodeTokensPerSecond = "decode_tokens_per_s"
        case keyValueCacheBytesPerToken = "kv_cache_bytes_per_token"
    }

    public init(prefillTokensPerSecond: Double, decodeTokensPerSecond: Double, keyValueCacheBytesPerToken: Int? = nil) {
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.decodeTokensPerSecond = decodeTokensPerSecond
        self.keyValueCacheBytesPerToken = keyValueCacheBytesPerToken
    }
}

/// The outcome of one request; its JSON form is what `switchyard generate --json` prints.
public struct GenerationResult: Sendable, Equatable, Codable {
    public var promptTokenIDs: [Int32]
    public var completionTokenIDs: [Int32]
    public var text: String
    public var finishReason: String
    public var logprobs: [TokenLogprob]?
    public var expertLoad: ExpertLoad
    public var workers: [WorkerSummary]
    public var timing: GenerationTiming

    enum CodingKeys: String, CodingKey {
        case promptTokenIDs = "prompt_token_ids"
        case completionTokenIDs = "completion_token_ids"
        case text
        case finishReason = "finish_reason"
        case logprobs
        case expertLoad = "expert_load"
        case workers
        case timing
    }

    /// One JSON object, keys sorted.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// Runs requests against the dense model, calling an executor for the experts.
public struct GenerationEngine: Sendable {
    public let model: DecoderStack
    public let tokenizer: Tokenizer
    /// The checkpoint's generation_config.json; its `eos_token_id`s end generation too.
    public let generationConfig: GenerationConfig
    /// The end-of-sequence token ids: config.json's, generation_config.json's, and the tokenizer's
    /// (computed once: the scheduler asks for every sampled token).
    public let endOfSequenceTokenIDs: Set<Int32>
    /// The token bytes and trie constrained decoding matches against.
    public let vocabulary: VocabularyIndex

    public init(
        model: DecoderStack, tokenizer: Tokenizer, generationConfig: GenerationConfig = GenerationConfig()
    ) {
        self.model = model
        self.tokenizer = tokenizer
        self.generationConfig = generationConfig
        endOfSequenceTokenIDs = Set(model.shape.eosTokenIDs.map(Int32.init))
            .union(tokenizer.eosTokenID.map { [$0] } ?? []).union(generationConfig.eosTokenIDs)
        vocabulary = VocabularyIndex(tokenizer: tokenizer, vocabularySize: model.shape.vocabularySize)
    }

    /// The prompt's token ids, checked against the vocabulary.
    public func promptTokenIDs(for prompt: Prompt) throws(GenerationError) -> [Int32] {
        let ids: [Int32]
        switch prompt {
        case .text(let text): ids = tokenizer.encode(text)
        case .tokenIDs(let given): ids = given
        }
        guard !ids.isEmpty else { throw .invalidRequest(field: "prompt", "the prompt is empty; give at least one token") }
        let vocabularySize = model.shape.vocabularySize
        if let bad = ids.firstIndex(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw .invalidRequest(
                field: "prompt", "prompt token \(bad) is \(ids[bad]), but token ids must be in 0..<\(vocabularySize)")
        }
        return ids
    }

    /// The tokens that end `request` when sampled: the end-of-sequence tokens unless `ignoreEOS`,
    /// and its `stopTokenIDs`.
    func endTokenIDs(of request: GenerationRequest) -> Set<Int32> {
        (request.ignoreEOS ? [] : endOfSequenceTokenIDs).union(request.stopTokenIDs)
    }

    /// The tokens masked until `min_tokens`: the end-of-sequence tokens (even with `ignoreEOS`, as
    /// vLLM) and `stopTokenIDs`.
    func maskedEndTokenIDs(of request: GenerationRequest) -> Set<Int32> {
        request.stopTokenIDs.isEmpty ? endOfSequenceTokenIDs : endOfSequenceTokenIDs.union(request.stopTokenIDs)
    }

    /// Checks a request's parameters and its prompt against the model.
    /// - Returns: the prompt's token ids
    public func checkedPromptTokenIDs(for request: GenerationRequest) throws(GenerationError) -> [Int32] {
        try request.sampling.validate()
        guard request.maxTokens >= 1 else {
            throw .invalidRequest(field: "max_tokens", "max_tokens is \(request.maxTokens), but must be at least 1")
        }
        guard (0...20).contains(request.logprobs) else {
            throw .invalidRequest(field: "logprobs", "logprobs is \(request.logprobs), but must be between 0 and 20")
        }
        try request.adjustments.validate(vocabularySize: model.shape.vocabularySize, maxTokens: request.maxTokens)
        if let bad = request.stopTokenIDs.sorted().first(where: { $0 < 0 || Int($0) >= model.shape.vocabularySize }) {
            throw .invalidRequest(
                field: "stop_token_ids",
                "stop_token_ids holds \(bad), but token ids must be in 0..<\(model.shape.vocabularySize)")
        }
        let promptIDs = try promptTokenIDs(for: request.prompt)
        let contextLength = model.shape.maxPositionEmbeddings
        guard promptIDs.count + request.maxTokens <= contextLength else {
            throw .invalidRequest(
                field: "max_tokens", "prompt (\(promptIDs.count) tokens) + max_tokens (\(request.maxTokens)) is "
                    + "\(promptIDs.count + request.maxTokens), but the model's context is \(contextLength) tokens")
        }
        return promptIDs
    }

    /// Generates one request to completion.
    /// - Parameter onText: called with each complete piece of UTF-8 text as it is generated.
    public func generate(
        _ request: GenerationRequest, experts: inout some ExpertExecutor, onText: ((String) -> Void)? = nil
    ) throws(GenerationError) -> GenerationResult {
        let promptIDs = try checkedPromptTokenIDs(for: request)
        let configuration = model.shape
        let maskedIDs = maskedEndTokenIDs(of: request)
        let endIDs = endTokenIDs(of: request)

        var load = ExpertLoad(expertCounts: configuration.expertCounts)
        var sampler = Sampler(request.sampling)
        var processor = SequenceLogitsProcessor(request.adjustments, promptIDs: promptIDs, vocabulary: vocabulary.get)
        var cache = model.makeCache(capacity: promptIDs.count + request.maxTokens)
        var decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: request.skipSpecialTokens)
        var completion: [Int32] = []
        var logprobs: [TokenLogprob] = []
        var finishReason = "length"
        let clock = ContinuousClock()

        func step(_ tokens: [Int32], _ phase: GenerationPhase) throws(GenerationError) -> [Float] {
            do {
                return try model.forward(tokens: tokens, cache: &cache, logits: .lastToken) {
                    layer, hidden, routing in
                    load.record(routing, layer: layer, phase: phase)
                    return try experts.computeExperts(layer: layer, hidden: hidden, routing: routing)
                }
            } catch let error as GenerationError {
                throw error
            } catch {
                throw .expertsFailed("\(error)")
            }
        }

        let prefillStart = clock.now
        var logits = try step(promptIDs, .prefill)
        let prefillDuration = clock.now - prefillStart
        let decodeStart = clock.now
        var stopMatcher = StopMatcher(stops: request.stop, includesStop: request.includeStopInText)
        var stoppedByString = false
        var text = ""
        func release(_ piece: String) {
            guard !piece.isEmpty else { return }
            text += piece
            onText?(piece)
        }
        while true {
            let token = try logits.withUnsafeBufferPointer { logits throws(GenerationError) in
                try processor.sample(logits, with: &sampler, endOfSequence: maskedIDs)
            }
            completion.append(token)
            if request.logprobs > 0 {
                logprobs.append(TokenLogprob(chosen: token, logits: logits, top: request.logprobs))
            }
            let endsByToken = endIDs.contains(token)
            // As vLLM, the text of the token that ended the sequence is left out unless asked for,
            // and stop strings count only once the completion is past min_tokens.
            let piece = endsByToken && !request.includeStopInText ? "" : decoder.append(token)
            let outcome =
                completion.count <= request.adjustments.minTokens
                ? StopMatcher.Outcome(released: piece, stopped: false) : stopMatcher.append(piece)
            release(outcome.released)
            if outcome.stopped {
                finishReason = "stop"
                stoppedByString = true
                break
            }
            if endsByToken {
                finishReason = "stop"
                break
            }
            if processor.isComplete {
                finishReason = "stop"
                break
            }
            if completion.count == request.maxTokens { break }
            logits = try step([token], .decode)
        }
        let decodeDuration = clock.now - decodeStart
        if !stoppedByString {
            let flushed = stopMatcher.append(decoder.finish())
            release(flushed.released)
            if flushed.stopped { finishReason = "stop" } else { release(stopMatcher.finish()) }
        }
        return GenerationResult(
            promptTokenIDs: promptIDs,
            completionTokenIDs: completion,
            text: text,
            finishReason: finishReason,
            logprobs: request.logprobs > 0 ? logprobs : nil,
            expertLoad: load,
            workers: experts.workerSummaries,
            timing: GenerationTiming(
                prefillTokensPerSecond: Double(promptIDs.count) / max(prefillDuration.seconds, 1e-9),
                decodeTokensPerSecond: Double(completion.count - 1) / max(decodeDuration.seconds, 1e-9),
                keyValueCacheBytesPerToken: cache.bytesPerToken))
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}

/// Computes experts in-process from an `ExpertStore` holding all of them (`--spawn-workers 0`).
public struct LocalExperts: ExpertExecutor {
    public let store: ExpertStore

    public init(store: ExpertStore) { self.store = store }

    public func computeExperts(
        layer: LayerIndex, hidden: [Float], routing: RoutingDecision
    ) throws(GenerationError) -> [Float] {
        let k = routing.expertsPerToken
        let offsets = (0...routing.tokenCount).map { UInt32($0 * k) }
        do {
            return try store.compute(
                layer: layer, hidden: hidden, rowCount: routing.tokenCount, rowExpertOffsets: offsets,
                expertIDs: routing.expertIDs.map { UInt32($0) }, weights: routing.weights)
        } catch {
            throw .expertsFailed("in-process experts of \(layer): \(error)")
        }
    }

    public var workerSummaries: [WorkerSummary] {
        [WorkerSummary(name: "in-process", experts: store.heldExperts.sorted())]
    }
}
